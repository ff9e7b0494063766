from aineko import AbstractNode


class Upper(AbstractNode):
    """Upper-cases words."""

    def _execute(self, params=None):
        msg = self.inputs["shouted"].next()
        self.outputs["shouted"].write(msg["message"].upper())

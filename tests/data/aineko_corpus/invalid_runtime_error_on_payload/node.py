from aineko import AbstractNode


class Upper(AbstractNode):
    """Upper-cases words."""

    def _execute(self, params=None):
        msg = self.inputs["words"].next()
        self.outputs["shouted"].write(msg["message"]["text"].upper())

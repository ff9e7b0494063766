from aineko import AbstractNode


class Upper(AbstractNode):
    """Upper-cases words."""

    def _execute(self, params=None):
        msg = self.inputs["words"].read(how="first", timeout=1)
        if msg is None:
            return
        self.outputs["shouted"].write(msg["message"].upper())

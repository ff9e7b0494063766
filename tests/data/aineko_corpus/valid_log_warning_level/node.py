from aineko import AbstractNode


class Upper(AbstractNode):
    """Upper-cases words."""

    def _execute(self, params=None):
        msg = self.inputs["words"].next()
        self.log(f"read {msg['message']}", level="warning")
        self.outputs["shouted"].write(msg["message"].upper())

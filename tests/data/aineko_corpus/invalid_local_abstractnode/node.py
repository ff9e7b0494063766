class AbstractNode:
    """A local stand-in with the same name."""

    def __init__(self, **kwargs):
        self.inputs = {}
        self.outputs = {}


class Upper(AbstractNode):
    """Upper-cases words."""

    def _execute(self, params=None):
        msg = self.inputs["words"].next()
        self.outputs["shouted"].write(msg["message"].upper())

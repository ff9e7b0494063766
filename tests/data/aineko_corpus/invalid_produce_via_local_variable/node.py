from aineko import AbstractNode


class Upper(AbstractNode):
    """Upper-cases words."""

    def _execute(self, params=None):
        source = self.inputs["words"]
        sink = self.outputs["shouted"]
        msg = source.next()
        sink.produce(msg["message"].upper())

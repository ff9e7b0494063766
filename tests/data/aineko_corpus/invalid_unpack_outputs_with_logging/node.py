from aineko import AbstractNode


class Offset(AbstractNode):
    """Adds the node's `offset` to each number."""

    def _execute(self, params=None):
        (source,) = self.inputs.values()
        (sink,) = self.outputs.values()
        msg = source.next()
        sink.write(msg["message"] + params["offset"])

from aineko import AbstractNode


class Offset(AbstractNode):
    """Adds the node's `offset` to each number and writes it to the `sink` dataset."""

    def _execute(self, params=None):
        (source,) = self.inputs.values()
        sink = self.outputs[params["sink"]]
        msg = source.next()
        sink.write(msg["message"] + params["offset"])

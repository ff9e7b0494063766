from aineko import AbstractNode


class Echo(AbstractNode):
    """Answers every request."""

    def __init__(self, pipeline_name, node_name=None, poison_pill=None, test=False):
        super(Echo, self).__init__(pipeline_name, node_name=node_name, poison_pill=poison_pill, test=test)
        self.replies = 0

    def _execute(self, params=None):
        msg = self.inputs["requests"].next()
        self.replies += 1
        self.outputs["replies"].write({**msg["message"], "ok": True})

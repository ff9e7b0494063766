from aineko import AbstractNode


class Upper(AbstractNode):
    """Upper-cases words."""

    def _pre_loop_hook(self, params=None):
        self.count = 0

    def execute_once(self, params=None):
        msg = self.inputs["words"].next()
        self.outputs["shouted"].write(msg["message"].upper())

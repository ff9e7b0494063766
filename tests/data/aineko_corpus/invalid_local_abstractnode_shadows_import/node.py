from aineko import AbstractNode


class AbstractNode:  # noqa: F811 - shadows Aineko's base
    """A local class that replaces the imported one."""


class Upper(AbstractNode):
    """Upper-cases words."""

    def _execute(self, params=None):
        msg = self.inputs["words"].next()
        self.outputs["shouted"].write(msg["message"].upper())

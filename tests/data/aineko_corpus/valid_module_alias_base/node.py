import aineko.core.node as core_node

class Doubler(core_node.AbstractNode):
    """Doubles numbers."""

    def _execute(self, params=None):
        """Double each number read from `numbers`."""
        msg = self.inputs["numbers"].next()
        self.outputs["doubled"].write(msg["message"] * 2)

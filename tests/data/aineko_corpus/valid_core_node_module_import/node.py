from aineko.core import node as aineko_node

class Doubler(aineko_node.AbstractNode):
    """Doubles numbers."""

    def _execute(self, params=None):
        """Double each number read from `numbers`."""
        msg = self.inputs["numbers"].next()
        self.outputs["doubled"].write(msg["message"] * 2)

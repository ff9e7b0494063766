from aineko import AbstractNode


class Router(AbstractNode):
    """Sends even numbers one way and odd numbers the other."""

    def _execute(self, params=None):
        msg = self.inputs["numbers"].next()
        value = msg["message"]
        target = "evens" if value % 2 == 0 else "odds"
        self.outputs[target].write(value)

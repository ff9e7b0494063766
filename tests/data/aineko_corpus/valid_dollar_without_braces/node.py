from aineko import AbstractNode


class Greeter(AbstractNode):
    """Greets each name with the configured template."""

    def _execute(self, params=None):
        msg = self.inputs["names"].next()
        self.outputs["greetings"].write(params["template"].replace("NAME", msg["message"]))

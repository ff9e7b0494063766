from aineko import AbstractNode


class Merger(AbstractNode):
    """Forwards whatever arrives on either input."""

    def _execute(self, params=None):
        for name in ("left", "right"):
            msg = self.inputs[name].read(how="next", timeout=0)
            if msg is not None:
                self.outputs["merged"].write({"from": name, "value": msg["message"]})

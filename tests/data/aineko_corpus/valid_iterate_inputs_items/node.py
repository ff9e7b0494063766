from aineko import AbstractNode


class Echo(AbstractNode):
    """Answers every request on any input."""

    def _execute(self, params=None):
        for _name, dataset in self.inputs.items():
            msg = dataset.read(how="next", timeout=0)
            if msg is None:
                continue
            self.outputs["replies"].write({**msg["message"], "ok": True})

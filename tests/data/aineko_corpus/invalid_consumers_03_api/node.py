from aineko import AbstractNode


class Upper(AbstractNode):
    """Upper-cases words."""

    def _execute(self, params=None):
        msg = self.consumers["words"].consume(how="next", timeout=0)
        if msg is None:
            return
        self.producers["shouted"].produce(msg["message"].upper())

from aineko import AbstractNode


class Upper(AbstractNode):
    """Upper-cases words."""

    SUFFIX = ""

    def _shout(self, word):
        return word.upper() + self.SUFFIX

    def _execute(self, params=None):
        msg = self.inputs["words"].next()
        self.outputs["shouted"].write(self._shout(msg["message"]))

from aineko import AbstractNode


class Upper(AbstractNode):
    """Upper-cases words."""

    def _execute(self, params=None):
        msg = self.inputs["words"].next()
        word = msg["message"]
        if not word:
            raise ValueError("empty word")
        self.outputs["shouted"].write(word.upper())

from aineko import AbstractNode


class TextNode(AbstractNode):
    """Shared reading and writing for text nodes."""

    def transform(self, word):
        raise NotImplementedError

    def _execute(self, params=None):
        msg = self.inputs["words"].next()
        self.outputs["shouted"].write(self.transform(msg["message"]))


class Upper(TextNode):
    """Upper-cases words."""

    def transform(self, word):
        return word.upper()

from aineko import AbstractNode


class Fetcher(AbstractNode):
    """Emits the configured endpoints once."""

    def _execute(self, params=None):
        for url in params["api"]["endpoints"]:
            self.outputs["urls"].write(url)
        return False

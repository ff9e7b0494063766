import time

from aineko import AbstractNode


class Poller(AbstractNode):
    """Writes a poll result at the configured interval."""

    def _execute(self, params=None):
        time.sleep(params.get("interval_s", 0))
        self.outputs["polls"].write({"url": params["url"], "status": "ok"})

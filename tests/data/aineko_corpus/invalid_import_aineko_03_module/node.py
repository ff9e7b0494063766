from aineko.core.node import AbstractNode
from aineko.core.dataset import KafkaDataset


class Upper(AbstractNode):
    """Upper-cases words."""

    def _execute(self, params=None):
        msg = self.inputs["words"].next()
        self.outputs["shouted"].write(msg["message"].upper())

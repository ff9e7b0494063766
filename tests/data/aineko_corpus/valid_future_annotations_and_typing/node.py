from __future__ import annotations

import json
from typing import Optional

from aineko import AbstractNode
from aineko.core.dataset import AbstractDataset


class Upper(AbstractNode):
    """Upper-cases words."""

    def _execute(self, params: Optional[dict] = None) -> Optional[bool]:
        msg = self.inputs["words"].next()
        self.outputs["shouted"].write(msg["message"].upper())
        return None

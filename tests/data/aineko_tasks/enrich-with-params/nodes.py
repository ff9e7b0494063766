"""Reference solution."""
from typing import Optional

from aineko import AbstractNode


class PriceEnricher(AbstractNode):
    def _execute(self, params: dict) -> Optional[bool]:
        message = self.inputs["product_ids"].read(how="next")
        if message is None:
            return None
        value = message["message"]
        self.outputs["priced"].write({"id": value, "price": params.get("prices", {}).get(value)})
        return None

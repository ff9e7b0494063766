"""Reference solution."""
from typing import Optional

from aineko import AbstractNode


class OrderValidator(AbstractNode):
    def _execute(self, params: dict) -> Optional[bool]:
        message = self.inputs["orders"].read(how="next")
        if message is None:
            return None
        order = message["message"]
        ok = isinstance(order, dict) and isinstance(order.get("id"), str) and isinstance(order.get("amount"), (int, float)) and order["amount"] > 0
        if ok:
            self.outputs["valid_orders"].write(order)
        else:
            order_id = order.get("id") if isinstance(order, dict) else None
            self.outputs["rejected_orders"].write({"id": order_id, "error": "invalid order"})
        return None

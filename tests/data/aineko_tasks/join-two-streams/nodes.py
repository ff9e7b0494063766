"""Reference solution."""
from typing import Optional

from aineko import AbstractNode


class OrderCountryJoin(AbstractNode):
    def _pre_loop_hook(self, params: Optional[dict] = None) -> None:
        self.countries = {}
        self.waiting = []

    def _execute(self, params: dict) -> Optional[bool]:
        user = self.inputs["users"].read(how="next")
        if user is not None:
            self.countries[user["message"]["user"]] = user["message"]["country"]
        order = self.inputs["orders"].read(how="next")
        if order is not None:
            self.waiting.append(order["message"])
        still = []
        for pending in self.waiting:
            country = self.countries.get(pending["user"])
            if country is None:
                still.append(pending)
            else:
                self.outputs["orders_by_country"].write({"id": pending["id"], "country": country})
        self.waiting = still
        return None

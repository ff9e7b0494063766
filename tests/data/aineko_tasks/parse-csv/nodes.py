"""Reference solution."""
from typing import Optional

from aineko import AbstractNode


class CsvParser(AbstractNode):
    def _execute(self, params: dict) -> Optional[bool]:
        message = self.inputs["csv_lines"].read(how="next")
        if message is None:
            return None
        value = message["message"]
        fields = str(value).split(",")
        if len(fields) == 2 and fields[1].strip().lstrip("-").isdigit():
            self.outputs["people"].write({"name": fields[0].strip(), "age": int(fields[1])})
        return None

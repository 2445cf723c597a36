"""A workbook as raw cells, whatever its format: sheets → {(row, col): (value, formula)}, defined
names with their scope, and the stamp's document properties read on demand."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class RawBook:
    sheet_names: list[str]
    hidden: set[str]
    names: list[tuple[str, int | None, str]]  # (name, local sheet index or None, reference text)
    date1904: bool
    cells: dict[str, dict[tuple[int, int], tuple[Any, str | None]]]
    has_macros: bool = False
    external_links: bool = False
    # perfxl's custom document properties, read only when asked: the stamp sheet usually says it all
    load_properties: Any = None
    _properties: dict[str, str] | None = None

    @property
    def properties(self) -> dict[str, str]:
        if self._properties is None:
            self._properties = self.load_properties() if self.load_properties else {}
        return self._properties

"""Form data: what the reader hands on — fields and table rows per sheet, every value with its cell and
formula, the stamp, and what the reader noticed on the way."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from perfxl.contract import DECLARED_ROW_KEYS
from perfxl.problems import Problem


class Cell(NamedTuple):
    value: Any  # str | float | bool | None ; error results as "#REF!" strings
    address: str  # "B5"
    formula: str | None = None  # formula text without "=", when the cell holds one


@dataclass
class SheetData:
    sheet: str
    fields: dict[str, Cell] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # rows: {"_row": n, col: Cell}


_TEXT = (str, type(None))
_SCALARS = {"path": (str,), "size": (int,), "sha256": (str,), "format": (str,), "template": _TEXT, "version": _TEXT,
            "fingerprint": _TEXT, "region": _TEXT, "year": (int, type(None)), "unit_code": _TEXT, "unit_name": _TEXT,
            "stamp_source": _TEXT, "date1904": (bool,), "round": _TEXT}


@dataclass
class FormData:
    path: str
    size: int
    sha256: str
    format: str  # xlsx | xls
    template: str | None = None
    version: str | None = None
    fingerprint: str | None = None
    region: str | None = None
    year: int | None = None
    unit_code: str | None = None
    unit_name: str | None = None
    stamp_source: str | None = None  # sheet | properties | labels
    round: str | None = None  # a follow-up form's round (perfxl.issued), as its stamp claims
    date1904: bool = False
    sheets: list[SheetData] = field(default_factory=list)
    notices: list[Problem] = field(default_factory=list)  # what the reader noticed
    declared: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # a follow-up form's declaration

    def to_dict(self) -> dict:
        # By hand: dataclasses.asdict deep-copies every cell and costs more than reading the file.
        data = {k: getattr(self, k) for k in ("path", "size", "sha256", "format", "template", "version",
                                                "fingerprint", "region", "year", "unit_code", "unit_name",
                                                "stamp_source", "date1904", "round")}
        # the declaration as rows of values, not of dicts: it is half a self-evaluation form's cache entry
        data["declared"] = {sheet: [[row.get(k, "") for k in DECLARED_ROW_KEYS] for row in rows]
                            for sheet, rows in self.declared.items()}
        data["sheets"] = [{"sheet": s.sheet, "fields": {k: list(v) for k, v in s.fields.items()},
                           "tables": {t: [{k: (v if k == "_row" else list(v)) for k, v in row.items()} for row in rows]
                                      for t, rows in s.tables.items()}} for s in self.sheets]
        data["notices"] = [n.to_record() for n in self.notices]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> FormData:
        """Back from `to_dict`. Raises ValueError (or TypeError, KeyError) for data of another shape: a lower
        level's export is read through here, and what perfxl does with a form's year, unit or template
        must not be able to fail later (a year of 10**30, a template that is a list)."""
        data = dict(data)
        for key, types in _SCALARS.items():
            if not isinstance(data.get(key), types) or isinstance(data.get(key), bool) and bool not in types:
                raise ValueError(f"form data: {key} of type {type(data.get(key)).__name__}")
        if data.get("year") is not None and not 1900 <= data["year"] <= 2200:
            raise ValueError(f"form data: year {data['year']}")
        sheets = []
        for s in data.pop("sheets"):
            tables = {tid: [{k: (v if k == "_row" else Cell(*v)) for k, v in row.items()} for row in rows]
                      for tid, rows in s["tables"].items()}
            sheets.append(SheetData(sheet=s["sheet"], fields={k: Cell(*v) for k, v in s["fields"].items()},
                                    tables=tables))
        notices = [Problem.from_dict(n) for n in data.pop("notices")]
        data["declared"] = {sheet: [dict(zip(DECLARED_ROW_KEYS, row, strict=True)) for row in rows]
                            for sheet, rows in data.get("declared", {}).items()}
        return cls(sheets=sheets, notices=notices, **data)

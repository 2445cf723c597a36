"""The contract between a generated form and the reader, declared once and used by both sides.

A form carries, whatever an office suite did to it:
- the **stamp**: a hidden sheet whose A1 says `perfxl-stamp` and whose rows below hold one key in column
  A and its value in column B, repeated in the custom document properties as `perfxl.<key>`;
- **defined names**: `f_<field id>` on every input cell and `t_<table id>` on every table body,
  sheet-scoped when a workbook holds several project sheets.

Office suites keep both through inserted rows, copied sheets and re-saves. The reader reads exactly the
keys listed here, so a key added to the stamp is added in this one place.
"""

from __future__ import annotations

from typing import Any

STAMP_SHEET = "_perfxl"
STAMP_MARK = "perfxl-stamp"  # A1 of the stamp sheet
STAMP_KEYS = ("template", "version", "fingerprint", "region", "year", "unit_code", "unit_name", "projects", "perfxl")
PROPERTY_PREFIX = "perfxl."
FIELD_PREFIX = "f_"
TABLE_PREFIX = "t_"


def field_name(field_id: str) -> str:
    return FIELD_PREFIX + field_id


def table_name(table_id: str) -> str:
    return TABLE_PREFIX + table_id


def stamp_rows(stamp: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, value) in stamp-sheet order, from row 2 on; every key of STAMP_KEYS, as text."""
    return [(key, "" if stamp.get(key) is None else str(stamp[key])) for key in STAMP_KEYS]


def stamp_from_cells(cells: dict[tuple[int, int], tuple[Any, Any]]) -> dict[str, str] | None:
    """The stamp held by a stamp sheet's cells ({(row, col): (value, formula)}), or None if it is not one.
    Keys are looked up by name, so rows moved or added by an office suite do not matter."""
    if str(cells.get((0, 0), ("",))[0]) != STAMP_MARK:
        return None
    stamp = {}
    for (row, col), (key, _) in cells.items():
        if col != 0 or row == 0 or str(key) not in STAMP_KEYS:
            continue
        value = cells.get((row, 1), ("", None))[0]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        stamp[str(key)] = "" if value is None else str(value)
    return stamp


def stamp_from_properties(properties: dict[str, str]) -> dict[str, str]:
    """The stamp from custom document properties already stripped of PROPERTY_PREFIX."""
    return {key: value for key, value in properties.items() if key in STAMP_KEYS}


# A follow-up form (self-evaluation, monitoring) carries what was declared on a second hidden sheet, one
# row per prefilled indicator row, so a target retyped after unprotecting the sheet is caught at merge.
DECLARED_SHEET = "perfxl_declared"
DECLARED_MARK = "perfxl declared v1"
DECLARED_COLUMNS = ("sheet", "row", "group", "level1", "level2", "level3", "target", "points")


def declared_from_cells(cells: dict[tuple[int, int], tuple[Any, Any]]) -> dict[str, list[dict[str, Any]]]:
    """{project sheet: [row, …]} from the declared sheet's cells; {} when the sheet is not one."""
    if str(cells.get((0, 0), ("",))[0]) != DECLARED_MARK:
        return {}
    out: dict[str, list[dict[str, Any]]] = {}
    rows = sorted({r for r, _ in cells if r >= 2})
    for r in rows:
        record = {}
        for c, key in enumerate(DECLARED_COLUMNS):
            value = cells.get((r, c), ("", None))[0]
            if isinstance(value, float) and value.is_integer() and key in {"row"}:
                value = int(value)
            record[key] = "" if value is None else value
        if record["sheet"]:
            out.setdefault(str(record["sheet"]), []).append(record)
    return out

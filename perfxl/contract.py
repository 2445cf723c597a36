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

import json
from typing import Any

STAMP_SHEET = "_perfxl"
STAMP_MARK = "perfxl-stamp"  # A1 of the stamp sheet
# "round": the round of follow-up forms a form belongs to (perfxl.issued), empty on a blank declaration form.
STAMP_KEYS = ("template", "version", "fingerprint", "region", "year", "unit_code", "unit_name", "projects", "perfxl",
              "round")
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


# A follow-up form (self-evaluation, monitoring) carries what was declared on a second hidden sheet, so a
# target retyped after unprotecting the sheet is caught at merge. One row per project sheet and 一级: its
# 分值 total (the live checks sum it with SUMIFS) and its declared rows as one JSON cell. One cell a group,
# not one a value: a merge reads this sheet on every form, and 300 cells cost more than the form's own table.
DECLARED_SHEET = "perfxl_declared"
DECLARED_MARK = "perfxl declared v2"
DECLARED_HEADER = ("sheet", "level1", "points", "rows")
DECLARED_ROW_KEYS = ("row", "group", "level1", "level2", "level3", "target", "points")
DECLARED_CELL_CHARS = 30_000  # under Excel's 32,767 characters a cell


_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # json.dumps's, made once


def declared_sheet_rows(title: str, rows: list[dict[str, Any]]) -> list[tuple[str, str, float, str]]:
    """The hidden sheet's rows for one project sheet: (sheet, 一级, its 分值, JSON of its rows), a group
    split over several rows when its JSON would not fit one cell."""
    groups: dict[str, list[list[Any]]] = {}
    for row in rows:
        groups.setdefault(str(row.get("level1") or ""), []).append(
            ["" if row.get(k) is None else row[k] for k in DECLARED_ROW_KEYS])
    out = []
    points_at = DECLARED_ROW_KEYS.index("points")

    def put(level1: str, chunk: list[list[Any]], texts: list[str]) -> None:
        total = sum(float(i[points_at]) for i in chunk if isinstance(i[points_at], int | float))
        out.append((title, level1, total, "[" + ",".join(texts) + "]"))  # json.dumps of the chunk, as it is

    for level1, items in groups.items():
        chunk: list[list[Any]] = []
        texts: list[str] = []
        length = 2  # the chunk's JSON: its brackets, its items and the commas between them
        for item in items:
            text = _ENCODE(item)  # each row encoded once
            size = utf16_length(text)
            if chunk and length + 1 + size > DECLARED_CELL_CHARS:
                put(level1, chunk, texts)
                chunk, texts, length = [], [], 2
            length += size + (1 if chunk else 0)
            chunk.append(item)
            texts.append(text)
        put(level1, chunk, texts)
    return out


def utf16_length(text: str) -> int:
    """A text's length as Excel counts it (a cell holds 32,767 of these): a character beyond the BMP is two."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2


def utf16_prefix(text: str, units: int) -> str:
    """The longest start of `text` of at most `units` UTF-16 units, never half a character."""
    return text.encode("utf-16-le")[: 2 * units].decode("utf-16-le", "ignore")


def declared_cells(text: str) -> list[str]:
    """A declared row's JSON as the cells it is written in, from column D rightwards: one, unless a single
    indicator's texts (each of which fits a cell) do not fit one together; `declared_from_cells` joins them."""
    if utf16_length(text) <= DECLARED_CELL_CHARS:
        return [text]
    pieces, start = [], 0
    while start < len(text):  # as much as a cell holds, a character beyond the BMP counting twice
        piece = utf16_prefix(text[start:start + DECLARED_CELL_CHARS], DECLARED_CELL_CHARS)
        pieces.append(piece)
        start += len(piece)
    return pieces


def declared_from_cells(cells: dict[tuple[int, int], tuple[Any, Any]]) -> dict[str, list[dict[str, Any]]] | None:
    """{project sheet: [row, …]} in declared order from the declared sheet's cells; None when the sheet is
    not one or a group's JSON was damaged (the caller reports it: the prefilled targets cannot be checked)."""
    if str(cells.get((0, 0), ("",))[0]) != DECLARED_MARK:
        return None
    out: dict[str, list[dict[str, Any]]] = {}
    for r in sorted({r for r, c in cells if r >= 2 and c == 0}):
        sheet = cells.get((r, 0), ("", None))[0]
        text = cells.get((r, 3), ("", None))[0]
        c = 4
        while isinstance(text, str) and isinstance(cells.get((r, c), (None,))[0], str):  # continued rightwards
            text += cells[(r, c)][0]
            c += 1
        try:
            items = json.loads(text) if isinstance(text, str) else None
        except (ValueError, RecursionError):
            items = None
        if not isinstance(items, list) or not all(isinstance(i, list) and len(i) == len(DECLARED_ROW_KEYS)
                                                  and all(isinstance(v, str | int | float) for v in i)
                                                  for i in items):
            return None
        if sheet:
            out.setdefault(str(sheet), []).extend(dict(zip(DECLARED_ROW_KEYS, i, strict=True)) for i in items)
    for rows in out.values():
        rows.sort(key=lambda row: row["row"] if isinstance(row["row"], int | float) else 0)
    return out

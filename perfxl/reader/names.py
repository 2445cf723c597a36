"""Locating a form's inputs: the defined names (sheet-scoped or not) say where each field and table body
is, following inserted rows and copied sheets; the template's layout is the fallback when names are lost."""

from __future__ import annotations

import re
from functools import lru_cache

from perfxl.contract import STAMP_SHEET
from perfxl.errors import ReadError
from perfxl.problems import L, problem
from perfxl.reader.cells import cell_name
from perfxl.reader.form import Cell, FormData, SheetData
from perfxl.reader.rawbook import RawBook
from perfxl.spec import Spec, layout, split_cell

_REF_RE = re.compile(r"^=?(?:'((?:[^']|'')+)'|([^'!]+))!\$?([A-Z]{1,3})\$?(\d+)(?::\$?([A-Z]{1,3})\$?(\d+))?$")


def parse_ref(text: str) -> tuple[str, tuple[int, int], tuple[int, int]] | None:
    # The same few names' references in every unit's form: parsed once in a process, when short (a hostile
    # workbook's names may be long, and a memo would hold them after the file is done)
    return _parse_ref(text) if len(text) <= 256 else _parse_ref.__wrapped__(text)


@lru_cache(maxsize=4096)
def _parse_ref(text: str) -> tuple[str, tuple[int, int], tuple[int, int]] | None:
    m = _REF_RE.match(text.strip())
    if not m:
        return None
    sheet = (m.group(1) or "").replace("''", "'") or m.group(2)
    first = split_cell(m.group(3) + m.group(4))
    last = split_cell(m.group(5) + m.group(6)) if m.group(5) else first
    return sheet, first, last


@lru_cache(maxsize=512)
def letter(col: int) -> str:
    return cell_name(0, col)[:-1]


def extract(form: FormData, book: RawBook, spec: Spec) -> None:
    """Locate the form's inputs by their defined names (sheet-scoped or not, surviving inserted rows),
    falling back on the template's layout where names were lost, and copy fields and table rows out
    with their cell addresses.

    Long because the three steps share the per-sheet name map and the fallback decision, and reading a
    table's rows depends on where its name was found; it is one pass in the order a reader would check."""
    lay = layout(spec)
    wanted_names, label_texts, field_names = _looked_for(spec)
    per_sheet: dict[str, dict[str, tuple]] = {}
    for name, local, ref in book.names:
        kind = wanted_names.get(name)
        if kind is None:
            continue
        parsed = parse_ref(ref)
        if parsed is None:
            if "#REF" in ref:
                form.notices.append(problem("name-broken", name=name))
            continue
        sheet = parsed[0]
        if local is not None and 0 <= local < len(book.sheet_names):
            sheet = book.sheet_names[local]
        per_sheet.setdefault(sheet, {})[name] = parsed

    form_sheets = [s for s in book.sheet_names if s in per_sheet and s in book.cells]
    if not form_sheets:  # names lost (e.g. re-typed into a new workbook): fall back on the layout
        for s in book.sheet_names:
            if s in book.hidden or s == STAMP_SHEET:
                continue
            cells = book.cells.get(s, {})
            title_rows = [p for p in lay.placements if p.kind == "title"]
            if title_rows and str(cells.get((title_rows[0].row, 0), ("",))[0]).strip() == title_rows[0].text:
                form_sheets.append(s)
                per_sheet[s] = {}
                notice = problem("names-missing")
                notice.sheet = s
                form.notices.append(notice)
    if not form_sheets:
        raise ReadError("not-a-form", detail=L(f"找不到 {spec.title} 的填报区域，定义名称和版式都不匹配",
                                              f"no input area of {spec.title}: neither the names nor the layout match"))

    regions = []
    for sheet in form_sheets:
        for name, (_, first, last) in per_sheet[sheet].items():
            regions.append((sheet, first[0], last[0], name))

    for sheet in form_sheets:
        cells = book.cells.get(sheet, {})
        names = per_sheet[sheet]
        data = SheetData(sheet=sheet)
        for field_id, field_name in field_names:
            if field_name in names:
                _, (r, c), _ = names[field_name]
            elif not names and field_id in lay.fields:
                r, c = lay.fields[field_id]
            else:
                continue
            value, formula = cells.get((r, c), (None, None))
            data.fields[field_id] = Cell(value, cell_name(r, c), formula)
        for t in spec.tables.values():
            pos = lay.tables[t.id]
            if t.name in names:
                _, (r0, c0), (r1, _) = names[t.name]
            elif not names:
                r0, c0, r1 = pos.first_row, 0, pos.last_row
            else:
                continue
            others = [(a, b) for s, a, b, n in regions if s == sheet and n != t.name and a > r1]
            stop = min([a for a, _ in others] + [r1 + 500])
            data.tables[t.id] = _table_rows(cells, t, pos, c0, r0, r1, stop, label_texts)
        form.sheets.append(data)
    if not form.unit_name and spec.unit_name_field:  # no stamp: the unit the form itself names
        for sheet in form.sheets:
            cell = sheet.fields.get(spec.unit_name_field)
            if cell and isinstance(cell.value, str) and cell.value.strip():
                form.unit_name = cell.value.strip()
                break


@lru_cache(maxsize=64)  # a Spec hashes by identity: one entry per template and year read in a process
def _looked_for(spec: Spec) -> tuple[dict[str, tuple[str, str]], frozenset[str], tuple[tuple[str, str], ...]]:
    """A spec's defined names (each a field's or a table's, and its id), its printed labels' texts, and its
    fields' ids and names in order: the same for every form of the template, made once, not for each form."""
    wanted = {f.name: ("field", f.id) for f in spec.fields.values()}
    wanted.update({t.name: ("table", t.id) for t in spec.tables.values()})
    labels = frozenset(p.text for p in layout(spec).placements
                       if p.kind in {"label", "section", "title", "header"} and p.text)
    return wanted, labels, tuple((f.id, f.name) for f in spec.fields.values())


_new_cell = tuple.__new__  # a Cell made without NamedTuple's Python-level __new__: a form has hundreds


def _table_rows(cells: dict, table, pos, c0: int, r0: int, r1: int, stop: int, label_texts: set) -> list[dict]:
    """A table's rows from its named body (rows r0..r1, first column c0), and the rows a clerk added
    directly below it up to `stop` (the next region), ending at an empty row or a row of the template's
    labels. Empty rows inside the body are left out; every value keeps its cell."""
    get = cells.get
    columns = [(col.id, (c0 + pos.columns[col.id]), letter(c0 + pos.columns[col.id])) for col in table.columns]
    rows = []
    r = r0
    while r <= r1 or r < stop:
        found = [get((r, cc)) for _, cc, _ in columns]
        empty = True
        for v in found:
            if v is not None and (v[1] or v[0] not in (None, "")):
                empty = False
                break
        if r > r1:  # rows a clerk added directly below the named body
            if empty or {v[0].strip() for v in found if v is not None and isinstance(v[0], str)} & label_texts:
                break
        if not empty:
            number = str(r + 1)
            row = {"_row": r + 1}
            for (cid, _, lt), v in zip(columns, found):
                row[cid] = _new_cell(Cell, (v[0], lt + number, v[1]) if v is not None else (None, lt + number, None))
            rows.append(row)
        r += 1
    return rows

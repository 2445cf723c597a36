"""Generate stage: a spec → blank .xlsx forms (xlsxwriter).

Every input cell carries a defined name (`f_<field>`, tables `t_<table>` over their body); names are
sheet-scoped when a workbook holds several project sheets, so a copied sheet brings its own. A hidden
sheet `_perfxl` holds the stamp (template, version, fingerprint, region, year, unit) and the lists the
cascading dropdowns use; the same stamp is kept in the custom document properties.

For a batch, each distinct (region, project count) is rendered once with token placeholders for the unit;
each unit's copy only patches its strings into `sharedStrings.xml` and `docProps/custom.xml`.
"""

from __future__ import annotations

import io
import math
import os
import re
import zipfile
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import xlsxwriter

from .contract import (
    DECLARED_HEADER,
    DECLARED_MARK,
    DECLARED_SHEET,
    STAMP_SHEET,
    declared_cells,
    declared_sheet_rows,
)
from .designed.form import build_designed_workbook
from .errors import OutputError, PerfxlError
from .files import ensure_writable_dir, safe_filename, write_bytes_atomic
from .formparts import (
    FILL_INPUT,
    FILL_LABEL,
    FILL_PREFILLED,
    FILL_REQUIRED_EMPTY,
    NUMBER_FORMATS,
    FormExtras,
    Lists,
    ReferenceSheet,
    abs_ref,
    break_at_phrases,
    column_validation,
    field_validation,
    quote_sheet,
    rows_needed,
    stamp_sheet,
    sum_check_formula,
    wrap_text,
)
from .manifest import HANDOUT_FILE as HANDOUT_FILE  # where it was before perfxl/manifest.py
from .manifest import MANIFEST_FILE, Manifest, write_manifest
from .roster import Unit
from .rounds import DEPARTMENT
from .rules import CheckFormula, SumCheck, live_checks
from .sheetxml import Segment, XlsxZip, segment
from .spec import NUMERIC_TYPES, Spec, cell_name, layout, load_spec, substitutes_unit
from .xlsxsafe import SafeWorkbook, SafeWorksheet, shared_text, xml_attribute

GUIDE_SHEET = "填表说明"
_FIXED_TIME = datetime(2000, 1, 1)  # deterministic output: same inputs, same bytes


class _Formats:
    def __init__(self, wb: xlsxwriter.Workbook):
        self.wb = wb
        self._cache: dict[tuple, object] = {}
        base = {"font_name": "宋体", "font_size": 10, "valign": "vcenter", "text_wrap": True}
        self.base = base

    def get(self, **props):
        key = tuple(sorted(props.items()))
        if key not in self._cache:
            self._cache[key] = self.wb.add_format({**self.base, **props})
        return self._cache[key]

    def title(self):
        return self.get(bold=True, font_size=16, align="center", locked=True)

    def text(self, align="left"):
        return self.get(align=align, locked=True)

    def section(self):
        return self.get(bold=True, locked=True, border=1, bg_color=FILL_LABEL)

    def label(self):
        return self.get(locked=True, border=1, bg_color=FILL_LABEL, align="center")

    def header(self):
        return self.get(bold=True, locked=True, border=1, bg_color=FILL_LABEL, align="center")

    def input(self, kind: str):
        return self._value_cell(kind, locked=False, fill=FILL_INPUT)

    def prefilled(self, kind: str):
        """A value perfxl wrote from the declaration: locked, on grey, so it reads as given."""
        return self._value_cell(kind, locked=True, fill=FILL_PREFILLED)

    def _value_cell(self, kind: str, locked: bool, fill: str):
        props = {"locked": locked, "border": 1, "bg_color": fill}
        if kind in NUMBER_FORMATS:
            props["num_format"] = NUMBER_FORMATS[kind]
            props["align"] = "right" if kind != "date" else "center"
        else:
            props["num_format"] = "@"  # text, so "=100%" or "≥95%" stays what the clerk typed
            props["align"] = "left"
        return self.get(**props)

    def check(self):
        return self.get(locked=True, italic=True, font_color="#7F3F00", text_wrap=False)


def _ok(code: int, what: str) -> None:
    # xlsxwriter reports bad calls by return code, silently dropping them: never let one pass.
    if code not in (0, None):
        raise PerfxlError(f"internal error writing the form ({what}): xlsxwriter returned {code}")


def _column_kind(col_type: str) -> str:
    return col_type if col_type in NUMBER_FORMATS else "text"




def _write_stamp_sheet(wb, spec: Spec, unit: dict, projects: int, fmt: _Formats,
                       extras: FormExtras | None = None) -> Lists:
    ws = wb.add_worksheet(STAMP_SHEET)
    ws.hide()
    content = stamp_sheet(spec, unit, projects, extras)
    for r, c, text in content.cells:
        _ok(ws.write_string(r, c, text), "stamp")
    ws.protect("", {"select_locked_cells": False})
    for key, value in content.properties:
        wb.set_custom_property(key, value)
    return content.lists


GUIDE_TITLE_SIZE = 16  # points
GUIDE_WIDTH = 80  # characters: one A4 portrait page wide at 100 % in Excel, and in LibreOffice's wider columns


def guide_unit_line(year: int, unit: dict) -> str:
    """填表说明's line that names the unit: the only text of the sheet that differs from unit to unit."""
    return f"{year}年度 · {unit.get('name', '')}（{unit.get('code', '')}）"


def guide_unit_lines(year: int, unit: dict) -> int:
    """How many lines that line takes: units alike in it share a master's 填表说明 (its rows' heights)."""
    return len(wrap_text(guide_unit_line(year, unit), [GUIDE_WIDTH]))


def guide_title_lines(title: str) -> int:
    """How many lines 填表说明's title takes (its first line): regions whose titles take as many share a
    master's 填表说明."""
    return len(wrap_text(title, [GUIDE_WIDTH], GUIDE_TITLE_SIZE, True))


def _write_guide(wb, spec: Spec, unit: dict, projects: int, fmt: _Formats, shown=str) -> None:
    """填表说明: the first sheet a clerk opens and prints, on A4 portrait, each item wrapped in a row tall
    enough for it (sized by what `shown` makes of the text: the unit's values in a batch's master)."""
    ws = wb.add_worksheet(GUIDE_SHEET)
    ws.set_column(0, 0, GUIDE_WIDTH)
    lines = [
        (spec.title, fmt.title(), GUIDE_TITLE_SIZE, True),
        (guide_unit_line(spec.year, unit), fmt.text("center"), 10, False),
        ("填表说明", fmt.section(), 10, True),
        ("1. 浅黄色单元格为填写区域，其余单元格已锁定；红色底色表示必填项尚未填写。", fmt.text(), 10, False),
        (f"2. 金额单位：{spec.money_unit}。数字请直接填写，可带千分位；指标值可写作 ≥95%、≤12小时、＝1套 或 定性描述。",
         fmt.text(), 10, False),
        ("3. 表格行数不够时，可在表格中间插入行（右键 → 插入），不要在表格以外另起表格。", fmt.text(), 10, False),
        ("4. 合计右侧的提示会即时显示分项之和是否相符；请在报送前消除所有“✗”提示。", fmt.text(), 10, False),
    ]
    subject = "部门" if spec.round.subject == DEPARTMENT else "项目"
    if spec.round.followup:  # what was declared is issued sheet by sheet: a sheet added or removed is an error
        lines.append((f"5. 本工作簿含 {projects} 个{subject}工作表，每个对应一个已申报的{subject}，申报时的内容已预填并锁定；"
                      "请不要增加、删除或复制工作表。", fmt.text(), 10, False))
    elif spec.multi_project:
        lines.append((f"5. 本工作簿含 {projects} 个{subject}工作表。{subject}不够时，右键点击任一{subject}工作表标签 → "
                      f"移动或复制 → 勾选“建立副本”，再在副本中填写新{subject}。", fmt.text(), 10, False))
    lines.append(("请勿删除隐藏工作表，也不要修改工作表中的公式；本表由 perfxl 生成，汇总时据此自动识别。",
                  fmt.text(), 10, False))
    for i, (text, style, size, bold) in enumerate(lines):
        _ok(ws.write_string(i, 0, text, style), "guide")
        needed = rows_needed(len(wrap_text(shown(text), [GUIDE_WIDTH], size, bold)), size)
        ws.set_row(i, max(needed, 30 if i == 0 else 22))
    ws.set_paper(9)
    ws.set_portrait()
    ws.fit_to_pages(1, 0)  # a renderer with wider columns than Excel's still prints it one page wide
    ws.set_margins(left=0.6, right=0.6, top=0.8, bottom=0.8)
    ws.print_area(0, 0, len(lines) - 1, 0)
    ws.set_footer("&C第 &P 页，共 &N 页")
    ws.protect("", {"select_locked_cells": True})


def cell_content(value, ftype: str) -> tuple[str, object]:
    """What a value cell of this type holds: ("blank", None), ("number", n) or ("string", text). One rule
    for the builder and for forms patched from a master (perfxl.prefilled). A number that is not finite is
    written as its text: a cell holds no NaN."""
    if value is None or value == "":
        return "blank", None
    if ftype in NUMERIC_TYPES:
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        if number is None:
            try:
                number = float(str(value).replace(",", ""))
            except ValueError:
                pass
        if number is not None and math.isfinite(number):
            return "number", number
    return "string", str(value)


def _write_value(ws, row, col, value, style, ftype):
    kind, content = cell_content(value, ftype)
    if kind == "blank":
        return ws.write_blank(row, col, None, style)
    if kind == "number":
        return ws.write_number(row, col, content, style)
    return ws.write_string(row, col, content, style)


DEFAULT_ROW_HEIGHT = 15  # points: xlsxwriter's, for a row given no height
MAX_ROW_HEIGHT = 409  # points: Excel's limit
_FONTS = {"title": (16, True), "section": (10, True), "header": (10, True), "label": (10, False),
          "text": (10, False), "input": (10, False), "cell": (10, False), "ticks": (10, False)}


def written_label(p, spec: Spec) -> str:
    """A label's text as the form shows it: too long for its cell, broken where a reader expects
    ("项目资金" / "（万元）", "同名项目上年预算执行数" / "(元):"), so no line starts with a lone bracket or
    ends a word half-way. A label on the row right below a table is written as it is: the reader knows
    where a table ends (rows a clerk added below it) by finding a label's exact text there."""
    if p.kind != "label" or p.row - 1 in _table_ends(spec):
        return p.text
    return break_at_phrases(p.text, spec.widths[p.col:p.last_col + 1])


@lru_cache(maxsize=64)
def _table_ends(spec: Spec) -> frozenset:
    return frozenset(t.last_row for t in layout(spec).tables.values())


def shown_value(value, ftype: str) -> str:
    """Text a value cell shows and wraps; numbers and dates never wrap, so they need no room."""
    if value is None or ftype in NUMERIC_TYPES or ftype == "date" or isinstance(value, int | float):
        return ""
    return str(value)


def placement_texts(spec: Spec, values: dict | None):
    """Each placement of a project sheet that shows text, with that text, its font size and weight."""
    lay = layout(spec)
    given = (values or {}).get("fields", {})
    given_tables = (values or {}).get("tables", {})
    for p in lay.placements:
        if p.kind in {"title", "section", "header", "label", "text"}:
            text = written_label(p, spec)
        elif p.kind == "input":
            field = spec.fields[p.field]
            text = shown_value(given[field.id] if field.id in given else field.default, field.type)
        elif p.kind == "cell":
            table = spec.tables[p.table]
            col = table.column(p.column)
            rows = given_tables.get(table.id)
            source = table.prefill if rows is None else rows
            index, col_index = p.row - lay.tables[table.id].first_row, [c.id for c in table.columns].index(col.id)
            value = source[index][col_index] if index < len(source) and col_index < len(source[index]) else None
            text = shown_value(value, col.type)
        elif p.kind == "ticks":
            text = "    ".join(f"□{c}" for c in spec.fields[p.field].choices)
        else:
            continue
        if text:
            yield p, text, *_FONTS[p.kind]


def sheet_row_heights(spec: Spec, values: dict | None = None, shown=str) -> dict[int, float]:
    """The height of every row of a project sheet that needs one: the layout's, raised wherever a label,
    header, title, default or prefilled value wraps onto more lines than its rows hold. Measured as Excel
    prints (formparts.wrap_text); `shown` gives the text a cell will show (a batch master writes tokens
    for the unit's values and measures the values)."""
    return raised_heights(spec, [room_needed(spec, p, shown(text), size, bold)
                                 for p, text, size, bold in placement_texts(spec, values)])


def room_needed(spec: Spec, p, text: str, size: float, bold: bool) -> tuple[int, int, int, float]:
    """What a placement's text needs: (rows it spans, first row, last row, height in points)."""
    lines = len(wrap_text(text, spec.widths[p.col:p.last_col + 1], size, bold))
    rows = p.last_row - p.row + 1
    return rows, p.row, p.last_row, min(rows_needed(lines, size), MAX_ROW_HEIGHT * rows)


def raised_heights(spec: Spec, needs: list[tuple[int, int, int, float]]) -> dict[int, float]:
    """The layout's row heights, each raised where a need (`room_needed`) is taller than its rows."""
    heights = dict(layout(spec).row_heights)
    for rows, first, last, need in sorted(needs):  # single rows first, then what spans several
        have = heights.get(last, DEFAULT_ROW_HEIGHT) if rows == 1 else sum(
            heights.get(r, DEFAULT_ROW_HEIGHT) for r in range(first, last + 1))
        if need > have:
            heights[last] = min(MAX_ROW_HEIGHT, heights.get(last, DEFAULT_ROW_HEIGHT) + need - have)
    return heights


def _write_project_sheet(wb, ws, spec: Spec, fmt: _Formats, lists: Lists, scoped: bool,
                         values: dict | None = None, shown=str, extras: FormExtras | None = None) -> None:
    """One project sheet: every placement of the layout written with its format, the inputs' validations
    and prompts, the defined names, required shading, live checks and print setup.

    Long because it walks the layout's placements once and each kind of placement is a few lines; split
    into one function per kind, each would need the same seven pieces of state (sheet, formats, lists,
    names, scope, values, required cells) passed in and out."""
    lay = layout(spec)
    title = ws.get_name()
    sheet_ref = quote_sheet(title)
    for i, width in enumerate(spec.widths):
        ws.set_column(i, i, width)
    ws.set_column(lay.check_column, lay.check_column, 34)
    for row, height in sheet_row_heights(spec, values, shown).items():
        ws.set_row(row, height)

    def name(local: str, ref: str) -> None:
        full = f"{sheet_ref}!{local}" if scoped else local
        _ok(wb.define_name(full, f"={sheet_ref}!{ref}"), f"name {local}")

    def place(p, value, style, ftype="text"):
        if (p.row, p.col) != (p.last_row, p.last_col):
            _ok(ws.merge_range(p.row, p.col, p.last_row, p.last_col, "", style), "merge")
        _ok(_write_value(ws, p.row, p.col, value, style, ftype), f"cell {cell_name(p.row, p.col)}")

    required_cells: list[tuple[int, int, int, int]] = []
    for p in lay.placements:
        if p.kind == "title":
            place(p, p.text, fmt.title())
        elif p.kind == "text":
            place(p, p.text, fmt.text(p.style or "left"))
        elif p.kind == "section":
            place(p, p.text, fmt.section())
        elif p.kind in {"label", "header"}:
            place(p, written_label(p, spec), fmt.header() if p.kind == "header" else fmt.label())
        elif p.kind == "input":
            field = spec.fields[p.field]
            given = (values or {}).get("fields", {})
            style = fmt.prefilled(field.type) if field.locked else fmt.input(field.type)
            place(p, given[field.id] if field.id in given else field.default, style, field.type)
            name(field.name, abs_ref(p.row, p.col))
            rule = None if field.locked else field_validation(field, spec.year)
            if rule:
                _ok(ws.data_validation(p.row, p.col, p.row, p.col, rule), f"validation {field.id}")
            if field.required:
                required_cells.append((p.row, p.col, p.last_row, p.last_col))
        elif p.kind == "ticks":
            field = spec.fields[p.field]
            at = cell_name(*lay.fields[field.id])
            parts = [f'IF({at}="{c}","√","□")&"{c}"' for c in field.choices]
            formula = "=" + '&"    "&'.join(parts)
            shown = "    ".join(f"□{c}" for c in field.choices if c != field.default)
            _ok(ws.merge_range(p.row, p.col, p.last_row, p.last_col, "", fmt.text()), "merge")
            _ok(ws.write_formula(p.row, p.col, formula, fmt.text(), shown), "ticks")
        elif p.kind == "cell":
            table = spec.tables[p.table]
            col = table.column(p.column)
            style = fmt.prefilled(_column_kind(col.type)) if col.locked else fmt.input(_column_kind(col.type))
            pos = lay.tables[table.id]
            index = p.row - pos.first_row
            value = ""
            col_index = [c.id for c in table.columns].index(col.id)
            rows = (values or {}).get("tables", {}).get(table.id)
            source = table.prefill if rows is None else rows
            if rows is None and extras is not None and extras.required_rows and table.indicator is not None:
                source = list(source) + _required_rows(table, extras)
            if index < len(source) and col_index < len(source[index]):
                value = source[index][col_index]
            place(p, value, style, col.type)

    for table in spec.tables.values():
        pos = lay.tables[table.id]
        name(table.name, f"{abs_ref(pos.first_row, 0)}:{abs_ref(pos.last_row, spec.width - 1)}")
        for col in table.columns:
            c = pos.columns[col.id]
            rule = None if col.locked else column_validation(table, col, lists, pos)
            if rule:
                _ok(ws.data_validation(pos.first_row, c, pos.last_row, c, rule), f"validation {table.id}.{col.id}")

    red = wb.add_format({"bg_color": FILL_REQUIRED_EMPTY})
    for r1, c1, r2, c2 in required_cells:
        _ok(ws.conditional_format(r1, c1, r2, c2, {"type": "blanks", "format": red}), "required shading")

    if lists.typical_range:
        _write_typical_values(ws, spec, lay, fmt, lists)
    _write_live_checks(ws, spec, lay, fmt, red)
    _print_setup(ws, spec, lay)


def _required_rows(table, extras: FormExtras) -> list[list[str]]:
    """An indicator library's 固化指标 as rows of the table's columns: the levels filled, the rest blank."""
    ind = table.indicator
    where = {ind.level1: 0, ind.level2: 1, ind.level3: 2}
    return [[row[where[c.id]] if c.id in where else "" for c in table.columns] for row in extras.required_rows]


def _write_typical_values(ws, spec: Spec, lay, fmt: _Formats, lists: Lists) -> None:
    """Beside each indicator row, the library's typical value of the 三级 chosen (blank until one is)."""
    table = spec.indicator_table()
    if table is None:
        return
    pos = lay.tables[table.id]
    column = cell_name(0, pos.columns[table.indicator.level3]).rstrip("0123456789")
    for r in range(pos.first_row, pos.last_row + 1):
        formula = f'=IFERROR("指标库典型值："&VLOOKUP(${column}{r + 1},{lists.typical_range},2,FALSE),"")'
        _ok(ws.write_formula(r, lay.check_column, formula, fmt.check(), ""), "typical value")


def _write_reference_sheet(wb, sheet: ReferenceSheet, fmt: _Formats) -> None:
    """A read-only sheet beside the form (上年参考, 指标参考): a title, a note, then per block its heading, its
    facts two to a row, and its rows under the column titles; each row as tall as its wrapped text."""
    ws = wb.add_worksheet(sheet.name)
    widths = [w for _, w in sheet.columns]
    last = len(widths) - 1
    for c, width in enumerate(widths):
        ws.set_column(c, c, width)
    text, head, boxed = fmt.text(), fmt.header(), fmt.get(border=1, locked=True)
    r = 0
    _ok(ws.merge_range(r, 0, r, last, sheet.title, fmt.title()), "reference title")
    ws.set_row(r, 30)
    r += 1
    _ok(ws.merge_range(r, 0, r, last, sheet.note, text), "reference note")
    ws.set_row(r, rows_needed(len(wrap_text(sheet.note, [sum(widths)], 10, False)), 10))
    r += 1
    for heading, facts, rows in sheet.blocks:
        r += 1
        _ok(ws.merge_range(r, 0, r, last, heading, fmt.section()), "reference heading")
        r += 1
        half = max(1, (last + 1) // 2)
        for i in range(0, len(facts), 2):
            for j, (label, value) in enumerate(facts[i:i + 2]):
                c0 = j * half
                c1 = min(last, c0 + half - 1)
                shown = f"{label}：{value}"
                if c1 > c0:
                    _ok(ws.merge_range(r, c0, r, c1, shown, text), "reference fact")
                else:
                    _ok(ws.write_string(r, c0, shown, text), "reference fact")
            ws.set_row(r, max(rows_needed(len(wrap_text(f"{label}：{value}", widths[:half], 10, False)), 10)
                              for label, value in facts[i:i + 2]))
            r += 1
        if rows:
            for c, (title, _) in enumerate(sheet.columns):
                _ok(ws.write_string(r, c, title, head), "reference header")
            ws.set_row(r, rows_needed(max(len(wrap_text(t, [w], 10, True)) for t, w in sheet.columns), 10))
            r += 1
            for row in rows:
                lines = 1
                for c, value in enumerate(row):
                    value = "" if value is None else str(value)
                    _ok(ws.write_string(r, c, value, boxed), "reference cell")
                    lines = max(lines, len(wrap_text(value, [widths[c]], 10, False)))
                ws.set_row(r, rows_needed(lines, 10))
                r += 1
    ws.set_paper(9)
    ws.set_portrait()
    ws.fit_to_pages(1, 0)
    ws.set_margins(left=0.5, right=0.5, top=0.6, bottom=0.75)
    ws.print_area(0, 0, max(r - 1, 0), last)
    ws.set_footer("&C第 &P 页，共 &N 页")
    ws.protect("", {"select_locked_cells": True})


def _write_live_checks(ws, spec: Spec, lay, fmt: _Formats, red) -> None:
    """The rules Excel can express, as each rule kind compiles them: a check cell beside each total,
    red shading on a part above its whole."""
    checks: dict[int, list[SumCheck]] = {}
    sheet = '"' + ws.get_name().replace('"', '""') + '"'
    for check in live_checks(spec, lay):
        if isinstance(check, SumCheck):
            checks.setdefault(check.row, []).append(check)
        elif isinstance(check, CheckFormula):
            _ok(ws.write_formula(check.row, lay.check_column, check.formula.replace("{sheet}", sheet), fmt.check(), ""),
                "check formula")
        else:
            _ok(ws.conditional_format(check.first_row, check.first_col, check.last_row, check.last_col,
                                      {"type": "formula", "criteria": check.formula, "format": red}), "live check")
    for row, items in sorted(checks.items()):
        _ok(ws.write_formula(row, lay.check_column, sum_check_formula(items), fmt.check(), ""),
            f"check {' '.join(c.total for c in items)}")


def _print_setup(ws, spec: Spec, lay) -> None:
    setup = spec.print_setup
    ws.set_paper(9 if setup.get("paper", "A4") == "A4" else 8)
    if setup.get("orientation") == "landscape":
        ws.set_landscape()
    else:
        ws.set_portrait()
    if setup.get("fit_width", True):
        ws.fit_to_pages(1, 0)
    repeat = setup.get("repeat_header_of")
    if repeat in lay.tables:
        ws.repeat_rows(lay.tables[repeat].header_row)
    ws.print_area(0, 0, lay.last_row, spec.width - 1)
    ws.set_margins(left=0.5, right=0.5, top=0.6, bottom=0.75)  # room for 第 N 页 (report.BOTTOM_MARGIN)
    ws.center_horizontally()
    ws.set_footer("&C第 &P 页，共 &N 页")
    if lay.page_breaks:
        ws.set_h_pagebreaks(lay.page_breaks)


def build_workbook(spec: Spec, unit: dict, projects: int = 1, password: str | None = None,
                   values: list[dict] | None = None, declared: list[list[dict]] | None = None,
                   measure_as: dict | None = None, extras: FormExtras | None = None) -> bytes:
    """One form as .xlsx bytes: blank, or with `values` ({"fields", "tables"} per project sheet) written
    into its inputs — the shape of a form a unit filled and saved (used by benchmarks and fixtures), or a
    follow-up form prefilled from the ledger. `declared` (per project sheet, rows of DECLARED_ROW_KEYS) goes
    on the hidden declared sheet, the reference a merge checks the prefilled targets against. A batch's
    master, written with token placeholders, is sized for the unit `measure_as` (rows tall enough for
    its name, not the token's). `extras`: an indicator library's choices and 固化指标, and reference sheets
    (上年参考, 指标参考) after the project sheets."""
    if spec.designed is not None:  # the bureau's own layout, designed in Excel
        if values is not None or declared is not None or extras is not None:
            raise PerfxlError("导入的模板暂不支持预填表单 (designed templates cannot be prefilled yet)")
        return build_designed_workbook(spec, unit, projects, password)
    if values is not None:
        projects = len(values)
    projects = max(1, int(projects)) if spec.multi_project else 1
    buffer = io.BytesIO()
    wb = SafeWorkbook(buffer, {"in_memory": True, "strings_to_formulas": False, "strings_to_urls": False,
                                      "strings_to_numbers": False})
    wb.set_properties({"title": spec.title, "subject": f"{spec.year}年度 {spec.template}", "author": "perfxl",
                       "company": spec.region, "created": _FIXED_TIME, "comments": "由 perfxl 生成"})
    fmt = _Formats(wb)
    shown = measured_as(measure_as)
    _write_guide(wb, spec, unit, projects, fmt, shown)
    sheets = [wb.add_worksheet(spec.sheet_title(i), worksheet_class=_FormSheet) for i in range(1, projects + 1)]
    for reference in extras.sheets if extras is not None else ():
        _write_reference_sheet(wb, reference, fmt)
    lists = _write_stamp_sheet(wb, spec, unit, projects, fmt, extras)
    for i, ws in enumerate(sheets):
        _write_project_sheet(wb, ws, spec, fmt, lists, scoped=spec.multi_project,
                             values=values[i] if values else None, shown=shown, extras=extras)
        ws.protect(password or "", {"insert_rows": True, "delete_rows": True, "format_rows": True,
                                    "format_columns": True, "select_locked_cells": True,
                                    "select_unlocked_cells": True})
    if declared is not None:
        _write_declared_sheet(wb, [ws.get_name() for ws in sheets], declared)
    sheets[0].activate()
    wb.close()
    return buffer.getvalue()


class _FormSheet(SafeWorksheet):
    """xlsxwriter's worksheet, each formula prepared once per text in a process: xlsxwriter runs 30 to 100
    regular-expression substitutions over every formula it writes (its newer functions' prefixes), and a
    follow-up round writes the same live checks and conditional formats into every unit's form (10 ms of
    a 45 ms form, profiled). What it prepares depends only on the formula, the arguments and the sheet's
    use_future_functions, which key the memo."""

    def _prepare_formula(self, formula, *args, **kwargs):
        key = (formula, args, tuple(sorted(kwargs.items())), self.use_future_functions)
        prepared = _PREPARED.get(key)
        if prepared is None:
            if len(_PREPARED) >= _PREPARED_MAX:  # a template of very many distinct formulas: start again
                _PREPARED.clear()
            prepared = _PREPARED[key] = super()._prepare_formula(formula, *args, **kwargs)
        return prepared


_PREPARED: dict = {}
_PREPARED_MAX = 65536


def _write_declared_sheet(wb, titles: list[str], declared: list[list[dict]]) -> None:
    ws = wb.add_worksheet(DECLARED_SHEET)
    ws.hide()
    ws.write_string(0, 0, DECLARED_MARK)
    for c, key in enumerate(DECLARED_HEADER):
        ws.write_string(1, c, key)
    r = 2
    for title, rows in zip(titles, declared):
        for sheet, level1, points, text in declared_sheet_rows(title, rows):
            ws.write_string(r, 0, sheet)
            ws.write_string(r, 1, level1)
            ws.write_number(r, 2, points)
            for c, piece in enumerate(declared_cells(text), start=3):
                if ws.write_string(r, c, piece) == -2:  # never: each piece fits
                    raise PerfxlError(f"隐藏的目标记录超过单元格上限 (a declared row does not fit a cell): {sheet}")
            r += 1
    ws.protect("", {})


# ----------------------------------------------------------------------------------------------------
# Batch generation
# ----------------------------------------------------------------------------------------------------

TOKENS = {"code": "PXLTOKENCODEPXL", "name": "PXLTOKENNAMEPXL", "department": "PXLTOKENDEPTPXL"}
# The region a master of follow-up forms is rendered for when its template shows the region only as it is
# (perfxl.followup.region_shares_master): units of every such region then share one master. Not a unit
# value (templates never see it as unit.region); a copy is given it as its unit's "region".
REGION_TOKEN = "PXLTOKENREGIONPXL"
_PLACED = {**TOKENS, "region": REGION_TOKEN}  # every token a master may hold, by the key of its value


def patchable_region(region: str | None) -> bool:
    """A region a master may hold (as its template renders it) and a copy be patched for: not one that holds
    a master's token, which a copy would replace with a unit's value. Such a region's forms are built."""
    return "PXLTOKEN" not in (region or "")


def measured_as(unit: dict | None):
    """Text as a unit's copy will show it: each token replaced by that unit's value."""
    if not unit:
        return str

    values = {token: str(unit.get(key, "")) for key, token in TOKENS.items()}
    values[REGION_TOKEN] = str(unit.get("region", REGION_TOKEN))  # a copy given no region: the text as it is

    def shown(text: str) -> str:  # in one pass: a value that looks like a token stays the value
        return _TOKEN_TEXT.sub(lambda m: values[m.group(0)], text)
    return shown


@lru_cache(maxsize=64)
def _token_texts(spec: Spec) -> tuple:
    """The texts of a master's project sheet that hold a token, with their columns' widths and font."""
    return tuple((text, spec.widths[p.col:p.last_col + 1], size, bold)
                 for p, text, size, bold in placement_texts(spec, None) if "PXLTOKEN" in text)


def room_for(spec: Spec, unit: dict) -> tuple:
    """What of a master's row heights depends on the unit: the lines its name, code and department take
    where a token stands. Units alike in this share a master; a unit whose long name needs more lines
    gets its own, sized for it."""
    shown = measured_as(unit)
    return (guide_unit_lines(spec.year, unit),
            *(len(wrap_text(shown(text), widths, size, bold)) for text, widths, size, bold in _token_texts(spec)))


def split_at_tokens(raw: bytes) -> list[bytes | str]:
    """A master's member split at the unit's tokens: the bytes between them, and in each token's place its
    key, with "@" after it where the token stands inside a tag (an attribute's value, escaped as one)."""
    pieces: list[bytes | str] = []
    inside = False
    for i, part in enumerate(TOKEN_SPLIT.split(raw)):
        if i % 2:
            pieces.append(TOKEN_KEYS[part] + ("@" if inside else ""))
        elif part:
            opened, closed = part.rfind(b"<"), part.rfind(b">")
            if opened != closed:
                inside = opened > closed
            pieces.append(part)
    return pieces


def unit_xml(unit: dict) -> dict[str, bytes]:
    """{token key: the unit's value as a master's XML holds it}: as element content (a shared string, a
    document property) the way xlsxwriter writes it (control characters as _xHHHH_), and after "@" as an
    attribute's value, escaped as it escapes one, what XML cannot hold left out."""
    texts = {key: str(unit.get(key, "")) for key in TOKENS}
    texts["region"] = str(unit.get("region", REGION_TOKEN))  # a copy given no region: the text as it is
    return {**{key: shared_text(v).encode("utf-8") for key, v in texts.items()},
            **{f"{key}@": xml_attribute(v).encode("utf-8") for key, v in texts.items()}}


class _Master:
    """A rendered workbook with token placeholders; `copy_for` patches a unit's values in.

    Each member is kept compressed, once: a member without a token as one segment, a member with tokens as
    the segments between them. A unit's copy compresses only its own values and concatenates the rest as
    it is (perfxl.sheetxml's segments end on a full flush, so they stand alone), where re-deflating every
    member for every unit cost most of a blank form's time."""

    def __init__(self, data: bytes):
        self.members: list[tuple[str, list]] = []  # (name, its pieces: a Segment, or the key of a token)
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                raw = zf.read(info)
                self.members.append((info.filename, master_pieces(raw) if info.filename.endswith(".xml")
                                     else [segment(raw, level=MASTER_LEVEL)]))

    def copy_for(self, unit: dict) -> bytes:
        out = io.BytesIO()
        package = XlsxZip(out)
        values = unit_segments(unit)
        for name, pieces in self.members:
            package.write_segments(name, filled(pieces, values))
        package.close()
        return out.getvalue()


def master_pieces(raw: bytes) -> list:
    """A master's static bytes compressed once, in segments between the unit tokens they hold (their keys)."""
    return [segment(piece, level=MASTER_LEVEL) if type(piece) is bytes else piece for piece in split_at_tokens(raw)]


def unit_segments(unit: dict) -> dict[str, Segment]:
    """`unit_xml`, each value compressed as a segment of its own, for `filled`."""
    return {key: segment(xml) for key, xml in unit_xml(unit).items()}


def filled(pieces: list, values: dict[str, Segment]) -> list[Segment]:
    """A master's pieces with each unit token's key replaced by the unit's value (`unit_segments`)."""
    return [values[p] if type(p) is str else p for p in pieces]


MASTER_LEVEL = 6  # a master's members, compressed once for every copy (zipfile's level before)
TOKEN_KEYS = {token.encode(): key for key, token in _PLACED.items()}
TOKEN_SPLIT = re.compile(b"(" + b"|".join(re.escape(t) for t in TOKEN_KEYS) + b")")
_TOKEN_TEXT = re.compile("|".join(re.escape(t) for t in _PLACED.values()))


def form_filename(unit: Unit, spec: Spec) -> str:
    form = spec.title.replace("预算绩效目标", "绩效目标")
    return safe_filename(f"{unit.code}_{unit.name}_{spec.year}_{form}") + ".xlsx"


def generate_forms(template: str, year: int, units: list[Unit], outdir: Path, region: str | None = None,
                   projects: int | None = None, password: str | None = None, templates_dir: Path | None = None,
                   progress=None, blank_rows: int | None = None, avoid: set[Path] | None = None,
                   portal_url: str | None = None, deadline: str | None = None, extras: FormExtras | None = None,
                   unit_sheets=None) -> list[dict]:
    """Write one blank workbook per unit, `manifest.json` and 分发清单.xlsx (perfxl/manifest.py); returns the
    manifest's entries. Files in `avoid` (the roster) are never written over. The portal's address and the
    deadline (ISO date) go on the handout. `extras` go on every form (an indicator library's); `unit_sheets`
    (a unit → its reference sheets, such as 上年参考) on that unit's form only, which is then built for it."""
    first_region = region or (units[0].region if units else None) or None
    load_spec(template, year, first_region, blank_rows=blank_rows, templates_dir=templates_dir)  # before any folder
    outdir = ensure_writable_dir(Path(outdir))
    protected = {os.path.realpath(p) for p in avoid or ()}
    if os.path.realpath(outdir / MANIFEST_FILE) in protected:
        raise OutputError(f"输出目录中的 {MANIFEST_FILE} 是输入文件，perfxl 不会覆盖它: {outdir / MANIFEST_FILE}")
    masters: dict[tuple, _Master] = {}
    manifest = []
    used_names: set[str] = set()
    spec = None
    for unit in units:
        unit_region = region or unit.region or None
        n = unit.projects or projects or 1
        own_sheets = tuple(unit_sheets(unit)) if unit_sheets is not None else ()
        tokens_ok = not unit.prefill and not own_sheets and patchable_region(unit_region)
        if tokens_ok:
            spec = load_spec(template, year, unit_region, unit=dict(TOKENS), blank_rows=blank_rows,
                             templates_dir=templates_dir)
            tokens_ok = substitutes_unit(spec, TOKENS)  # a template that works on the unit's values: built
        if tokens_ok:
            key = (unit_region, n, room_for(spec, unit.as_params()) if spec.designed is None else ())
            if key not in masters:
                masters[key] = _Master(build_workbook(spec, dict(TOKENS), n, password, measure_as=unit.as_params(),
                                                      extras=extras))
            data = masters[key].copy_for(unit.as_params())
        else:
            spec = load_spec(template, year, unit_region, unit=unit.as_params(), prefill=unit.prefill,
                             blank_rows=blank_rows, templates_dir=templates_dir)
            own = extras or FormExtras()
            own = FormExtras(own.level3_choices, own.typical, own.required_rows, own_sheets + own.sheets)
            data = build_workbook(spec, unit.as_params(), n, password, extras=own if own != FormExtras() else None)
        filename = form_filename(unit, spec)
        if filename.lower() in used_names or os.path.realpath(outdir / filename) in protected:
            filename = filename[:-5] + f"_{len(used_names)}.xlsx"  # two units whose safe names collide
        used_names.add(filename.lower())
        try:
            write_bytes_atomic(outdir / filename, data)
        except OSError as exc:
            raise OutputError(f"无法写入 (cannot write) {outdir / filename}: {exc.strerror or exc}") from None
        manifest.append({"unit_code": unit.code, "unit_name": unit.name, "department": unit.department,
                         "file": filename})
        if progress:
            progress(1)
    title = spec.title if spec is not None else None
    write_manifest(outdir, Manifest("blank", template, year, manifest, title, portal_url=portal_url, deadline=deadline),
                   protected)  # gives the codes
    return manifest

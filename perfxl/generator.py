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
import os
import zipfile
from datetime import datetime
from pathlib import Path
from xml.sax.saxutils import escape

import xlsxwriter

from .contract import (
    DECLARED_HEADER,
    DECLARED_MARK,
    DECLARED_SHEET,
    STAMP_SHEET,
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
    Lists,
    abs_ref,
    column_validation,
    field_validation,
    quote_sheet,
    stamp_sheet,
    sum_check_formula,
)
from .manifest import HANDOUT_FILE as HANDOUT_FILE  # where it was before perfxl/manifest.py
from .manifest import MANIFEST_FILE, Manifest, write_manifest
from .roster import Unit
from .rules import CheckFormula, SumCheck, live_checks
from .spec import NUMERIC_TYPES, Spec, cell_name, layout, load_spec

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




def _write_stamp_sheet(wb, spec: Spec, unit: dict, projects: int, fmt: _Formats) -> Lists:
    ws = wb.add_worksheet(STAMP_SHEET)
    ws.hide()
    content = stamp_sheet(spec, unit, projects)
    for r, c, text in content.cells:
        _ok(ws.write_string(r, c, text), "stamp")
    ws.protect("", {"select_locked_cells": False})
    for key, value in content.properties:
        wb.set_custom_property(key, value)
    return content.lists


def _write_guide(wb, spec: Spec, unit: dict, projects: int, fmt: _Formats) -> None:
    ws = wb.add_worksheet(GUIDE_SHEET)
    ws.set_column(0, 0, 100)
    lines = [
        (spec.title, fmt.title()),
        (f"{spec.year}年度 · {unit.get('name', '')}（{unit.get('code', '')}）", fmt.text("center")),
        ("填表说明", fmt.section()),
        ("1. 浅黄色单元格为填写区域，其余单元格已锁定；红色底色表示必填项尚未填写。", fmt.text()),
        (f"2. 金额单位：{spec.money_unit}。数字请直接填写，可带千分位；指标值可写作 ≥95%、≤12小时、＝1套 或 定性描述。", fmt.text()),
        ("3. 表格行数不够时，可在表格中间插入行（右键 → 插入），不要在表格以外另起表格。", fmt.text()),
        ("4. 合计右侧的提示会即时显示分项之和是否相符；请在报送前消除所有“✗”提示。", fmt.text()),
    ]
    if spec.multi_project:
        lines.append((f"5. 本工作簿含 {projects} 个项目工作表。项目不够时，右键点击任一项目工作表标签 → "
                      "移动或复制 → 勾选“建立副本”，再在副本中填写新项目。", fmt.text()))
    lines.append(("请勿删除隐藏工作表，也不要修改工作表中的公式；本表由 perfxl 生成，汇总时据此自动识别。", fmt.text()))
    for i, (text, style) in enumerate(lines):
        _ok(ws.write_string(i, 0, text, style), "guide")
        ws.set_row(i, 30 if i == 0 else 22)
    ws.protect("", {"select_locked_cells": True})


def _write_value(ws, row, col, value, style, ftype):
    if value is None or value == "":
        return ws.write_blank(row, col, None, style)
    if ftype in NUMERIC_TYPES and isinstance(value, int | float) and not isinstance(value, bool):
        return ws.write_number(row, col, value, style)
    if ftype in NUMERIC_TYPES:
        try:
            return ws.write_number(row, col, float(str(value).replace(",", "")), style)
        except ValueError:
            pass
    return ws.write_string(row, col, str(value), style)


def _write_project_sheet(wb, ws, spec: Spec, fmt: _Formats, lists: Lists, scoped: bool,
                         values: dict | None = None) -> None:
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
    for row, height in lay.row_heights.items():
        ws.set_row(row, height)

    def name(local: str, ref: str) -> None:
        full = f"{sheet_ref}!{local}" if scoped else local
        _ok(wb.define_name(full, f"={sheet_ref}!{ref}"), f"name {local}")

    def place(p, value, style, ftype="text"):
        if (p.row, p.col) != (p.last_row, p.last_col):
            _ok(ws.merge_range(p.row, p.col, p.last_row, p.last_col, "", style), "merge")
        _ok(_write_value(ws, p.row, p.col, value, style, ftype), f"cell {cell_name(p.row, p.col)}")

    required_cells: list[tuple[int, int, int, int]] = []
    tall: dict[int, int] = {}
    for p in lay.placements:
        if p.kind == "title":
            place(p, p.text, fmt.title())
        elif p.kind == "text":
            place(p, p.text, fmt.text(p.style or "left"))
        elif p.kind == "section":
            place(p, p.text, fmt.section())
        elif p.kind in {"label", "header"}:
            place(p, p.text, fmt.header() if p.kind == "header" else fmt.label())
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
            if index < len(source) and col_index < len(source[index]):
                value = source[index][col_index]
            place(p, value, style, col.type)
            if isinstance(value, str) and value:  # prefilled text: the row as tall as its longest cell
                width = sum(spec.widths[p.col:p.last_col + 1]) or 10
                lines = min(6, -(-len(value.encode("gb18030", "replace")) // max(1, int(width) - 1)))
                tall[p.row] = max(tall.get(p.row, 20), 15 * lines)

    for row, height in tall.items():
        if height > lay.row_heights.get(row, 20):
            ws.set_row(row, height)
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

    _write_live_checks(ws, spec, lay, fmt, red)
    _print_setup(ws, spec, lay)


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
    ws.set_margins(left=0.5, right=0.5, top=0.6, bottom=0.6)
    ws.center_horizontally()
    ws.set_footer("&C第 &P 页，共 &N 页")
    if lay.page_breaks:
        ws.set_h_pagebreaks(lay.page_breaks)


def build_workbook(spec: Spec, unit: dict, projects: int = 1, password: str | None = None,
                   values: list[dict] | None = None, declared: list[list[dict]] | None = None) -> bytes:
    """One form as .xlsx bytes: blank, or with `values` ({"fields", "tables"} per project sheet) written
    into its inputs — the shape of a form a unit filled and saved (used by benchmarks and fixtures), or a
    follow-up form prefilled from the ledger. `declared` (per project sheet, rows of DECLARED_ROW_KEYS) goes
    on the hidden declared sheet, the reference a merge checks the prefilled targets against."""
    if spec.designed is not None:  # the bureau's own layout, designed in Excel
        if values is not None or declared is not None:
            raise PerfxlError("导入的模板暂不支持预填表单 (designed templates cannot be prefilled yet)")
        return build_designed_workbook(spec, unit, projects, password)
    if values is not None:
        projects = len(values)
    projects = max(1, int(projects)) if spec.multi_project else 1
    buffer = io.BytesIO()
    wb = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_formulas": False, "strings_to_urls": False,
                                      "strings_to_numbers": False})
    wb.set_properties({"title": spec.title, "subject": f"{spec.year}年度 {spec.template}", "author": "perfxl",
                       "company": spec.region, "created": _FIXED_TIME, "comments": "由 perfxl 生成"})
    fmt = _Formats(wb)
    _write_guide(wb, spec, unit, projects, fmt)
    sheets = [wb.add_worksheet(spec.sheet_title(i)) for i in range(1, projects + 1)]
    lists = _write_stamp_sheet(wb, spec, unit, projects, fmt)
    for i, ws in enumerate(sheets):
        _write_project_sheet(wb, ws, spec, fmt, lists, scoped=spec.multi_project,
                             values=values[i] if values else None)
        ws.protect(password or "", {"insert_rows": True, "delete_rows": True, "format_rows": True,
                                    "format_columns": True, "select_locked_cells": True,
                                    "select_unlocked_cells": True})
    if declared is not None:
        _write_declared_sheet(wb, [ws.get_name() for ws in sheets], declared)
    sheets[0].activate()
    wb.close()
    return buffer.getvalue()


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
            ws.write_string(r, 3, text)
            r += 1
    ws.protect("", {})


# ----------------------------------------------------------------------------------------------------
# Batch generation
# ----------------------------------------------------------------------------------------------------

_TOKENS = {"code": "PXLTOKENCODEPXL", "name": "PXLTOKENNAMEPXL", "department": "PXLTOKENDEPTPXL"}


def _xml_text(value: str) -> str:
    cleaned = "".join(ch for ch in value if ch in "\t\n\r" or ord(ch) >= 0x20)
    return escape(cleaned)


class _Master:
    """A rendered workbook with token placeholders; `copy_for` patches a unit's values in."""

    def __init__(self, data: bytes):
        self.members: list[tuple[zipfile.ZipInfo, bytes]] = []
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                self.members.append((info, zf.read(info)))

    def copy_for(self, unit: dict) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            for info, data in self.members:
                if info.filename.endswith(".xml") and b"PXLTOKEN" in data:
                    text = data.decode("utf-8")
                    for key, token in _TOKENS.items():
                        text = text.replace(token, _xml_text(str(unit.get(key, ""))))
                    data = text.encode("utf-8")
                zf.writestr(info, data)
        return out.getvalue()


def form_filename(unit: Unit, spec: Spec) -> str:
    form = spec.title.replace("预算绩效目标", "绩效目标")
    return safe_filename(f"{unit.code}_{unit.name}_{spec.year}_{form}") + ".xlsx"


def generate_forms(template: str, year: int, units: list[Unit], outdir: Path, region: str | None = None,
                   projects: int | None = None, password: str | None = None, templates_dir: Path | None = None,
                   progress=None, blank_rows: int | None = None, avoid: set[Path] | None = None) -> list[dict]:
    """Write one blank workbook per unit, `manifest.json` and 分发清单.xlsx (perfxl/manifest.py); returns the
    manifest's entries. Files in `avoid` (the roster) are never written over."""
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
        tokens_ok = not unit.prefill
        if tokens_ok:
            key = (unit_region, n)
            spec = load_spec(template, year, unit_region, unit=dict(_TOKENS), blank_rows=blank_rows,
                             templates_dir=templates_dir)
            if key not in masters:
                masters[key] = _Master(build_workbook(spec, dict(_TOKENS), n, password))
            data = masters[key].copy_for(unit.as_params())
        else:
            spec = load_spec(template, year, unit_region, unit=unit.as_params(), prefill=unit.prefill,
                             blank_rows=blank_rows, templates_dir=templates_dir)
            data = build_workbook(spec, unit.as_params(), n, password)
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
    write_manifest(outdir, Manifest("blank", template, year, manifest, title), protected)  # gives the codes
    return manifest

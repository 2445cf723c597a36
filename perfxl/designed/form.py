"""A form from an Excel-designed template: the designer's workbook, with what perfxl adds.

The designer's fonts, fills, borders, merged cells, widths, heights and print setup stay as drawn. perfxl
adds what every form it makes carries: the input cells filled and unlocked, dropdowns and prompts, the
`f_` / `t_` defined names, red shading on empty required cells, the live checks in the first column right
of the design, sheet protection, and the hidden stamp (sheet and document properties). Text cells may hold
`{{ year }}`, `{{ region }}` and `{{ unit.name }}`, rendered per unit like the defaults and the input prompts:
all of them by spec.TextRenderer, within the limits a YAML template is rendered in (time, size, memory), and
a text that fails names its sheet and cell.

openpyxl edits the workbook in place; xlsxwriter, which writes every other form, cannot open one. A batch
renders this once per variant and patches unit values into copies (generator._Master), as for YAML forms.
"""

from __future__ import annotations

import io
from copy import copy
from datetime import datetime

import openpyxl
from openpyxl.formatting.rule import FormulaRule
from openpyxl.styles import Alignment, Font, PatternFill, Protection
from openpyxl.workbook.defined_name import DefinedName
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.properties import PageSetupProperties

from perfxl.contract import STAMP_SHEET
from perfxl.errors import SpecError
from perfxl.formparts import (
    FILL_INPUT,
    FILL_PREFILLED,
    FILL_REQUIRED_EMPTY,
    NUMBER_FORMATS,
    column_validation,
    field_validation,
    stamp_sheet,
    sum_check_formula,
)
from perfxl.rules import CheckFormula, SumCheck, live_checks
from perfxl.sheetprint import FOOTER, fit_rows
from perfxl.spec import Spec, TextRenderer, cell_name, layout

_OPERATORS = {"between": "between", ">=": "greaterThanOrEqual", "<=": "lessThanOrEqual", ">": "greaterThan",
              "<": "lessThan", "==": "equal"}
_TYPES = {"list": "list", "decimal": "decimal", "integer": "whole", "date": "date", "length": "textLength",
          "any": None}

def _formula_value(value) -> str:
    if isinstance(value, datetime):
        return f"DATE({value.year},{value.month},{value.day})"
    return str(value)


def to_openpyxl(rule: dict, ref: str) -> DataValidation:
    """xlsxwriter's data validation dict (what the generator computes) as openpyxl's object."""
    kind = _TYPES[rule["validate"]]
    dv = DataValidation(type=kind, allow_blank=True, showInputMessage=True, showErrorMessage=kind is not None)
    if kind == "list":
        source = rule["source"]
        dv.formula1 = source[1:] if isinstance(source, str) else '"' + ",".join(source) + '"'
    elif kind is not None:
        dv.operator = _OPERATORS[rule.get("criteria", "between")]
        if rule.get("criteria", "between") == "between":
            dv.formula1, dv.formula2 = _formula_value(rule["minimum"]), _formula_value(rule["maximum"])
        else:
            dv.formula1 = _formula_value(rule["value"])
    dv.errorStyle = rule.get("error_type", "stop")
    dv.errorTitle = rule.get("error_title")
    dv.error = rule.get("error_message")
    dv.promptTitle = rule.get("input_title")
    dv.prompt = rule.get("input_message")
    dv.add(ref)
    return dv


def _input_style(cell, kind: str, locked: bool) -> None:
    """The designer's font and borders kept; the fill says input (or prefilled), the lock is released."""
    cell.fill = PatternFill("solid", fgColor=(FILL_PREFILLED if locked else FILL_INPUT).lstrip("#"))
    cell.protection = Protection(locked=locked)
    if kind in NUMBER_FORMATS:
        cell.number_format = NUMBER_FORMATS[kind]
    elif cell.number_format == "General":
        cell.number_format = "@"  # "≥95%" stays what the clerk typed


def _absolute(ref: str) -> str:
    letters = ref.rstrip("0123456789")
    return f"${letters}${ref[len(letters):]}"


def _quote(title: str) -> str:
    return "'" + title.replace("'", "''") + "'"


def build_designed_workbook(spec: Spec, unit: dict, projects: int = 1, password: str | None = None) -> bytes:
    """One form of a designed template as .xlsx bytes."""
    designed = spec.designed
    try:
        wb = openpyxl.load_workbook(designed.workbook, rich_text=True)
    except Exception as exc:  # the layout workbook comes from a template folder: untrusted
        raise SpecError(f"{designed.workbook}: 表样工作簿无法打开 (cannot open the designed workbook): {exc}") from None
    if designed.sheet not in wb.sheetnames:
        raise SpecError(f"{designed.workbook}: 没有工作表“{designed.sheet}”(no such sheet)")
    render = TextRenderer({"year": spec.year, "region": spec.region, "unit": unit})
    for ws in wb.worksheets:  # before the form sheet is copied and renamed: each text once, named as designed
        for row in ws.iter_rows():
            for cell in row:
                if isinstance(cell.value, str):
                    cell.value = render(cell.value, f"表样「{ws.title}」{cell.coordinate}")
    form = wb[designed.sheet]
    projects = max(1, int(projects)) if spec.multi_project else 1
    sheets = [form]
    for _ in range(1, projects):
        copied = wb.copy_worksheet(form)  # cells, styles, merges, sizes, margins and page setup
        copied.print_area = form.print_area  # what copy_worksheet leaves behind
        copied.print_options = copy(form.print_options)
        copied.row_breaks = copy(form.row_breaks)
        copied.sheet_properties.pageSetUpPr = copy(form.sheet_properties.pageSetUpPr)
        copied.oddHeader, copied.oddFooter = copy(form.oddHeader), copy(form.oddFooter)
        sheets.append(copied)
    for i, ws in enumerate(sheets, start=1):
        ws.title = spec.sheet_title(i) if spec.multi_project else (spec.sheet_name or designed.sheet)
    content = stamp_sheet(spec, unit, projects)
    stamp = wb.create_sheet(STAMP_SHEET)
    for r, c, text in content.cells:
        stamp.cell(row=r + 1, column=c + 1, value=text)
    stamp.sheet_state = "hidden"
    stamp.protection.sheet = True
    for key, value in content.properties:
        wb.custom_doc_props.append(openpyxl.packaging.custom.StringProperty(name=key, value=value))
    for ws in sheets:
        _decorate(wb, ws, spec, content.lists, render, scoped=spec.multi_project, password=password)
    wb.active = wb.sheetnames.index(sheets[0].title)
    wb.properties.creator = "perfxl"
    wb.properties.title = spec.title
    wb.properties.created = wb.properties.modified = datetime(2000, 1, 1)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _decorate(wb, ws, spec: Spec, lists, render: TextRenderer, scoped: bool, password: str | None) -> None:
    """Inputs, names, validations, shading, live checks and protection on one form sheet."""
    lay = layout(spec)
    sheet = _quote(ws.title)
    red = PatternFill("solid", bgColor=FILL_REQUIRED_EMPTY.lstrip("#"))

    def name(local: str, ref: str) -> None:
        defined = DefinedName(local, attr_text=f"{sheet}!{ref}")
        if scoped:
            ws.defined_names[local] = defined
        else:
            wb.defined_names[local] = defined

    for f in spec.fields.values():
        r, c = lay.fields[f.id]
        cell = ws.cell(row=r + 1, column=c + 1)
        _input_style(cell, f.type, f.locked)
        ref = cell_name(r, c)
        where = f"表样「{spec.designed.sheet}」{ref}（字段 {f.id}"
        if f.default not in (None, "") and cell.value in (None, ""):
            cell.value = render(str(f.default), f"{where} 的默认值）")
        name(f.name, _absolute(ref))
        rule = None if f.locked else field_validation(f, spec.year)
        if rule:
            prompt = render(rule["input_message"], f"{where} 的输入提示）")[:255]  # Excel's cap, once rendered
            ws.add_data_validation(to_openpyxl({**rule, "input_message": prompt}, ref))
        if f.required:
            ws.conditional_formatting.add(ref, FormulaRule(formula=[f"LEN(TRIM({ref}))=0"], fill=red))
    for t in spec.tables.values():
        pos = lay.tables[t.id]
        last_col = max(pos.columns[col.id] + col.span - 1 for col in t.columns)
        first_col = min(pos.columns.values())
        for col in t.columns:
            c = pos.columns[col.id]
            for r in range(pos.first_row, pos.last_row + 1):
                for k in range(col.span):
                    _input_style(ws.cell(row=r + 1, column=c + k + 1), col.type, col.locked)
            rule = None if col.locked else column_validation(t, col, lists, pos)
            if rule:
                ws.add_data_validation(to_openpyxl(rule, f"{cell_name(pos.first_row, c)}:{cell_name(pos.last_row, c)}"))
        name(t.name, f"{_absolute(cell_name(pos.first_row, first_col))}:{_absolute(cell_name(pos.last_row, last_col))}")
    _live_checks(ws, spec, lay, sheet, red)
    _print_setup(ws)
    ws.protection.sheet = True
    if password:
        ws.protection.password = password
    for allowed in ("insertRows", "deleteRows", "formatRows", "formatColumns"):
        setattr(ws.protection, allowed, False)  # False in OOXML's inverted sense: allowed


def _print_setup(ws) -> None:
    """What the design says about printing is kept; where it says nothing, the form prints as perfxl's own
    do: on A4, one page wide, 第 N 页 in the footer. Every row is made tall enough for its wrapped text as
    rendered for this unit (a longer unit name than the designer's sample wraps onto another line)."""
    props = ws.sheet_properties.pageSetUpPr
    if not ((props is not None and props.fitToPage) or ws.page_setup.scale not in (None, 100)):
        ws.sheet_properties.pageSetUpPr = PageSetupProperties(fitToPage=True)
        ws.page_setup.fitToWidth = 1
        ws.page_setup.fitToHeight = 0
    if ws.page_setup.paperSize in (None, ""):
        ws.page_setup.paperSize = ws.PAPERSIZE_A4
    footer = ws.oddFooter
    if not any(part.text for part in (footer.left, footer.center, footer.right)):
        footer.center.text = FOOTER
    fit_rows(ws)


def _live_checks(ws, spec: Spec, lay, sheet: str, red) -> None:
    column = lay.check_column + 1
    ws.column_dimensions[cell_name(0, lay.check_column).rstrip("0123456789")].width = 34
    style = Font(italic=True, color="7F3F00")
    totals: dict[int, list[SumCheck]] = {}
    for check in live_checks(spec, lay):
        if isinstance(check, SumCheck):
            totals.setdefault(check.row, []).append(check)
        elif isinstance(check, CheckFormula):
            cell = ws.cell(row=check.row + 1, column=column, value=check.formula.replace("{sheet}", f'"{ws.title}"'))
            cell.font = style
        else:
            ref = f"{cell_name(check.first_row, check.first_col)}:{cell_name(check.last_row, check.last_col)}"
            ws.conditional_formatting.add(ref, FormulaRule(formula=[check.formula.lstrip("=")], fill=red))
    for row, items in sorted(totals.items()):
        cell = ws.cell(row=row + 1, column=column, value=sum_check_formula(items))
        cell.font = style
        cell.alignment = Alignment(vertical="center")


"""What an annotated copy needs beyond marking cells (report.annotate_workbook): its sheets sized to print
whole, and a workbook to mark when openpyxl cannot open the unit's file.

A unit prints the copy it is sent back and works through it: every wrapped text gets rows tall enough for its
lines (the unit's own long texts included: a row of the form is only as tall as its blank had it), the
填表说明 sheet and the sheets rebuilt here print on A4 one page wide with 第 N 页.

An `.xls` (or a workbook openpyxl cannot load) is rebuilt as `.xlsx` from the values perfxl read
(reader.book.load_raw): every sheet with its name, every cell at its own address, the defined names and the
hidden stamp sheet, so each problem is marked in the cell the unit's own file has it in, and a copy sent back
again reads as the form it came from. Formatting, merged cells, formulas (their last values are kept) and
dropdowns are not in it; the copy and the notice say so, and ask the unit to correct its own file.
"""

from __future__ import annotations

import re
from datetime import date, datetime

from .formparts import text_px
from .sheetprint import fit_rows, print_on_a4

GUIDE_SHEET = "填表说明"  # generator.GUIDE_SHEET, without importing the generator (xlsxwriter) here
GUIDE_WIDTH = 80  # generator.GUIDE_WIDTH: within an A4 portrait page at 100 %
REBUILT_WIDTH = (6, 40)  # the narrowest and widest column of a rebuilt sheet, in characters
_NAME = re.compile(r"^[A-Za-z_\\][A-Za-z0-9_.\\]{0,254}$")


def printable_guide(ws) -> None:
    """The 填表说明 sheet as perfxl now writes it, for a form generated before it had a page setup: A4
    portrait, its one column within the page, each item wrapped in a row tall enough."""
    from openpyxl.styles import Alignment, Font

    if ws.max_column > 1:  # not perfxl's guide (one column of items): leave what a unit made alone
        return
    ws.column_dimensions["A"].width = GUIDE_WIDTH
    ws.print_options.gridLines = False
    rebuilt = ws["A1"].alignment.horizontal is None  # a guide rebuilt from an .xls: its looks as perfxl wrote them
    for (cell,) in ws.iter_rows(max_col=1):
        if rebuilt:
            cell.font = Font(bold=cell.row in (1, 3), size=16 if cell.row == 1 else 10)
            cell.alignment = Alignment(horizontal="center" if cell.row <= 2 else "left", vertical="center",
                                       wrap_text=True)
        elif isinstance(cell.value, str) and not cell.alignment.wrap_text:
            cell.alignment = Alignment(horizontal=cell.alignment.horizontal, vertical="center", wrap_text=True)
    fit_rows(ws)
    print_on_a4(ws, landscape=False)


def rebuild_workbook(raw, checked):
    """An openpyxl workbook holding what perfxl read of a file it cannot open (raw: reader.rawbook.RawBook):
    each sheet's cells at their addresses, dates shown as dates where the form reads a date, the defined
    names, the stamp sheet hidden as it was; laid out to print (text wrapped in columns as wide as their
    entries, up to 40, rows tall enough, A4 landscape with page numbers)."""
    import openpyxl
    from openpyxl.styles import Alignment
    from openpyxl.workbook.defined_name import DefinedName

    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    dates = _date_cells(checked)
    wrap = Alignment(wrap_text=True, vertical="top")
    for name in raw.sheet_names:
        ws = wb.create_sheet(name)
        if name in raw.hidden:
            ws.sheet_state = "hidden"
        widest: dict[int, float] = {}
        for (r, c), (value, _formula) in sorted(raw.cells.get(name, {}).items()):
            cell = ws.cell(row=r + 1, column=c + 1)
            shown = dates.get((name, cell.coordinate))
            if shown is not None and isinstance(value, int | float) and not isinstance(value, bool):
                cell.value, cell.number_format = shown, "yyyy-mm-dd"
            elif isinstance(value, str):
                cell.value = value
                cell.data_type = "s"  # text, even when it starts with "=": a value read, never a formula
            else:
                cell.value = value
            cell.alignment = wrap
            widest[c + 1] = max(widest.get(c + 1, 0), _chars(cell.value))
        for c, width in widest.items():
            ws.column_dimensions[openpyxl.utils.get_column_letter(c)].width = min(max(width, REBUILT_WIDTH[0]),
                                                                                 REBUILT_WIDTH[1])
        if ws.sheet_state == "visible":
            fit_rows(ws)
            print_on_a4(ws, landscape=True)
            ws.print_options.gridLines = True  # the form's borders are gone: the grid shows which value is where
    for name, local, ref in raw.names:
        if not _NAME.match(name) or name.lower().startswith("_xlnm"):
            continue  # what a defined name may not be, and print areas/titles (not the form's contract)
        defined = DefinedName(name, attr_text=ref)
        if local is not None and 0 <= local < len(wb.worksheets):
            wb.worksheets[local].defined_names[name] = defined
        elif local is None:
            wb.defined_names[name] = defined
    return wb


def _date_cells(checked) -> dict[tuple[str, str], date]:
    """(sheet, cell) → the date the form reads there: .xls keeps a date as a day number."""
    out = {}
    for project in checked.projects:
        for field, address in project.cells.items():
            value = project.values.get(field)
            if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                try:
                    out[(project.sheet, address.replace("$", ""))] = datetime.fromisoformat(value)
                except ValueError:
                    continue
    return out


def _chars(value) -> float:
    """The column width, in characters of the default font, that shows a value on one line."""
    if value is None:
        return 0
    text = value.isoformat()[:10] if isinstance(value, date) else str(value)
    longest = max(text.split("\n"), key=len)
    return (text_px(longest) + 6) / 7 + 1

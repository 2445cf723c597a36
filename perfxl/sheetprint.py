"""How a sheet perfxl edits with openpyxl prints (an annotated copy, a rebuilt .xls, a form designed in
Excel): every row tall enough for its wrapped text, and on A4 with 第 N 页 where its maker said nothing.

Spreadsheet programs do not measure rows again when they open a file: a row keeps the height written in it,
and wrapped text taller than that is cut off on screen and on paper."""

from __future__ import annotations

from .formparts import rows_needed, wrap_text

MAX_ROW_HEIGHT = 409  # points: Excel's limit
FOOTER = "&C第 &P 页，共 &N 页"


def column_widths(ws) -> dict[int, float]:
    """Column → width as the sheet gives it: one <col> read from a file may cover several columns; one set
    in this run has only its letter."""
    from openpyxl.utils import column_index_from_string

    widths: dict[int, float] = {}
    for letter, dim in ws.column_dimensions.items():
        if not dim.width:
            continue
        first = dim.min or column_index_from_string(letter)
        for c in range(first, min(dim.max or first, 16384) + 1):
            widths[c] = dim.width
    return widths


def fit_rows(ws) -> None:
    """Raise every row a wrapped text needs more height in than it has: a merged cell's text over its rows
    (the last of them grows), any other over its own. Rows are never made lower."""
    widths = column_widths(ws)
    default_width = ws.sheet_format.defaultColWidth or 8.43
    default_height = ws.sheet_format.defaultRowHeight or 15
    spans = {(m.min_row, m.min_col): (m.max_row, m.max_col) for m in ws.merged_cells.ranges}
    needs = []
    for row in ws.iter_rows():
        for cell in row:
            value = cell.value
            if not isinstance(value, str) or not value or cell.data_type == "f" or not cell.alignment.wrap_text:
                continue
            last_row, last_col = spans.get((cell.row, cell.column), (cell.row, cell.column))
            size = cell.font.sz or 11
            lines = len(wrap_text(value, [widths.get(c, default_width) for c in range(cell.column, last_col + 1)],
                                  size, bool(cell.font.b)))
            needs.append((last_row - cell.row, cell.row, last_row, rows_needed(lines, size)))
    for _, first, last, need in sorted(needs):
        have = sum(ws.row_dimensions[r].height or default_height for r in range(first, last + 1))
        if need > have:
            current = ws.row_dimensions[last].height or default_height
            ws.row_dimensions[last].height = min(MAX_ROW_HEIGHT, current + need - have)


def print_on_a4(ws, landscape: bool) -> None:
    """A4, one page wide, page numbers in the footer."""
    from openpyxl.worksheet.page import PageMargins
    from openpyxl.worksheet.properties import PageSetupProperties

    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.orientation = "landscape" if landscape else "portrait"
    ws.page_setup.fitToWidth, ws.page_setup.fitToHeight = 1, 0
    if ws.sheet_properties.pageSetUpPr is None:
        ws.sheet_properties.pageSetUpPr = PageSetupProperties()
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.page_margins = PageMargins(left=0.5, right=0.5, top=0.6, bottom=0.7, header=0.3, footer=0.3)
    ws.oddFooter.center.text = FOOTER

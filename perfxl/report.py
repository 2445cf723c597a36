"""Report stage: what people receive — annotated copies of returned forms, the summary workbook, CSV.

Writes only new files (atomically); never touches an input.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from .domain import ABOUT_SHEET
from .errors import OutputError
from .files import atomic_output, display_path, safe_filename
from .spec import cell_name
from .validator import CheckedForm

ANNOTATION_SHEET = "校验结果"
SUMMARY_MARK = "由 perfxl merge 生成"  # the summary's document comment: how a later run knows its own file
_SEVERITY_ZH = {"error": "错误", "warning": "提醒"}


def checked_report(checked: CheckedForm, lang: str = "zh") -> dict:
    """One file's report as data: the entry of `validate --json`, and what the Python API returns."""
    return {"path": display_path(checked.path), "template": checked.template, "version": checked.version,
            "year": checked.year, "unit": {"code": checked.unit_code, "name": checked.unit_name},
            "status": checked.status, "projects": [{"sheet": p.sheet, "name": p.name} for p in checked.projects],
            "problems": [p.to_dict(lang) for p in checked.problems]}


def annotate_workbook(checked: CheckedForm, outdir: Path, avoid: set[str] | None = None) -> Path | None:
    """A copy of the workbook with every problem cell highlighted and commented, and a first sheet
    listing the problems with links to the cells: the file a bureau sends back to the unit."""
    import openpyxl
    from openpyxl.comments import Comment
    from openpyxl.styles import Alignment, Font, PatternFill

    source = Path(checked.path)
    if checked.read_error or source.suffix.lower() == ".xls":
        return None
    try:
        wb = openpyxl.load_workbook(source, keep_vba=False, keep_links=False)
    except Exception:  # a file the fast reader accepted but openpyxl cannot load: no annotated copy
        return None
    fills = {"error": PatternFill("solid", fgColor="FFC7CE"), "warning": PatternFill("solid", fgColor="FFEB9C")}
    notes: dict[tuple[str, str], list[str]] = {}
    for p in checked.problems:
        if p.sheet in wb.sheetnames and p.cell:
            notes.setdefault((p.sheet, p.cell), []).append(f"[{_SEVERITY_ZH[p.severity]}] {p.message}")
            cell = wb[p.sheet][p.cell]
            if p.severity == "error" or cell.fill.fgColor.rgb != fills["error"].fgColor.rgb:
                cell.fill = fills[p.severity]
    for (sheet, address), lines in notes.items():
        comment = Comment("\n".join(lines)[:30000], "perfxl")
        comment.width, comment.height = 320, 40 + 30 * len(lines)
        wb[sheet][address].comment = comment
    if ANNOTATION_SHEET in wb.sheetnames:
        del wb[ANNOTATION_SHEET]
    ws = wb.create_sheet(ANNOTATION_SHEET, 0)
    ws.append([f"校验结果：{checked.errors} 个错误，{checked.warnings} 个提醒（红色为错误，黄色为提醒，点击单元格可跳转）"])
    ws.append(["严重程度", "说明", "工作表", "单元格", "栏目", "规则代码"])  # the words first, the code last
    for p in checked.problems:
        ws.append([_SEVERITY_ZH[p.severity], p.message, p.sheet, p.cell, p.label, p.code])
        if p.sheet in wb.sheetnames and p.cell:
            link = ws.cell(row=ws.max_row, column=4)
            link.hyperlink = f"#'{p.sheet}'!{p.cell}"
            link.font = Font(color="0563C1", underline="single")
    for letter, width in zip("ABCDEF", (9, 80, 12, 9, 24, 26)):
        ws.column_dimensions[letter].width = width
    for row in ws.iter_rows(min_row=3):
        row[1].alignment = Alignment(wrap_text=True, vertical="top")
    ws["A1"].font = Font(bold=True, size=12)
    # Printed for the unit to work through: landscape, one page wide, the header on every page.
    ws.page_setup.orientation = "landscape"
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.fitToWidth, ws.page_setup.fitToHeight = 1, 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.print_title_rows = "2:2"
    ws.freeze_panes = "A3"
    wb.active = 0
    target = Path(outdir) / (safe_filename(source.stem) + "_校验.xlsx")
    taken = {os.path.realpath(p) for p in avoid or ()}
    number = 2
    while os.path.realpath(target) in taken:  # never write over a file that is an input of this run
        target = Path(outdir) / (safe_filename(source.stem) + f"_校验({number}).xlsx")
        number += 1
    try:
        with atomic_output(target) as tmp:
            wb.save(tmp)
    except OSError as exc:
        raise OutputError(f"无法写入 (cannot write) {target}: {exc.strerror or exc}") from None
    return target


# ----------------------------------------------------------------------------------------------------
# The summary workbook and CSV
# ----------------------------------------------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_WIDTHS = {"单位名称": 30, "项目名称": 36, "三级指标": 30, "说明": 60, "主要问题": 60, "文件": 36, "来源文件": 36,
           "内容": 44, "原值": 30, "新值": 30, "主管部门": 26, "项目": 50, "收到时间": 17, "sha256": 22, "原因": 24,
           "栏目": 20, "规则": 24, "年度指标值": 30, "实际完成值": 24, "计分方法": 30}
EXCEL_ROWS = 1_048_576  # rows a sheet holds; a summary sheet that would pass it continues in 名(2), 名(3), …
A4_WIDTH = 190  # column widths (in characters) that still print legibly across one landscape A4 page
_MAX_CELL = 32_767


def _width(title: str, kind: str) -> float:
    if title in _WIDTHS:
        return _WIDTHS[title]
    if title.endswith(("原因", "结论", "措施", "说明")):  # sentences: wide enough to read, and wrapped
        return 30
    if kind in {"money"}:
        return max(16, len(title) * 1.8)
    if kind in {"count", "int", "percent", "number", "score"}:
        return max(9, len(title) * 1.9)
    return max(12, min(40, len(title) * 2.2))


def write_summary(result, path: Path) -> Path:
    """The summary workbook, written beside its final name and renamed into place when complete.

    xlsxwriter lays out every sheet (columns, header, frozen pane, autofilter, print setup); the rows are
    streamed as sheet XML into temporary files and spliced into those sheets when the zip is finished.
    Per-cell Python calls into a writer are the wall of a big merge (400,000 indicator rows at 10,000
    forms); this way memory stays flat and a row costs a string join.
    """
    import xlsxwriter

    path = Path(path)
    try:
        _write_summary(xlsxwriter, result, path)
    except OSError as exc:  # disk full, read-only folder, name too long, permission; the old summary stays
        raise OutputError(f"无法写入汇总表 (cannot write the summary) {exc.filename or path}: "
                          f"{exc.strerror or exc}；原有汇总表保持不变") from None
    except xlsxwriter.exceptions.XlsxWriterException as exc:
        raise OutputError(f"无法写入汇总表 (cannot write the summary) {path}: {exc}；原有汇总表保持不变") from None
    return path


def _write_summary(xlsxwriter, result, path: Path) -> None:
    streamed: list[tuple[int, str, Path, int, int]] = []
    with atomic_output(path) as tmp:
        try:
            # in_memory: the workbook holds only headers and layout (rows are spliced in), and xlsxwriter's
            # own temporary files would be left behind by a killed run under names no later run knows.
            wb = xlsxwriter.Workbook(str(tmp), {"strings_to_formulas": False, "strings_to_urls": False,
                                                "strings_to_numbers": False, "in_memory": True})
            wb.set_properties({"title": "预算绩效目标申报汇总", "author": "perfxl", "comments": SUMMARY_MARK})
            header = wb.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1, "text_wrap": True,
                                    "valign": "vcenter", "align": "center"})
            numbers = {"money": "#,##0.00", "count": "#,##0", "int": "0", "percent": "0.0%", "number": "General",
                       "score": "0.00"}
            body = {k: wb.add_format({"num_format": f}) for k, f in numbers.items()}
            totals = {k: wb.add_format({"bold": True, "top": 2, "num_format": f}) for k, f in numbers.items()}
            totals["text"] = wb.add_format({"bold": True, "top": 2})
            wrap = wb.add_format({"text_wrap": True})  # bottom-aligned like every other cell of the row
            sheet_no = 0
            cover_sheet = None
            continued: list[tuple[str, list[str], int]] = []  # (table, its sheets, its rows)
            for table in result.tables:
                if table.cover is not None:  # a few hundred rows at most: written cell by cell, not streamed,
                    sheet_no += 1            # after the big sheets, so it can say which of them continue
                    cover_sheet = (wb.add_worksheet(table.name), table)
                    continue
                if table.name == ABOUT_SHEET and continued:  # a copy: the result stays as the merge made it
                    table = dataclasses.replace(table, rows=list(table.iter_rows()) + [
                        ["超过 Excel 行数上限", f"「{name}」共 {rows:,} 行，分在 {'、'.join(sheets)} 中", "", ""]
                        for name, sheets, rows in continued])
                kinds = [kind for _, kind in table.columns]
                widths = [_width(title, kind) for title, kind in table.columns]
                # Long text wraps in its column, so a printed page shows it whole instead of cutting it off.
                styles = [body[k]._get_xf_index() if k in body else (wrap._get_xf_index() if widths[c] >= 30 else 0)
                          for c, k in enumerate(kinds)]
                total_styles = [totals[k]._get_xf_index() for k in kinds] if table.totals else None
                wrapped = [widths[c] if kinds[c] == "text" and widths[c] >= 30 else 0 for c in range(len(kinds))]
                rows = _Peekable(table.iter_rows())
                sums = [0.0] * len(kinds)
                names, written = [], 0
                while True:
                    name = table.name if not names else f"{table.name}({len(names) + 1})"
                    names.append(name)
                    ws = wb.add_worksheet(name)
                    sheet_no += 1
                    _print_setup(ws, table, widths)
                    for c, (title, _) in enumerate(table.columns):
                        _check(ws.set_column(c, c, widths[c]), name)
                        _check(ws.write_string(0, c, title, header), name)
                    _check(ws.set_row(0, 32), name)
                    ws.freeze_panes(1, 0)
                    ws.repeat_rows(0)
                    rows_file = tmp.with_name(tmp.name + f".{sheet_no}.rows")
                    streamed.append((sheet_no, name, rows_file, 0, len(kinds)))
                    count, more = _stream_rows(rows, kinds, styles, total_styles, rows_file, wrapped,
                                               limit=EXCEL_ROWS - 2, sums=sums)
                    streamed[-1] = (sheet_no, name, rows_file, count, len(kinds))
                    written += count
                    data_rows = count - (1 if table.totals and count and not more else 0)
                    if data_rows:
                        ws.autofilter(0, 0, data_rows, len(kinds) - 1)
                    note = table.note if not more and len(names) == 1 else (
                        f"续表 {len(names)}：{table.name} 超过 Excel 单表 {EXCEL_ROWS:,} 行，接续在下一张" if more
                        else f"续表 {len(names)}（完）：{table.note}")
                    if note:
                        ws.set_header(f"&L{name}&R{note}")
                    if not more:
                        break
                if len(names) > 1:
                    continued.append((table.name, names, written - (1 if table.totals else 0)))
            if cover_sheet is not None:
                ws, table = cover_sheet
                if continued:
                    table = dataclasses.replace(table, cover=dataclasses.replace(table.cover, lines=list(
                        table.cover.lines) + [f"「{name}」共 {rows:,} 行，超过 Excel 单表上限，分在 {'、'.join(sheets)} 中"
                                              for name, sheets, rows in continued]))
                kinds = [kind for _, kind in table.columns]
                widths = [_width(title, kind) for title, kind in table.columns]
                _print_setup(ws, table, widths)
                _write_cover(wb, ws, table, widths, header, body, totals)
            wb.close()
            _splice(tmp, streamed)
        finally:
            for _, _, rows_file, _, _ in streamed:
                rows_file.unlink(missing_ok=True)


def _print_setup(ws, table, widths: list[float]) -> None:
    """Landscape, one page wide, narrow margins, page numbers; a sheet wider than A4 can hold legibly
    goes on A3, which every bureau's printer room has."""
    ws.set_landscape()
    ws.set_paper(9 if sum(widths) <= A4_WIDTH else 8)
    ws.set_margins(left=0.4, right=0.4, top=0.6, bottom=0.6)
    ws.fit_to_pages(1, 0)
    ws.set_footer(f"&L{table.name}&R第 &P 页，共 &N 页")


def _write_cover(wb, ws, table, widths: list[float], header, body, totals) -> None:
    """汇总: title, lines, key figures, small blocks and native charts, then the table per 主管部门.

    Long because the cover is laid out top to bottom and every part's row depends on the parts above it;
    read from top to bottom it is the page as printed."""
    cover = table.cover
    ncols = max(len(table.columns), len(cover.figures), 8)
    title = wb.add_format({"bold": True, "font_size": 16, "align": "center", "valign": "vcenter"})
    line = wb.add_format({"font_color": "#404040", "align": "center"})
    figure_label = wb.add_format({"align": "center", "valign": "vcenter", "bg_color": "#F2F2F2", "border": 1,
                                  "text_wrap": True, "font_color": "#404040"})
    figure_value = {k: wb.add_format({"bold": True, "font_size": 14, "align": "center", "border": 1,
                                      "num_format": "#,##0.00" if k == "money" else "#,##0"}) for k in ("money", "count")}
    caption = wb.add_format({"bold": True, "font_size": 12})
    widths = [widths[c] if c < len(widths) else 12 for c in range(ncols)]
    for c, (_, _, kind) in enumerate(cover.figures):  # a key figure never shows as ####
        widths[c] = max(widths[c], 18 if kind == "money" else 11)
    for c in range(ncols):
        _check(ws.set_column(c, c, widths[c]), table.name)
    page_px = int(sum(widths) * 7)  # what the print area is wide, about 7 pixels per character of width
    ws.merge_range(0, 0, 0, ncols - 1, cover.title, title)
    ws.set_row(0, 30)
    for i, text in enumerate(cover.lines, start=1):
        ws.merge_range(i, 0, i, ncols - 1, text, line)
    row = len(cover.lines) + 2
    for c, (label, value, kind) in enumerate(cover.figures):
        ws.write_string(row, c, label, figure_label)
        ws.write_number(row + 1, c, value or 0, figure_value.get(kind, figure_value["count"]))
    ws.set_row(row, 30)
    ws.set_row(row + 1, 24)
    row += 3
    blocks = {}
    for block in cover.blocks:  # laid out across: label column, then one column per row's values
        ws.write_string(row, 0, block.name, caption)
        ws.write_string(row + 1, 0, block.columns[0][0], header)
        ws.write_string(row + 2, 0, block.columns[1][0], header)
        for c, values in enumerate(block.rows, start=1):
            ws.write(row + 1, c, values[0], header)
            ws.write(row + 2, c, values[1], body["count"])
        blocks[block.name] = (row + 1, row + 2, 1, len(block.rows))
        row += 4
    chart_row = row
    row += CHART_ROWS
    ws.write_string(row, 0, "按主管部门", caption)
    head = row + 1
    for c, (title_, _) in enumerate(table.columns):
        ws.write_string(head, c, title_, header)
    ws.set_row(head, 32)
    data = list(table.iter_rows())
    for r, values in enumerate(data, start=head + 1):
        for c, (value, (_, kind)) in enumerate(zip(values, table.columns)):
            if value is None or value == "":
                continue
            if kind != "text" and type(value) in (int, float):
                ws.write_number(r, c, value, body.get(kind))
            else:
                ws.write_string(r, c, str(value))
    last = head + len(data)
    if table.totals and data:
        last += 1
        ws.write_string(last, 0, "合计", totals["text"])
        for c, (_, kind) in enumerate(table.columns[1:], start=1):
            if kind in {"money", "count"}:
                ws.write_number(last, c, round(sum(v[c] or 0 for v in data), 6), totals[kind])
            else:
                ws.write_blank(last, c, None, totals.get(kind, totals["text"]))
    if data:
        ws.autofilter(head, 0, head + len(data), len(table.columns) - 1)
    ws.repeat_rows(head)
    ws.print_area(0, 0, last, ncols - 1)
    x = 4
    shares = {"bar": 0.62, "column": 0.36, "pie": 0.36}
    peak = max((sum(v[c] or 0 for c in (4, 5, 6)) for v in data), default=0)
    for chart_spec in cover.charts:  # side by side under the figures, inside the printed width
        chart = _chart(wb, table.name, chart_spec, blocks, head, len(data), peak)
        if chart is None:
            continue
        chart.set_size({"width": int(page_px * shares[chart_spec.kind]), "height": CHART_ROWS * 20 - 12})
        ws.insert_chart(chart_row, 0, chart, {"x_offset": x, "y_offset": 6})
        x += int(page_px * shares[chart_spec.kind]) + 12


CHART_ROWS = 14  # rows of 20 px the charts take on the cover


def _chart(wb, sheet: str, spec, blocks: dict, head: int, rows: int, peak: float):
    """A native Excel chart over the department table (series by column) or a block (laid out across)."""
    kind = {"bar": "bar", "column": "column", "pie": "pie"}[spec.kind]
    chart = wb.add_chart({"type": kind, "subtype": "stacked"} if spec.stacked else {"type": kind})
    if spec.block in blocks:
        label_row, value_row, first, count = blocks[spec.block]
        if not count:
            return None
        for name, _ in spec.series:
            chart.add_series({"name": name, "categories": [sheet, label_row, first, label_row, first + count - 1],
                              "values": [sheet, value_row, first, value_row, first + count - 1],
                              "data_labels": {"value": True}})
        chart.set_legend({"none": True})
        chart.set_y_axis({"num_format": "0", "major_gridlines": {"visible": True, "line": {"color": "#D9D9D9"}}})
    else:
        if not rows:
            return None
        for _, col in spec.series:  # each series is named by its column's title in the table
            chart.add_series({"name": [sheet, head, col],
                              "categories": [sheet, head + 1, spec.categories, head + rows, spec.categories],
                              "values": [sheet, head + 1, col, head + rows, col], "gap": 60})
        chart.set_legend({"position": "bottom"})
        chart.set_x_axis({"num_format": "0", "major_unit": max(1, -(-int(peak) // 8)), "min": 0})
        chart.set_y_axis({"reverse": True})  # departments top to bottom, as in the table below
    chart.set_title({"name": spec.title, "name_font": {"size": 12}})
    return chart


_XML_ESCAPES = {ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;",
                **{c: f"_x{c:04X}_" for c in range(32) if c not in (9, 10, 13)}, 0xFFFE: "", 0xFFFF: ""}
_NEEDS_ESCAPE = re.compile("[&<>\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _col_letters(n: int) -> list[str]:
    return [cell_name(0, c)[:-1] for c in range(n)]


def _text_cell(ref: str, text: str, style: str = "") -> str:
    if len(text) > _MAX_CELL:
        text = text[: _MAX_CELL - 1] + "…"
    if _NEEDS_ESCAPE.search(text):
        text = text.translate(_XML_ESCAPES)
    if text[0].isspace() or text[-1].isspace():
        return f'<c r="{ref}"{style} t="inlineStr"><is><t xml:space="preserve">{text}</t></is></c>'
    return f'<c r="{ref}"{style} t="inlineStr"><is><t>{text}</t></is></c>'


class _Peekable:
    """An iterator that can say whether anything is left without losing it."""

    _END = object()

    def __init__(self, iterable):
        self.it = iter(iterable)
        self.head = self._END

    def __iter__(self):
        return self

    def __next__(self):
        if self.head is not self._END:
            value, self.head = self.head, self._END
            return value
        return next(self.it)

    def push(self, value) -> None:
        """Give back the one value taken too many."""
        self.head = value

    def more(self) -> bool:
        if self.head is self._END:
            self.head = next(self.it, self._END)
        return self.head is not self._END


def _stream_rows(rows, kinds: list[str], styles: list[int], total_styles: list[int] | None, target: Path,
                 wrapped: list[float] | None = None, limit: int | None = None,
                 sums: list[float] | None = None) -> tuple[int, bool]:
    """Rows as <row> XML (inline strings, styled numbers) into `target`, then a totals row when asked.

    Text is always written as text — "=cmd|…" or "+1" stays a string, never a formula. A row whose text
    wraps in a `wrapped` column (its width, 0 for none) gets the height of its lines: spreadsheet programs
    do not re-measure rows on opening, and wrapped text would otherwise print over the next row.
    At most `limit` rows go on one sheet; `sums` carries the totals across the sheets of one table, whose
    totals row comes on the last. Returns the rows written (the totals row included) and whether rows
    remain for a next sheet."""
    letters = _col_letters(len(kinds))
    numeric = [k != "text" for k in kinds]
    style_attr = [f' s="{s}"' if s else "" for s in styles]
    summed = [k in {"money", "count"} for k in kinds]
    sums = sums if sums is not None else [0.0] * len(kinds)
    rows = rows if isinstance(rows, _Peekable) else _Peekable(rows)
    limit = limit or EXCEL_ROWS - 2
    wrap = wrapped or [0] * len(kinds)
    wrap_at = [w / 2 if w else 1e9 for w in wrap]  # text shorter than this (in characters) fits on one line
    wrap_columns = [c for c, w in enumerate(wrap) if w]
    count = 0
    with open(target, "w", encoding="utf-8") as out:
        buffer = []
        for count, row in enumerate(rows, start=1):
            r = count + 1
            if count > limit:  # this sheet is full: the row waits for the next one
                rows.push(row)
                count -= 1
                break
            cells = []
            lines = 1
            for c, value in enumerate(row):
                if value is None or value == "":
                    continue
                if numeric[c] and type(value) in (int, float):
                    cells.append(f'<c r="{letters[c]}{r}"{style_attr[c]}><v>{value!r}</v></c>')
                    if summed[c]:
                        sums[c] += value
                else:
                    text = value if type(value) is str else ("是" if value is True else "否" if value is False else str(value))
                    cells.append(_text_cell(f"{letters[c]}{r}", text, style_attr[c]))
            for c in wrap_columns:  # only the few wrapped columns are measured, and only long text
                value = row[c]
                if type(value) is str and len(value) > wrap_at[c]:
                    lines = max(lines, _lines(value, wrap[c]))
            height = f' ht="{min(lines, 8) * 15}" customHeight="1"' if lines > 1 else ""
            buffer.append(f'<row r="{r}"{height}>{"".join(cells)}</row>')
            if len(buffer) >= 2000:
                out.write("".join(buffer))
                buffer.clear()
        more = rows.more()
        if total_styles is not None and count and not more:
            count += 1
            r = count + 1
            cells = [_text_cell(f"A{r}", "合计", f' s="{total_styles[0]}"')]
            for c in range(1, len(kinds)):
                if summed[c]:
                    cells.append(f'<c r="{letters[c]}{r}" s="{total_styles[c]}"><v>{round(sums[c], 6)!r}</v></c>')
                else:
                    cells.append(f'<c r="{letters[c]}{r}" s="{total_styles[c]}"/>')
            buffer.append(f'<row r="{r}">{"".join(cells)}</row>')
        out.write("".join(buffer))
    return count, more


def _lines(text: str, width: float) -> int:
    """How many lines `text` takes in a column `width` characters wide (CJK characters count two)."""
    total = 0
    for paragraph in text.split("\n"):
        shown = len(paragraph.encode("gb18030", "replace"))  # two bytes for a CJK character, as it is shown
        total += max(1, -(-shown // max(1, int(width) - 1)))
    return total


def _splice(book: Path, streamed: list[tuple[int, str, Path, int, int]]) -> None:
    """Insert streamed rows into their sheets and widen dimension, autofilter and filter name."""
    import shutil
    import zipfile

    spliced = book.with_name(book.name + ".spliced")
    targets = {f"xl/worksheets/sheet{index}.xml": (name, rows, count, ncols)
               for index, name, rows, count, ncols in streamed}
    try:
        # Level 1: the streamed sheets are large and repetitive; it compresses them ~15x at a third of
        # level 6's time. Members opened by name take the ZipFile's method and level.
        with zipfile.ZipFile(book) as src, zipfile.ZipFile(spliced, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as dst:
            for info in src.infolist():
                data = src.read(info)
                if info.filename in targets:
                    name, rows, count, ncols = targets[info.filename]
                    last = f"{_col_letters(ncols)[-1]}{count + 1}"
                    text = data.decode("utf-8")
                    text = re.sub(r'<dimension ref="[^"]*"/>', f'<dimension ref="A1:{last}"/>', text, count=1)
                    head, tail = text.rsplit("</sheetData>", 1)
                    if head.endswith("<sheetData/>"):
                        head = head[: -len("<sheetData/>")] + "<sheetData>"
                    with dst.open(info.filename, "w", force_zip64=True) as fh:
                        fh.write(head.encode("utf-8"))
                        with open(rows, "rb") as part:
                            shutil.copyfileobj(part, fh, 1 << 20)
                        fh.write(("</sheetData>" + tail).encode("utf-8"))
                    continue
                dst.writestr(info, data)
        spliced.replace(book)
    finally:
        spliced.unlink(missing_ok=True)


def _check(code, where: str) -> None:
    if code not in (0, None):
        raise OutputError(f"internal error writing sheet {where}: xlsxwriter returned {code}")


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else str(int(value))
    text = str(value)
    if text.startswith(_FORMULA_START):
        return "'" + text  # a spreadsheet opening the CSV must not run it as a formula
    return text


def write_csv(result, folder: Path) -> list[Path]:
    """The same tables as UTF-8 CSV with a BOM (so Excel opens Chinese correctly)."""
    import csv

    from .files import ensure_writable_dir

    folder = ensure_writable_dir(Path(folder))
    written = []
    for table in result.tables:
        target = folder / f"{safe_filename(table.name)}.csv"
        try:
            with atomic_output(target) as tmp:
                with open(tmp, "w", encoding="utf-8-sig", newline="") as fh:
                    writer = csv.writer(fh)
                    writer.writerow([title for title, _ in table.columns])
                    for row in table.iter_rows():
                        writer.writerow([_csv_cell(v) for v in row])
        except OSError as exc:
            raise OutputError(f"无法写入 CSV (cannot write) {target}: {exc.strerror or exc}") from None
        written.append(target)
    return written


PARQUET_MARK = b"perfxl"  # a key of the file's metadata: an existing .parquet is overwritten only if perfxl wrote it
_PARQUET_BATCH = 50_000
_PARQUET_NUMBERS = {"money": "float64", "number": "float64", "score": "float64", "percent": "float64",
                    "count": "int64", "int": "int64"}


def write_parquet(result, folder: Path) -> list[Path]:
    """The same tables as Parquet, one file each, whole whatever their length (for analysts: pandas,
    DuckDB, Power BI). Text columns are strings, numbers typed by their kind, an empty cell is null."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise OutputError('--parquet 需要 pyarrow：pip install "perfxl[parquet]" (Parquet needs pyarrow)') from None
    from .files import ensure_writable_dir

    folder = ensure_writable_dir(Path(folder))
    written = []
    for table in result.tables:
        types = [getattr(pa, _PARQUET_NUMBERS.get(kind, "string"))() for _, kind in table.columns]
        schema = pa.schema([pa.field(title, t) for (title, _), t in zip(table.columns, types)],
                           metadata={PARQUET_MARK: table.name.encode("utf-8")})
        numeric = [kind in _PARQUET_NUMBERS for _, kind in table.columns]
        integer = [_PARQUET_NUMBERS.get(kind) == "int64" for _, kind in table.columns]
        target = folder / f"{safe_filename(table.name)}.parquet"

        try:
            with atomic_output(target) as tmp:
                with pq.ParquetWriter(str(tmp), schema, compression="zstd") as writer:
                    batch: list[list] = []
                    for row in table.iter_rows():
                        batch.append([_parquet_cell(v, numeric[c], integer[c]) for c, v in enumerate(row)])
                        if len(batch) >= _PARQUET_BATCH:
                            writer.write_table(_arrow_batch(pa, batch, schema))
                            batch.clear()
                    if batch:
                        writer.write_table(_arrow_batch(pa, batch, schema))
        except OSError as exc:
            raise OutputError(f"无法写入 Parquet (cannot write) {target}: {exc.strerror or exc}") from None
        written.append(target)
    return written


def _parquet_cell(value, numeric: bool, integer: bool):
    if value is None or value == "":
        return None
    if numeric:
        if type(value) not in (int, float):
            return None
        return int(value) if integer else float(value)
    return value if type(value) is str else str(value)


def _arrow_batch(pa, rows: list[list], schema):
    columns = list(zip(*rows)) if rows else [() for _ in schema]
    return pa.Table.from_arrays([pa.array(list(col), type=field.type) for col, field in zip(columns, schema)],
                                schema=schema)

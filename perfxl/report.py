"""Report stage: what people receive — annotated copies of returned forms, the summary workbook, CSV.

Writes only new files (atomically); never touches an input.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import OutputError
from .files import atomic_output, safe_filename
from .spec import cell_name
from .validate import CheckedForm

ANNOTATION_SHEET = "校验结果"
SUMMARY_MARK = "由 perfxl merge 生成"  # the summary's document comment: how a later run knows its own file
_SEVERITY_ZH = {"error": "错误", "warning": "提醒"}


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
_WIDTHS = {"单位名称": 30, "项目名称": 36, "三级指标": 30, "说明": 70, "主要问题": 60, "文件": 40, "来源文件": 40,
           "内容": 44, "原值": 30, "新值": 30, "主管部门": 26, "项目": 30, "收到时间": 17}
_MAX_CELL = 32_767


def iter_rows(table):
    return table.rows() if callable(table.rows) else iter(table.rows)


def _width(title: str, kind: str) -> float:
    if title in _WIDTHS:
        return _WIDTHS[title]
    if kind in {"money"}:
        return max(16, len(title) * 1.8)
    if kind in {"count", "int", "percent", "number"}:
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
            numbers = {"money": "#,##0.00", "count": "#,##0", "int": "0", "percent": "0.0%", "number": "General"}
            body = {k: wb.add_format({"num_format": f}) for k, f in numbers.items()}
            totals = {k: wb.add_format({"bold": True, "top": 2, "num_format": f}) for k, f in numbers.items()}
            totals["text"] = wb.add_format({"bold": True, "top": 2})
            for index, table in enumerate(result.tables, start=1):
                ws = wb.add_worksheet(table.name)
                kinds = [kind for _, kind in table.columns]
                for c, (title, kind) in enumerate(table.columns):
                    _check(ws.set_column(c, c, _width(title, kind)), table.name)
                    _check(ws.write_string(0, c, title, header), table.name)
                _check(ws.set_row(0, 32), table.name)
                ws.freeze_panes(1, 0)
                styles = [body[k]._get_xf_index() if k in body else 0 for k in kinds]
                total_styles = [totals[k]._get_xf_index() for k in kinds] if table.totals else None
                rows_file = tmp.with_name(tmp.name + f".{index}.rows")
                streamed.append((index, table.name, rows_file, 0, len(kinds)))
                count = _stream_rows(iter_rows(table), kinds, styles, total_styles, rows_file)
                streamed[-1] = (index, table.name, rows_file, count, len(kinds))
                data_rows = count - (1 if table.totals and count else 0)
                if data_rows:
                    ws.autofilter(0, 0, data_rows, len(kinds) - 1)
                if table.note:
                    ws.set_header(f"&L{table.name}&R{table.note}")
                ws.set_landscape()
                ws.fit_to_pages(1, 0)
                ws.repeat_rows(0)
            wb.close()
            _splice(tmp, streamed)
        finally:
            for _, _, rows_file, _, _ in streamed:
                rows_file.unlink(missing_ok=True)


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


def _stream_rows(rows, kinds: list[str], styles: list[int], total_styles: list[int] | None, target: Path) -> int:
    """Rows as <row> XML (inline strings, styled numbers) into `target`, then a totals row when asked.

    Text is always written as text — "=cmd|…" or "+1" stays a string, never a formula. Returns the
    number of rows written, the totals row included."""
    letters = _col_letters(len(kinds))
    numeric = [k != "text" for k in kinds]
    style_attr = [f' s="{s}"' if s else "" for s in styles]
    summed = [k in {"money", "count"} for k in kinds]
    sums = [0.0] * len(kinds)
    count = 0
    with open(target, "w", encoding="utf-8") as out:
        buffer = []
        for count, row in enumerate(rows, start=1):
            r = count + 1
            cells = []
            for c, value in enumerate(row):
                if value is None or value == "":
                    continue
                if numeric[c] and type(value) in (int, float):
                    cells.append(f'<c r="{letters[c]}{r}"{style_attr[c]}><v>{value!r}</v></c>')
                    if summed[c]:
                        sums[c] += value
                else:
                    text = value if type(value) is str else ("是" if value is True else "否" if value is False else str(value))
                    cells.append(_text_cell(f"{letters[c]}{r}", text))
            buffer.append(f'<row r="{r}">{"".join(cells)}</row>')
            if len(buffer) >= 2000:
                out.write("".join(buffer))
                buffer.clear()
        if total_styles is not None and count:
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
    return count


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
                    for row in iter_rows(table):
                        writer.writerow([_csv_cell(v) for v in row])
        except OSError as exc:
            raise OutputError(f"无法写入 CSV (cannot write) {target}: {exc.strerror or exc}") from None
        written.append(target)
    return written

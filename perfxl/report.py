"""Report stage: what people receive — annotated copies of returned forms, the summary workbook, CSV.

Writes only new files (atomically); never touches an input.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Sequence
from pathlib import Path

from .domain import ABOUT_SHEET
from .errors import OutputError
from .files import atomic_output, display_path, safe_filename, unique_name
from .sheetxml import (
    Layout,
    Segment,
    XlsxZip,
    chunks,
    col_letters,
    kept_rows,
    memo_segment,
    pack_chunks,
    pack_memo,
    pack_rows,
    rows_segment,
    segment,
    text_cell,
    unpack_chunks,
    unpack_memo,
    unpack_rows,
)
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


def annotate_workbook(checked: CheckedForm, outdir: Path, avoid: set[str] | None = None,
                      taken: set[str] | None = None) -> Path | None:
    """A copy of the workbook with every problem cell highlighted and commented, and a first sheet
    listing the problems with links to the cells: the file a bureau sends back to the unit.

    Named `<the form's name>_校验.xlsx`, never one of the `avoid` paths (the run's inputs) nor a name in
    `taken` (what the run wrote already, which this adds to): two forms of one name from two folders get
    `…_校验.xlsx` and `…(2)_校验.xlsx`."""
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
    target = unique_name(Path(outdir), source.stem, "_校验.xlsx", set() if taken is None else taken, avoid or ())
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
MEMO_ROWS = 60_000  # a sheet sorted across forms keeps its rows' XML up to this many rows (memory: ~1 KB a row)
EXCEL_ROWS = 1_048_576  # rows a sheet holds; a summary sheet that would pass it continues in 名(2), 名(3), …
A4_WIDTH = 190  # column widths (in characters) that still print legibly across one landscape A4 page


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


def write_summary(result, path: Path, cache=None) -> Path:
    """The summary workbook, written beside its final name and renamed into place when complete.

    xlsxwriter lays out every sheet (columns, header, frozen pane, autofilter, print setup); the rows are
    rendered as sheet XML in compressed segments (perfxl.sheetxml) and put into those sheets as the package
    is written. A table made of per-form blocks takes each block's segment from `cache` (get/put of bytes
    by key: the ledger's) when it holds one for the same layout, so a re-merge renders only what changed.
    """
    import xlsxwriter

    path = Path(path)
    try:
        _write_summary(xlsxwriter, result, path, cache)
    except OSError as exc:  # disk full, read-only folder, name too long, permission; the old summary stays
        raise OutputError(f"无法写入汇总表 (cannot write the summary) {exc.filename or path}: "
                          f"{exc.strerror or exc}；原有汇总表保持不变") from None
    except (xlsxwriter.exceptions.XlsxWriterException, OverflowError) as exc:
        raise OutputError(f"无法写入汇总表 (cannot write the summary) {path}: {exc}；原有汇总表保持不变") from None
    return path


_NUMBER_FORMATS = {"money": "#,##0.00", "count": "#,##0", "int": "0", "percent": "0.0%", "number": "General",
                   "score": "0.00"}


@dataclasses.dataclass
class _Part:
    """One sheet of a table: its name and the segments of its rows (spooled to disk)."""

    name: str
    segments: list = dataclasses.field(default_factory=list)
    rows: int = 0  # data rows, without the totals row
    totals: bool = False


class _SegmentSpool:
    """Segments kept in a temporary file until the package is written, so memory stays flat. The package
    reads them in the order they were written, so the file is read straight through, with a seek only
    where a segment does not follow the last one read (two seeks a segment cost an unchanged 10,000-form
    re-merge about 0.05 s)."""

    def __init__(self, fh):
        self.fh = fh
        self.end = 0  # where the next segment is written
        self.at = 0  # where the file stands

    def add(self, seg: Segment) -> Segment:
        if self.at != self.end:
            self.fh.seek(self.end)
        offset = self.end
        self.fh.write(seg.data)
        self.end = self.at = offset + len(seg.data)
        return Segment((offset, len(seg.data)), seg.crc, seg.length, seg.zeros, seg.rows, seg.sums)

    def load(self, seg: Segment) -> Segment:
        offset, size = seg.data
        if offset != self.at:
            self.fh.seek(offset)
        data = self.fh.read(size)
        self.at = offset + len(data)
        return Segment(data, seg.crc, seg.length, seg.zeros, seg.rows, seg.sums)


def _write_summary(xlsxwriter, result, path: Path, cache) -> None:
    import tempfile

    sheets: dict[int, tuple[_Part, int]] = {}  # sheet number → its part and column count
    with atomic_output(path) as tmp, tempfile.TemporaryFile(dir=tmp.parent, prefix=tmp.name + ".") as spool_file:
        spool = _SegmentSpool(spool_file)
        # in_memory: the workbook holds only headers and layout (rows are added as the package is written),
        # and xlsxwriter's own temporary files would be left behind by a killed run under names no later
        # run knows.
        wb = xlsxwriter.Workbook(str(tmp), {"strings_to_formulas": False, "strings_to_urls": False,
                                            "strings_to_numbers": False, "in_memory": True})
        wb.set_properties({"title": "预算绩效目标申报汇总", "author": "perfxl", "comments": SUMMARY_MARK})
        formats = _formats(wb)
        header, body, totals = formats.header, formats.body, formats.totals
        sheet_no = 0
        cover_sheet = None
        continued: list[tuple[str, list[str], int]] = []  # (table, its sheets, its rows)
        for table in result.tables:
            if table.cover is not None:  # a few hundred rows at most: written cell by cell, not streamed,
                sheet_no += 1            # after the big sheets, so it can say which of them continue
                cover_sheet = (wb.add_worksheet(table.name), table)
                continue
            if table.name == ABOUT_SHEET and continued:  # a copy: the result stays as the merge made it
                table = dataclasses.replace(table, blocks=None, rows=list(table.iter_rows()) + [
                    ["超过 Excel 行数上限", f"「{name}」共 {rows:,} 行，分在 {'、'.join(sheets)} 中"]
                    + [""] * (len(table.columns) - 2) for name, sheets, rows in continued])
            kinds = [kind for _, kind in table.columns]
            widths = [_width(title, kind) for title, kind in table.columns]
            layout = _layout(table, formats)
            parts, sums = _table_parts(table, layout, cache, spool, EXCEL_ROWS - 2)
            if table.totals and parts[-1].rows:
                total_row = [0] + [round(v, 6) if on else None for v, on in zip(sums[1:], layout.summed[1:])]
                total_layout = Layout(layout.kinds, tuple(totals[k]._get_xf_index() for k in kinds), layout.wrapped)
                parts[-1].segments.append(spool.add(_totals_segment(total_row, total_layout, parts[-1].rows + 2)))
                parts[-1].totals = True
            written = sum(p.rows for p in parts)
            names = [p.name for p in parts]
            for i, part in enumerate(parts):
                ws = wb.add_worksheet(part.name)
                sheet_no += 1
                sheets[sheet_no] = (part, len(kinds))
                _print_setup(ws, table, widths)
                for c, (title, _) in enumerate(table.columns):
                    _check(ws.set_column(c, c, widths[c]), part.name)
                    _check(ws.write_string(0, c, title, header), part.name)
                _check(ws.set_row(0, 32), part.name)
                ws.freeze_panes(1, 0)
                ws.repeat_rows(0)
                if part.rows:
                    ws.autofilter(0, 0, part.rows, len(kinds) - 1)
                last = i == len(parts) - 1
                note = table.note if len(parts) == 1 else (
                    f"续表 {i + 1}：{table.name} 超过 Excel 单表 {EXCEL_ROWS:,} 行，接续在下一张" if not last
                    else f"续表 {i + 1}（完）：{table.note}")
                if note:
                    ws.set_header(f"&L{part.name}&R{note}")
            if len(parts) > 1:
                continued.append((table.name, names, written))
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
        _package(tmp, sheets, spool)


@dataclasses.dataclass
class _Formats:
    header: object
    body: dict
    totals: dict
    wrap: object


def _formats(wb) -> _Formats:
    """The summary's cell formats, their style numbers fixed here in one order: a segment rendered in
    another process (or another merge) names the same styles."""
    header = wb.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1, "text_wrap": True,
                            "valign": "vcenter", "align": "center"})
    body = {k: wb.add_format({"num_format": f}) for k, f in _NUMBER_FORMATS.items()}
    totals = {k: wb.add_format({"bold": True, "top": 2, "num_format": f}) for k, f in _NUMBER_FORMATS.items()}
    totals["text"] = wb.add_format({"bold": True, "top": 2})
    wrap = wb.add_format({"text_wrap": True})  # bottom-aligned like every other cell of the row
    for f in [header, *body.values(), *totals.values(), wrap]:
        f._get_xf_index()
    return _Formats(header, body, totals, wrap)


def _layout(table, formats: _Formats) -> Layout:
    """How a table's rows are rendered. Long text wraps in its column, so a printed page shows it whole
    instead of cutting it off."""
    kinds = [kind for _, kind in table.columns]
    widths = [_width(title, kind) for title, kind in table.columns]
    return Layout(
        tuple(kinds),
        tuple(formats.body[k]._get_xf_index() if k in formats.body
              else (formats.wrap._get_xf_index() if widths[c] >= 30 else 0) for c, k in enumerate(kinds)),
        tuple(widths[c] if kinds[c] == "text" and widths[c] >= 30 else 0 for c in range(len(kinds))))


def render_ahead(tables, cache) -> None:
    """Render the per-form blocks of `tables` into `cache`, as the summary writer would keep them: what a
    merge's worker does for its share of the forms, so the writer finds them rendered."""
    import io

    import xlsxwriter

    formats = _formats(xlsxwriter.Workbook(io.BytesIO(), {"in_memory": True}))
    for table in tables:
        layout = _layout(table, formats)
        for block, key in _keyed(table, layout, cache):
            if key and cache.get(key) is None:
                rows = block.rows()
                # Rendered, not placed: only the writer knows the row a form's rows start at, and fills
                # them in there.
                packed = pack_rows(kept_rows(rows, layout)) if rows else None
                if packed is not None:
                    cache.put(key, packed)


def _table_parts(table, layout: Layout, cache, spool: _SegmentSpool, limit: int) -> tuple[list[_Part], list[float]]:
    """A table's rows as segments, in sheets of at most `limit` rows: 名, 名(2), 名(3), …

    A per-form block the cache holds for this layout is not rendered again: its segment is used as it is
    when the block starts at the same row as when it was kept, else filled in again from its template
    (and kept so). Rows are never lost at a sheet's end: a block that does not fit is rendered again and
    split there."""
    sums = [0.0] * len(layout.kinds)
    parts = [_Part(table.name)]

    def room() -> int:
        if parts[-1].rows >= limit:
            parts.append(_Part(f"{table.name}({len(parts) + 1})"))
        return limit - parts[-1].rows

    def place(seg: Segment) -> None:
        parts[-1].segments.append(spool.add(seg))
        parts[-1].rows += seg.rows
        for c, v in enumerate(seg.sums):
            sums[c] += v

    def add_rows(rows: list[list], memo: dict | None = None, used: dict | None = None) -> None:
        start = 0
        while start < len(rows):
            take = rows[start:start + room()]
            first = parts[-1].rows + 2  # row 1 is the header
            if memo is None:
                place(rows_segment(take, layout, first))
            else:
                seg, digest = memo_segment(take, layout, first, memo, used,
                                           kept_chunks[len(made)] if len(made) < len(kept_chunks) else None)
                made.append((digest, seg))
                place(seg)
            start += len(take)

    kept_chunks: list[tuple[bytes, Segment]] = []
    made: list[tuple[bytes, Segment]] = []  # a sorted sheet's segments made now, with their digests
    if table.blocks is None:
        # A sheet sorted across forms (项目清单, 目标审核, …): its rows' templates are kept by the rows'
        # values, so a re-merge renders only rows that changed; and its segments by what they hold, so
        # a re-merge compresses again only the rows from the first that changed or moved. Kept whole,
        # under the table's name and layout.
        small = isinstance(table.rows, Sequence) and len(table.rows) <= MEMO_ROWS
        key = f"{table.name}|{layout.key}" if cache is not None and small else None
        memo = (unpack_memo(cache.get("rows|" + key)) or {}) if key else None
        kept_chunks = (unpack_chunks(cache.get("chunks|" + key)) or []) if key else []
        used: dict | None = {} if key else None
        for batch in chunks(table.iter_rows(), 2000):
            add_rows(batch, memo, used)
        if key and used.keys() != memo.keys():
            packed = pack_memo(used)
            if packed is not None:
                cache.put("rows|" + key, packed)
        if key and [d for d, _ in made] != [d for d, _ in kept_chunks]:
            cache.put("chunks|" + key, pack_chunks(made))
        return parts, sums
    columns = len(layout.kinds)
    for block, key in _keyed(table, layout, cache):
        kept = unpack_rows(cache.get(key), columns) if key else None
        rows, placed = None, None
        if kept is not None and kept.rows <= room():
            try:
                placed = kept.at(parts[-1].rows + 2)  # row 1 is the header
            except ValueError:  # a kept template that is not what it claims: rendered again below
                kept = None
        if kept is None:
            rows = block.rows()
            if not rows:
                continue
            kept = kept_rows(rows, layout)
            if kept.rows <= room():
                placed = kept.at(parts[-1].rows + 2)
        if placed is None:  # only at a sheet's end: the block's rows are split across the two
            add_rows(rows if rows is not None else block.rows())
            continue
        if key and placed is not kept:  # rendered, or moved since it was kept: kept where it is now
            packed = pack_rows(placed)
            if packed is not None:
                cache.put(key, packed)
        place(placed.filled)
    return parts, sums


def _keyed(table, layout: Layout, cache):
    """Each block of a table with the key its segment is kept under (None: not kept), looked up in the
    cache a few hundred at a time."""
    for batch in chunks(iter(table.blocks()), 500):
        keys = [f"{b.key}|{table.name}|{layout.key}" if cache is not None and b.key else None for b in batch]
        if cache is not None:
            cache.prefetch([k for k in keys if k])
        yield from zip(batch, keys)


def _totals_segment(values: list, layout: Layout, row: int) -> Segment:
    """The totals row at row `row`: 合计 and the sums, every cell styled (the rule above it runs across)."""
    refs = [f' r="{letter}{row}" s="{style}"' for letter, style in zip(col_letters(len(values)), layout.styles)]
    cells = [text_cell("合计", refs[0])]
    for c in range(1, len(values)):
        value = values[c]
        cells.append(f'<c{refs[c]}><v>{value!r}</v></c>' if value is not None else f'<c{refs[c]}/>')
    return segment(f'<row r="{row}">{"".join(cells)}</row>'.encode())


def _package(book: Path, sheets: dict[int, tuple[_Part, int]], spool: _SegmentSpool) -> None:
    """Rewrite xlsxwriter's package with each streamed sheet's rows between its header row and the rest,
    and its dimension widened to them."""
    import zipfile

    packed = book.with_name(book.name + ".packed")
    targets = {f"xl/worksheets/sheet{number}.xml": entry for number, entry in sheets.items()}
    try:
        with zipfile.ZipFile(book) as src, open(packed, "wb") as fh:
            out = XlsxZip(fh)
            for info in src.infolist():
                data = src.read(info)
                if info.filename not in targets:
                    out.write(info.filename, data)
                    continue
                part, ncols = targets[info.filename]
                last = f"{col_letters(ncols)[-1]}{part.rows + 1 + part.totals}"
                text = data.decode("utf-8")
                text = re.sub(r'<dimension ref="[^"]*"/>', f'<dimension ref="A1:{last}"/>', text, count=1)
                head, tail = text.rsplit("</sheetData>", 1)
                if head.endswith("<sheetData/>"):
                    head = head[: -len("<sheetData/>")] + "<sheetData>"
                out.write_segments(info.filename, itertools.chain(
                    [segment(head.encode("utf-8"))], (spool.load(seg) for seg in part.segments),
                    [segment(("</sheetData>" + tail).encode("utf-8"))]))
            out.close()
        packed.replace(book)
    finally:
        packed.unlink(missing_ok=True)


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
    ncols = max(len(table.columns), len(cover.figures), 8, *(len(t.columns) for t in cover.tables))
    title = wb.add_format({"bold": True, "font_size": 16, "align": "center", "valign": "vcenter"})
    line = wb.add_format({"font_color": "#404040", "align": "center"})
    figure_label = wb.add_format({"align": "center", "valign": "vcenter", "bg_color": "#F2F2F2", "border": 1,
                                  "text_wrap": True, "font_color": "#404040"})
    figure_value = {k: wb.add_format({"bold": True, "font_size": 14, "align": "center", "border": 1,
                                      "num_format": "#,##0.00" if k == "money" else "#,##0"}) for k in ("money", "count")}
    caption = wb.add_format({"bold": True, "font_size": 12})
    widths = [widths[c] if c < len(widths) else 12 for c in range(ncols)]
    for extra in cover.tables:  # nor does a total of the tables above the main one
        for c, (title_, kind) in enumerate(extra.columns):
            if kind != "text":
                widths[c] = max(widths[c], _width(title_, kind))
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
    for extra in cover.tables:  # above the main table, whose header repeats on every printed page after it
        levels = list(extra.iter_rows())  # its 合计 row is its last
        row = _write_table_at(ws, row, extra.name, extra.columns, levels, bool(levels), header, body, totals,
                              caption) + 2
    head = row + 1
    data = list(table.iter_rows())
    total_row = [["合计"] + [round(sum(v[c] or 0 for v in data), 6) if kind in {"money", "count"} else None
                             for c, (_, kind) in enumerate(table.columns[1:], start=1)]] if table.totals and data else []
    last = _write_table_at(ws, row, cover.caption, table.columns, data + total_row, bool(total_row), header,
                           body, totals, caption)
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


def _write_table_at(ws, row: int, title: str, columns, rows: list[list], totals_last: bool, header, body, totals,
                    caption) -> int:
    """A table written cell by cell at `row`: its caption, header and rows, the last in bold over a rule
    when it is the totals row. Returns the last row written."""
    ws.write_string(row, 0, title, caption)
    for c, (title_, _) in enumerate(columns):
        ws.write_string(row + 1, c, title_, header)
    ws.set_row(row + 1, 32)
    for r, values in enumerate(rows, start=row + 2):
        strong = totals_last and r == row + 1 + len(rows)
        for c, (value, (_, kind)) in enumerate(zip(values, columns)):
            style = (totals if strong else body).get(kind, totals["text"] if strong else None)
            if value is None or value == "":
                if strong:
                    ws.write_blank(r, c, None, style)
            elif kind != "text" and type(value) in (int, float):
                ws.write_number(r, c, value, style)
            else:
                ws.write_string(r, c, str(value), style)
    return row + 1 + len(rows)

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


def _file_tables(result):
    """Every table that gets a file of its own (CSV, Parquet): each sheet's table, and after the cover's
    (汇总: the table per 主管部门) the tables it prints above it (分级合计)."""
    for table in result.tables:
        yield table
        if table.cover is not None:
            yield from table.cover.tables


def write_csv(result, folder: Path) -> list[Path]:
    """The same tables as UTF-8 CSV with a BOM (so Excel opens Chinese correctly)."""
    import csv

    from .files import ensure_writable_dir

    folder = ensure_writable_dir(Path(folder))
    written = []
    for table in _file_tables(result):
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
    for table in _file_tables(result):
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

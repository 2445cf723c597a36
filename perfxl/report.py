"""Report stage: what people receive — annotated copies of returned forms, the summary workbook, CSV.

Writes only new files (atomically); never touches an input.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import re
import threading
from collections.abc import Sequence
from pathlib import Path

from .cachekeys import RENDER_VERSION
from .domain import ABOUT_SHEET
from .errors import OutputError
from .files import atomic_output, display_path, safe_filename, unique_name
from .sheetxml import (
    BOLD,
    CJK_WIDTH,
    Layout,
    Segment,
    Widened,
    XlsxZip,
    chunks,
    col_letters,
    kept_rows,
    memo_segment,
    pack_chunks,
    pack_memo,
    pack_rows,
    row_height,
    rows_segment,
    segment,
    text_cell,
    text_width,
    unpack_chunks,
    unpack_memo,
    unpack_rows,
    values_segment,
    wrapped_lines,
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


@dataclasses.dataclass(frozen=True)
class Annotated:
    """An annotated copy: where it was written, and whether it was rebuilt from the values perfxl read
    (an .xls, or a workbook openpyxl cannot open) rather than copied from the unit's file."""

    path: Path
    rebuilt: bool = False


REBUILT_NOTE = ("本文件由 perfxl 根据贵单位报送的“{name}”重建：该文件无法直接标注（{why}），这里只保留了各单元格的值，"
                "格式、合并单元格、公式和下拉列表没有保留；问题单元格的位置与原表相同。请对照本文件在原表中修改后重新报送。")


def annotate_workbook(checked: CheckedForm, outdir: Path, avoid: set[str] | None = None,
                      taken: set[str] | None = None) -> Path | None:
    """A copy of the workbook with every problem cell highlighted and commented, and a first sheet
    listing the problems with links to the cells: the file a bureau sends back to the unit (see `annotate`)."""
    annotated = annotate(checked, outdir, avoid, taken)
    return annotated.path if annotated else None


def annotate(checked: CheckedForm, outdir: Path, avoid: set[str] | None = None,
             taken: set[str] | None = None) -> Annotated | None:
    """The annotated copy of a checked form, or None for a file perfxl could not read at all.

    Named `<the form's name>_校验.xlsx`, never one of the `avoid` paths (the run's inputs) nor a name in
    `taken` (what the run wrote already, which this adds to): two forms of one name from two folders get
    `…_校验.xlsx` and `…(2)_校验.xlsx`. An .xls (or a workbook openpyxl cannot load) is rebuilt from the
    values perfxl read, every cell at its own address (perfxl.annotation), and says so on its first sheet.
    Printed, every sheet shows its text whole: rows grow for wrapped text, 校验结果 and 填表说明 are on A4."""
    from openpyxl.comments import Comment
    from openpyxl.styles import Alignment, Font, PatternFill

    from .annotation import GUIDE_SHEET, printable_guide
    from .sheetprint import fit_rows, print_on_a4

    source = Path(checked.path)
    if checked.read_error:
        return None
    wb, why_rebuilt = _workbook_to_mark(source, checked)
    if wb is None:
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
    for ws in wb.worksheets:  # the unit's sheets, as it will print them: its own long texts whole
        if ws.sheet_state == "visible":
            if ws.title == GUIDE_SHEET:
                printable_guide(ws)
            elif why_rebuilt is None:
                fit_rows(ws)
    if ANNOTATION_SHEET in wb.sheetnames:
        del wb[ANNOTATION_SHEET]
    ws = wb.create_sheet(ANNOTATION_SHEET, 0)
    head = [f"校验结果：{checked.errors} 个错误，{checked.warnings} 个提醒（红色为错误，黄色为提醒，点击单元格可跳转）"]
    if why_rebuilt is not None:
        head.append(REBUILT_NOTE.format(name=source.name, why=why_rebuilt))
    for text in head:
        ws.append([text])
        ws.merge_cells(start_row=ws.max_row, start_column=1, end_row=ws.max_row, end_column=6)
    header_row = ws.max_row + 1
    ws.append(["严重程度", "说明", "工作表", "单元格", "栏目", "规则代码"])  # the words first, the code last
    for p in checked.problems:
        ws.append([_SEVERITY_ZH[p.severity], p.message, p.sheet, p.cell, p.label, p.code])
        if p.sheet in wb.sheetnames and p.cell:
            link = ws.cell(row=ws.max_row, column=4)
            link.hyperlink = f"#'{p.sheet}'!{p.cell}"
            link.font = Font(color="0563C1", underline="single")
    for letter, width in zip("ABCDEF", (9, 66, 12, 9, 20, 22)):  # 138 characters: A4 landscape at 100 %
        ws.column_dimensions[letter].width = width
    for row in ws.iter_rows():
        for cell in row:
            cell.alignment = Alignment(wrap_text=True, vertical="top")
    ws["A1"].font = Font(bold=True, size=12)
    for cell in ws[header_row]:
        cell.font = Font(bold=True)
    fit_rows(ws)
    # Printed for the unit to work through: landscape, one page wide, the header on every page, 第 N 页.
    print_on_a4(ws, landscape=True)
    ws.print_title_rows = f"{header_row}:{header_row}"
    ws.freeze_panes = f"A{header_row + 1}"
    wb.active = 0
    for other in wb.worksheets[1:]:
        other.sheet_view.tabSelected = False
    target = unique_name(Path(outdir), source.stem, "_校验.xlsx", set() if taken is None else taken, avoid or ())
    try:
        with atomic_output(target) as tmp:
            wb.save(tmp)
    except OSError as exc:
        raise OutputError(f"无法写入 (cannot write) {target}: {exc.strerror or exc}") from None
    return Annotated(target, why_rebuilt is not None)


def _workbook_to_mark(source: Path, checked: CheckedForm):
    """(the workbook to mark, None) for a file openpyxl opens; (a workbook rebuilt from the values perfxl
    read, why the file itself could not be marked) for an .xls or a workbook openpyxl cannot load; (None,
    None) when neither can be had."""
    import openpyxl

    from .annotation import rebuild_workbook
    from .reader.book import OLE_MAGIC, load_raw

    try:
        with source.open("rb") as fh:
            old_format = fh.read(len(OLE_MAGIC)) == OLE_MAGIC
    except OSError:
        return None, None
    why = ".xls 是旧版 Excel 格式" if old_format or source.suffix.lower() == ".xls" else None
    if why is None:
        try:
            return openpyxl.load_workbook(source, keep_vba=False, keep_links=False), None
        except Exception:  # a file the fast reader accepted but openpyxl cannot load: rebuilt as an .xls is
            why = "表格程序无法按原样打开它"
    try:
        raw, _, _ = load_raw(source)
        return rebuild_workbook(raw, checked), why
    except Exception:  # it was read once; read again it fails (changed, removed): no copy, the notice says where
        return None, None


# ----------------------------------------------------------------------------------------------------
# The summary workbook and CSV
# ----------------------------------------------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
MEMO_ROWS = 60_000  # a sheet sorted across forms keeps its rows' XML up to this many rows (memory: ~1 KB a row)
EXCEL_ROWS = 1_048_576  # rows a sheet holds; a summary sheet that would pass it continues in 名(2), 名(3), …

# ----------------------------------------------------------------------------------------------------
# How a summary sheet is laid out, on screen and on paper
#
# Widths are in Excel's column units (the width of a digit of Calibri 11) and text is measured as
# sheetxml.text_width does. A column is as wide as what it holds, up to its cap: wider text wraps, top-aligned,
# in a row as tall as its lines. Every sheet prints landscape, one page wide, at a scale of at least SCALE: on
# A4 where its columns fit, on A3 where the sheet declares it may (Table.paper) and they do not; where they
# still do not fit, its wrapped text columns are narrowed (their rows grow taller) until they do.
# ----------------------------------------------------------------------------------------------------

_CAPS = {  # the widest a text column grows before its text wraps
    "地区": 12, "主管部门": 16, "单位编码": 12, "单位名称": 18, "项目名称": 20, "模板": 18, "工作表": 10, "单元格": 8,
    "一级指标": 10, "二级指标": 12, "三级指标": 18, "年度指标值": 16, "实际完成值": 14, "计分方法": 24, "位置": 12,
    "说明": 44, "主要问题": 30, "文件": 26, "来源文件": 26, "内容": 40, "原值": 24, "新值": 24, "原文件": 24,
    "新文件": 24, "项目": 40, "收到时间": 17, "sha256": 24, "原因": 40, "代码": 22, "栏目": 16, "规则": 22,
    "审核结论": 12, "处理": 12, "校验状态": 9, "报送状态": 10, "比较符/类型": 8, "计量单位": 8, "定性描述/期限": 14,
    "计分类别": 8, "预警": 5, "完成目标可能性": 8,
}
_NUMBER_WIDTHS = {"money": 15, "count": 7, "int": 6, "percent": 8, "number": 12, "score": 7}  # unmeasured
A4, A3 = 9, 8  # xlsxwriter's paper sizes
_PRINTABLE = {A4: 841.89 - 57.6, A3: 1190.55 - 57.6}  # pt across a landscape page inside 0.4 in margins
SCALE = 0.75  # the least a sheet is laid out to print at (the print check's floor is 60%: 11 pt → 6.6 pt)
PAD = 1.5  # a column's room beyond its widest text: the cell's padding, and a margin for the fonts
_TEXT_FLOOR = 8.0  # a wrapped text column is narrowed to no less than this to fit the page


def _cap(title: str) -> float:
    """The widest a text column grows: by its title, or sentences 24, anything else 18."""
    if title in _CAPS:
        return _CAPS[title]
    if title.endswith(("原因", "结论", "措施", "说明", "问题")):  # sentences: wide enough to read, and wrapped
        return 24.0
    if title.endswith(("时间", "日期", "期限")):  # 2021-01-01至2021-12-31 on one line
        return 24.0
    return 18.0


def _column_points(width: float) -> float:
    """How wide a column of `width` units prints at 100%: as LibreOffice (with Carlito) lays it out, which is
    a little wider than Excel (5.25 × width + 3.75)."""
    return 5.545 * width + 4.1


@dataclasses.dataclass(frozen=True)
class _Plan:
    """A sheet's columns (widths in units; which wrap), its paper and its print scale."""

    widths: tuple[float, ...]
    paper: int
    header: float  # the header row's height (pt)

    @property
    def scale(self) -> int:
        return _scale(self.widths, self.paper)

    def wrapped(self, kinds) -> tuple[float, ...]:
        return tuple(w if k == "text" else 0 for w, k in zip(self.widths, kinds))


def _header_width(title: str, lines: int) -> float:
    """The least width at which a (bold) title takes at most `lines` lines."""
    width = max(3.0, text_width(title) * BOLD / lines + PAD)
    while wrapped_lines(title, width, bold=True) > lines:
        width += 0.5
    return width


def _shown(value, kind: str) -> str:
    """A number as its column's format shows it (_NUMBER_FORMATS)."""
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "count":
        return f"{value:,.0f}"
    if kind == "percent":
        return f"{value * 100:.1f}%"
    if kind == "score":
        return f"{value:.2f}"
    if kind == "int":
        return f"{value:.0f}"
    return f"{value:.10g}"[:11]  # General: at most 11 characters


_WORD = re.compile(r"[!-~\u00a0-\u2e7f]+")  # a run of Latin letters, digits and signs: a code, a path, a number


def _widest(values: list, kind: str, cap: float) -> tuple[float, float]:
    """The width of the widest of a column's values as they are shown (numbers in their format), or `cap` as
    soon as one reaches it; and of the widest word in them (a code or a file name, which a column narrower
    than it must break). Text is measured longest first, and only while it can still be wider.

    Each distinct value is looked at once: a column of a sorted sheet holds 10,000 forms' values, most of
    them repeated (主管部门, 状态, 地区), and a re-merge lays out every such column again."""
    types = set(map(type, values))
    if bool in types or (kind == "text" and int in types and float in types):
        distinct = values  # True and 1, or 1 and 1.0, are one in a set but shown apart
    else:
        try:
            distinct = set(values)
        except TypeError:  # a value that cannot be hashed: each one looked at
            distinct = values
    best = word = 0.0
    if kind != "text":  # in the column's order: the max and min of numbers with a NaN among them depend on it
        numbers = [v for v in values if type(v) in (int, float)]
        if numbers:
            best = max(text_width(_shown(max(numbers), kind)), text_width(_shown(min(numbers), kind)))
    texts = {v if type(v) is str else str(v) for v in distinct
             if v is not None and v != "" and (kind == "text" or type(v) not in (int, float))}
    for text in sorted(texts, key=len, reverse=True):
        if best >= cap or len(text) * CJK_WIDTH <= best:
            break  # nothing shorter can be wider
        best = max(best, max(map(text_width, text.split("\n"))))
    if kind == "text" and texts:
        # One pass over the texts joined by a character no word holds: no word spans two texts
        words = set(_WORD.findall("\n".join(texts)))
        if len(words) > 200:  # the longest few hundred: every word as long as the 200th longest, so the
            shortest = sorted(map(len, words))[-200]  # same ones in every run (a set's order is not)
            words = [w for w in words if len(w) >= shortest]
        word = max(map(text_width, words), default=0.0)
    return best, word


def _scale(widths, paper: int) -> int:
    """The print scale (whole percent, at most 100) at which the columns fill the page's width, less 2% for
    what the estimate of a column's width may miss."""
    return min(100, int(100 * _PRINTABLE[paper] / (sum(map(_column_points, widths)) * 1.02)))


def _fits(widths, paper: int) -> bool:
    return sum(map(_column_points, widths)) * SCALE <= _PRINTABLE[paper]


def _fit(natural: list[float], floors: list[float], may_a3: bool) -> tuple[list[float], int]:
    """Widths and paper: A4 where the natural widths fit it at SCALE, else A3 where the sheet may use it;
    where they still do not fit, every column narrowed by one factor, none below its floor (the largest
    widths that fit; the floors, printed smaller, when even they do not)."""
    paper = A4 if _fits(natural, A4) or not may_a3 else A3
    if _fits(natural, paper):
        return natural, paper
    low, high = 0.0, 1.0
    for _ in range(30):
        mid = (low + high) / 2
        low, high = (mid, high) if _fits([max(f, w * mid) for f, w in zip(floors, natural)], paper) else (low, mid)
    return [round(max(f, w * low), 1) for f, w in zip(floors, natural)], paper


def _plan(table) -> _Plan:
    """A table's widths and paper, from what its columns hold (a table whose rows are at hand) or from their
    kinds (a big sheet rendered form by form, in workers and in earlier merges, which must lay out alike)."""
    kinds = [kind for _, kind in table.columns]
    titles = [title for title, _ in table.columns]
    content = None
    if table.blocks is None and isinstance(table.rows, Sequence):
        columns = list(zip(*table.rows))
        columns += [()] * (len(kinds) - len(columns))  # no rows
        measured = [_widest(list(values), kind, _cap(title) if kind == "text" else 1e9)
                    for values, title, kind in zip(columns, titles, kinds)]
        content, words = [m[0] for m in measured], [m[1] for m in measured]
        if table.totals:  # the totals row: 合计 and its sums, in bold
            content[0] = max(content[0], text_width("合计") * BOLD)
            for c, (values, kind) in enumerate(zip(columns, kinds)):
                if kind in ("money", "count"):
                    total = sum(v for v in values if type(v) in (int, float))
                    content[c] = max(content[c], text_width(_shown(total, kind)) * BOLD)
    natural, floors = [], []
    for c, (title, kind) in enumerate(table.columns):
        two, three = _header_width(title, 2), _header_width(title, 3)
        if kind == "text":
            cap = _cap(title)
            width = min(cap, max(content[c] + PAD if content is not None else cap, two, 4.0))
            word = words[c] + PAD if content is not None else 0.0  # a code or a file name kept whole
            floors.append(min(width, max(_TEXT_FLOOR, three, word)))
        else:
            need = (content[c] if content is not None else _NUMBER_WIDTHS[kind]) + PAD
            width = max(need, two)
            floors.append(max(need, three))
        natural.append(round(width, 1))

    widths, paper = _fit(natural, floors, table.paper == "A3")
    lines = max((wrapped_lines(title, w, bold=True) for title, w in zip(titles, widths)), default=1)
    return _Plan(tuple(widths), paper, max(20.0, row_height(lines) + 2))


def write_summary(result, path: Path, cache=None, apart: bool = False, release: bool = False) -> Path:
    """The summary workbook, written beside its final name and renamed into place when complete.

    xlsxwriter lays out every sheet (columns, header, frozen pane, autofilter, print setup); the rows are
    rendered as sheet XML in compressed segments (perfxl.sheetxml) and put into those sheets as the package
    is written. A table made of per-form blocks takes each block's segment from `cache` (get/put of bytes
    by key: the ledger's) when it holds one for the same layout, so a re-merge renders only what changed.
    With `apart`, where the system forks, the tables marked `apart` are made and rendered in a helper
    process while this one writes the others (see `_Apart`). With `release`, a table's rows are let go once
    they are rendered (`result.tables` keeps each table's columns and layout, without its rows): for a caller
    that needs none of them after (a province's sheets hold hundreds of MB of rows).
    """
    import xlsxwriter

    path = Path(path)
    try:
        _write_summary(xlsxwriter, result, path, cache, apart, release)
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


class _Apart:
    """Tables made and rendered in one helper process, forked once the formats are fixed, while this process
    renders the others: the tables marked `apart` (Table.apart: sheets nothing else in the workbook waits on,
    such as 历史对比), and the sheets sorted across forms that `_apart_share` offers. The helper takes those
    biggest first, and this process, once its own are rendered, the smallest the helper has not started
    (`left`), through two counters in shared memory: the two share the work without knowing what each sheet
    costs. Each comes back as its plan, sums and its sheets' segments, which this process spools as its own,
    with what the helper found and put in `cache` (through a view of its own, perfxl.ledger.KeptView), which
    this process takes back: a sheet rendered apart reuses its kept rows as one rendered here would.

    An optimisation only: where the system does not fork, or the helper is lost, this process renders the
    table as before, with the same result."""

    def __init__(self, tables: list, formats: _Formats, wanted: bool, cache=None):
        import multiprocessing

        self.pool, self.futures, self.cache = None, {}, cache
        self.offered: list[int] = []
        self.shared: list = []  # the helper's turns at the offered tables
        self.finished: dict[int, tuple] | None = None  # the offered tables it rendered, once all are back
        marked, offered = _apart_share(tables) if wanted else ([], [])
        # Forked only from a process of one thread: a fork copies the locks other threads hold (see
        # perfxl.processes.pool_context), and the helper would wait on one for ever
        if not (marked or offered) or "fork" not in multiprocessing.get_all_start_methods() or \
                threading.active_count() > 1:
            return
        from perfxl.processes import worker_pool

        fork = multiprocessing.get_context("fork")
        self.offered = offered
        self.ends = fork.RawArray("i", [0, len(offered)])  # the next the helper takes; one past the last left
        self.lock = fork.Lock()
        # The helper is forked within the first submit (a fork pool starts its processes then) and takes
        # _APART as it stands: set and cleared under a lock, so two merges in two threads (the Python API)
        # never hand one helper the other's tables.
        with _APART_LOCK:
            # What the helper may find kept: its tables' rows and segments, which `_table_parts` keeps under
            # "rows|<table>|…", "chunks|<table>|…" and "layout|<table>", read here
            names = [tables[i].name for i in marked + offered]
            view = cache.view([f"{kind}|{name}|" for name in names for kind in ("rows", "chunks")],
                              [f"layout|{name}" for name in names]) if hasattr(cache, "view") else None
            _APART.update(tables=tables, formats=formats, cache=view, offered=offered, ends=self.ends,
                          lock=self.lock)
            try:
                self.pool = worker_pool(1, fork)
                self.futures = {i: self.pool.submit(_render_apart, i) for i in marked}
                self.shared = [self.pool.submit(_render_offered) for _ in offered]
            except OSError:  # no process to be had: rendered here
                self.close()
            finally:
                _APART.clear()

    def renders(self, index: int) -> bool:
        return index in self.futures or index in self.offered

    def left(self):
        """The offered tables the helper has not started, smallest first, each taken from it as it is
        reached: this process renders them."""
        while self.pool is not None and self.lock.acquire(timeout=_HELPER_LOCK_SECONDS):
            try:
                if self.ends[0] >= self.ends[1]:
                    return
                self.ends[1] -= 1
                index = self.offered[self.ends[1]]
            finally:
                self.lock.release()
            self.offered = [i for i in self.offered if i != index]
            yield index

    def take(self, index: int, spool: _SegmentSpool) -> tuple[_Plan, list[_Part], list[float]] | None:
        """Table `index` as rendered apart, its segments spooled here; None when it was not (render it)."""
        from concurrent.futures.process import BrokenProcessPool

        if index in self.offered:
            if self.finished is None:
                self.finished = {}
                for future in self.shared:
                    try:
                        got = future.result()
                    except (BrokenProcessPool, OSError):
                        continue
                    if got is not None:
                        self.finished[got[0]] = got[1]
            done = self.finished.pop(index, None)
        else:
            future = self.futures.pop(index, None)
            if future is None:
                return None
            try:
                done = future.result()
            except (BrokenProcessPool, OSError):
                return None
        if done is None:  # not rendered there (a helper that started after _APART was cleared, or lost)
            return None
        plan, parts, sums, kept = done
        if kept is not None and self.cache is not None:
            self.cache.take_back(*kept)
        return plan, [_Part(name, [spool.add(Segment(*seg)) for seg in segments], rows)
                      for name, segments, rows in parts], sums

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        self.futures, self.shared, self.offered = {}, [], []


_HELPER_LOCK_SECONDS = 10.0  # a helper stopped while holding the counters' lock: this process renders the rest


APART_MIN_CELLS = 20_000  # a sorted sheet with fewer cells is rendered here: handing it over costs about as much


def _apart_share(tables: list) -> tuple[list[int], list[int]]:
    """The tables marked `apart`, which the helper renders; and the sheets sorted across forms it is
    offered, biggest first: those whose rows are kept (at most MEMO_ROWS; the helper's copy of their records
    costs memory, and at province scale they are not kept anyway) and not too small to be worth it."""
    marked = [i for i, t in enumerate(tables) if t.apart and t.blocks is None and t.cover is None]
    sized = sorted(((len(t.rows) * len(t.columns), i) for i, t in enumerate(tables)
                    if i not in marked and t.blocks is None and t.cover is None and t.name != ABOUT_SHEET
                    and isinstance(t.rows, Sequence) and getattr(t.rows, "made", True)
                    and len(t.rows) <= MEMO_ROWS and len(t.rows) * len(t.columns) >= APART_MIN_CELLS), reverse=True)
    return marked, [i for _, i in sized]


_APART: dict = {}  # what the helper forked by _Apart inherits: the tables and the fixed formats
_APART_LOCK = threading.Lock()


def _render_apart(index: int) -> tuple | None:
    """In the helper: table `index` made and rendered as `_write_summary` would, its segments as data, with
    what it found valid and put in the cache (None without one); None when the helper was not forked holding
    the tables."""
    import io

    if "tables" not in _APART:
        return None
    view = _APART.get("cache")
    if view is not None:
        view.found, view.puts = [], []
    spool = _SegmentSpool(io.BytesIO())
    plan, parts, sums = _rendered(_APART["tables"][index], _APART["formats"], view, spool)
    return plan, [(p.name, [tuple(dataclasses.astuple(spool.load(seg))) for seg in p.segments], p.rows)
                  for p in parts], sums, (view.found, view.puts) if view is not None else None


def _render_offered() -> tuple[int, tuple | None] | None:
    """In the helper: the biggest offered table not yet taken (by it or the merging process), rendered as
    `_render_apart` does; None when none is left."""
    if "tables" not in _APART:
        return None
    ends, lock = _APART["ends"], _APART["lock"]
    if not lock.acquire(timeout=_HELPER_LOCK_SECONDS):
        return None
    try:
        if ends[0] >= ends[1]:
            return None
        index = _APART["offered"][ends[0]]
        ends[0] += 1
    finally:
        lock.release()
    return index, _render_apart(index)


def _let_go(table):
    """A table whose rows were rendered, without them (a per-form table's blocks, made lazily, are kept)."""
    if table.blocks is not None or table.cover is not None:
        return table
    return dataclasses.replace(table, rows=[])


def _with_continued(table, continued: list[tuple[str, list[str], int]]):
    """说明 with a line for each table that runs past Excel's rows (a copy: the result stays as the merge made
    it)."""
    if not continued:
        return table
    return dataclasses.replace(table, blocks=None, rows=list(table.iter_rows()) + [
        ["超过 Excel 行数上限", f"「{name}」共 {rows:,} 行，分在 {'、'.join(sheets)} 中"]
        + [""] * (len(table.columns) - 2) for name, sheets, rows in continued])


def _about_table(table, tables: list, made: dict):
    """说明 as `_write_summary` writes it, from the tables rendered so far (`made`): every other table that
    can run past a sheet's rows is among them."""
    return _with_continued(table, [(tables[i].name, [p.name for p in parts], sum(p.rows for p in parts))
                                   for i, (_, parts, _) in sorted(made.items()) if len(parts) > 1])


def _rendered(table, formats: _Formats, cache, spool: _SegmentSpool) -> tuple[_Plan, list[_Part], list[float]]:
    """A table's plan, its rows as spooled segments in sheets, and its column sums."""
    table = _rows_at_hand(table)
    plan = _plan(table)
    parts, sums = _table_parts(table, _layout(table, formats, plan), cache, spool, EXCEL_ROWS - 2)
    return plan, parts, sums


def _rows_at_hand(table):
    """Rows made from their records as they are read (RowsOf) are made once, for the plan and the rows, not
    twice (the plan holds them all at once anyway), and let go with the sheet."""
    if table.blocks is None and isinstance(table.rows, Sequence) and not isinstance(table.rows, list):
        return dataclasses.replace(table, rows=list(table.rows))
    return table


def _write_summary(xlsxwriter, result, path: Path, cache, apart: bool = False, release: bool = False) -> None:
    import tempfile

    sheets: dict[int, tuple[_Part, int]] = {}  # sheet number → its part and column count
    with atomic_output(path) as tmp, tempfile.TemporaryFile(dir=tmp.parent, prefix=tmp.name + ".") as spool_file:
        spool = _SegmentSpool(spool_file)
        # in_memory: the workbook holds only headers and layout (rows are added as the package is written),
        # and xlsxwriter's own temporary files would be left behind by a killed run under names no later
        # run knows.
        from .xlsxsafe import SafeWorkbook

        wb = SafeWorkbook(str(tmp), {"strings_to_formulas": False, "strings_to_urls": False,
                                     "strings_to_numbers": False, "in_memory": True})
        title = next((t.cover.title for t in result.tables if t.cover is not None), "预算绩效目标汇总")  # the round's
        wb.set_properties({"title": title, "author": "perfxl", "comments": SUMMARY_MARK})
        formats = _formats(wb)
        header, totals = formats.header, formats.totals
        sheet_no = 0
        cover_sheet = None
        continued: list[tuple[str, list[str], int]] = []  # (table, its sheets, its rows)
        helper = _Apart(result.tables, formats, apart, cache)
        try:
            made = {}  # what this process renders while the helper renders its share

            def render(index: int, table=None) -> None:
                made[index] = _rendered(table or result.tables[index], formats, cache, spool)
                if release:  # its rows are in the spool now: their memory goes to the sheets still to render
                    result.tables[index] = _let_go(result.tables[index])

            for index, table in enumerate(result.tables):
                if table.cover is None and table.name != ABOUT_SHEET and not helper.renders(index):
                    render(index)
            about = next((i for i, t in enumerate(result.tables) if t.name == ABOUT_SHEET), None)
            if about is not None and not helper.futures:  # no sheet the helper renders can run past a sheet's
                render(about, _about_table(result.tables[about], result.tables, made))  # rows
            for index in helper.left():
                render(index)
            for index, table in enumerate(result.tables):
                if table.cover is not None:  # a few hundred rows at most: written cell by cell, not streamed,
                    sheet_no += 1            # after the big sheets, so it can say which of them continue
                    cover_sheet = (wb.add_worksheet(table.name), table)
                    continue
                if table.name == ABOUT_SHEET and index not in made:
                    table = _with_continued(table, continued)
                kinds = [kind for _, kind in table.columns]
                plan, parts, sums = (made.pop(index, None) or helper.take(index, spool)
                                     or _rendered(table, formats, cache, spool))
                layout = _layout(table, formats, plan)
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
                    _print_setup(ws, table, plan.paper, plan.scale)
                    for c, (title, _) in enumerate(table.columns):
                        _check(ws.set_column(c, c, plan.widths[c]), part.name)
                        _check(ws.write_string(0, c, title, header), part.name)
                    _check(ws.set_row(0, plan.header), part.name)
                    ws.freeze_panes(1, 0)
                    ws.repeat_rows(0)
                    if part.rows:
                        ws.autofilter(0, 0, part.rows, len(kinds) - 1)
                        _colour_cells(wb, ws, table, part.rows)
                    last = i == len(parts) - 1
                    note = table.note if len(parts) == 1 else (
                        f"续表 {i + 1}：{table.name} 超过 Excel 单表 {EXCEL_ROWS:,} 行，接续在下一张" if not last
                        else f"续表 {i + 1}（完）：{table.note}")
                    if note:
                        ws.set_header(f"&L{part.name}&R{note}")
                        # Room for the header above the rows: with the 0.3 in between them that the footer has,
                        # LibreOffice's PDF export draws fewer rows a page than it counted pages for, and the
                        # last rows of a long sheet are on no page (tests/test_print.py, not-printed).
                        ws.set_margins(left=0.4, right=0.4, top=0.8, bottom=BOTTOM_MARGIN)
                if len(parts) > 1:
                    continued.append((table.name, names, written))
        finally:
            helper.close()
        if cover_sheet is not None:
            ws, table = cover_sheet
            if continued:
                table = dataclasses.replace(table, cover=dataclasses.replace(table.cover, lines=list(
                    table.cover.lines) + [f"「{name}」共 {rows:,} 行，超过 Excel 单表上限，分在 {'、'.join(sheets)} 中"
                                          for name, sheets, rows in continued]))
            _write_cover(wb, ws, table, formats)
        wb.close()
        _package(tmp, sheets, spool)


@dataclasses.dataclass
class _Formats:
    header: object
    body: dict
    totals: dict
    wrap: object


def _colour_cells(wb, ws, table, rows: int) -> None:
    """Table.colours as conditional formats over the column's rows (a fill, and dark text on it)."""
    for column, fills in table.colours.items():
        for text, colour in fills.items():
            fill = wb.add_format({"bg_color": colour, "font_color": "#FFFFFF" if colour in _DARK else "#000000"})
            ws.conditional_format(1, column, rows, column, {"type": "cell", "criteria": "==",
                                                            "value": f'"{text}"', "format": fill})


_DARK = {"#C00000", "#2F5597"}


def _formats(wb) -> _Formats:
    """The summary's cell formats, their style numbers fixed here in one order: a segment rendered in
    another process (or another merge) names the same styles. Every cell is top-aligned: in a row made tall
    for one wrapped text, the row's other cells start on its first line."""
    header = wb.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1, "text_wrap": True,
                            "valign": "vcenter", "align": "center"})
    body = {k: wb.add_format({"num_format": f, "valign": "top"}) for k, f in _NUMBER_FORMATS.items()}
    totals = {k: wb.add_format({"bold": True, "top": 2, "num_format": f, "valign": "top"})
              for k, f in _NUMBER_FORMATS.items()}
    totals["text"] = wb.add_format({"bold": True, "top": 2, "valign": "top", "text_wrap": True})
    wrap = wb.add_format({"text_wrap": True, "valign": "top"})
    for f in [header, *body.values(), *totals.values(), wrap]:
        f._get_xf_index()
    return _Formats(header, body, totals, wrap)


def _layout(table, formats: _Formats, plan: _Plan | None = None) -> Layout:
    """How a table's rows are rendered: every text column wraps at its width (the plan's), so a printed page
    shows it whole instead of cutting it off, in a row as tall as its lines."""
    kinds = [kind for _, kind in table.columns]
    plan = plan or _plan(table)
    return Layout(
        tuple(kinds),
        tuple(formats.body[k]._get_xf_index() if k in formats.body else formats.wrap._get_xf_index() for k in kinds),
        plan.wrapped(kinds))


@functools.cache
def _ahead_formats() -> _Formats:
    """The summary's formats, to name their style numbers in rows rendered ahead: made once in a process (a
    worker renders each form's rows as it reads the form)."""
    import io

    import xlsxwriter

    return _formats(xlsxwriter.Workbook(io.BytesIO(), {"in_memory": True}))


_BLOCK_LAYOUTS: dict[tuple, Layout] = {}


def _block_layout(table, formats: _Formats) -> Layout:
    """A big sheet's layout, which follows from its columns and paper alone (see _plan): worked out once
    per process, not once per form."""
    if table.blocks is None:
        return _layout(table, formats)
    key = (tuple(table.columns), table.paper, id(formats))
    if key not in _BLOCK_LAYOUTS:
        _BLOCK_LAYOUTS[key] = _layout(table, formats)
    return _BLOCK_LAYOUTS[key]


def render_ahead(tables, cache, starts: dict[str, dict[str, int]] | None = None) -> None:
    """Render the per-form blocks of `tables` into `cache`, as the summary writer would keep them: what a
    merge's worker does for its share of the forms, so the writer finds them rendered. A block whose start
    row `starts` knows (by table name and block key, see `block_starts`) is placed there too, as the writer
    would place it: the writer then fills in and compresses nothing of it."""
    formats = _ahead_formats()
    for table in tables:
        layout = _block_layout(table, formats)
        known = (starts or {}).get(table.name, {})
        for block, key in _keyed(table, layout, cache):
            if key and cache.get(key) is None:
                rows = block.rows()
                if not rows:
                    continue
                made = kept_rows(rows, layout)
                start = known.get(block.key)
                if start is not None:
                    try:
                        made = made.at(start)
                    except ValueError:  # left unplaced: the writer renders it again
                        pass
                packed = pack_rows(made)
                if packed is not None:
                    cache.put(key, packed)


def block_starts(tables) -> dict[str, dict[str, int]]:
    """The row each block of these big sheets will start at, by table name and block key, as far as the
    blocks' expected row counts (RowBlock.expected) tell, placed as `_table_parts` places them: up to the
    first block whose count is not known. A count that proves wrong costs only the placing: the writer
    uses a block placed ahead only where it starts at that very row."""
    out: dict[str, dict[str, int]] = {}
    limit = EXCEL_ROWS - 2
    for table in tables:
        if table.blocks is None:
            continue
        starts = out[table.name] = {}
        filled = 0  # rows in the sheet being filled (名, 名(2), …)
        for block in table.blocks():
            rows = block.expected
            if rows is None:
                break
            if rows == 0:  # a form without rows here adds none
                continue
            if filled >= limit:
                filled = 0
            if rows <= limit - filled:
                if block.key:
                    starts[block.key] = filled + 2  # row 1 is the header
                filled += rows
                continue
            while rows > 0:  # split at a sheet's end (`add_rows`)
                if filled >= limit:
                    filled = 0
                take = min(rows, limit - filled)
                filled, rows = filled + take, rows - take
    return out


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
            kept_chunk = kept_chunks[len(made)] if len(made) < len(kept_chunks) else None
            if memo is None and not by_values:
                place(rows_segment(take, layout, first))
            elif memo is None:
                seg, digest = values_segment(take, layout, first, kept_chunk)
                made.append((digest, seg))
                place(seg)
            else:
                seg, digest = memo_segment(take, layout, first, memo, used, kept_chunk, widened)
                made.append((digest, seg))
                place(seg)
            start += len(take)

    kept_chunks: list[tuple[bytes, Segment]] = []
    made: list[tuple[bytes, Segment]] = []  # a sorted sheet's segments made now, with their digests
    widened: Widened | None = None  # a sorted sheet's kept rows are of a layout it widened since
    by_values = False  # a sorted sheet's segments kept by the values of their rows (sheetxml.values_segment)
    if table.blocks is None:
        # A sheet sorted across forms (项目清单, 目标审核, …): its rows' templates are kept by the rows'
        # values, so a re-merge renders only rows that changed; and its segments by what they hold, so
        # a re-merge compresses again only the rows from the first that changed or moved. Kept whole,
        # under the table's name and layout. A sheet of more rows than MEMO_ROWS keeps no templates (their
        # memory): its segments are kept by their rows' values, so an unchanged one is not rendered again.
        small = isinstance(table.rows, Sequence) and len(table.rows) <= MEMO_ROWS
        key = _sorted_key(table.name, layout) if cache is not None else None
        by_values = key is not None and not small
        memo = unpack_memo(cache.get("rows|" + key)) if key and small else None
        if key and small and memo is None:
            memo, widened = _widened(cache, table.name, layout)
        kept_chunks = (unpack_chunks(cache.get("chunks|" + key)) or []) if key else []
        used: dict | None = {} if key and small else None
        for batch in chunks(table.iter_rows(), 2000):
            add_rows(batch, memo, used)
        if key and small and used.keys() != memo.keys():
            packed = pack_memo(used)
            if packed is not None:
                cache.put("rows|" + key, packed)
        if key and small:  # which layout the sheet's rows were kept under last (read, so kept with them)
            pointer = layout.to_json().encode()
            if cache.get("layout|" + table.name) != pointer:
                cache.put("layout|" + table.name, pointer)
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


def _widened(cache, name: str, layout: Layout) -> tuple[dict[bytes, bytes], Widened | None]:
    """A sorted sheet's row templates kept under the layout it had last, where this one only widened some
    of its columns: a row whose texts in those columns took one line is the same bytes now. A file that
    arrives with a longer reason (a form superseded on deadline day) widens a column of 说明, and would
    otherwise have every row rendered and compressed again."""
    before = Layout.from_json(cache.get("layout|" + name))
    columns = layout.widened_from(before) if before is not None and before != layout else None
    if not columns:
        return {}, None
    return unpack_memo(cache.get("rows|" + _sorted_key(name, before))) or {}, Widened(before, columns)


def _sorted_key(name: str, layout: Layout) -> str:
    """What a sorted sheet's row templates and segments are kept under: the sheet, the code that renders
    them (RENDER_VERSION) and the layout. Without the code, rows rendered by an earlier perfxl of the same
    version number (a development install) were used as they were."""
    return f"{name}|{RENDER_VERSION}|{layout.key}"


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
    return segment(f'<row r="{row}" ht="{row_height(1):g}" customHeight="1">{"".join(cells)}</row>'.encode())


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


def _print_setup(ws, table, paper: int, scale: int) -> None:
    """Landscape, narrow margins, page numbers, one page wide: at the scale the plan worked out for its columns
    (SCALE or more), not "fit to one page wide". A fixed scale prints alike in every program, and it keeps the
    page breaks the cover lays out (Excel ignores manual page breaks on a sheet fitted to pages)."""
    ws.set_landscape()
    ws.set_paper(paper)
    ws.set_margins(left=0.4, right=0.4, top=0.6, bottom=BOTTOM_MARGIN)
    ws.set_print_scale(scale)
    ws.set_footer(f"&L{table.name}&R第 &P 页，共 &N 页")


CHART_ROWS = 14  # rows of 15 pt (20 px) the charts take on the cover
# Room below the rows for the footer (第 N 页) at its 0.3 in: with 0.6 in, LibreOffice's PDF export makes the
# footer taller than the page layout counted, and a last page that was nearly full loses its last row (the
# monitoring summary's 说明, the print check's not-printed finding; 0.7 in was enough there).
BOTTOM_MARGIN = 0.75
_PAGE_ROOM = 459.0  # pt of rows a landscape A4 page holds inside its margins, header and footer (LibreOffice: 495)
_CAPTION = 18.0  # pt: a caption's row (12 pt bold)
_FIGURE = 14 / 11 * BOLD  # a key figure (14 pt bold) against body text


def _cover_plan(cover, table) -> tuple[list[float], int]:
    """The cover's columns: each as wide as the widest thing any part of the cover puts in it (the figures,
    the grades, the totals per level, the table per 主管部门 and its totals), and its print scale (A4, one
    page wide)."""
    ncols = max(len(table.columns), len(cover.figures), 8, *(len(t.columns) for t in cover.tables))
    natural, floors = [4.0] * ncols, [4.0] * ncols
    texts = [False] * ncols

    def need(c: int, width: float, floor: float | None = None, text: bool = False) -> None:
        natural[c] = max(natural[c], width)
        floors[c] = max(floors[c], width if floor is None else floor)
        texts[c] = texts[c] or text

    for c, (label, value, kind) in enumerate(cover.figures):  # a label on two lines at most, its value whole
        need(c, max(_header_width(label, 2), text_width(_shown(value or 0, kind)) * _FIGURE + PAD))
    for block in cover.blocks:
        need(0, max(_header_width(block.columns[0][0], 1), _header_width(block.columns[1][0], 1)))
        for c, (label, value) in enumerate(block.rows, start=1):
            need(c, max(_header_width(str(label), 1), text_width(_shown(value, "count")) + PAD))
    for part in [*cover.tables, table]:
        rows = list(part.iter_rows())
        for c, (title, kind) in enumerate(part.columns):
            values = [r[c] for r in rows]
            widest, word = _widest(values, kind, 1e9)
            widest += PAD
            if kind == "text":  # a name wraps, at its column's cap at most
                need(c, max(min(widest, _cap(title)), _header_width(title, 2)),
                     min(widest, max(_TEXT_FLOOR, _header_width(title, 3), word + PAD)), text=True)
            else:
                total = sum(v for v in values if type(v) in (int, float))
                need(c, max(widest, text_width(_shown(total, kind)) * BOLD + PAD, _header_width(title, 2)),
                     max(widest, text_width(_shown(total, kind)) * BOLD + PAD, _header_width(title, 3)))
        need(0, text_width("合计") * BOLD + PAD)
    widths, _ = _fit([round(w, 1) for w in natural], floors, may_a3=False)
    return widths, _scale(widths, A4)


def _write_cover(wb, ws, table, formats: _Formats) -> None:
    """汇总: title, lines, key figures, small blocks and native charts, then the totals per level and the
    table per 主管部门.

    Printed on A4 at a scale of its own (the plan's), with the page breaks laid out here: a table that does
    not fit what is left of a page starts on the next, and one longer than a page goes on with its header
    again at the top of every page (the table per 主管部门 by its print titles, the tables above it by the
    header written again). Long because the cover is laid out top to bottom and every part's row depends on
    the parts above it; read from top to bottom it is the page as printed."""
    cover = table.cover
    header, body, totals = formats.header, formats.body, formats.totals
    widths, scale = _cover_plan(cover, table)
    ncols = len(widths)
    _print_setup(ws, table, A4, scale)
    title = wb.add_format({"bold": True, "font_size": 16, "align": "center", "valign": "vcenter"})
    line = wb.add_format({"font_color": "#404040", "align": "center", "valign": "top", "text_wrap": True})
    figure_label = wb.add_format({"align": "center", "valign": "vcenter", "bg_color": "#F2F2F2", "border": 1,
                                  "text_wrap": True, "font_color": "#404040"})
    figure_value = {k: wb.add_format({"bold": True, "font_size": 14, "align": "center", "border": 1, "num_format": f})
                    for k, f in (("money", "#,##0.00"), ("count", "#,##0"), ("percent", "0.0%"), ("score", "0.00"))}
    caption = wb.add_format({"bold": True, "font_size": 12, "valign": "vcenter"})
    block_cell = wb.add_format({"num_format": "#,##0", "border": 1, "align": "center"})
    for c in range(ncols):
        _check(ws.set_column(c, c, widths[c]), table.name)
    room = _PAGE_ROOM * 100 / scale  # pt of rows a page holds at this scale
    page = {"used": 0.0, "breaks": []}

    def height(r: int, points: float) -> None:
        ws.set_row(r, points)
        page["used"] += points

    def new_page(r: int) -> None:
        page["breaks"].append(r)
        page["used"] = 0.0

    ws.merge_range(0, 0, 0, ncols - 1, cover.title, title)
    height(0, 30)
    whole = sum(widths)
    for i, text in enumerate(cover.lines, start=1):
        ws.merge_range(i, 0, i, ncols - 1, text, line)
        height(i, row_height(wrapped_lines(text, whole)) if wrapped_lines(text, whole) > 1 else 15)
    row = len(cover.lines) + 1
    height(row, 15)
    row += 1
    labels = max((wrapped_lines(label, widths[c]) for c, (label, _, _) in enumerate(cover.figures)), default=1)
    for c, (label, value, kind) in enumerate(cover.figures):
        ws.write_string(row, c, label, figure_label)
        if value is None and kind in ("percent", "score"):  # nothing to rate: a dash, not a 0.0% that says something
            ws.write_string(row + 1, c, "—", figure_value["count"])
        else:
            ws.write_number(row + 1, c, value or 0, figure_value.get(kind, figure_value["count"]))
    height(row, max(30.0, row_height(labels)))
    height(row + 1, 24)
    height(row + 2, 15)
    row += 3
    blocks = {}
    for block in cover.blocks:  # laid out across: label column, then one column per row's values
        ws.write_string(row, 0, block.name, caption)
        ws.write_string(row + 1, 0, block.columns[0][0], header)
        ws.write_string(row + 2, 0, block.columns[1][0], header)
        for c, values in enumerate(block.rows, start=1):
            ws.write(row + 1, c, values[0], header)
            ws.write(row + 2, c, values[1], block_cell)
        blocks[block.name] = (row + 1, row + 2, 1, len(block.rows))
        for r, points in zip(range(row, row + 4), (_CAPTION, 18, 18, 15)):
            height(r, points)
        row += 4
    chart_row = row
    for r in range(row, row + CHART_ROWS):
        height(r, 15)
    row += CHART_ROWS

    def table_rows(part) -> tuple[list[list], list[float], float]:
        rows = list(part.iter_rows())
        texts = [c for c, (_, kind) in enumerate(part.columns) if kind == "text"]
        lines = [max([wrapped_lines(str(r[c]), widths[c]) for c in texts if r[c] not in (None, "")] or [1])
                 for r in rows]
        head = max(wrapped_lines(title_, widths[c], bold=True) for c, (title_, _) in enumerate(part.columns))
        return rows, [row_height(n) if n > 1 else 15.0 for n in lines], max(20.0, row_height(head) + 2)

    def starts_here(needed: float, first: float) -> None:
        """Break before a table that does not fit what is left of the page but fits a page, or whose
        caption, header and first rows do not."""
        if page["used"] + needed > room and (needed <= room or page["used"] + first > room):
            new_page(row)

    for extra in cover.tables:  # above the main table: its header written again on every page it goes on to
        rows, heights, head = table_rows(extra)
        starts_here(_CAPTION + head + sum(heights), _CAPTION + head + sum(heights[:3]))
        height(row, _CAPTION)
        height(row + 1, head)
        at = _write_table_at(ws, row, extra.name, extra.columns, [], False, header, body, totals, caption)
        for i, (values, points) in enumerate(zip(rows, heights)):
            at += 1
            if page["used"] + points > room:
                new_page(at)
                for c, (title_, _) in enumerate(extra.columns):
                    ws.write_string(at, c, title_, header)
                height(at, head)
                at += 1
            _write_row(ws, at, extra.columns, values, i == len(rows) - 1, body, totals, formats.wrap)
            height(at, points)
        row = at + 2
        height(row - 1, 15)
    rows, heights, head_height = table_rows(table)
    data = rows
    total_row = [["合计"] + [round(sum(v[c] or 0 for v in data), 6) if kind in {"money", "count"} else None
                             for c, (_, kind) in enumerate(table.columns[1:], start=1)]] if table.totals and data else []
    starts_here(_CAPTION + head_height + sum(heights) + 15 * len(total_row),
                _CAPTION + head_height + sum(heights[:3]))
    head = row + 1
    last = _write_table_at(ws, row, cover.caption, table.columns, [], False, header, body, totals, caption)
    ws.set_row(row, _CAPTION)
    ws.set_row(head, head_height)
    for i, values in enumerate(data + total_row):
        last += 1
        _write_row(ws, last, table.columns, values, bool(total_row) and i == len(data), body, totals, formats.wrap)
        ws.set_row(last, heights[i] if i < len(heights) else 15)
    if data:
        ws.autofilter(head, 0, head + len(data), len(table.columns) - 1)
    ws.repeat_rows(head)  # the app's own page breaks inside the table: its header on every page it goes on to
    if page["breaks"]:
        ws.set_h_pagebreaks(page["breaks"])
    ws.print_area(0, 0, last, ncols - 1)
    page_px = sum(int(7 * w + 0.5) + 5 for w in widths)  # the printed width in Excel's pixels (as xlsxwriter
    x = 4                                                 # places a chart: over the same columns everywhere)
    shares = {"bar": 0.6, "column": 0.36, "pie": 0.36}
    peak = max((sum(v[c] or 0 for c in (4, 5, 6)) for v in data), default=0)
    for chart_spec in cover.charts:  # side by side under the figures, inside the printed width
        chart = _chart(wb, table.name, chart_spec, blocks, head, len(data), peak)
        if chart is None:
            continue
        chart.set_size({"width": int(page_px * shares[chart_spec.kind]), "height": CHART_ROWS * 20 - 12})
        ws.insert_chart(chart_row, 0, chart, {"x_offset": x, "y_offset": 6})
        x += int(page_px * shares[chart_spec.kind]) + 12


def _write_table_at(ws, row: int, title: str, columns, rows: list[list], totals_last: bool, header, body, totals,
                    caption, wrap=None) -> int:
    """A table written cell by cell at `row`: its caption, header and rows, the last in bold over a rule
    when it is the totals row. Returns the last row written."""
    ws.write_string(row, 0, title, caption)
    for c, (title_, _) in enumerate(columns):
        ws.write_string(row + 1, c, title_, header)
    for r, values in enumerate(rows, start=row + 2):
        _write_row(ws, r, columns, values, totals_last and r == row + 1 + len(rows), body, totals, wrap)
    return row + 1 + len(rows)


def _write_row(ws, r: int, columns, values: list, strong: bool, body, totals, wrap) -> None:
    """One row of a cover table: numbers in their format, text wrapped and top-aligned, the totals row bold."""
    for c, (value, (_, kind)) in enumerate(zip(values, columns)):
        style = (totals if strong else body).get(kind, totals["text"] if strong else wrap)
        if value is None or value == "":
            if strong:
                ws.write_blank(r, c, None, style)
        elif kind != "text" and type(value) in (int, float):
            ws.write_number(r, c, value, style)
        else:
            ws.write_string(r, c, str(value), style)




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

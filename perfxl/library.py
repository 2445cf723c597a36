"""指标库: the indicators past projects used, built from ledgers, edited by the bureau, used again.

`perfxl library build LEDGER … -o 指标库.xlsx` writes, per form family, 一级 / 二级 / 三级 and unit of measure,
the indicators of every project whose declaration 目标审核 graded 优 or 良 (perfxl.history reads the ledgers):
how many projects used it (a project continued over several ledgers counts once, by its newest year), the
typical value (the most common sign with the median, and P10 and P90, of their targets; for words, the most
common word) and examples. The bureau edits that workbook as it likes (marks 固化指标 with 是, deletes rows)
and passes it back with `--library 指标库.xlsx`:
- `generate`: blank forms offer its 三级 names per 二级 as choices (free text still allowed), show an
  indicator's typical value beside its row once chosen, prefill the 固化指标, and carry a 指标参考 sheet;
- `merge`: a declared project without a 固化指标 of its family is a finding (library-required-missing).

The workbook is read by perfxl's own reader (any office suite's re-save, .xls too, under its size and
zip limits); what it cannot use is exit 2 naming the sheet and row.
"""

from __future__ import annotations

import io
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .comparison import History, indicator_key, name_key, percentile_without, value_of
from .errors import OutputError, ReadError
from .files import write_bytes_atomic
from .formparts import rows_needed, wrap_text
from .problems import fmt_number
from .reader.book import load_raw
from .values import clean_text
from .xlsxsafe import SafeWorkbook

SHEET = "指标库"
GUIDE_SHEET = "说明"
GOOD_GRADES = ("优", "良")
EXAMPLES = 3
MAX_ENTRIES = 50_000
YES = ("是", "Y", "y", "yes", "YES", "√", "✓", "1")
# The columns, in order, as the workbook names them; the reader finds them by these titles.
COLUMNS = (("适用表样", 14), ("一级指标", 12), ("二级指标", 16), ("三级指标", 24), ("计量单位", 9), ("使用项目数", 10),
           ("典型值", 14), ("中位数", 10), ("P10", 10), ("P90", 10), ("示例", 46), ("功能科目", 12), ("固化指标", 9))
NEEDED = ("一级指标", "二级指标", "三级指标")
GUIDE_WIDTH = 80  # one A4 portrait page wide, as the forms' 填表说明


@dataclass
class Entry:
    family: str
    level1: str
    level2: str
    level3: str
    unit: str = ""
    projects: int = 0
    typical: str = ""
    median: float | None = None
    p10: float | None = None
    p90: float | None = None
    examples: str = ""
    subject_codes: str = ""
    required: bool = False
    row: int = 0  # its row in the workbook it was read from (from 1), to name it in an error


@dataclass
class Library:
    entries: list[Entry] = field(default_factory=list)
    source: str = ""

    def required_by_family(self) -> dict[str, list[tuple[str, str, str, str]]]:
        """{family: [(一级, 二级, 三级, typical value)]} of the 固化指标: what a merge checks."""
        out: dict[str, list[tuple[str, str, str, str]]] = defaultdict(list)
        for e in self.entries:
            if e.required:
                out[e.family].append((e.level1, e.level2, e.level3, e.typical))
        return dict(out)

    def of_family(self, family: str) -> list[Entry]:
        return [e for e in self.entries if e.family in (family, "")]


# ----------------------------------------------------------------------------------------------------
# Built from the ledgers
# ----------------------------------------------------------------------------------------------------

def build_library(history: History) -> Library:
    """The library of the projects `history` holds whose declaration was graded 优 or 良."""
    newest: dict[tuple, object] = {}
    for p in history.projects:
        if p.review_grade not in GOOD_GRADES:
            continue
        key = (p.unit_code, name_key(p.name))
        if key not in newest or newest[key].year < p.year:
            newest[key] = p
    uses: dict[tuple, list[tuple]] = defaultdict(list)  # (family, level1, indicator key) → [(project, row)]
    spelled: dict[tuple, Counter] = defaultdict(Counter)
    for p in newest.values():
        seen = set()
        for row in p.rows:
            target = row.parsed_target
            key = (p.family, row.level1, indicator_key(row.level2, row.level3, target.unit))
            if key in seen:
                continue
            seen.add(key)
            uses[key].append((p, row, target))
            spelled[key][(row.level2, row.level3, target.unit or "")] += 1
    entries = []
    for key, used in uses.items():
        family, level1, _ = key
        level2, level3, unit = spelled[key].most_common(1)[0][0]
        values = sorted(v for _, _, t in used if (v := value_of(t)) is not None)
        entry = Entry(family, level1, level2, level3, unit, projects=len(used))
        if values:
            entry.median = percentile_without(values, [], 0.5)
            entry.p10 = percentile_without(values, [], 0.1)
            entry.p90 = percentile_without(values, [], 0.9)
            op = Counter(t.op for _, _, t in used if value_of(t) is not None and t.op).most_common(1)
            sign = {"≥": "≥", ">": "＞", "≤": "≤", "<": "＜", "=": "＝"}.get(op[0][0], "") if op else ""
            entry.typical = f"{sign}{fmt_number(round(entry.median, 4))}{unit}"
        else:
            words = Counter(t.text for _, _, t in used if t.text)
            entry.typical = words.most_common(1)[0][0] if words else ""
        examples = sorted(used, key=lambda u: (-u[0].year, u[0].unit_code))[:EXAMPLES]
        entry.examples = "；".join(f"{p.unit_name}·{p.name}：{row.target}" for p, row, _ in examples)
        subjects = Counter(p.subject_code for p, _, _ in used if p.subject_code)
        entry.subject_codes = "、".join(code for code, _ in subjects.most_common(3))
        entries.append(entry)
    entries.sort(key=lambda e: (e.family, e.level1, e.level2, -e.projects, e.level3))
    return Library(entries, "、".join(history.sources))


def library_bytes(library: Library, graded: int) -> bytes:
    """The library as the workbook a bureau edits: 指标库 (one row per indicator, 固化指标 a 是/否 choice)
    and 说明."""
    buffer = io.BytesIO()
    wb = SafeWorkbook(buffer, {"in_memory": True, "strings_to_numbers": False, "strings_to_formulas": False,
                               "strings_to_urls": False})
    font = {"font_name": "宋体", "font_size": 10}
    title = wb.add_format({**font, "bold": True, "font_size": 14})
    note = wb.add_format({**font, "text_wrap": True, "valign": "top"})
    head = wb.add_format({**font, "bold": True, "bg_color": "#D9E1F2", "border": 1, "text_wrap": True,
                          "align": "center", "valign": "vcenter"})
    text = wb.add_format({**font, "border": 1, "text_wrap": True, "valign": "top"})
    number = wb.add_format({**font, "border": 1, "valign": "top", "num_format": "#,##0.##"})
    widths = [w for _, w in COLUMNS]
    ws = wb.add_worksheet(SHEET)
    ws.write_string(0, 0, "预算绩效指标库", title)
    ws.merge_range(1, 0, 1, len(COLUMNS) - 1,
                   f"由 {library.source or '报送台账'} 中目标审核为优、良的 {graded} 个项目的指标生成。可删除不合适的行；"
                   "在「固化指标」列填“是”的指标，将预填在该表样的每份申报表中，缺少时列为审核发现。", note)
    ws.set_row(1, rows_needed(len(wrap_text(f"由 {library.source or '报送台账'} 中目标审核为优、良的 {graded} 个项目"
                                            "的指标生成。可删除不合适的行；在「固化指标」列填“是”的指标，将预填在该表样的"
                                            "每份申报表中，缺少时列为审核发现。", [sum(widths)], 10, False)), 10))
    for c, (name, width) in enumerate(COLUMNS):
        ws.set_column(c, c, width)
        ws.write_string(2, c, name, head)
    ws.set_row(2, rows_needed(max(len(wrap_text(name, [w], 10, True)) for name, w in COLUMNS), 10))
    for r, e in enumerate(library.entries, start=3):
        cells = (e.family, e.level1, e.level2, e.level3, e.unit, e.projects, e.typical, e.median, e.p10, e.p90,
                 e.examples, e.subject_codes, "是" if e.required else "")
        lines = max(len(wrap_text(v, [w], 10, False)) for v, w in zip(cells, widths) if isinstance(v, str))
        ws.set_row(r, rows_needed(lines, 10))
        for c, value in enumerate(cells):
            if isinstance(value, int | float):
                ws.write_number(r, c, value, number)
            elif value is None:
                ws.write_blank(r, c, None, number)
            else:
                ws.write_string(r, c, value, text)
    last = max(3, 2 + len(library.entries))
    ws.data_validation(3, len(COLUMNS) - 1, max(last, 1000), len(COLUMNS) - 1,
                       {"validate": "list", "source": ["是", "否"], "error_type": "information"})
    ws.freeze_panes(3, 4)
    ws.autofilter(2, 0, last, len(COLUMNS) - 1)
    ws.repeat_rows(2)
    ws.set_landscape()
    ws.set_paper(9)
    ws.fit_to_pages(1, 0)
    ws.set_margins(left=0.4, right=0.4, top=0.8, bottom=0.75)
    ws.set_header("&C&\"宋体,Bold\"预算绩效指标库")
    ws.set_footer("&C第 &P 页，共 &N 页")
    guide = wb.add_worksheet(GUIDE_SHEET)
    heading = wb.add_format({**font, "bold": True, "font_size": 16, "align": "center", "valign": "vcenter"})
    plain = wb.add_format({**font, "text_wrap": True, "valign": "vcenter"})
    guide.set_column(0, 0, GUIDE_WIDTH)
    lines = (
        "指标库的用法",
        "1. 本表由 perfxl library build 从往年报送台账生成：只收审核等级为优、良的项目；同一项目多年出现时按最近一年计一次。",
        "2. 使用项目数：使用该指标（一级、二级、三级指标及计量单位相同）的项目数。",
        "3. 典型值：最常见的符号加各项目指标值的中位数；P10、P90 为 10%、90% 分位数。定性指标为最常见的写法。",
        "4. 财政局可删除不合适的行，或在「固化指标」列填“是”：该指标将预填在每份申报表中，申报时缺少则列为审核发现。",
        "5. 生成申报表和汇总时用 --library 指标库.xlsx 指定本表。")
    for r, line in enumerate(lines):
        guide.write_string(r, 0, line, heading if r == 0 else plain)
        guide.set_row(r, 30 if r == 0 else max(22, rows_needed(len(wrap_text(line, [GUIDE_WIDTH], 10, False)), 10)))
    guide.set_paper(9)
    guide.set_portrait()
    guide.fit_to_pages(1, 0)
    guide.print_area(0, 0, len(lines) - 1, 0)
    guide.set_margins(left=0.6, right=0.6, top=0.8, bottom=0.8)
    guide.set_footer("&C第 &P 页，共 &N 页")
    ws.activate()
    wb.close()
    return buffer.getvalue()


def write_library(library: Library, graded: int, output: Path) -> Path:
    write_bytes_atomic(Path(output), library_bytes(library, graded))
    return Path(output)


# ----------------------------------------------------------------------------------------------------
# Read back, as the bureau edited it
# ----------------------------------------------------------------------------------------------------

def load_library(path: Path) -> Library:
    """The library workbook `path`, as edited. OutputError (exit 2, in Chinese) for a file that is not
    there, cannot be read, or has no 指标库 columns."""
    path = Path(path)
    if not path.is_file():
        raise OutputError(f"找不到指标库 (no such indicator library): {path}")
    try:
        book, _, _ = load_raw(path)
    except ReadError as exc:
        raise OutputError(f"指标库 {path} 无法读取：{exc.problem.text('zh')}") from None
    sheet = SHEET if SHEET in book.cells else (book.sheet_names[0] if book.sheet_names else None)
    cells = book.cells.get(sheet or "", {})
    by_row: dict[int, dict[int, object]] = defaultdict(dict)
    for (r, c), (value, _) in cells.items():
        by_row[r][c] = value
    header_row, columns = None, {}
    for r in sorted(by_row)[:20]:
        titles = {clean_text(v): c for c, v in by_row[r].items() if v not in (None, "")}
        if all(t in titles for t in NEEDED):
            header_row, columns = r, titles
            break
    if header_row is None:
        raise OutputError(f"指标库 {path} 的「{sheet}」工作表中找不到表头（需要 {'、'.join(NEEDED)} 列）")
    entries = []
    for r in sorted(x for x in by_row if x > header_row):
        row = by_row[r]

        def get(title: str, row=row) -> str:
            c = columns.get(title)
            return clean_text(row.get(c)) if c is not None else ""

        level3 = get("三级指标")
        if not level3:
            continue
        if not get("一级指标") or not get("二级指标"):
            raise OutputError(f"指标库 {path}「{sheet}」第 {r + 1} 行：三级指标“{level3}”缺少一级或二级指标")
        entries.append(Entry(get("适用表样"), get("一级指标"), get("二级指标"), level3, get("计量单位"),
                             _int(row.get(columns.get("使用项目数", -1))), get("典型值"),
                             _float(row.get(columns.get("中位数", -1))), _float(row.get(columns.get("P10", -1))),
                             _float(row.get(columns.get("P90", -1))), examples=get("示例"),
                             subject_codes=get("功能科目"), required=get("固化指标") in YES, row=r + 1))
        if len(entries) > MAX_ENTRIES:
            raise OutputError(f"指标库 {path} 超过 {MAX_ENTRIES} 行，不像一份指标库")
    return Library(entries, str(path))


def _float(value) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(value) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0


def typical_of(entry: Entry) -> str:
    """What a form says of an indicator's typical value: 典型值 ≥95%（P10–P90：90%–98%）."""
    if entry.p10 is not None and entry.p90 is not None and entry.p10 != entry.p90:
        unit = entry.unit or ""
        return f"{entry.typical}（常见 {fmt_number(entry.p10)}{unit}～{fmt_number(entry.p90)}{unit}）"
    return entry.typical


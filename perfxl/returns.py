"""The return package of a review round (绩效目标审核): for every unit with a project graded 中 or 差, or
with errors, the annotated copy of each such form and one 退回通知 saying, in plain Chinese, what to fix
and by when. Report stage: it writes new files only, never an input.

A unit gets one notice whatever number of files it handed in: the notice lists each file with the name of
its annotated copy, then every project's grade and every error with the copy it is marked in. One letter per
unit is what a bureau sends back, and a unit never mistakes a second notice for a replacement of the first.
Every name is unique within the run and never an input's (files.unique_name): two forms of one name from
two folders, or two units of one name, get numbered names; a long unit name is cut, the suffix never.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from .errors import OutputError
from .files import atomic_output, ensure_writable_dir, unique_name
from .formparts import rows_needed, wrap_text
from .report import Annotated, annotate

SENT_BACK = {"中", "差"}
NOTICE_SUFFIX = "_退回通知.xlsx"
NOT_ANNOTATED = "（原表无法标注，请按下列位置修改）"
REBUILT = "由贵单位报送的 .xls 重建，只含各单元格的值；请对照它在原表中修改"
NOTICE_FONT, NOTICE_SIZE = "宋体", 11
NOTICE_WIDTHS = (30, 13, 51, 42)  # 136 characters: across A4 landscape inside its margins, at 100 %


class ReturnPackage(list):
    """The files written (what MergeResult.returns holds), with what each is: one notice per unit sent
    back, and the annotated copies. Counts come from here, never from the files' names."""

    def __init__(self):
        super().__init__()
        self.notices: list[Path] = []
        self.annotated: list[Path] = []


@dataclass
class _Returned:
    """One form of a unit sent back: the merge's record of it, the checked form, its annotated copy."""

    seen: object
    checked: object
    annotated: Annotated | None
    projects: list = field(default_factory=list)  # its lines of 目标审核

    @property
    def copy_name(self) -> str:
        return self.annotated.path.name if self.annotated else NOT_ANNOTATED

    @property
    def file_name(self) -> str:
        """The file as the unit knows it: its name, not where the bureau keeps it."""
        return Path(self.checked.path).name

    @property
    def remark(self) -> str:
        if self.annotated is None:
            return "原表无法标注：请按下面“需要修改的内容”所列位置修改"
        return REBUILT if self.annotated.rebuilt else ""


def write_returns(result, load, outdir: Path, return_by: str | None, avoid: set[str]) -> ReturnPackage:
    """Annotated copies and one notice per unit into `outdir`; returns the files written."""
    review = next((t for t in result.tables if t.name == "目标审核"), None)
    lines = review.records if review is not None and review.records else []
    by_file = defaultdict(list)
    for line in lines:
        by_file[line.file].append(line)
    deadline = return_by or (date.today() + timedelta(days=7)).isoformat()
    outdir = ensure_writable_dir(Path(outdir))
    package = ReturnPackage()
    taken: set[str] = set()  # the names this run wrote, without case
    units: dict[tuple, list[_Returned]] = {}
    for s in result.files:
        if s.outcome != "merged":
            continue
        projects = by_file.get(s.path, [])
        if not s.errors and not any(p.grade in SENT_BACK for p in projects):
            continue
        checked = load(s)
        annotated = annotate(checked, outdir, avoid=avoid, taken=taken)
        if annotated is not None:
            package.append(annotated.path)
            package.annotated.append(annotated.path)
        units.setdefault(_unit_key(s, checked, projects), []).append(_Returned(s, checked, annotated, projects))
    for forms in units.values():
        notice = _notice(forms, outdir, deadline, taken, avoid)
        package.append(notice)
        package.notices.append(notice)
    return package


def _unit_of(s, checked, projects) -> tuple[str, str]:
    """The unit's code and name as the summary has them (the roster's, through 目标审核), else the form's."""
    if projects:
        return projects[0].unit_code or "", projects[0].unit_name or ""
    return checked.unit_code or s.unit_code or "", checked.unit_name or s.unit_name or ""


def _unit_key(s, checked, projects) -> tuple:
    """A unit is its code; without one, its name; without either, the file stands alone."""
    code, name = _unit_of(s, checked, projects)
    return ("code", code) if code else ("name", name) if name else ("file", s.path)


def _notice(forms: list[_Returned], outdir: Path, deadline: str, taken: set[str], avoid) -> Path:
    """One letter for one unit: who, by when, each file (by its name) and its annotated copy, every project's
    grade and why, every error with its cell and the copy it is marked in. Printed on A4 landscape, one page
    wide at 100 %, every text wrapped in a row tall enough for it, with 第 N 页."""
    first = forms[0]
    code, name = _unit_of(first.seen, first.checked, first.projects)
    unit = name or code or Path(first.checked.path).stem
    stem = f"{code}_{unit}" if code and name else unit
    target = unique_name(outdir, stem, NOTICE_SUFFIX, taken, avoid)
    try:
        with atomic_output(target) as tmp:
            _write_notice(tmp, forms, unit, deadline)
    except OSError as exc:
        raise OutputError(f"无法写入退回通知 (cannot write) {target}: {exc.strerror or exc}") from None
    return target


def _write_notice(path: Path, forms: list[_Returned], unit: str, deadline: str) -> None:
    from .xlsxsafe import SafeWorkbook

    wb = SafeWorkbook(str(path), {"strings_to_formulas": False, "strings_to_urls": False,
                                  "strings_to_numbers": False})
    ws = wb.add_worksheet("退回通知")
    base = {"font_name": NOTICE_FONT, "font_size": NOTICE_SIZE, "text_wrap": True, "valign": "top"}
    title = wb.add_format({**base, "bold": True, "font_size": 16, "align": "center", "valign": "vcenter"})
    bold = wb.add_format({**base, "bold": True})
    plain = wb.add_format(base)
    head = wb.add_format({**base, "bold": True, "bg_color": "#DDEBF7", "border": 1})
    cell = wb.add_format({**base, "border": 1})
    for col, width in enumerate(NOTICE_WIDTHS):
        ws.set_column(col, col, width)
    last = len(NOTICE_WIDTHS) - 1

    def line(row: int, texts: list[str], style, first_style=None) -> None:
        """One row, as tall as its texts need: four cells, or a label and a text across the rest of the page."""
        lines = 1
        for col, text in enumerate(texts):
            bold_text = style is head or (col == 0 and first_style is bold)
            if len(texts) == 2 and col == 1:
                ws.merge_range(row, col, row, last, text, style)
                widths = NOTICE_WIDTHS[col:]
            else:
                ws.write_string(row, col, text, first_style if col == 0 and first_style else style)
                widths = NOTICE_WIDTHS[col:col + 1]
            lines = max(lines, len(wrap_text(text, widths, NOTICE_SIZE, bold_text)))
        ws.set_row(row, max(rows_needed(lines, NOTICE_SIZE), 18))

    ws.merge_range(0, 0, 0, last, "预算绩效目标退回修改通知", title)
    ws.set_row(0, 30)
    copies = forms[0].copy_name if len(forms) == 1 else f"共 {len(forms)} 份，见下表"
    for row, (label, text) in enumerate((("单位", unit), ("请于此日期前重新报送", deadline), ("标注问题的原表", copies)),
                                        start=2):
        line(row, [label, text], plain, first_style=bold)
    row = 6
    line(row, ["报送的文件", "错误 / 提醒", "说明", "标注问题的原表"], head)
    for f in forms:
        row += 1
        line(row, [f.file_name, f"{f.checked.errors} / {f.checked.warnings}", f.remark, f.copy_name], cell)
    row += 2
    line(row, ["项目", "审核等级", "审核结论与扣分原因", "标注问题的原表"], head)
    for f in forms:
        for p in f.projects:
            row += 1
            # Each dimension a sentence of what is wrong and what it cost (目标审核's findings), so that the
            # 「；」 inside one is not read as the start of the next:
            # 退回修改后复审。完整性：必填项未填写（1 处，−5）。可行性：有 1 个错误（−5）。
            reasons = "".join(f"{k}：{v}。" for k, v in p.findings.items() if v)
            line(row, [p.project, f"{p.grade}（{p.total:g} 分）", f"{p.consequence}。{reasons}", f.copy_name], cell)
    row += 2
    line(row, ["位置", "严重程度", "需要修改的内容", "标注问题的原表"], head)
    for f in forms:
        for q in f.checked.problems:
            if q.severity != "error":
                continue
            row += 1
            line(row, [f"{q.sheet}!{q.cell}" if q.cell else q.sheet, "错误", q.message, f.copy_name], cell)
    ws.print_area(0, 0, row, last)
    ws.set_paper(9)
    ws.set_landscape()
    ws.fit_to_pages(1, 0)  # one page wide (at 100 % already); a unit with many files may need more pages down
    ws.set_margins(left=0.5, right=0.5, top=0.6, bottom=0.7)
    ws.center_horizontally()
    ws.set_footer("&C第 &P 页，共 &N 页")
    wb.close()

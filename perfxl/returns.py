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
from .files import atomic_output, display_path, ensure_writable_dir, unique_name
from .report import annotate_workbook

SENT_BACK = {"中", "差"}
NOTICE_SUFFIX = "_退回通知.xlsx"
NOT_ANNOTATED = "（原表无法标注，请按下列位置修改）"


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
    annotated: Path | None
    projects: list = field(default_factory=list)  # its lines of 目标审核

    @property
    def copy_name(self) -> str:
        return self.annotated.name if self.annotated else NOT_ANNOTATED


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
        annotated = annotate_workbook(checked, outdir, avoid=avoid, taken=taken)
        if annotated is not None:
            package.append(annotated)
            package.annotated.append(annotated)
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
    """One page for one unit: who, by when, each file and its annotated copy, every project's grade and
    why, every error with its cell and the copy it is marked in."""
    import xlsxwriter

    first = forms[0]
    code, name = _unit_of(first.seen, first.checked, first.projects)
    unit = name or code or Path(first.checked.path).stem
    stem = f"{code}_{unit}" if code and name else unit
    target = unique_name(outdir, stem, NOTICE_SUFFIX, taken, avoid)
    try:
        with atomic_output(target) as tmp:
            wb = xlsxwriter.Workbook(str(tmp), {"strings_to_formulas": False, "strings_to_urls": False})
            ws = wb.add_worksheet("退回通知")
            title = wb.add_format({"bold": True, "font_size": 16, "align": "center"})
            bold = wb.add_format({"bold": True})
            wrap = wb.add_format({"text_wrap": True, "valign": "top"})
            head = wb.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1, "text_wrap": True})
            for col, width in enumerate((24, 14, 70, 36)):
                ws.set_column(col, col, width)
            ws.merge_range(0, 0, 0, 3, "预算绩效目标退回修改通知", title)
            ws.write_string(2, 0, "单位", bold)
            ws.write_string(2, 1, unit)
            ws.write_string(3, 0, "请于此日期前重新报送", bold)
            ws.write_string(3, 1, deadline)
            ws.write_string(4, 0, "标注问题的原表", bold)
            ws.write_string(4, 1, first.copy_name if len(forms) == 1 else f"共 {len(forms)} 份，见下表")
            row = 6
            ws.write_row(row, 0, ["报送的文件", "错误 / 提醒", "", "标注问题的原表"], head)
            for f in forms:
                row += 1
                ws.write_string(row, 0, display_path(f.checked.path), wrap)
                ws.write_string(row, 1, f"{f.checked.errors} / {f.checked.warnings}", wrap)
                ws.write_string(row, 3, f.copy_name, wrap)
            row += 2
            ws.write_row(row, 0, ["项目", "审核等级", "审核结论与扣分原因", "标注问题的原表"], head)
            for f in forms:
                for p in f.projects:
                    row += 1
                    # Each dimension a sentence of what is wrong and what it cost (目标审核's findings):
                    # 退回修改后复审。完整性：必填项未填写（1 处，−5）。可行性：有 1 个错误（−5）。
                    reasons = "".join(f"{k}：{v}。" for k, v in p.findings.items() if v)
                    ws.write_string(row, 0, p.project, wrap)
                    ws.write_string(row, 1, f"{p.grade}（{p.total:g} 分）", wrap)
                    ws.write_string(row, 2, f"{p.consequence}。{reasons}", wrap)
                    ws.write_string(row, 3, f.copy_name, wrap)
            row += 2
            ws.write_row(row, 0, ["位置", "严重程度", "需要修改的内容", "标注问题的原表"], head)
            for f in forms:
                for q in f.checked.problems:
                    if q.severity != "error":
                        continue
                    row += 1
                    ws.write_string(row, 0, f"{q.sheet}!{q.cell}" if q.cell else q.sheet, wrap)
                    ws.write_string(row, 1, "错误", wrap)
                    ws.write_string(row, 2, q.message, wrap)
                    ws.write_string(row, 3, f.copy_name, wrap)
            ws.set_landscape()
            ws.set_paper(9)
            ws.fit_to_pages(1, 0)  # one page wide; a unit with many files may need more than one page down
            wb.close()
    except OSError as exc:
        raise OutputError(f"无法写入退回通知 (cannot write) {target}: {exc.strerror or exc}") from None
    return target

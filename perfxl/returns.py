"""The return package of a review round (绩效目标审核): for every unit with a project graded 中 or 差, or
with errors, the annotated copy of its form and a one-page 退回通知 saying, in plain Chinese, what to fix
and by when. Report stage: it writes new files only, never an input."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

from .errors import OutputError
from .files import atomic_output, ensure_writable_dir, safe_filename
from .report import annotate_workbook

SENT_BACK = {"中", "差"}


def write_returns(result, load, outdir: Path, return_by: str | None, avoid: set[str]) -> list[Path]:
    """Annotated copies and notices into `outdir`; returns the files written."""
    review = next((t for t in result.tables if t.name == "目标审核"), None)
    lines = review.records if review is not None and review.records else []
    by_file = defaultdict(list)
    for line in lines:
        by_file[line.file].append(line)
    deadline = return_by or (date.today() + timedelta(days=7)).isoformat()
    outdir = ensure_writable_dir(Path(outdir))
    written = []
    for s in result.files:
        if s.outcome != "merged":
            continue
        projects = by_file.get(s.path, [])
        if not s.errors and not any(p.grade in SENT_BACK for p in projects):
            continue
        checked = load(s)
        annotated = annotate_workbook(checked, outdir, avoid=avoid)
        if annotated is not None:
            written.append(annotated)
        written.append(_notice(checked, projects, outdir, deadline, annotated))
    return written


def _notice(checked, projects, outdir: Path, deadline: str, annotated: Path | None) -> Path:
    """One page: who, what grade and why, every error with its cell, the deadline."""
    import xlsxwriter

    unit = checked.unit_name or checked.unit_code or Path(checked.path).stem
    target = outdir / (safe_filename(f"{checked.unit_code or ''}_{unit}_退回通知".strip("_")) + ".xlsx")
    try:
        with atomic_output(target) as tmp:
            wb = xlsxwriter.Workbook(str(tmp), {"strings_to_formulas": False, "strings_to_urls": False})
            ws = wb.add_worksheet("退回通知")
            title = wb.add_format({"bold": True, "font_size": 16, "align": "center"})
            bold = wb.add_format({"bold": True})
            wrap = wb.add_format({"text_wrap": True, "valign": "top"})
            head = wb.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1, "text_wrap": True})
            ws.set_column(0, 0, 22)
            ws.set_column(1, 1, 12)
            ws.set_column(2, 2, 70)
            ws.merge_range(0, 0, 0, 2, "预算绩效目标退回修改通知", title)
            ws.write_string(2, 0, "单位", bold)
            ws.write_string(2, 1, unit)
            ws.write_string(3, 0, "请于此日期前重新报送", bold)
            ws.write_string(3, 1, deadline)
            ws.write_string(4, 0, "标注问题的原表", bold)
            ws.write_string(4, 1, annotated.name if annotated else "（原表无法标注，请按下列位置修改）")
            row = 6
            ws.write_row(row, 0, ["项目", "审核等级", "审核结论与扣分原因"], head)
            for p in projects:
                row += 1
                reasons = "；".join(f"{k}：{v}" for k, v in p.findings.items() if v) or "—"
                ws.write_string(row, 0, p.project, wrap)
                ws.write_string(row, 1, f"{p.grade}（{p.total:g} 分）", wrap)
                ws.write_string(row, 2, f"{p.consequence}。{reasons}", wrap)
            row += 2
            ws.write_row(row, 0, ["位置", "严重程度", "需要修改的内容"], head)
            for q in checked.problems:
                if q.severity != "error":
                    continue
                row += 1
                ws.write_string(row, 0, f"{q.sheet}!{q.cell}" if q.cell else q.sheet, wrap)
                ws.write_string(row, 1, "错误", wrap)
                ws.write_string(row, 2, q.message, wrap)
            ws.set_landscape()
            ws.set_paper(9)
            ws.fit_to_pages(1, 1)
            wb.close()
    except OSError as exc:
        raise OutputError(f"无法写入退回通知 (cannot write) {target}: {exc.strerror or exc}") from None
    return target

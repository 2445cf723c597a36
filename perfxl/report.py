"""Report stage: what people receive — annotated copies of returned forms, the summary workbook, CSV.

Writes only new files (atomically); never touches an input.
"""

from __future__ import annotations

from pathlib import Path

from .errors import OutputError
from .files import atomic_output, safe_filename
from .validate import CheckedForm

ANNOTATION_SHEET = "校验结果"
_SEVERITY_ZH = {"error": "错误", "warning": "提醒"}


def annotate_workbook(checked: CheckedForm, outdir: Path) -> Path | None:
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
    ws.append(["严重程度", "工作表", "单元格", "规则", "说明"])
    for p in checked.problems:
        ws.append([_SEVERITY_ZH[p.severity], p.sheet, p.cell, p.code, p.message])
        if p.sheet in wb.sheetnames and p.cell:
            link = ws.cell(row=ws.max_row, column=3)
            link.hyperlink = f"#'{p.sheet}'!{p.cell}"
            link.font = Font(color="0563C1", underline="single")
    for letter, width in zip("ABCDE", (10, 14, 10, 28, 90)):
        ws.column_dimensions[letter].width = width
    for row in ws.iter_rows(min_row=3):
        row[4].alignment = Alignment(wrap_text=True, vertical="top")
    ws["A1"].font = Font(bold=True, size=12)
    wb.active = 0
    target = Path(outdir) / (safe_filename(source.stem + "_校验") + ".xlsx")
    try:
        with atomic_output(target) as tmp:
            wb.save(tmp)
    except OSError as exc:
        raise OutputError(f"无法写入 (cannot write) {target}: {exc.strerror or exc}") from None
    return target

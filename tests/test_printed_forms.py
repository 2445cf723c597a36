"""What a clerk prints of a blank form: every label whole in rows tall enough for its lines, a caption broken
where a reader expects ("项目资金" / "（万元）", never a lone "）"), and the 填表说明 sheet on A4 portrait with
each item wrapped whole and a page number. Measured as Excel lays text out (perfxl.formparts), with the
line height LibreOffice's CJK font needs (12.4 pt at 10 pt), the more demanding of the two."""

from __future__ import annotations

import openpyxl
import pytest

from perfxl.formparts import column_pixels, text_px, wrap_text
from perfxl.generator import GUIDE_SHEET, build_workbook, generate_forms
from perfxl.roster import Unit
from perfxl.spec import list_templates, load_spec

UNIT = {"code": "101001", "name": "某某市财政局绩效评价与管理中心附属单位", "department": "市财政局"}
LINE_PT = 12.4  # LibreOffice's optimal height for one more line of 10 pt Chinese (measured: 2 lines, 26.8 pt)
A4_PORTRAIT_INCHES = 8.27


def _form(tmp_path, template: str, unit: dict = UNIT):
    spec = load_spec(template, 2025, unit=unit)
    path = tmp_path / (template.replace("/", "_") + ".xlsx")
    path.write_bytes(build_workbook(spec, unit, projects=2 if spec.multi_project else 1))
    return spec, openpyxl.load_workbook(path)


def _widths(ws, first_col: int, last_col: int) -> list[float]:
    """Column widths as the file gives them (one <col> may cover several columns), Excel's 8.43 else."""
    given = {c: dim.width for dim in ws.column_dimensions.values() if dim.min and dim.width
             for c in range(dim.min, dim.max + 1)}
    return [given.get(c, 8.43) for c in range(first_col, last_col + 1)]


def _height(ws, first_row: int, last_row: int) -> float:
    return sum(ws.row_dimensions[r].height or 15 for r in range(first_row, last_row + 1))


def _text_cells(ws):
    """Every cell showing text, with the rows and columns it covers (a merged range's, else its own)."""
    spans = {(m.min_row, m.min_col): (m.min_row, m.min_col, m.max_row, m.max_col) for m in ws.merged_cells.ranges}
    for row in ws.iter_rows():
        for cell in row:
            if isinstance(cell.value, str) and cell.value and not cell.value.startswith("="):
                yield cell, spans.get((cell.row, cell.column), (cell.row, cell.column, cell.row, cell.column))


@pytest.mark.parametrize("template", list_templates())
def test_every_wrapped_text_of_a_blank_form_has_rows_for_all_its_lines(tmp_path, template):
    """填报单位（盖章）： wrapped onto two lines in a 20 pt row printed half cut; so did 预算执行率分值, 同名项目上年
    预算额（元）, 人员编制情况 and a long unit name in 实施单位."""
    spec, wb = _form(tmp_path, template)
    short = []
    for ws in wb.worksheets:
        if ws.sheet_state != "visible":
            continue
        for cell, (r0, c0, r1, c1) in _text_cells(ws):
            if not cell.alignment.wrap_text:
                continue
            size, bold = cell.font.sz or 11, bool(cell.font.b)
            lines = len(wrap_text(cell.value, _widths(ws, c0, c1), size, bold))
            if _height(ws, r0, r1) < lines * LINE_PT * size / 10:
                short.append((ws.title, cell.coordinate, cell.value, lines, _height(ws, r0, r1)))
    assert not short, short


@pytest.mark.parametrize("template", ["national/project", "national/project-2021"])
def test_the_unit_label_of_the_national_forms_prints_on_one_line(tmp_path, template):
    spec, wb = _form(tmp_path, template)
    ws = wb[spec.sheet_name]
    cell, (r0, c0, r1, c1) = next((c, span) for c, span in _text_cells(ws) if c.value == "填报单位（盖章）：")
    assert text_px(cell.value) <= column_pixels(_widths(ws, c0, c1)) - 6


@pytest.mark.parametrize("template", ["yancheng/project", "national/selfeval", "national/project"])
def test_a_caption_over_several_rows_breaks_before_its_bracket_not_inside_it(tmp_path, template):
    """"项目资金（万元）" in a narrow column printed as 项目资金（万元 / ）on the 盐城 and self-evaluation forms."""
    spec, wb = _form(tmp_path, template)
    ws = wb[spec.sheet_title(1)]
    cell, (r0, c0, r1, c1) = next((c, span) for c, span in _text_cells(ws) if c.value.startswith("项目资金"))
    assert r1 > r0
    assert cell.value == "项目资金\n（万元）"
    assert all(text_px(line) <= column_pixels(_widths(ws, c0, c1)) - 6 for line in cell.value.split("\n"))


def test_a_unit_with_a_long_name_gets_taller_rows_than_the_batch_master(tmp_path):
    """A batch renders one master with placeholders; a unit whose name takes two lines where another's takes
    one gets its own rows, sized for its name."""
    units = [Unit("001", "短名单位", "某部门"), Unit("002", "某某省某某市某某区人民政府某某街道办事处某某社区服务中心", "某部门")]
    generate_forms("national/project", 2025, units, tmp_path)
    heights = {}
    for path in tmp_path.glob("*.xlsx"):
        if path.name.startswith(("001_", "002_")):
            ws = openpyxl.load_workbook(path)["项目绩效目标"]
            cell = next(c for c, _ in _text_cells(ws) if c.value == "实施单位")
            heights[path.name[:3]] = _height(ws, cell.row, cell.row)
    assert heights["002"] > heights["001"]


@pytest.mark.parametrize("template", list_templates())
def test_the_guide_sheet_prints_on_a4_portrait_with_every_item_whole_and_a_page_number(tmp_path, template):
    """填表说明 had no page setup: a 100-wide column ran off an A4 page, item 5 wrapped into a 22 pt row and
    was cut, and the page had no number."""
    spec, wb = _form(tmp_path, template)
    ws = wb[GUIDE_SHEET]
    setup = ws.page_setup
    assert (setup.paperSize, setup.orientation) == (9, "portrait")
    assert ws.sheet_properties.pageSetUpPr.fitToPage and setup.fitToWidth in (1, None) and setup.fitToHeight == 0
    assert "&P" in ws.oddFooter.center.text
    printable = (A4_PORTRAIT_INCHES - ws.page_margins.left - ws.page_margins.right) * 96
    assert column_pixels(_widths(ws, 1, 1)) <= printable
    items = [c for c, _ in _text_cells(ws)]
    assert len(items) >= 8 if spec.multi_project else 7
    for cell in items:
        assert cell.alignment.wrap_text
        lines = len(wrap_text(cell.value, _widths(ws, 1, 1), cell.font.sz, bool(cell.font.b)))
        assert _height(ws, cell.row, cell.row) >= lines * LINE_PT * cell.font.sz / 10, cell.value

"""What goes back to a unit, as it prints and reads: the annotated copy (its 校验结果 and 填表说明 on A4 with
page numbers, the unit's own long texts whole), an annotated copy for an .xls too (rebuilt from the values
perfxl read, every problem marked where the unit's file has it), and the 退回通知 naming each file as the
unit knows it, one A4 page wide, wrapped, numbered."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from perfxl import generator as generate
from perfxl.cli import cli
from perfxl.formparts import column_pixels, wrap_text
from perfxl.read import read_workbook
from perfxl.report import annotate, annotate_workbook
from perfxl.sheetprint import column_widths
from perfxl.spec import load_spec
from perfxl.validator import check_form

from .conftest import write_roster

UNIT = ("610001", "甲单位")
LONG_PERIOD = "2022年1月1日至2024年12月31日，分三期实施，每期结束后组织验收并报送阶段性绩效自评报告"
LINE_PT = 12.4  # LibreOffice's height of one more line of 10 pt Chinese
LANDSCAPE_PX = (11.69 - 1.0) * 96  # across A4 landscape inside half-inch margins, at 100 %


def _form(path: Path, period: str = "2022年", preparer: str = "") -> Path:
    """A filled national/project form; 填报人 (B45) left empty is its one error."""
    code, name = UNIT
    unit = {"code": code, "name": name, "department": "测试部门"}
    spec = load_spec("national/project", 2022, unit=unit)
    values = {"fields": {"unit_name": name, "project_name": "培训项目", "department": "测试部门", "implementing_unit": name,
                         "project_attr": "新增项目", "project_period": period, "long_term_goal": "长期目标",
                         "annual_goal": "年度目标", "preparer": preparer, "phone": "88150231", "fill_date": "2022-03-01",
                         "funds_total_annual": 100, "funds_fiscal_annual": 100, "funds_total_mid": 100,
                         "funds_fiscal_mid": 100},
              "tables": {"indicators": [["产出指标", "数量指标", "培训人次", "≥100人次"],
                                        ["效益指标", "社会效益指标", "政策知晓率", "≥90%"],
                                        ["满意度指标", "服务对象满意度指标", "满意度", "≥95%"]]}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(generate.build_workbook(spec, unit, values=[values]))
    return path


def _checked(path: Path):
    return check_form(read_workbook(path))


def _short_rows(ws) -> list:
    """Wrapped texts whose rows are lower than their lines need."""
    widths = column_widths(ws)
    spans = {(m.min_row, m.min_col): (m.max_row, m.max_col) for m in ws.merged_cells.ranges}
    short = []
    for row in ws.iter_rows():
        for cell in row:
            if not isinstance(cell.value, str) or not cell.value or not cell.alignment.wrap_text:
                continue
            last_row, last_col = spans.get((cell.row, cell.column), (cell.row, cell.column))
            size = cell.font.sz or 11
            lines = len(wrap_text(cell.value, [widths.get(c, 8.43) for c in range(cell.column, last_col + 1)], size,
                                  bool(cell.font.b)))
            height = sum(ws.row_dimensions[r].height or 15 for r in range(cell.row, last_row + 1))
            if height < lines * LINE_PT * size / 10:
                short.append((cell.coordinate, cell.value[:20], lines, height))
    return short


def _prints_on_a4_with_page_numbers(ws, orientation: str) -> None:
    assert (ws.page_setup.paperSize, ws.page_setup.orientation) == (9, orientation)
    assert ws.sheet_properties.pageSetUpPr.fitToPage and ws.page_setup.fitToHeight == 0
    assert "&P" in ws.oddFooter.center.text


def test_the_annotated_copys_results_sheet_prints_on_a4_wrapped_with_page_numbers(tmp_path):
    copy = annotate_workbook(_checked(_form(tmp_path / "in" / "申报表.xlsx")), tmp_path / "out")
    ws = openpyxl.load_workbook(copy)["校验结果"]
    _prints_on_a4_with_page_numbers(ws, "landscape")
    assert sum(column_pixels([w]) for w in column_widths(ws).values()) <= LANDSCAPE_PX
    assert ws.print_title_rows and not _short_rows(ws)
    assert all(c.alignment.wrap_text for row in ws.iter_rows() for c in row if c.value)


def test_an_annotated_copy_of_a_form_made_before_gets_its_guide_on_a4(tmp_path):
    """Forms in circulation have a 填表说明 without page setup (100 wide, no page number): the copy sent back
    prints it on A4 portrait, its items whole."""
    form = _form(tmp_path / "in" / "申报表.xlsx")
    wb = openpyxl.load_workbook(form)
    old = wb["填表说明"]
    old.column_dimensions["A"].width = 100
    old.page_setup.paperSize, old.page_setup.orientation = None, None
    old.oddFooter.center.text = None
    for r in range(1, old.max_row + 1):
        old.row_dimensions[r].height = 22
    wb.save(form)
    copy = annotate_workbook(_checked(form), tmp_path / "out")
    guide = openpyxl.load_workbook(copy)["填表说明"]
    _prints_on_a4_with_page_numbers(guide, "portrait")
    assert column_pixels([guide.column_dimensions["A"].width]) <= (8.27 - 1.2) * 96
    assert not _short_rows(guide)


def test_the_units_own_long_text_is_whole_in_its_annotated_copy(tmp_path):
    """A row of the form is as tall as its blank had it: a long 项目期 the unit typed printed cut."""
    form = _form(tmp_path / "in" / "申报表.xlsx")
    address = read_workbook(form).sheets[0].fields["project_period"].address
    wb = openpyxl.load_workbook(form)  # typed in by the clerk: the row keeps the blank's height
    wb["项目绩效目标"][address] = LONG_PERIOD
    wb.save(form)
    copy = annotate_workbook(_checked(form), tmp_path / "out")
    ws = openpyxl.load_workbook(copy)["项目绩效目标"]
    assert any(c.value == LONG_PERIOD for row in ws.iter_rows() for c in row)
    assert not _short_rows(ws)


@pytest.mark.libreoffice
def test_an_xls_form_gets_an_annotated_copy_rebuilt_with_its_problem_marked_where_its_file_has_it(tmp_path, convert):
    """An .xls got a 退回通知 but no annotated copy (openpyxl cannot open .xls)."""
    xls = convert(_form(tmp_path / "src" / "申报表.xlsx"), "xls")
    checked = _checked(xls)
    assert [(p.sheet, p.cell, p.code) for p in checked.problems if p.severity == "error"] == [
        ("项目绩效目标", "B45", "required")]
    annotated = annotate(checked, tmp_path / "out")
    assert annotated is not None and annotated.rebuilt and annotated.path.name == "申报表_校验.xlsx"
    wb = openpyxl.load_workbook(annotated.path)
    results = [str(c) for row in wb["校验结果"].iter_rows(values_only=True) for c in row if c]
    assert any("申报表.xls" in t and "重建" in t and "在原表中修改" in t for t in results)
    ws = wb["项目绩效目标"]
    assert ws["B45"].fill.fgColor.rgb.endswith("FFC7CE") and "必填" in ws["B45"].comment.text
    original = read_workbook(xls).sheets[0]
    assert ws[original.fields["project_name"].address].value == "培训项目"
    assert wb["_perfxl"].sheet_state == "hidden"
    _prints_on_a4_with_page_numbers(ws, "landscape")
    assert not _short_rows(ws)
    # sent back again as it is, the rebuilt copy reads as the form it came from, with the same problem
    again = _checked(annotated.path)
    assert (again.template, again.unit_code) == (checked.template, checked.unit_code)
    assert [(p.sheet, p.cell, p.code) for p in again.problems if p.severity == "error"] == [
        ("项目绩效目标", "B45", "required")]
    assert again.projects[0].values["fill_date"] == "2022-03-01"


def _merge_returns(tmp_path: Path, inbox: Path) -> Path:
    roster = write_roster(tmp_path / "名单.csv", [(UNIT[0], UNIT[1], "测试部门")])
    returns = tmp_path / "退回"
    r = CliRunner().invoke(cli, ["merge", str(inbox), "-o", str(tmp_path / "汇总.xlsx"), "--roster", str(roster),
                                 "--returns", str(returns), "--return-by", "2022-03-15"])
    assert r.exit_code == 0, r.output
    return returns


def test_the_notice_names_each_file_as_the_unit_knows_it_and_prints_one_a4_page_wide(tmp_path):
    """The notice showed each file's full path where the bureau keeps it; the unit knows its file's name."""
    inbox = tmp_path / "某局的收件箱" / "甲单位"
    _form(inbox / "培训项目申报表.xlsx", period=LONG_PERIOD)
    returns = _merge_returns(tmp_path, tmp_path / "某局的收件箱")
    (notice,) = returns.glob("*_退回通知.xlsx")
    ws = openpyxl.load_workbook(notice)["退回通知"]
    texts = [str(c) for row in ws.iter_rows(values_only=True) for c in row if c]
    assert "培训项目申报表.xlsx" in texts and "培训项目申报表_校验.xlsx" in texts
    assert not any("收件箱" in t for t in texts)
    assert not any("/" in t or "\\" in t for t in texts if t.endswith((".xlsx", ".xls")))
    _prints_on_a4_with_page_numbers(ws, "landscape")
    assert ws.page_setup.fitToWidth in (1, None)
    assert sum(column_pixels([w]) for w in column_widths(ws).values()) <= LANDSCAPE_PX
    assert all(c.alignment.wrap_text for row in ws.iter_rows() for c in row if c.value)
    assert not _short_rows(ws)


@pytest.mark.libreoffice
def test_the_notice_for_an_xls_names_its_rebuilt_copy_and_says_to_correct_the_original(tmp_path, convert):
    inbox = tmp_path / "收件箱"
    inbox.mkdir()
    xls = convert(_form(tmp_path / "src" / "培训项目申报表.xlsx"), "xls")
    (inbox / xls.name).write_bytes(xls.read_bytes())
    returns = _merge_returns(tmp_path, inbox)
    (notice,) = returns.glob("*_退回通知.xlsx")
    rows = list(openpyxl.load_workbook(notice)["退回通知"].iter_rows(values_only=True))
    (line,) = [r for r in rows if r[0] == "培训项目申报表.xls"]
    assert line[3] == "培训项目申报表_校验.xlsx" and (returns / line[3]).exists()
    assert ".xls 重建" in line[2] and "在原表中修改" in line[2]

"""Templates designed in Excel: a form drawn from scratch with its definition sheets is imported, generated
per unit with its own layout kept, filled through the names, re-saved by LibreOffice and merged."""

from __future__ import annotations

import json

import openpyxl
import pytest
from click.testing import CliRunner

from perfxl.cli import cli
from perfxl.fill import fill_workbook, names_by_sheet
from perfxl.merging import MergeOptions, run_merge
from perfxl.spec import load_spec

from .conftest import write_roster
from .designs import FIELDS, make_design

YEAR = 2025
UNITS = [("101001", "第一中学", "教育局"), ("101002", "人民医院", "卫生健康委")]


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    base = tmp_path_factory.mktemp("designed")
    design = make_design(base / "某区表样.xlsx")
    r = CliRunner().invoke(cli, ["template", "import", str(design), "-o", str(base / "模板")])
    assert r.exit_code == 0, r.output
    roster = write_roster(base / "名单.csv", UNITS)
    r = CliRunner().invoke(cli, ["generate", "acme/fund", "--templates", str(base / "模板"), "--year", str(YEAR),
                                 "--roster", str(roster), "-o", str(base / "空白表")])
    assert r.exit_code == 0, r.output
    manifest = json.loads((base / "空白表" / "manifest.json").read_text(encoding="utf-8"))
    return {"base": base, "design": design, "templates": base / "模板", "roster": roster,
            "forms": {f["unit_code"]: base / "空白表" / f["file"] for f in manifest["forms"]}}


def test_generated_form_keeps_the_designers_layout(imported):
    ws = openpyxl.load_workbook(imported["forms"]["101001"])["目标表"]
    design = openpyxl.load_workbook(imported["design"])["目标表"]
    assert {str(r) for r in design.merged_cells.ranges} <= {str(r) for r in ws.merged_cells.ranges}
    for col in "ABCDEF":
        assert ws.column_dimensions[col].width == design.column_dimensions[col].width
    assert (ws["A4"].font.name, ws["A4"].font.b, ws["A1"].font.sz) == ("仿宋", True, 18)
    assert ws["A1"].value == f"{YEAR}年某区专项资金绩效目标表"  # {{ year }} rendered
    assert ws.row_dimensions[1].height == 36 and ws.oddFooter.center.text == "第 &P 页"


def test_generated_form_carries_names_validations_protection_and_stamp(imported):
    wb = openpyxl.load_workbook(imported["forms"]["101002"])
    ws = wb["目标表"]
    names = names_by_sheet(wb)["目标表"]
    assert names["f_project_name"] == "B4" and names["t_indicators"] == "A9:F20"
    assert ws["B3"].value == "人民医院"  # the default {{ unit.name }}, patched per unit
    assert ws.protection.sheet and not ws["B4"].protection.locked and ws["A4"].protection.locked
    kinds = {str(dv.sqref): dv.type for dv in ws.data_validations.dataValidation}
    assert kinds["E4"] == "list" and kinds["B5"] == "decimal"
    assert wb["_perfxl"].sheet_state == "hidden" and wb["_perfxl"]["A1"].value == "perfxl-stamp"
    stamp = {wb["_perfxl"].cell(row=r, column=1).value: wb["_perfxl"].cell(row=r, column=2).value for r in range(2, 12)}
    assert (stamp["template"], stamp["unit_code"]) == ("acme/fund", "101002")


@pytest.mark.libreoffice
def test_designed_forms_filled_resaved_and_merged_give_the_right_totals(imported, convert, tmp_path):
    spec = load_spec("acme/fund", YEAR, templates_dir=imported["templates"])
    inbox = tmp_path / "收件箱"
    inbox.mkdir()
    rows = [["产出指标", "数量指标", "培训教师人数", "≥200人次", ""], ["效益指标", "社会效益指标", "教学质量提升", "明显提升", ""],
            ["满意度指标", "服务对象满意度指标", "教师满意度", "≥90%", ""]]
    filled = {"101001": {"project_name": "教师培训", "project_kind": "经常性项目", "total": 100, "fiscal": 60,
                         "other": 40, "goal": "完成全区教师轮训。"},
              "101002": {"project_name": "设备购置", "total": 50, "fiscal": 50, "goal": "购置设备。"}}  # no 项目类型
    for code, fields in filled.items():
        path = fill_workbook(spec, imported["forms"][code], tmp_path / f"{code}.xlsx",
                             [{"fields": fields, "tables": {"indicators": rows}}])
        convert(path, "xlsx").rename(inbox / f"{code}.xlsx")
    result = run_merge([inbox], tmp_path / "汇总.xlsx",
                       MergeOptions(roster=imported["roster"], templates_dir=str(imported["templates"]), jobs=1),
                       materialize=True)
    assert result.counts["merged"] == 2
    projects = result.table("项目清单")
    titles = [t for t, _ in projects.columns]
    budget = next(i for i, t in enumerate(titles) if t.startswith("资金总额") or "预算" in t)
    body = [r for r in projects.iter_rows() if r[0] != "合计"]
    assert sorted(r[budget] for r in body) == [50, 100]
    problems = result.table("校验问题")
    titles = [t for t, _ in problems.columns]
    found = {(r[titles.index("规则")], r[titles.index("单元格")]) for r in problems.iter_rows()}
    assert ("required", "E4") in found
    indicators = [r for r in result.table("指标明细").iter_rows()]
    assert len(indicators) == 6


def _import_broken(tmp_path, **changes):
    design = make_design(tmp_path / "坏表样.xlsx", **changes)
    out = tmp_path / "模板"
    r = CliRunner().invoke(cli, ["template", "import", str(design), "-o", str(out)])
    assert r.exit_code == 2, r.output
    assert not list(out.rglob("*.yaml")) and not list(out.rglob("*.xlsx"))  # nothing half-imported
    return r.output


@pytest.mark.parametrize("changes, expected", [
    ({"fields": [FIELDS[0], ("B4", "project_name", "项目名称", "金钱", "是", "", "", "")] + FIELDS[2:]},
     "「字段」第 3 行：未知类型“金钱”"),
    ({"fields": FIELDS + [("K40", "", "备注", "文本", "否", "", "", "")]}, "「字段」第 9 行：单元格 K40 在表单之外"),
    ({"extra_tables": [("A15:F21", "more", "补充指标", "文本、文本、文本、指标值、文本", "")]},
     "「表格」第 3 行：区域 A15:F21 与表格“indicators”重叠"),
    ({"rules": [("field_sum", "total=总额；parts=fiscal、other", "错误", "")]}, "「规则」第 2 行"),
    ({"table": ("A9:F20", "indicators", "绩效指标", "文本、文本、指标值", "national")}, "列类型写了 3 个"),
    ({"fields": [("B4", "project_name", "", "文本", "是", "", "", "")], "table": None, "rules": []}, None),
])
def test_broken_definition_sheets_name_sheet_and_row_and_exit_2(tmp_path, changes, expected):
    if expected is None:  # a field whose label comes from the cell to its left imports cleanly
        design = make_design(tmp_path / "表样.xlsx", **changes)
        r = CliRunner().invoke(cli, ["template", "import", str(design), "-o", str(tmp_path / "模板")])
        assert r.exit_code == 0, r.output
        return
    output = _import_broken(tmp_path, **changes)
    assert expected in output, output
    if "规则" in expected:
        assert "总额" in output


def test_template_check_passes_on_the_shipped_templates():
    from perfxl.spec import shipped_templates_dir

    r = CliRunner().invoke(cli, ["template", "check", str(shipped_templates_dir())])
    assert r.exit_code == 0, r.output
    assert "全部" in r.output


def test_template_check_names_the_file_and_line_of_a_broken_spec(tmp_path, imported):
    folder = tmp_path / "模板"
    (folder / "acme").mkdir(parents=True)
    (folder / "acme" / "broken.yaml").write_text(
        "template: acme/broken\nversion: '1'\ntitle: 坏模板\nsheet: {name: 表, columns: [10, 10]}\n"
        "fields:\n  a: {label: 甲, type: 金钱}\nblocks:\n  - fields: [[a]]\n", encoding="utf-8")
    r = CliRunner().invoke(cli, ["template", "check", str(folder)])
    assert r.exit_code == 2
    assert "broken.yaml:6" in r.output and "金钱" in r.output



def _numbers(result) -> tuple[list, list]:
    projects = result.table("项目清单")
    titles = [t for t, _ in projects.columns]
    keep = [titles.index(t) for t in titles if t.startswith(("项目名称", "项目预算", "预算"))]
    rows = sorted(tuple(r[i] for i in keep) for r in projects.iter_rows() if r[0] != "合计")
    lines = result.table("指标明细")
    titles = [t for t, _ in lines.columns]
    keep = [titles.index(t) for t in ("项目名称", "一级指标", "二级指标", "三级指标", "比较符/类型", "数值", "计量单位")]
    return rows, sorted(tuple(r[i] for i in keep) for r in lines.iter_rows())


def test_the_shipped_mianyang_design_merges_to_the_numbers_of_the_yaml_template(seeds, tmp_path):
    """templates/designs holds the 绵阳 seed form drawn in Excel: filled with the seed's values, it reads and
    merges to the same projects, budgets and indicator rows as the YAML template's form."""
    from perfxl.generator import build_workbook
    from perfxl.spec import shipped_templates_dir

    seed = seeds["002-0"]
    design = shipped_templates_dir() / "designs" / "绵阳项目支出绩效目标表样.xlsx"
    r = CliRunner().invoke(cli, ["template", "import", str(design), "-o", str(tmp_path / "模板")])
    assert r.exit_code == 0, r.output
    spec = load_spec("mianyang/designed", seed.year, templates_dir=tmp_path / "模板")
    blank = tmp_path / "blank.xlsx"
    blank.write_bytes(build_workbook(spec, seed.unit, len(seed.projects)))
    results = {}
    for kind, path in (("yaml", seed.filled), ("designed", fill_workbook(spec, blank, tmp_path / "绵阳.xlsx",
                                                                         seed.projects))):
        inbox = tmp_path / f"inbox-{kind}"
        inbox.mkdir()
        (inbox / "绵阳.xlsx").write_bytes(path.read_bytes())
        results[kind] = run_merge([inbox], tmp_path / f"{kind}.xlsx",
                                  MergeOptions(templates_dir=str(tmp_path / "模板"), jobs=1), materialize=True)
        assert results[kind].counts["merged"] == 1
    assert _numbers(results["designed"]) == _numbers(results["yaml"])
    assert len(_numbers(results["yaml"])[0]) == len(seed.projects) > 1


def test_a_designed_template_naming_the_unit_as_it_is_has_its_forms_patched_from_a_master(imported):
    """`{{ unit.name }}` in a designed cell or default is the unit's name as it is: its forms can be made from
    a master rendered for tokens (perfxl.spec.substitutes_unit); `{{ unit.name[:2] }}` could not."""
    from perfxl.generator import TOKENS
    from perfxl.spec import load_spec, substitutes_unit

    spec = load_spec("acme/fund", YEAR, unit=dict(TOKENS), templates_dir=imported["templates"])
    assert any("unit.name" in str(f.default) for f in spec.fields.values())
    assert substitutes_unit(spec, TOKENS)


def test_a_designed_default_that_works_on_the_unit_s_name_gives_each_unit_its_own(tmp_path):
    """A default of `{{ unit.name[:2] }}` made from a master rendered for tokens gave every unit "PX"."""
    fields = [("B3", "", "", "文本", "是", "", "", "{{ unit.name[:2] }}")] + FIELDS[1:]
    design = make_design(tmp_path / "表样.xlsx", fields=fields)
    r = CliRunner().invoke(cli, ["template", "import", str(design), "-o", str(tmp_path / "模板")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["generate", "acme/fund", "--templates", str(tmp_path / "模板"), "--year", str(YEAR),
                                 "--roster", str(write_roster(tmp_path / "名单.csv", UNITS)), "-o", str(tmp_path / "表")])
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "表" / "manifest.json").read_text(encoding="utf-8"))
    shown = {f["unit_code"]: openpyxl.load_workbook(tmp_path / "表" / f["file"])["目标表"]["B3"].value
             for f in manifest["forms"]}
    assert shown == {code: name[:2] for code, name, _ in UNITS}

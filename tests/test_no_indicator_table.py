"""A bureau's template with no indicator table (designed in Excel, or YAML) goes through the whole round:
its forms merge with their projects listed, no indicator rows, and 目标审核 graded on what the forms have;
`template check` says what such a template cannot do; a rule that needs indicator levels is refused."""

from __future__ import annotations

import json
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from perfxl.cli import cli
from perfxl.fill import fill_workbook
from perfxl.spec import load_spec

from .conftest import write_roster
from .designs import RULES, make_design

YEAR = 2025
UNITS = [("101001", "第一中学", "教育局"), ("101002", "人民医院", "卫生健康委")]
PLAIN_TABLE = ("A9:F20", "items", "支出明细", "文本、文本、文本、金额、文本", "")  # no 指标层级
CANNOT = "没有绩效指标表"

YAML_TEMPLATE = """\
template: acme/plain
version: "1"
family: project
title: 某区项目申报表
money_unit: 万元
project_name_field: project_name
budget_field: total
sheet:
  name: 项目
  columns: [14, 20, 14, 20]
fields:
  project_name: {label: 项目名称, type: text, required: true}
  total: {label: 资金总额, type: money, required: true}
  goal: {label: 年度目标, type: longtext, required: true}
tables:
  items:
    label: 支出明细
    blank_rows: 5
    columns:
      - {id: what, label: 支出内容, type: text, span: 2}
      - {id: amount, label: 金额, type: money, span: 2}
blocks:
  - title: 某区项目申报表
  - fields: [[project_name, total], [goal]]
  - table: items
"""


def _invoke(*args: str):
    r = CliRunner().invoke(cli, [str(a) for a in args])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.output
    return r


def _rows(path: Path, sheet: str) -> list[dict]:
    wb = openpyxl.load_workbook(path, read_only=True)
    rows = list(wb[sheet].iter_rows(values_only=True))
    wb.close()
    return [dict(zip(rows[0], r)) for r in rows[1:] if r and r[0] != "合计"]


def _round(base: Path, template: str, templates: Path, values: dict[str, dict]) -> tuple:
    """generate → fill each unit's form → merge with --returns; the merge's result and its output."""
    roster = write_roster(base / "名单.csv", UNITS)
    r = _invoke("generate", template, "--templates", templates, "--year", YEAR, "--roster", roster,
                "-o", base / "空白表")
    assert r.exit_code == 0, r.output
    spec = load_spec(template, YEAR, templates_dir=templates)
    inbox = base / "收件箱"
    inbox.mkdir()
    for blank in sorted((base / "空白表").glob("1*.xlsx")):
        code = blank.name.split("_")[0]
        fill_workbook(spec, blank, inbox / blank.name, [values[code]])
    out = base / "汇总.xlsx"
    r = _invoke("merge", inbox, "--templates", templates, "--roster", roster, "-o", out, "--returns", base / "退回")
    return r, out, roster


@pytest.fixture
def designed(tmp_path):
    design = make_design(tmp_path / "表样.xlsx", table=PLAIN_TABLE)
    r = _invoke("template", "import", design, "-o", tmp_path / "模板")
    assert r.exit_code == 0, r.output
    assert CANNOT in r.output  # said when imported
    return tmp_path


def test_template_check_says_what_a_template_without_an_indicator_table_cannot_do(designed):
    r = _invoke("template", "check", designed / "模板")
    assert r.exit_code == 0, r.output
    assert "✓ acme/fund" in r.output and CANNOT in r.output and "自评表" in r.output and "目标审核" in r.output
    r = _invoke("template", "check", Path(__file__).parent.parent / "templates")
    assert CANNOT not in r.output  # every shipped project template has one


def test_a_design_without_an_indicator_table_merges_with_its_projects_and_a_review(designed):
    items = [["教师培训", "场地", "讲师", 30, ""]]
    values = {"101001": {"fields": {"project_name": "教师培训", "project_kind": "经常性项目", "total": 100,
                                    "fiscal": 60, "other": 40, "goal": "完成全区教师轮训。"}, "tables": {"items": items}},
              "101002": {"fields": {"project_name": "设备购置", "project_kind": "一次性项目", "total": 50,
                                    "fiscal": 40, "other": 20, "goal": "购置设备。"}, "tables": {"items": items}}}
    r, out, _ = _round(designed, "acme/fund", designed / "模板", values)
    assert r.exit_code in (0, 1), r.output  # 人民医院's parts do not add up: an error in a written summary
    assert "Traceback" not in r.output and out.exists()
    projects = {row["项目名称"]: row for row in _rows(out, "项目清单")}
    assert set(projects) == {"教师培训", "设备购置"}
    assert projects["教师培训"]["指标数"] == 0 and projects["教师培训"]["校验状态"] == "通过"
    assert _rows(out, "指标明细") == []
    review = {row["项目名称"]: row for row in _rows(out, "目标审核")}
    assert review["教师培训"]["等级"] == "优" and review["教师培训"]["定量占比"] is None  # nothing to measure
    assert "指标未审核" in review["教师培训"]["适当性扣分原因"]
    assert review["设备购置"]["等级"] == "中" and "1 个错误" in review["设备购置"]["可行性扣分原因"]
    notices = list((designed / "退回").glob("*_退回通知.xlsx"))
    assert len(notices) == 1 and "人民医院" in notices[0].name


def test_a_yaml_template_without_an_indicator_table_merges(tmp_path):
    templates = tmp_path / "模板"
    (templates / "acme").mkdir(parents=True)
    (templates / "acme" / "plain.yaml").write_text(YAML_TEMPLATE, encoding="utf-8")
    r = _invoke("template", "check", templates)
    assert r.exit_code == 0 and CANNOT in r.output, r.output
    items = [["场地租赁", 20], ["讲师", 30]]
    values = {"101001": {"fields": {"project_name": "教师培训", "total": 100, "goal": "轮训。"}, "tables": {"items": items}},
              "101002": {"fields": {"project_name": "设备购置", "total": 50}, "tables": {"items": items}}}  # no 年度目标
    r, out, _ = _round(tmp_path, "acme/plain", templates, values)
    assert r.exit_code in (0, 1) and "Traceback" not in r.output, r.output
    assert {row["项目名称"] for row in _rows(out, "项目清单")} == {"教师培训", "设备购置"}
    review = {row["项目名称"]: row for row in _rows(out, "目标审核")}
    assert review["教师培训"]["等级"] == "优" and review["设备购置"]["等级"] == "中"


def test_no_follow_up_form_is_made_from_a_declaration_without_indicators(designed):
    values = {code: {"fields": {"project_name": name + "项目", "project_kind": "经常性项目", "total": 10, "fiscal": 10,
                                "goal": "目标。"}} for code, name, _ in UNITS}
    r, out, roster = _round(designed, "acme/fund", designed / "模板", values)
    assert r.exit_code == 0, r.output
    ledger = next(designed.glob("*.sqlite"))
    r = _invoke("generate", "national/selfeval", "--year", YEAR, "--roster", roster, "--from", ledger,
                "-o", designed / "自评表")
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    assert "2 个单位在台账中没有已汇总的、含绩效指标的申报" in r.output
    manifest = json.loads((designed / "自评表" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["forms"] == []


def test_an_indicators_rule_on_a_table_without_indicator_levels_is_refused(tmp_path):
    design = make_design(tmp_path / "表样.xlsx", table=PLAIN_TABLE, rules=RULES + [("indicators", "table=items", "错误", "")])
    r = _invoke("template", "import", design, "-o", tmp_path / "模板")
    assert r.exit_code == 2 and "「规则」第 3 行" in r.output and "指标层级" in r.output, r.output
    templates = tmp_path / "yaml"
    (templates / "acme").mkdir(parents=True)
    (templates / "acme" / "plain.yaml").write_text(
        YAML_TEMPLATE + "rules:\n  - {kind: indicators, table: items}\n", encoding="utf-8")
    r = _invoke("describe", "acme/plain", "--templates", templates)
    assert r.exit_code == 2 and "plain.yaml" in r.output and "indicator" in r.output, r.output

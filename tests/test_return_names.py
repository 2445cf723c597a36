"""The return package's names cannot collide (merge --returns): one notice per unit covering all its files,
an annotated copy per form even when two forms share a name, the suffix kept however long the unit's
name, no input written over, and the count on screen taken from what was written."""

from __future__ import annotations

import hashlib
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from perfxl import generator as generate
from perfxl.cli import cli
from perfxl.files import MAX_NAME_BYTES
from perfxl.spec import load_spec

from .conftest import write_roster

LONG_NAME = "某某省某某市某某区人民政府某某街道办事处某某社区居民委员会下属某某服务中心第一分中心附属第二机构分部驻镇联络处甲甲甲甲甲"  # 60 characters, 180 bytes
UNITS = [("610001", "甲单位"), ("610002", "乙单位"), ("610003", LONG_NAME)]


def _form(code: str, name: str, project: str, budget: float = 100) -> bytes:
    """A filled national/project form, one project a file; its 填报人 (a required field, cell B45) is left
    empty: one error. Two such files of one unit with other names and budgets are two current projects."""
    unit = {"code": code, "name": name, "department": "测试部门"}
    spec = load_spec("national/project", 2022, unit=unit)
    values = {"fields": {"unit_name": name, "project_name": project, "department": "测试部门", "implementing_unit": name,
                         "project_attr": "新增项目", "project_period": "2022年", "long_term_goal": "长期目标",
                         "annual_goal": "年度目标", "preparer": "", "phone": "88150231",
                         "funds_total_annual": budget, "funds_fiscal_annual": budget, "funds_total_mid": budget,
                         "funds_fiscal_mid": budget},
              "tables": {"indicators": [["产出指标", "数量指标", "培训人次", "≥100人次"],
                                        ["效益指标", "社会效益指标", "政策知晓率", "≥90%"],
                                        ["满意度指标", "服务对象满意度指标", "满意度", "≥95%"]]}}
    return generate.build_workbook(spec, unit, values=[values])


def _merge(tmp_path: Path, inbox: Path, returns: Path):
    roster = write_roster(tmp_path / "名单.csv", [(code, name, "测试部门") for code, name in UNITS])
    r = CliRunner().invoke(cli, ["merge", str(inbox), "-o", str(tmp_path / "汇总.xlsx"), "--roster", str(roster),
                                 "--returns", str(returns), "--return-by", "2022-03-15"])
    assert r.exit_code == 0 and r.exception is None, r.output
    return r.output


def _texts(path: Path) -> list[str]:
    ws = openpyxl.load_workbook(path)["退回通知"]
    return [str(c) for row in ws.iter_rows(values_only=True) for c in row if c is not None]


def _notices(returns: Path) -> dict[str, Path]:
    """Each notice by the unit it names (the cell beside 单位); a form that only has the name is no notice."""
    out = {}
    for path in returns.glob("*_退回通知.xlsx"):
        wb = openpyxl.load_workbook(path)
        if "退回通知" in wb.sheetnames:
            out[wb["退回通知"]["B3"].value] = path
    return out


@pytest.fixture
def package(tmp_path):
    """甲单位 sends two forms in error; 甲's first form and 乙's only one are both named 申报表.xlsx, in two
    folders; the third unit's name is 60 characters long."""
    inbox = tmp_path / "收件箱"
    (inbox / "甲").mkdir(parents=True)
    (inbox / "乙").mkdir()
    (inbox / "甲" / "申报表.xlsx").write_bytes(_form("610001", "甲单位", "项目一"))
    (inbox / "甲" / "申报表二.xlsx").write_bytes(_form("610001", "甲单位", "项目二", budget=200))
    (inbox / "乙" / "申报表.xlsx").write_bytes(_form("610002", "乙单位", "项目三"))
    (inbox / "长名单位.xlsx").write_bytes(_form("610003", LONG_NAME, "项目四"))
    returns = tmp_path / "退回"
    output = _merge(tmp_path, inbox, returns)
    return returns, output


def test_a_unit_with_two_files_in_error_gets_one_notice_covering_both(package):
    returns, _ = package
    notices = _notices(returns)
    assert sorted(notices) == sorted(name for _, name in UNITS)  # one notice per unit, never one per file
    texts = _texts(notices["甲单位"])
    copies = {t for t in texts if t.endswith("_校验.xlsx")}
    assert len(copies) == 2 and all((returns / c).exists() for c in copies)  # each file, with its copy's name
    assert {"项目一", "项目二"} <= set(texts)  # both files' projects
    assert texts.count("项目绩效目标!B45") == 2  # and both files' errors
    assert "2022-03-15" in texts


def test_two_inputs_of_one_name_in_two_folders_keep_their_own_annotated_copies(package):
    returns, _ = package
    copies = sorted(returns.glob("*_校验.xlsx"))
    assert len(copies) == 4  # 甲 ×2, 乙, the long-named unit: nothing written over
    notices = _notices(returns)
    for unit in ("甲单位", "乙单位"):
        named = [t for t in _texts(notices[unit]) if t.endswith("_校验.xlsx")]
        for copy in set(named):  # the copy each notice names holds that unit's own form
            wb = openpyxl.load_workbook(returns / copy)
            stamp = {row[0]: row[1] for row in wb["_perfxl"].iter_rows(values_only=True) if row and row[0]}
            assert stamp.get("unit_name") == unit, (copy, stamp)


def test_a_long_unit_name_keeps_the_notice_suffix_within_the_byte_cap(package):
    returns, _ = package
    notice = _notices(returns)[LONG_NAME]
    assert notice.name.endswith("_退回通知.xlsx") and notice.name.startswith("610003_某某省")
    assert len(notice.name.encode("utf-8")) <= MAX_NAME_BYTES


def test_the_count_on_screen_is_the_notices_written(package):
    returns, output = package
    assert f"{len(UNITS)} 个单位需修改后重新报送" in output
    assert f"退回通知 {len(UNITS)} 份，标注原表 4 份" in output
    assert len(list(returns.glob("*_退回通知.xlsx"))) == len(UNITS)


def test_a_notice_never_takes_the_name_of_an_input(tmp_path):
    """Returns written into the inbox itself, where 乙's form happens to carry the name its notice would."""
    inbox = tmp_path / "收件箱"
    inbox.mkdir()
    (inbox / "甲.xlsx").write_bytes(_form("610001", "甲单位", "项目一"))
    planted = inbox / "610002_乙单位_退回通知.xlsx"
    planted.write_bytes(_form("610002", "乙单位", "项目三"))
    before = hashlib.sha256(planted.read_bytes()).hexdigest()
    output = _merge(tmp_path, inbox, inbox)
    assert hashlib.sha256(planted.read_bytes()).hexdigest() == before
    notices = _notices(inbox)
    assert notices["乙单位"].name == "610002_乙单位(2)_退回通知.xlsx"
    assert "2 个单位需修改后重新报送" in output


def test_validate_annotate_keeps_both_copies_of_two_forms_of_one_name(tmp_path):
    inbox = tmp_path / "收件箱"
    for folder, (code, name) in zip(("甲", "乙"), UNITS):
        (inbox / folder).mkdir(parents=True)
        (inbox / folder / "申报表.xlsx").write_bytes(_form(code, name, "项目"))
    r = CliRunner().invoke(cli, ["validate", str(inbox), "--annotate", str(tmp_path / "标注")])
    assert r.exit_code == 1, r.output  # the forms have errors
    copies = sorted(p.name for p in (tmp_path / "标注").glob("*.xlsx"))
    assert copies == ["申报表(2)_校验.xlsx", "申报表_校验.xlsx"]

"""History and the indicator library under attack (#22): a history ledger or export handed in by someone
else, a library workbook a bureau edited carelessly, and targets the comparison must not misread. Every
user's mistake is exit 2 in Chinese, never a traceback, a wrong finding or a silent wrong number."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from perfxl.cli import cli
from perfxl.comparison import DeclaredProject, DeclaredRow, History, PastProject, PastRow, compare, value_of
from perfxl.errors import OutputError
from perfxl.history import load_history
from perfxl.library import build_library, load_library
from perfxl.values import parse_target

from . import history_campaign as hc


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    return hc.build(tmp_path_factory.mktemp("hostile") / "campaign")


@pytest.fixture(scope="module")
def library(campaign, tmp_path_factory):
    out = tmp_path_factory.mktemp("hostile_library") / "指标库.xlsx"
    r = CliRunner().invoke(cli, ["library", "build", *map(str, campaign.history), "-o", str(out)])
    assert r.exit_code == 0, r.output
    return out


def _copy(ledger: Path, target: Path) -> Path:
    source, copy = sqlite3.connect(ledger), sqlite3.connect(target)
    source.backup(copy)
    source.close()
    copy.close()
    return target


def _tamper(path: Path, *statements: str) -> Path:
    db = sqlite3.connect(path)
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()
    return path


def _edit_library(source: Path, target: Path, edit) -> Path:
    wb = openpyxl.load_workbook(source)
    ws = wb["指标库"]
    titles = [c.value for c in ws[3]]
    edit(ws, lambda title: titles.index(title) + 1)
    wb.save(target)
    return target


def _declared(code: str, rows: list[tuple[str, str, str, str]], library: str = "project") -> DeclaredProject:
    return DeclaredProject(f"{code}.xlsx", "项目绩效目标", hc.YEAR, code, f"单位{code}", "交通运输局", "全国", "项目",
                           "B4", "", "", [DeclaredRow(n, f"E{14 + n}", *r) for n, r in enumerate(rows, start=1)],
                           library)


# ----------------------------------------------------------------------------------------------------
# A history ledger someone handed in
# ----------------------------------------------------------------------------------------------------

TAMPERED = {
    "an_outcome_that_is_not_json": ["UPDATE outcomes SET seen='not json' WHERE rowid=1"],
    "an_outcome_that_is_a_list": ["UPDATE outcomes SET seen='[1, 2]' WHERE rowid=1"],
    "an_outcome_without_its_sha": ["UPDATE outcomes SET seen=json_remove(seen, '$.sha') WHERE rowid=1"],
    "an_outcome_whose_template_is_an_object": [
        "UPDATE outcomes SET seen=json_set(seen, '$.template', json('{\"a\": 1}')) WHERE rowid=1"],
    "settings_that_are_null": ["UPDATE run_settings SET settings='null'"],
    "settings_that_are_a_list": ["UPDATE run_settings SET settings='[]'"],
    "settings_whose_issued_is_a_number": ["UPDATE run_settings SET settings='{\"year\": null, \"issued\": 5}'"],
    "settings_whose_year_is_text": ["UPDATE run_settings SET settings=json_set(settings, '$.year', 'abc')"],
    "form_data_that_is_not_zlib": ["UPDATE files SET form=x'00112233'"],
    "no_outcomes_table": ["DROP TABLE outcomes"],
    "no_form_column": ["ALTER TABLE files DROP COLUMN form"],
}


@pytest.mark.parametrize("what", sorted(TAMPERED))
def test_a_history_ledger_holding_records_perfxl_never_writes_is_exit_2_naming_it(campaign, tmp_path, what):
    ledger = _tamper(_copy(campaign.ledgers[(2024, "自评")], tmp_path / f"{what}.sqlite"), *TAMPERED[what])
    with pytest.raises(OutputError, match="历史台账 .* 无法使用"):
        load_history([ledger])
    r = CliRunner().invoke(cli, ["merge", str(campaign.inbox), "-o", str(tmp_path / "汇总.xlsx"), "--jobs", "1",
                                 "--history", str(ledger)])
    assert r.exit_code == 2, r.output
    assert "历史台账" in r.output and str(ledger) in r.output and "Traceback" not in r.output


def test_a_history_ledger_with_a_view_is_refused_in_words_for_a_history_not_a_db(campaign, tmp_path):
    ledger = _tamper(_copy(campaign.ledgers[(2024, "申报")], tmp_path / "视图.sqlite"), "CREATE VIEW v AS SELECT 1")
    r = CliRunner().invoke(cli, ["merge", str(campaign.inbox), "-o", str(tmp_path / "汇总.xlsx"), "--jobs", "1",
                                 "--history", str(ledger)])
    assert r.exit_code == 2 and "含有视图" in r.output
    assert "--db" not in r.output  # it is not this merge's ledger: telling the user to pick another --db is wrong


# ----------------------------------------------------------------------------------------------------
# Targets the comparison must not misread
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["≥-5%", "≥ -5%", "≥－5%", "增长-5%", ">-5%", "≤ -3天"])
def test_a_negative_target_is_never_compared_as_its_positive(text):
    value = value_of(parse_target(text))
    assert value is None or value < 0


def test_a_library_of_targets_allowing_a_fall_does_not_call_their_typical_value_a_rise():
    """Eight good projects allowed their output to fall by at most 5 % (≥-5%): the library's typical value
    is not ≥5%."""
    past = [PastProject(2024, f"71000{i}", f"单位{i}", "交通运输局", "项目", review_grade="优", family="project",
                        rows=[PastRow("效益指标", "经济效益指标", "产值增长率", "≥-5%")], sources=["申报"])
            for i in range(1, 9)]
    entry = next(e for e in build_library(History(past)).entries if e.level3 == "产值增长率")
    assert entry.projects == 8
    assert entry.typical != "≥5%" and entry.median != 5


def test_a_target_of_zero_percent_gives_no_completion_and_no_traceback():
    projects = [_declared(f"71000{i}", [("产出指标", "质量指标", "事故率下降", "≥0%")]) for i in range(1, 8)]
    matches, findings = compare(projects, None)
    assert len(matches) == 7 and findings == []


# ----------------------------------------------------------------------------------------------------
# An indicator library a bureau edited carelessly
# ----------------------------------------------------------------------------------------------------

def test_a_固化指标_left_twice_in_the_library_is_one_finding_and_one_prefilled_row(campaign, library, tmp_path):
    def twice(ws, col):
        row = next(r for r in range(4, ws.max_row + 1) if ws.cell(r, col("三级指标")).value == "养护里程")
        values = [c.value for c in ws[row]]
        ws.append(values)
        ws.append(values)
        for r in range(4, ws.max_row + 1):
            if ws.cell(r, col("三级指标")).value == "养护里程":
                ws.cell(r, col("固化指标")).value = "是"

    edited = _edit_library(library, tmp_path / "两次.xlsx", twice)
    assert len(load_library(edited).required_by_family()["project"]) == 3
    r = CliRunner().invoke(cli, ["merge", str(campaign.inbox), "-o", str(tmp_path / "汇总.xlsx"), "--jobs", "1",
                                 "--roster", str(campaign.roster), "--library", str(edited)])
    assert r.exit_code == 0, r.output
    wb = openpyxl.load_workbook(tmp_path / "汇总.xlsx", read_only=True)
    rules = [row[10] for row in wb["历史对比"].iter_rows(min_row=1, values_only=True) if row and len(row) > 10]
    wb.close()
    assert rules.count("library-required-missing") == 1  # 710007 lacks 养护里程: once, not three times
    out = tmp_path / "空白表"
    r = CliRunner().invoke(cli, ["generate", "national/project", "--year", str(hc.YEAR), "--roster",
                                 str(campaign.roster), "-o", str(out), "--library", str(edited)])
    assert r.exit_code == 0, r.output
    ws = openpyxl.load_workbook(next(out.glob("710001_*.xlsx")))["项目绩效目标"]
    assert [c.value for row in ws.iter_rows() for c in row].count("养护里程") == 1


def test_a_固化指标_without_its_form_family_is_checked_by_the_merge_as_it_is_prefilled(campaign, library, tmp_path):
    """A bureau that deletes the 适用表样 column (or leaves it blank) still means its 固化指标: the forms are
    prefilled with it, so the merge must find it missing too."""
    def no_family(ws, col):
        for r in range(4, ws.max_row + 1):
            ws.cell(r, col("适用表样")).value = None
            if ws.cell(r, col("三级指标")).value == "养护里程":
                ws.cell(r, col("固化指标")).value = "是"

    edited = _edit_library(library, tmp_path / "无表样.xlsx", no_family)
    r = CliRunner().invoke(cli, ["merge", str(campaign.inbox), "-o", str(tmp_path / "汇总.xlsx"), "--jobs", "1",
                                 "--roster", str(campaign.roster), "--library", str(edited)])
    assert r.exit_code == 0, r.output
    wb = openpyxl.load_workbook(tmp_path / "汇总.xlsx", read_only=True)
    found = [(row[2], row[10]) for row in wb["历史对比"].iter_rows(values_only=True) if row and len(row) > 10]
    wb.close()
    assert found.count(("第7公路养护站", "library-required-missing")) == 1


def test_a_固化指标_whose_二级_the_template_does_not_have_is_refused_naming_its_row(campaign, library, tmp_path):
    def typo(ws, col):
        row = next(r for r in range(4, ws.max_row + 1) if ws.cell(r, col("三级指标")).value == "养护里程")
        ws.cell(row, col("二级指标")).value = "数量指表"
        ws.cell(row, col("固化指标")).value = "是"

    edited = _edit_library(library, tmp_path / "错别字.xlsx", typo)
    r = CliRunner().invoke(cli, ["generate", "national/project", "--year", str(hc.YEAR), "--roster",
                                 str(campaign.roster), "-o", str(tmp_path / "空白表"), "--library", str(edited)])
    assert r.exit_code == 2, r.output
    assert "数量指表" in r.output and "第" in r.output and "行" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "空白表").exists() or not list((tmp_path / "空白表").glob("*.xlsx"))


def test_a_self_evaluation_ledger_read_on_another_computer_keeps_its_actuals_or_says_why(campaign, tmp_path,
                                                                                    monkeypatch):
    """The city's computer, or the bureau's new one, reading last year's self-evaluation as history: its
    actuals and scores must be there, or the user told they cannot be, never silently blank."""
    monkeypatch.setenv("PERFXL_HOME", str(tmp_path / "另一台电脑"))
    try:
        history = load_history([campaign.ledgers[(2024, "自评")]])
    except OutputError:
        return  # said, in Chinese: acceptable
    first = next(p for p in history.projects if p.unit_code == "710002")
    assert first.score is not None and first.rows
    assert next(r for r in first.rows if r.level3 == "养护里程").actual == "150公里"

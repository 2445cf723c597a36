"""Targets reviewed against history (#22): a three-year campaign (tests/history_campaign.py) declared and
self-evaluated in 2023 and 2024, declared again in 2025 with findings planted. Each finding must be reported
on its row and nothing else; 上年 values on next year's forms must be the ledger's; the library's counts and
medians must equal a hand count."""

from __future__ import annotations

import multiprocessing
import os
import re
import statistics
import zipfile
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner
from hypothesis import assume, given
from hypothesis import strategies as st

from perfxl import report
from perfxl.cli import cli
from perfxl.comparison import Peers, name_key, outside_peers, percentile_without
from perfxl.errors import OutputError
from perfxl.history import _cache_path, _digest, load_history
from perfxl.library import load_library
from perfxl.merging import MergeOptions, run_merge
from perfxl.report import write_summary
from perfxl.spec import layout, load_spec

from . import history_campaign as hc


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    return hc.build(tmp_path_factory.mktemp("history") / "campaign")


@pytest.fixture(scope="module")
def library(campaign, tmp_path_factory):
    """The library of 2023's and 2024's ledgers, with 养护里程 marked 固化指标 by the bureau."""
    out = tmp_path_factory.mktemp("library")
    r = CliRunner().invoke(cli, ["library", "build", *map(str, campaign.history), "-o", str(out / "指标库.xlsx")])
    assert r.exit_code == 0, r.output
    wb = openpyxl.load_workbook(out / "指标库.xlsx")
    ws = wb["指标库"]
    titles = [c.value for c in ws[3]]
    for row in ws.iter_rows(min_row=4):
        if row[titles.index("三级指标")].value == "养护里程":
            row[titles.index("固化指标")].value = "是"
    wb.save(out / "指标库_已编辑.xlsx")
    return {"built": out / "指标库.xlsx", "edited": out / "指标库_已编辑.xlsx", "output": r.output}


@pytest.fixture(scope="module")
def merged(campaign, library, tmp_path_factory):
    out = tmp_path_factory.mktemp("merge2025")
    return run_merge([campaign.inbox], out / "2025申报汇总.xlsx",
                     MergeOptions(roster=campaign.roster, jobs=1, history=tuple(campaign.history),
                                  library=library["edited"]), materialize=True)


def _rows(result, sheet: str) -> list[dict]:
    table = result.table(sheet)
    titles = [t for t, _ in table.columns]
    return [dict(zip(titles, row)) for row in table.iter_rows()]


def _target_cell(campaign, code: str, level3: str) -> str:
    """Where a declared row's target is in the unit's 2025 form, found as a reader of the form would."""
    spec = load_spec("national/project", hc.YEAR)
    pos = layout(spec).tables["indicators"]
    ws = openpyxl.load_workbook(campaign.inbox / f"{code}.xlsx")[spec.sheet_name]
    level3_col, value_col = pos.columns["level3"] + 1, pos.columns["value"] + 1
    for r in range(pos.first_row + 1, pos.last_row + 2):
        if ws.cell(row=r, column=level3_col).value == level3:
            return ws.cell(row=r, column=value_col).coordinate
    raise AssertionError(f"{code} declares no {level3}")


def _name_cell(campaign, code: str) -> str:
    spec = load_spec("national/project", hc.YEAR)
    row, col = layout(spec).fields["project_name"]
    return openpyxl.utils.get_column_letter(col + 1) + str(row + 1)


def test_each_planted_finding_is_reported_on_its_row_and_nothing_else(campaign, merged):
    found = sorted((r["单位名称"], r["规则"], r["三级指标"], r["位置"].split("!")[1]) for r in _rows(merged, "历史对比"))
    name = {code: unit for code, unit, _ in hc.UNITS}

    def at(code, level3):
        return _target_cell(campaign, code, level3)

    expected = sorted([
        (name["710001"], "history-below-last-actual", "养护里程", at("710001", "养护里程")),
        (name["710001"], "history-target-not-raised", "养护里程", at("710001", "养护里程")),
        (name["710002"], "history-below-last-actual", "养护里程", at("710002", "养护里程")),
        (name["710003"], "history-above-last-actual", "每公里养护成本", at("710003", "每公里养护成本")),
        (name["710004"], "history-indicator-dropped", "路面优良率", _name_cell(campaign, "710004")),
        # far below its peers, and below what it achieved last year
        (name["710006"], "peer-outlier", "群众满意度", at("710006", "群众满意度")),
        (name["710006"], "history-below-last-actual", "群众满意度", at("710006", "群众满意度")),
        (name["710007"], "history-indicator-dropped", "养护里程", _name_cell(campaign, "710007")),
        (name["710007"], "library-required-missing", "养护里程", _name_cell(campaign, "710007")),
    ])
    assert found == expected


def test_findings_are_the_reviews_in_历史对比_with_their_whole_reason_not_the_files_own_problems(merged):
    rows = _rows(merged, "历史对比")
    peer = next(r for r in rows if r["规则"] == "peer-outlier")
    assert "90%～90%" in peer["发现"] and "中位数）为 90%" in peer["发现"] and "7 个同类单位" in peer["发现"]
    assert peer["参考值"] == "90%" and peer["参考依据"] == "7 个同类单位中位数"
    assert merged.counts["compared"] == len(rows) == 9
    assert not [r for r in _rows(merged, "校验问题") if r["规则"].startswith(("history-", "peer-", "library-"))]
    assert merged.counts["errors"] == 0
    assert any(row[0] == "历史对比" and row[1].startswith("9 条发现") for row in merged.table("说明").rows)


def test_review_takes_points_off_适当性_for_each_finding_and_says_why(merged):
    review = {r["单位名称"]: r for r in _rows(merged, "目标审核")}
    baseline = review["第8公路养护站"]["适当性（25）"]  # no history: what its form alone costs
    first = review["第1公路养护站"]
    assert first["适当性（25）"] == pytest.approx(baseline - 3 - 3)
    assert "目标比上年实际完成值宽松且未写明依据（1 处，−3）" in first["适当性扣分原因"]
    assert "连续两年超额完成仍未提高目标（1 处，−3）" in first["适当性扣分原因"]
    seventh = review["第7公路养护站"]
    assert "缺少指标库的固化指标（1 处，−5）" in seventh["完整性扣分原因"]
    assert "上年指标未说明原因即取消（1 处，−2）" in seventh["适当性扣分原因"]
    # the explained drop and the renamed project lose nothing to history
    assert review["第5公路养护站"]["适当性（25）"] == review["第8公路养护站"]["适当性（25）"]
    assert review["第5公路养护站"]["得分"] > review["第4公路养护站"]["得分"]


def test_every_project_says_what_it_was_matched_to_and_a_renamed_one_has_no_history(campaign, merged):
    matches = {r["单位名称"]: r for r in _rows(merged, "历史匹配")}
    assert matches["第8公路养护站"]["匹配方式"].startswith("无历史")
    assert matches["第8公路养护站"]["上年项目名称"] is None
    first = matches["第1公路养护站"]
    assert (first["匹配方式"], first["上年项目名称"], first["前年"]) == ("项目名称", "2024年农村公路养护项目", "有")
    assert matches["第4公路养护站"]["未延续的上年指标"] == 1
    # 上年 figures are the 2024 self-evaluation's, as its own summary states them
    rows = _sheet_rows(campaign.base / "2024自评汇总.xlsx", "自评得分")
    header = next(i for i, r in enumerate(rows) if r and "总分" in r)
    titles = rows[header]
    scores = {r[titles.index("单位名称")]: r[titles.index("总分")] for r in rows[header + 1:] if r[titles.index("单位名称")]}
    continued = [unit for unit, m in matches.items() if m["上年项目名称"] is not None]
    assert len(continued) == 7
    for unit in continued:
        assert matches[unit]["上年自评得分"] == pytest.approx(scores[unit])


def test_next_years_forms_show_last_years_targets_and_results_as_the_ledgers_hold_them(campaign, tmp_path):
    out = tmp_path / "2025空白表"
    r = CliRunner().invoke(cli, ["generate", "national/project", "--year", str(hc.YEAR), "--roster", str(campaign.roster),
                                 "-o", str(out), *[a for p in campaign.history for a in ("--history", str(p))]])
    assert r.exit_code == 0, r.output
    form = next(out.glob("710002_*.xlsx"))
    wb = openpyxl.load_workbook(form)
    assert wb.sheetnames[:3] == ["填表说明", "项目绩效目标", "上年参考"]
    ws = wb["上年参考"]
    assert ws.protection.sheet
    cells = [[c.value for c in row] for row in ws.iter_rows()]
    header = next(i for i, row in enumerate(cells) if row[0] == "一级指标")
    by_level3 = {row[2]: row for row in cells[header + 1:] if row[2]}
    # what 2024 declared and achieved, row by row, as hc planted it
    for level1, level2, level3, target in hc.declared_rows("710002", 2024):
        assert by_level3[level3][:4] == [level1, level2, level3, target]
        achieved, _ = hc.actual("710002", 2024, level3, target)
        assert by_level3[level3][4] == achieved
    assert by_level3["养护里程"][5] == "150.0%"
    facts = " ".join(str(v) for row in cells[:header] for v in row if v)
    assert "上年预算数（万元）：200" in facts and "上年执行率：95.0%" in facts and "自评等级：优" in facts
    # a unit whose project last year was under another name has it shown all the same (its unit ran it)
    assert "上年参考" in openpyxl.load_workbook(next(out.glob("710008_*.xlsx"))).sheetnames
    # and the form still reads as the form it is: the reference sheet is not a project
    merged = run_merge([form], tmp_path / "空白汇总.xlsx", MergeOptions(roster=campaign.roster, jobs=1), materialize=True)
    assert (merged.counts["files_in"], merged.counts["merged"], merged.counts["projects"]) == (1, 1, 1)


def test_library_counts_and_medians_equal_a_hand_count(campaign, library):
    entries = {e.level3: e for e in load_library(library["built"]).entries}
    # by hand: each project graded 优 or 良 once, by its newest such year (2024: every cost ≤2万元; 710008's
    # 2023 declaration had an error, its 2024 one did not)
    assert "来自 8 个审核为优、良的项目" in library["output"]
    assert entries["每公里养护成本"].projects == 8
    assert entries["每公里养护成本"].typical == "≤2万元"
    assert entries["养护里程"].projects == 8 and entries["养护里程"].median == 100
    # 2023's ledgers alone: 710001 … 710007 at ≤2.1 … ≤2.7万元 (710008, graded 中, left out)
    r = CliRunner().invoke(cli, ["library", "build", str(campaign.ledgers[(2023, "申报")]), str(
        campaign.ledgers[(2023, "自评")]), "-o", str(library["built"].with_name("2023.xlsx"))])
    assert r.exit_code == 0, r.output
    cost = next(e for e in load_library(library["built"].with_name("2023.xlsx")).entries if e.level3 == "每公里养护成本")
    values = [2 + i / 10 for i in range(1, 8)]
    assert cost.projects == 7
    assert cost.median == pytest.approx(statistics.median(values))
    assert cost.p10 == pytest.approx(statistics.quantiles(values, n=10, method="inclusive")[0])
    assert cost.p90 == pytest.approx(statistics.quantiles(values, n=10, method="inclusive")[-1])
    assert cost.typical == "≤2.4万元"


def test_library_choices_typical_values_固化指标_and_指标参考_go_on_blank_forms(campaign, library, tmp_path):
    out = tmp_path / "空白表"
    r = CliRunner().invoke(cli, ["generate", "national/project", "--year", str(hc.YEAR), "--roster", str(campaign.roster),
                                 "-o", str(out), "--library", str(library["edited"])])
    assert r.exit_code == 0, r.output
    wb = openpyxl.load_workbook(next(out.glob("710001_*.xlsx")))
    spec = load_spec("national/project", hc.YEAR)
    pos = layout(spec).tables["indicators"]
    ws = wb[spec.sheet_name]
    first = pos.first_row + 1
    level3 = ws.cell(row=first, column=pos.columns["level3"] + 1)
    assert [ws.cell(row=first, column=pos.columns[c] + 1).value for c in ("level1", "level2", "level3")] == [
        "产出指标", "数量指标", "养护里程"]  # the 固化指标, prefilled
    assert level3.protection.locked is False
    rules = [dv for dv in ws.data_validations.dataValidation if level3.coordinate in dv.sqref]
    assert rules and "OFFSET" in rules[0].formula1 and rules[0].errorStyle == "information"
    assert "指标库" in (rules[0].prompt or "")
    typical = ws.cell(row=first, column=layout(spec).check_column + 1).value
    assert "VLOOKUP" in typical and "指标库典型值" in typical
    assert "指标参考" in wb.sheetnames
    listed = [row[2] for row in wb["指标参考"].iter_rows(values_only=True) if row[2]]
    assert "养护里程（固化）" in listed and "每公里养护成本" in listed


def test_a_history_ledger_named_as_an_input_is_not_merged(campaign, tmp_path):
    ledger = campaign.ledgers[(2024, "申报")]
    result = run_merge([campaign.inbox, ledger], tmp_path / "汇总.xlsx",
                       MergeOptions(roster=campaign.roster, jobs=1, history=(ledger,)), materialize=True)
    assert result.counts["files_in"] == 8
    assert result.counts["merged"] == 8


def test_the_merges_own_ledger_cannot_be_its_history(campaign, tmp_path):
    ledger = campaign.ledgers[(2024, "申报")]
    r = CliRunner().invoke(cli, ["merge", str(campaign.inbox), "-o", str(tmp_path / "汇总.xlsx"), "--db", str(ledger),
                                 "--history", str(ledger)])
    assert r.exit_code == 2 and "不能同时作为历史台账" in r.output


def test_a_history_that_is_not_a_ledger_is_exit_2_in_chinese(campaign, tmp_path):
    workbook = next(campaign.inbox.glob("*.xlsx"))
    for history, said in ((workbook, "不是报送台账"), (tmp_path / "没有.sqlite", "找不到历史台账")):
        r = CliRunner().invoke(cli, ["merge", str(campaign.inbox), "-o", str(tmp_path / "汇总.xlsx"),
                                     "--history", str(history)])
        assert r.exit_code == 2 and said in r.output and "Traceback" not in r.output


def test_a_planted_history_cache_is_not_believed(campaign, tmp_path):
    """What perfxl keeps of a history ledger is sealed with the user's key: a file planted in its place (or
    one of another user's) is read as nothing, and the ledger is read again."""
    ledger = campaign.ledgers[(2024, "自评")]
    truth = load_history([ledger])
    cache = _cache_path(_digest(ledger, None))
    assert cache.is_file()
    forged = [p.to_data() for p in truth.projects]
    forged[0][9] = 0.0  # a score of nothing
    import json
    cache.write_bytes(b"0" * 64 + b"\n" + json.dumps(forged, ensure_ascii=False).encode())
    again = load_history([ledger])
    assert [p.score for p in again.projects] == [p.score for p in truth.projects]


def test_a_library_without_its_columns_is_exit_2_naming_what_is_missing(tmp_path):
    wb = openpyxl.Workbook()
    wb.active.append(["指标", "值"])
    wb.save(tmp_path / "指标库.xlsx")
    with pytest.raises(OutputError, match="找不到表头"):
        load_library(tmp_path / "指标库.xlsx")


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Nd", "No", "Nl")), max_size=30),
       st.integers(min_value=1990, max_value=2099))
def test_a_year_spaces_and_punctuation_do_not_change_a_projects_name(name, year):
    """A name without digits (a digit next to the year would make another year of it) matches itself with a
    year before it, after it in brackets, or with spaces and punctuation around it."""
    assume(not name.startswith("度"))  # 2024年度… is the year's own word
    base = name_key(name)
    assert name_key(f"{year}年{name}") == base
    assert name_key(f"{name} （{year}年度）") == base
    assert name_key(f"  {name}。") == base


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=2, max_size=40), st.data())
def test_a_percentile_without_some_values_is_the_percentile_of_the_rest(values, data):
    values = sorted(values)
    removed = sorted(data.draw(st.sets(st.integers(0, len(values) - 1), max_size=len(values) - 1)))
    rest = [v for i, v in enumerate(values) if i not in removed]
    for q in (0.1, 0.5, 0.9):
        expected = statistics.quantiles(rest, n=100, method="inclusive")[int(q * 100) - 1] if len(rest) > 1 else rest[0]
        assert percentile_without(values, removed, q) == pytest.approx(expected, rel=1e-9, abs=1e-6)


@given(st.lists(st.tuples(st.integers(0, 40).map(str), st.sampled_from(["k1", "k2"]),
                          st.sampled_from([0.0, 1.0, 2.5, 3.0, 50.0, 90.0, 95.0, 100.0, -4.0, 1e9])),
                max_size=80))
def test_the_peers_of_all_values_at_once_are_those_of_each_value_alone(triples):
    """outside_peers (numpy, every value at once) finds exactly the values that Peers.range_for, value by
    value, puts outside P10–P90 of the other units, with the same range, median and peer count, ties and
    units that declared an indicator twice included."""
    units, keys, values = ([t[i] for t in triples] for i in range(3))
    peers = Peers.of_values(triples)
    expected = []
    for i, (unit, key, value) in enumerate(triples):
        found = peers.range_for(key, unit)
        if found is not None and not found[0] - 1e-9 <= value <= found[1] + 1e-9:
            expected.append((i, *found))
    assert outside_peers(units, keys, values) == expected


def test_pathlib_paths_and_text_are_both_accepted_by_the_api(campaign, tmp_path):
    import perfxl

    result = perfxl.merge(campaign.inbox, tmp_path / "汇总.xlsx", roster=campaign.roster, jobs=1,
                          history=[str(p) for p in campaign.history])
    assert any(t.name == "历史对比" for t in result.tables)
    assert Path(tmp_path / "汇总.xlsx").is_file()


def _one_year_history(rows):
    from perfxl.comparison import History, PastProject, PastRow

    return History([PastProject(2024, "710009", "某站", "交通运输局", "2024年养护项目",
                                rows=[PastRow(*r) for r in rows], sources=["申报"])])


def _declared(text: str, rows):
    from perfxl.comparison import DeclaredProject, DeclaredRow

    return DeclaredProject("a.xlsx", "表", 2025, "710009", "某站", "交通运输局", "全国", "2025年养护项目", "B4", "", text,
                           [DeclaredRow(n, f"E{14 + n}", *r, "") for n, r in enumerate(rows, start=1)])


def test_a_goal_that_restates_a_dropped_indicator_does_not_explain_dropping_it():
    from perfxl.comparison import compare

    history = _one_year_history([("产出指标", "数量指标", "养护里程", "≥100公里", ""),
                                 ("产出指标", "质量指标", "路面优良率", "≥85%", "")])
    kept = [("产出指标", "数量指标", "养护里程", "≥100公里")]
    restated = _declared("完成养护任务，路面优良率达到85%以上", kept)
    explained = _declared("完成养护任务；路面优良率改由第三方检测，不再单列", kept)
    _, found = compare([restated], history)
    assert [f.problem.code for f in found] == ["history-indicator-dropped"]
    _, found = compare([explained], history)
    assert found == []


# ----------------------------------------------------------------------------------------------------
# 历史对比 and 历史匹配 written apart, by a helper process, beside the other sheets (perfxl.report._Apart)
# ----------------------------------------------------------------------------------------------------

forks = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork on this system")
_TIMES = re.compile(rb"20\d\d-\d\d-\d\d[ T]\d\d:\d\d(:\d\d)?Z?")


def _merged_unwritten(campaign, library):
    return run_merge([campaign.inbox], None, MergeOptions(roster=campaign.roster, jobs=1,
                                                          history=tuple(campaign.history),
                                                          library=library["edited"]), materialize=True)


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:  # the merge's time, said on 说明 and in the properties, left out
        return {name: _TIMES.sub(b"", z.read(name)) for name in z.namelist()}


def _sheet_rows(path: Path, sheet: str) -> list[tuple]:
    """A sheet's rows, the workbook closed after (a read-only workbook left open is collected later, in
    whichever test runs then, as an unclosed file)."""
    wb = openpyxl.load_workbook(path, read_only=True)
    try:
        return list(wb[sheet].iter_rows(values_only=True))
    finally:
        wb.close()


def _lost_helper(index: int):
    os._exit(3)  # the helper dies as a process killed by the system would


@forks
def test_历史对比_made_and_rendered_by_the_helper_is_the_workbook_the_merging_process_writes(campaign, library,
                                                                                            tmp_path):
    apart, here = _merged_unwritten(campaign, library), _merged_unwritten(campaign, library)
    write_summary(apart, tmp_path / "apart.xlsx", apart=True)
    # the findings and their rows were made by the helper: this process has not made them
    assert not apart.table("历史对比").rows.made and not apart.table("历史匹配").rows.made
    write_summary(here, tmp_path / "here.xlsx")
    assert here.table("历史对比").rows.made
    assert _members(tmp_path / "apart.xlsx") == _members(tmp_path / "here.xlsx")
    assert len(_rows(apart, "历史对比")) == apart.counts["compared"] == 9


@forks
def test_a_lost_helper_leaves_历史对比_to_the_merging_process(campaign, library, tmp_path, monkeypatch):
    result = _merged_unwritten(campaign, library)
    monkeypatch.setattr(report, "_render_apart", _lost_helper)
    write_summary(result, tmp_path / "s.xlsx", apart=True)
    assert result.table("历史对比").rows.made
    assert sum(1 for row in _sheet_rows(tmp_path / "s.xlsx", "历史对比")[1:] if row[0]) == 9


class _Forgetful(dict):
    def update(self, *args, **kwargs):  # as if the helper were forked after the tables were let go
        pass


@forks
def test_a_helper_forked_without_the_tables_leaves_历史对比_to_the_merging_process(campaign, library, tmp_path,
                                                                                    monkeypatch):
    result = _merged_unwritten(campaign, library)
    monkeypatch.setattr(report, "_APART", _Forgetful())
    write_summary(result, tmp_path / "s.xlsx", apart=True)
    assert result.table("历史对比").rows.made
    assert sum(1 for row in _sheet_rows(tmp_path / "s.xlsx", "历史对比")[1:] if row[0]) == 9

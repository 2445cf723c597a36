"""The year-end self-evaluation round trip: declare → merge → generate 自评表 from the ledger → fill as a
unit's own tooling would (openpyxl, through the defined names) → re-save in LibreOffice → merge → scores."""

from __future__ import annotations

import json
import shutil

import openpyxl
import pytest
from click.testing import CliRunner

from perfxl.cli import cli
from perfxl.fill import names_by_sheet
from perfxl.merging import MergeOptions, run_merge
from perfxl.read import read_workbook
from perfxl.scoring import indicator_score
from perfxl.spec import column_offsets, load_spec, split_cell
from perfxl.validator import check_form
from perfxl.values import parse_target

from .conftest import write_roster

YEAR = 2022
SEEDS = ("000-0", "002-0", "003-0")  # 盐城 2022 project, 绵阳 2021 projects, 上海 2020 project


@pytest.fixture(scope="module")
def declared(seeds, tmp_path_factory):
    base = tmp_path_factory.mktemp("year")
    inbox = base / "申报"
    inbox.mkdir()
    for key in SEEDS:
        shutil.copy(seeds[key].filled, inbox / f"{key}.xlsx")
    units = [(seeds[k].unit["code"], seeds[k].unit["name"], seeds[k].unit["department"]) for k in SEEDS]
    roster = write_roster(base / "名单.csv", units + [("999001", "未申报单位", "某部门")])
    run_merge([inbox], base / "申报汇总.xlsx", MergeOptions(roster=roster, jobs=1))
    ledger = base / "申报汇总_报送台账.sqlite"
    out = base / "自评表"
    r = CliRunner().invoke(cli, ["generate", "national/selfeval", "--year", str(YEAR), "--roster", str(roster),
                                 "--from", str(ledger), "-o", str(out)])
    assert r.exit_code == 0, r.output
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    files = {f["unit_code"]: out / f["file"] for f in manifest["forms"]}
    return {"base": base, "roster": roster, "ledger": ledger, "out": out, "manifest": manifest, "files": files,
            "output": r.output}


def _declared_rows(seed) -> list[tuple]:
    checked = check_form(read_workbook(seed.filled))
    ind = seed.spec.indicator_table().indicator
    return [[(r.level1, r.level2, r.level3, r.texts[ind.values[-1]]) for r in p.indicators] for p in checked.projects]


def _table_rows(path, sheet="项目1", template="national/selfeval"):
    """A follow-up form opened as a unit's tooling would: the workbook, the sheet, its indicator rows."""
    spec = load_spec(template, YEAR)
    table = spec.tables["indicators"]
    wb = openpyxl.load_workbook(path)
    ws = wb[sheet]
    first, last = names_by_sheet(wb)[sheet][table.name].split(":")
    (r0, c0), (r1, _) = split_cell(first), split_cell(last)
    offsets = column_offsets(table)
    rows = []
    for r in range(r0, r1 + 1):
        row = {cid: ws.cell(row=r + 1, column=c0 + off + 1) for cid, off in offsets.items()}
        if row["level3"].value:
            rows.append(row)
    return wb, ws, rows


def test_a_unit_without_a_declaration_gets_no_form_and_is_listed(declared):
    assert [u["unit_code"] for u in declared["manifest"]["without_declaration"]] == ["999001"]
    assert "999001" not in declared["files"] and "未申报单位" in declared["output"]


def test_yancheng_seed_rows_are_exactly_its_declared_rows_in_order(declared, seeds):
    seed = seeds["000-0"]
    _, _, rows = _table_rows(declared["files"][seed.unit["code"]])
    got = [(r["level1"].value, r["level2"].value, r["level3"].value, r["target"].value) for r in rows]
    assert got == _declared_rows(seed)[0]


def test_prefilled_values_equal_the_declaration_and_are_locked(declared, seeds):
    seed = seeds["002-0"]  # 绵阳: several projects, money in 元 declared, 万元 on the 自评表
    path = declared["files"][seed.unit["code"]]
    form = read_workbook(path)
    declaration = check_form(read_workbook(seed.filled))
    assert [s.fields["project_name"].value for s in form.sheets] == [p.name for p in declaration.projects]
    for sheet, project in zip(form.sheets, declaration.projects):
        assert sheet.fields["funds_total_initial"].value == pytest.approx(project.values["budget"] / 10_000)
    wb, ws, rows = _table_rows(path)
    assert ws.protection.sheet
    assert all(r["target"].protection.locked and not r["actual"].protection.locked for r in rows)
    assert [len(d) for d in _declared_rows(seed)] == [len(form.declared[s.sheet]) for s in form.sheets]


def test_points_spread_over_each_group(declared, seeds):
    _, _, rows = _table_rows(declared["files"][seeds["000-0"].unit["code"]])
    by_level1 = {}
    for r in rows:
        by_level1.setdefault(r["level1"].value, []).append(r["points"].value)
    assert sum(by_level1["产出指标"]) == pytest.approx(50)
    assert sum(by_level1["效益指标"]) == pytest.approx(30)
    assert sum(by_level1["满意度指标"]) == pytest.approx(10)
    assert set(by_level1["决策"]) == {0} and set(by_level1["过程"]) == {0}  # evaluation rows: shown, not scored


@pytest.mark.libreoffice
def test_round_trip_scores_reasons_and_changed_targets(declared, seeds, convert, tmp_path):
    seed = seeds["000-0"]
    wb, ws, rows = _table_rows(declared["files"][seed.unit["code"]])
    names = names_by_sheet(wb)["项目1"]

    def put(field_id, value):
        ws[names[f"f_{field_id}"].split(":")[0]] = value

    put("funds_total_budget", 1224.14)
    put("funds_fiscal_budget", 1224.14)
    put("funds_total_spent", 1100.0)
    put("funds_fiscal_spent", 1100.0)
    put("goal_actual", "完成系统上云和安全整改。")
    put("preparer", "张三")
    put("phone", "0515-88888888")
    expected = {}
    for r in rows:
        level3, target, points = r["level3"].value, r["target"].value, r["points"].value
        t = parse_target(target)
        if level3 == "缴存业务线上办理率":  # ≥90%, 81% reached, no reason given
            r["actual"].value = "81%"
            expected[level3] = points * 81 / 90
        elif level3 == "系统故障修复响应时间":  # ≤12小时, 16 hours, with a reason
            r["actual"].value = "16小时"
            r["reason"].value = "供应商驻场人员不足，已签订驻场协议"
            expected[level3] = points * 12 / 16
        elif level3 == "“一张网”业务事项":  # the clerk unprotected the sheet and lowered the target
            r["target"].value = "＝200项"
            r["actual"].value = "200项"
            expected[level3] = points * 200 / 207  # scored against what was declared
        elif t.kind == "quantitative" and t.value is not None:
            r["actual"].value = target.lstrip("＝=≥≤<>")
            expected[level3] = points
        else:
            r["actual"].value = "达成年度指标"
            r["score"].value = points
            expected[level3] = points
    filled = tmp_path / "盐城自评.xlsx"
    wb.save(filled)
    resaved = convert(filled, "xlsx")
    inbox = tmp_path / "自评收件箱"
    inbox.mkdir()
    shutil.copy(resaved, inbox / "盐城自评.xlsx")
    result = run_merge([inbox], tmp_path / "自评汇总.xlsx", MergeOptions(roster=declared["roster"], jobs=1),
                       materialize=True)
    assert result.counts["merged"] == 1
    lines = {row[5]: row for row in result.table("指标得分").iter_rows()}
    titles = [t for t, _ in result.table("指标得分").columns]
    score_at, where_at = titles.index("得分"), titles.index("位置")
    for level3, points in expected.items():
        assert lines[level3][score_at] == pytest.approx(points, abs=1e-3), level3
    titles = [t for t, _ in result.table("校验问题").columns]
    cell_at, code_at = titles.index("单元格"), titles.index("规则")
    found = [(row[code_at], row[cell_at]) for row in result.table("校验问题").rows]
    reason_row = next(r for r in rows if r["level3"].value == "缴存业务线上办理率")
    changed_row = next(r for r in rows if r["level3"].value == "“一张网”业务事项")
    assert ("selfeval-reason-missing", reason_row["reason"].coordinate) in found
    assert ("selfeval-target-changed", changed_row["target"].coordinate) in found
    assert not any(code == "selfeval-reason-missing" and cell == next(
        r for r in rows if r["level3"].value == "系统故障修复响应时间")["reason"].coordinate for code, cell in found)
    scores = result.table("自评得分").rows[0]
    titles = [t for t, _ in result.table("自评得分").columns]
    execution = scores[titles.index("预算执行得分")]
    assert execution == pytest.approx(10 * 1100 / 1224.14, abs=1e-3)
    total = scores[titles.index("总分")]
    assert total == pytest.approx(execution + sum(expected.values()), abs=0.01)
    assert lines["缴存业务线上办理率"][where_at] == f"项目1!{reason_row['actual'].coordinate}"
    assert indicator_score(parse_target("≥90%"), parse_target("81%"), 1).points == pytest.approx(0.9)


@pytest.mark.libreoffice
def test_live_checks_show_execution_and_points_moved_between_level1s(declared, seeds, convert, tmp_path):
    wb, ws, rows = _table_rows(declared["files"][seeds["000-0"].unit["code"]])
    names = names_by_sheet(wb)["项目1"]
    ws[names["f_funds_total_budget"].split(":")[0]] = 200
    ws[names["f_funds_total_spent"].split(":")[0]] = 150
    output = next(r for r in rows if r["level1"].value == "产出指标")
    output["points"].value = output["points"].value + 2  # two points taken from nowhere: 产出 is now 52
    edited = tmp_path / "edited.xlsx"
    wb.save(edited)
    shown = openpyxl.load_workbook(convert(edited, "xlsx"), data_only=True)["项目1"]
    check_column = max(c for r in rows for c in (r["reason"].column,)) + 1
    texts = {r: shown.cell(row=r, column=check_column).value for r in range(1, shown.max_row + 1)}
    assert "执行率 75.0%，得分 7.50" in texts.values()
    flagged = {shown.cell(row=r["level1"].row, column=1).value for r in rows
               if (texts.get(r["level1"].row) or "").startswith("✗")}
    assert flagged == {"产出指标"}


def test_a_form_whose_declared_sheet_was_deleted_is_still_checked_against_what_was_issued(declared, seeds, tmp_path):
    """The hidden sheet is the form's own copy: deleting it changes nothing, the record of the round is used."""
    wb, ws, rows = _table_rows(declared["files"][seeds["000-0"].unit["code"]])
    del wb["perfxl_declared"]
    rows[0]["target"].value = "≥1项"
    path = tmp_path / "删了隐藏表.xlsx"
    wb.save(path)
    checked = check_form(read_workbook(path))
    errors = {(p.code, p.cell) for p in checked.problems if p.severity == "error"}
    assert ("selfeval-target-changed", rows[0]["target"].coordinate) in errors

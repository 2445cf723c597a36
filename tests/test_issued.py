"""Follow-up forms are checked against what was issued (#19): the record of the round kept beside the
forms (perfxl.issued), never the form's own copy. A unit that edits the visible cells *and* the hidden
declared sheet consistently still meets the record; rows are matched by their identity, not position."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from perfxl.cli import cli
from perfxl.contract import DECLARED_SHEET, STAMP_SHEET
from perfxl.fill import names_by_sheet
from perfxl.issued import RECORD_FILE
from perfxl.merger import MergeOptions, run_merge
from perfxl.values import parse_target

from .test_monitor import monitor_forms  # noqa: F401 - the monitoring round generated from the ledger
from .test_selfeval import (
    _table_rows,
    declared,  # noqa: F401 - the declaration round, merged, and its 自评表
)

YEAR = 2022


def _open(path, template: str, sheet: str = "项目1"):
    """The workbook, the sheet, its defined names and its indicator rows."""
    wb, ws, rows = _table_rows(path, sheet, template)
    return wb, ws, names_by_sheet(wb)[sheet], rows


def _fill_selfeval(ws, names, rows) -> None:
    """Every target met, money spent in full: an honest year."""
    for field_id, value in (("funds_total_budget", 100.0), ("funds_fiscal_budget", 100.0), ("funds_total_spent", 100.0),
                            ("funds_fiscal_spent", 100.0), ("goal_actual", "完成"), ("preparer", "张三"),
                            ("phone", "0515-88888888")):
        ws[names[f"f_{field_id}"].split(":")[0]] = value
    for r in rows:
        t = parse_target(r["target"].value)
        if t.kind == "quantitative" and t.value is not None:
            r["actual"].value = r["target"].value.lstrip("＝=≥≤<>")
        else:
            r["actual"].value = "达成年度指标"
            r["score"].value = r["points"].value


def _edit_hidden(wb, change) -> None:
    """Apply `change(row)` to every row of the hidden declared sheet's JSON, and keep its 分值 totals in
    step: the consistent edit of a clerk who unprotected the workbook."""
    ws = wb[DECLARED_SHEET]
    for r in range(3, ws.max_row + 1):
        text = ws.cell(row=r, column=4).value
        if not text:
            continue
        items = json.loads(text)
        for item in items:
            change(item)
        ws.cell(row=r, column=4).value = json.dumps(items, ensure_ascii=False)
        ws.cell(row=r, column=3).value = sum(float(i[-1] or 0) for i in items)


def _merge(tmp_path, name: str, *paths, **options):
    inbox = tmp_path / f"{name}收件箱"
    inbox.mkdir()
    for path in paths:
        shutil.copy(path, inbox / path.name)
    return run_merge([inbox], tmp_path / f"{name}汇总.xlsx", MergeOptions(jobs=1, **options), materialize=True)


def _errors(result) -> set[tuple[str, str]]:
    table = result.table("校验问题")
    titles = [t for t, _ in table.columns]
    return {(row[titles.index("规则")], row[titles.index("单元格")]) for row in table.iter_rows()
            if row[titles.index("严重程度")] == "错误"}


def _score(result) -> tuple[float, str]:
    table = result.table("自评得分")
    titles = [t for t, _ in table.columns]
    row = next(iter(table.iter_rows()))
    return row[titles.index("总分")], row[titles.index("等级")]


@pytest.fixture(scope="module")
def honest(declared, seeds, tmp_path_factory):  # noqa: F811
    """The 盐城 unit's 自评表 filled honestly, and its merged total: what any edit is measured against."""
    tmp = tmp_path_factory.mktemp("honest")
    wb, ws, names, rows = _open(declared["files"][seeds["000-0"].unit["code"]], "national/selfeval")
    _fill_selfeval(ws, names, rows)
    path = tmp / "诚实.xlsx"
    wb.save(path)
    return path, _score(_merge(tmp, "诚实", path))


def test_a_target_lowered_on_the_form_and_in_its_hidden_copy_is_an_error_scored_as_issued(
        declared, seeds, honest, tmp_path):  # noqa: F811
    wb, ws, names, rows = _open(declared["files"][seeds["000-0"].unit["code"]], "national/selfeval")
    _fill_selfeval(ws, names, rows)
    row = next(r for r in rows if r["level3"].value == "缴存业务线上办理率")  # ≥90%
    row["target"].value, row["actual"].value = "≥50%", "60%"  # lowered, then "met"

    def lower(item):
        if item[4] == "缴存业务线上办理率":
            item[5] = "≥50%"

    _edit_hidden(wb, lower)
    path = tmp_path / "改了两处.xlsx"
    wb.save(path)
    result = _merge(tmp_path, "改", path)
    assert ("selfeval-target-changed", row["target"].coordinate) in _errors(result)
    scores = {r[5]: r for r in result.table("指标得分").iter_rows()}
    titles = [t for t, _ in result.table("指标得分").columns]
    line = scores["缴存业务线上办理率"]
    assert line[titles.index("年度指标值")] == "≥90%"  # as issued
    assert line[titles.index("得分")] == pytest.approx(line[titles.index("分值")] * 60 / 90, abs=1e-3)
    total, _ = _score(result)
    assert total < honest[1][0]


def test_points_moved_between_level1s_on_the_form_and_in_its_hidden_copy_raise_nothing(
        declared, seeds, honest, tmp_path):  # noqa: F811
    wb, ws, names, rows = _open(declared["files"][seeds["000-0"].unit["code"]], "national/selfeval")
    _fill_selfeval(ws, names, rows)
    output = next(r for r in rows if r["level1"].value == "产出指标")
    benefit = [r for r in rows if r["level1"].value == "效益指标"]
    for r in benefit:  # 效益 missed completely; its 分值 moved to an 产出 row that was met
        r["actual"].value = "0%" if parse_target(r["target"].value).value is not None else "未达成"
        r["score"].value = 0 if r["score"].value is not None else None
        r["reason"].value = "未开展"
        output["points"].value += r["points"].value
        r["points"].value = 0
    moved = {r["level3"].value for r in benefit}
    taker = output["level3"].value

    def move(item):
        if item[4] in moved:
            item[6] = 0
        elif item[4] == taker:
            item[6] = output["points"].value

    _edit_hidden(wb, move)
    path = tmp_path / "挪了分值.xlsx"
    wb.save(path)
    result = _merge(tmp_path, "挪", path)
    assert any(code == "selfeval-points-moved" for code, _ in _errors(result))
    total, _ = _score(result)
    assert total <= honest[1][0] - 29  # 效益's 30 points are lost, not moved to a met row


def test_an_issued_row_cleared_from_a_self_evaluation_scores_zero_and_is_named(declared, seeds, honest, tmp_path):  # noqa: F811
    wb, ws, names, rows = _open(declared["files"][seeds["000-0"].unit["code"]], "national/selfeval")
    _fill_selfeval(ws, names, rows)
    gone = rows[-1]
    level3, points = gone["level3"].value, gone["points"].value
    for cell in gone.values():
        cell.value = None
    path = tmp_path / "删了一行.xlsx"
    wb.save(path)
    result = _merge(tmp_path, "删", path)
    problems = result.table("校验问题")
    titles = [t for t, _ in problems.columns]
    named = [r for r in problems.iter_rows() if r[titles.index("规则")] == "declared-row-missing"]
    assert len(named) == 1 and level3 in named[0][titles.index("说明")]
    total, _ = _score(result)
    assert total == pytest.approx(honest[1][0] - points, abs=0.01)


def test_a_changed_execution_weight_or_budget_is_an_error_and_scored_as_issued(declared, seeds, honest, tmp_path):  # noqa: F811
    wb, ws, names, rows = _open(declared["files"][seeds["000-0"].unit["code"]], "national/selfeval")
    _fill_selfeval(ws, names, rows)
    ws[names["f_execution_points"].split(":")[0]] = 30  # 预算执行率 is worth 10
    ws[names["f_funds_total_initial"].split(":")[0]] = 1.0
    path = tmp_path / "改了预算.xlsx"
    wb.save(path)
    result = _merge(tmp_path, "预算", path)
    changed = [cell for code, cell in _errors(result) if code == "declared-changed"]
    assert len(changed) == 2
    assert _score(result) == honest[1]


def _fill_monitor(ws, names, rows) -> None:
    for field_id, value in (("funds_budget", 100.0), ("funds_spent", 50.0), ("goal_progress", "进展顺利"),
                            ("preparer", "王五"), ("phone", "0515-66666666")):
        ws[names[f"f_{field_id}"].split(":")[0]] = value
    for r in rows:
        t = parse_target(r["target"].value)
        r["expected"].value = r["target"].value.lstrip("＝=≥≤") if t.value is not None else "按期完成"
        r["likelihood"].value = "确定能"


def _monitor_lines(result) -> dict[str, dict]:
    table = result.table("监控预警")
    titles = [t for t, _ in table.columns]
    return {row[titles.index("三级指标")]: dict(zip(titles, row)) for row in table.iter_rows()}


def test_a_monitored_target_lowered_in_both_copies_is_an_error_and_lit_against_what_was_issued(
        monitor_forms, seeds, tmp_path):  # noqa: F811
    wb, ws, names, rows = _open(monitor_forms[seeds["000-0"].unit["code"]], "national/monitor")
    _fill_monitor(ws, names, rows)
    row = next(r for r in rows if r["level3"].value == "缴存业务线上办理率")  # ≥90%
    row["target"].value, row["expected"].value = "≥50%", "55%"

    def lower(item):
        if item[4] == "缴存业务线上办理率":
            item[5] = "≥50%"

    _edit_hidden(wb, lower)
    path = tmp_path / "监控改了两处.xlsx"
    wb.save(path)
    result = _merge(tmp_path, "监控改", path)
    assert ("monitor-target-changed", row["target"].coordinate) in _errors(result)
    line = _monitor_lines(result)["缴存业务线上办理率"]
    assert line["年度指标值"] == "≥90%" and line["预警"] == "红"  # 55% of a 90% target


def test_clearing_the_last_monitored_row_is_named_and_the_target_stays_in_the_warnings(
        monitor_forms, seeds, tmp_path):  # noqa: F811
    wb, ws, names, rows = _open(monitor_forms[seeds["000-0"].unit["code"]], "national/monitor")
    _fill_monitor(ws, names, rows)
    gone = rows[-1]
    level3 = gone["level3"].value
    for cell in gone.values():
        cell.value = None
    path = tmp_path / "监控删了一行.xlsx"
    wb.save(path)
    result = _merge(tmp_path, "监控删", path)
    assert any(code == "declared-row-missing" for code, _ in _errors(result))
    assert _monitor_lines(result)[level3]["预警"] == "红"


def test_without_its_record_a_follow_up_form_is_an_error_and_not_scored_until_issued_names_it(
        declared, seeds, honest, tmp_path, monkeypatch):  # noqa: F811
    """On another machine (nothing registered) the record must be named; then the form is checked as here."""
    monkeypatch.setenv("PERFXL_HOME", str(tmp_path / "另一台电脑"))
    path, (total, grade) = honest
    alone = _merge(tmp_path, "无记录", path)
    assert any(code == "issued-missing" for code, _ in _errors(alone))
    assert _score(alone) == (None, "")
    record = declared["out"] / RECORD_FILE
    named = _merge(tmp_path, "有记录", path, issued=(record,))
    assert _score(named) == (total, grade) and not any(code == "issued-missing" for code, _ in _errors(named))
    r = CliRunner().invoke(cli, ["validate", str(path), "--issued", str(record), "--json"])
    assert "issued-missing" not in r.output and r.exit_code in (0, 1), r.output


def test_a_form_that_lost_its_stamp_is_found_by_its_unit_and_still_checked(declared, seeds, tmp_path):  # noqa: F811
    wb, ws, names, rows = _open(declared["files"][seeds["000-0"].unit["code"]], "national/selfeval")
    _fill_selfeval(ws, names, rows)
    row = next(r for r in rows if r["level3"].value == "缴存业务线上办理率")
    row["target"].value = "≥50%"
    stamp = wb[STAMP_SHEET]
    for r in range(1, stamp.max_row + 1):
        if stamp.cell(row=r, column=1).value == "round":
            stamp.cell(row=r, column=2).value = None  # the round gone; the unit still named
    wb.custom_doc_props.props = [p for p in wb.custom_doc_props.props if p.name != "perfxl.round"]
    path = tmp_path / "没了批次.xlsx"
    wb.save(path)
    result = _merge(tmp_path, "无批次", path)
    assert ("selfeval-target-changed", row["target"].coordinate) in _errors(result)

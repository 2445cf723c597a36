"""Mid-year monitoring: lights by rule, and the round trip generate-from-ledger → fill → LibreOffice → merge."""

from __future__ import annotations

import json
import shutil

import openpyxl
import pytest
from click.testing import CliRunner

from perfxl.cli import cli
from perfxl.fill import names_by_sheet
from perfxl.merging import MergeOptions, run_merge
from perfxl.rules.monitor import light
from perfxl.spec import column_offsets, load_spec, split_cell
from perfxl.values import parse_target

from .test_selfeval import declared  # noqa: F401 - the declaration round, merged, with its ledger

YEAR = 2022


@pytest.mark.parametrize("target, expected, likelihood, colour", [
    ("≥95%", "95%", "确定能", ""),
    ("≥95%", "99%", "", ""),
    ("≥95%", "90%", "", "blue"),  # 94.7% of the target
    ("≥95%", "80%", "有可能", "yellow"),  # 84.2%
    ("≥95%", "60%", "", "red"),  # 63.2%
    ("≤12小时", "16小时", "", "yellow"),  # 75%
    ("≤12小时", "10小时", "完全不可能", "red"),  # the unit says so, whatever the number
    ("明显改善", "", "有可能", "yellow"),
    ("明显改善", "", "确定能", ""),
    ("=1套", "1套", "", ""),
])
def test_lights(target, expected, likelihood, colour):
    assert light(parse_target(target), parse_target(expected), likelihood)[0] == colour


@pytest.fixture(scope="module")
def monitor_forms(declared):  # noqa: F811
    out = declared["base"] / "监控表"
    r = CliRunner().invoke(cli, ["generate", "national/monitor", "--year", str(YEAR), "--roster", str(declared["roster"]),
                                 "--from", str(declared["ledger"]), "-o", str(out)])
    assert r.exit_code == 0, r.output
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    return {f["unit_code"]: out / f["file"] for f in manifest["forms"]}


@pytest.mark.libreoffice
def test_round_trip_lights_and_missing_causes(monitor_forms, seeds, convert, tmp_path):
    path = monitor_forms[seeds["000-0"].unit["code"]]
    spec = load_spec("national/monitor", YEAR)
    table = spec.tables["indicators"]
    wb = openpyxl.load_workbook(path)
    ws = wb["项目1"]
    names = names_by_sheet(wb)["项目1"]
    ws[names["f_funds_budget"]] = 1224.14
    ws[names["f_funds_spent"]] = 400.0
    ws[names["f_goal_progress"]] = "系统上云方案已通过评审。"
    ws[names["f_preparer"]] = "王五"
    ws[names["f_phone"]] = "0515-66666666"
    first, last = names[table.name].split(":")
    (r0, c0), (r1, _) = split_cell(first), split_cell(last)
    offsets = column_offsets(table)
    cells = {}
    for r in range(r0, r1 + 1):
        row = {cid: ws.cell(row=r + 1, column=c0 + off + 1) for cid, off in offsets.items()}
        level3 = row["level3"].value
        if not level3:
            continue
        cells[level3] = row
        target = parse_target(row["target"].value)
        row["expected"].value = row["target"].value.lstrip("＝=≥≤") if target.value is not None else "按期完成"
        row["likelihood"].value = "确定能"
    cells["缴存业务线上办理率"]["expected"].value = "60%"  # ≥90%: red, and no cause given
    cells["系统故障修复响应时间"]["expected"].value = "15小时"  # ≤12: 80%, yellow, with a cause
    cells["系统故障修复响应时间"]["cause"].value = "人员保障"
    cells["系统单点故障率"]["likelihood"].value = "有可能"  # qualitative, at risk, no cause
    filled = tmp_path / "盐城监控.xlsx"
    wb.save(filled)
    inbox = tmp_path / "监控收件箱"
    inbox.mkdir()
    shutil.copy(convert(filled, "xlsx"), inbox / "盐城监控.xlsx")
    result = run_merge([inbox], tmp_path / "监控汇总.xlsx", MergeOptions(roster=None, jobs=1))
    assert result.counts["merged"] == 1
    sheet = result.table("监控预警")
    titles = [t for t, _ in sheet.columns]
    lights = {row[titles.index("三级指标")]: row[titles.index("预警")] for row in sheet.rows}
    assert (lights["缴存业务线上办理率"], lights["系统故障修复响应时间"], lights["系统单点故障率"]) == ("红", "黄", "黄")
    assert lights["“一张网”业务事项"] == ""
    assert sheet.rows[0][titles.index("预警")] == "红", "reddest first"
    problems = result.table("校验问题")
    titles = [t for t, _ in problems.columns]
    found = {(row[titles.index("规则")], row[titles.index("单元格")]) for row in problems.rows}
    assert ("monitor-cause-missing", cells["缴存业务线上办理率"]["cause"].coordinate) in found
    assert ("monitor-cause-missing", cells["系统单点故障率"]["cause"].coordinate) in found
    assert ("monitor-cause-missing", cells["系统故障修复响应时间"]["cause"].coordinate) not in found
    assert ("monitor-likely-missed", cells["缴存业务线上办理率"]["expected"].coordinate) in found
    rate = sheet.rows[0][[t for t, _ in sheet.columns].index("执行率")]
    assert rate == pytest.approx(400 / 1224.14)

"""`perfxl demo`: one budget cycle on shipped sample data, end to end.

A bureau (绵阳, 2021) sends the project form to 14 units in 4 departments; units fill it with projects
drawn from the Mianyang seed (amounts scaled per unit, so no two units are identical), a few make the
mistakes clerks make, two never answer, one answers twice, one file arrives twice, one is broken; then
everything is merged.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

from .fill import fill_workbook, load_sample
from .generator import generate_forms
from .roster import read_roster
from .spec import load_spec

TEMPLATE, YEAR = "mianyang/project", 2021
SAMPLES = Path(__file__).parent / "samples"


def _scaled_project(project: dict, factor: float, unit_name: str) -> dict:
    """A seed project re-costed for another unit: every amount × factor, cost tuples kept consistent."""
    fields = dict(project["fields"], unit_name=unit_name, implementing_unit=unit_name)
    rows = []
    total = 0
    for row in project["tables"]["indicators"]:
        row = list(row)
        if row[1] == "成本指标" and str(row[3]).startswith("数量"):
            amount = round(float(str(row[3]).split("金额：")[1]) * factor / 100) * 100
            total += amount
            unit = str(row[3]).split("单位：")[1].split(",")[0]
            row[3] = f"数量：1.00,单位：{unit},单价：{amount:.2f},金额：{amount:.2f}"
        rows.append(row)
    fields["budget"] = total
    return {"fields": fields, "tables": {"indicators": rows}}


def _mistake(kind: str, project: dict) -> None:
    if kind == "required":
        project["fields"]["overview"] = None
    elif kind == "cost":
        row = project["tables"]["indicators"][0]
        row[3] = row[3].replace("数量：1.00", "数量：2.00")
    elif kind == "level2":
        project["tables"]["indicators"][-1][1] = "社会效益指标"
    elif kind == "budget":
        project["fields"]["budget"] = project["fields"]["budget"] + 5000
    elif kind == "unparseable":
        project["tables"]["indicators"][1][3] = "》 万元"
    elif kind == "text-number":  # not a mistake perfxl minds: "575,500元" is read as 575500
        project["fields"]["budget"] = f"{project['fields']['budget']:,.0f}元"


def run_demo(folder: Path, echo=print, print_merge=None) -> dict:
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    roster_path = folder / "名单.csv"
    folder.mkdir(parents=True)
    shutil.copy(SAMPLES / "demo-roster.csv", roster_path)
    units = read_roster(roster_path)
    blank_dir = folder / "1-空白表"
    generate_forms(TEMPLATE, YEAR, units, blank_dir)
    echo(f"1. 已为 {len(units)} 个单位生成空白表 → {blank_dir}")

    seed = load_sample(SAMPLES / "seed-002-mianyang-project.yaml")["workbooks"][0]["projects"]
    rng = random.Random(2021)
    inbox = folder / "2-收件箱"
    spec = load_spec(TEMPLATE, YEAR)
    mistakes = {2: "required", 5: "cost", 8: "level2", 10: "budget", 12: "unparseable"}
    tolerated = {3: "text-number"}
    silent = {6, 13}  # these units never answer
    blanks = sorted(blank_dir.glob("*.xlsx"))
    filled = 0
    for i, (unit, blank) in enumerate(zip(units, blanks)):
        if i in silent:
            continue
        projects = []
        for k in range(unit.projects or 1):
            source = seed[(i * 3 + k) % len(seed)]
            projects.append(_scaled_project(source, rng.uniform(0.4, 1.6), unit.name))
        sub = inbox / unit.department
        if i in mistakes or i in tolerated:
            _mistake(mistakes.get(i) or tolerated[i], projects[0])
        target = sub / blank.name
        fill_workbook(spec, blank, target, projects)
        filled += 1
        if i == 10:  # the unit notices its mistake and sends a corrected version later
            projects[0]["fields"]["budget"] -= 5000
            later = sub / "更正" / blank.name.replace(".xlsx", "（更正版）.xlsx")
            fill_workbook(spec, blank, later, projects)
            stamp = os.stat(target).st_mtime
            os.utime(target, (stamp - 3600, stamp - 3600))
    first = sorted(inbox.rglob("*.xlsx"))[0]
    shutil.copy(first, inbox / ("重复-" + first.name))  # the same file sent twice
    (inbox / "损坏的文件.xlsx").write_bytes(first.read_bytes()[:2000])  # cut off in transfer
    echo(f"2. {filled} 个单位填报（含 {len(mistakes)} 份有错误、1 份把金额写成文字“x,xxx元”（可自动识别）、"
         f"1 份更正、1 份重复、1 份损坏），"
         f"{len(silent)} 个单位未报送 → {inbox}")
    import time

    from .merger import MergeOptions, run_merge

    summary = folder / "3-汇总" / f"{YEAR}年项目支出绩效目标汇总表.xlsx"
    started = time.perf_counter()
    result = run_merge([inbox], summary, MergeOptions(template=TEMPLATE, year=YEAR, roster=roster_path,
                                                      csv_dir=summary.parent / "csv"))
    echo("3. 汇总完成：")
    if print_merge:
        print_merge(result, time.perf_counter() - started, summary.parent / "csv")
    echo(f"打开汇总表查看：{summary}")
    return {"folder": folder, "inbox": inbox, "roster": roster_path, "blank": blank_dir, "summary": summary,
            "result": result}

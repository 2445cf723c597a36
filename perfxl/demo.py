"""`perfxl demo`: one budget year on shipped sample data, end to end.

A bureau (绵阳, 2021) sends the project form to 14 units in 4 departments; units fill it with projects
drawn from the Mianyang seed (amounts scaled per unit, so no two units are identical), a few make the
mistakes clerks make, two never answer, one answers twice, one file arrives twice, one is broken; then
everything is merged and reviewed, and the units to revise get their return package. In July the
monitoring forms go out from the ledger and come back with forecasts (one unit forecasts a miss and
names no cause); at year end the self-evaluation forms go out and come back (one unit missed targets and
says why, one changed a declared target, one gave no reasons), and both rounds are merged and scored.
The next year's blank forms then carry each unit's 上年参考, and their merge is compared with the year's
ledgers (one unit declares a quantity below what it achieved).
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path

from .errors import PerfxlError
from .fill import fill_workbook, load_sample, names_by_sheet
from .generator import generate_forms
from .roster import read_roster
from .rounds import ROUNDS
from .spec import column_offsets, load_spec, split_cell

TEMPLATE, YEAR = "mianyang/project", 2021
PORTAL = "http://192.168.1.10:8000/"  # where the bureau's portal would be: printed on each round's 分发清单
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


DEMO_ENTRIES = {"名单.csv", "1-空白表", "2-收件箱", "3-汇总", "4-运行监控", "5-绩效自评", "6-次年申报"}  # what a demo writes


def _clear(folder: Path) -> None:
    """Empty the folder for a new run: only if it is missing, empty or an earlier demo's (the demo starts
    afresh each time, and `perfxl demo 文件夹` must never wipe a folder of someone's own files)."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise PerfxlError(f"{folder} 是文件，不是文件夹：请给演示一个新的文件夹 (the demo needs a folder)")
    others = sorted(p.name for p in folder.iterdir() if p.name not in DEMO_ENTRIES and not p.name.startswith("."))
    if others:
        raise PerfxlError(f"{folder} 中已有不是演示写出的文件（{'、'.join(others[:5])}），演示不会清空它：请换一个空文件夹"
                          f"或新的文件夹名 (the demo clears only a folder an earlier demo wrote)")
    shutil.rmtree(folder)


def run_demo(folder: Path, echo=print, print_merge=None) -> dict:
    folder = Path(folder)
    _clear(folder)
    roster_path = folder / "名单.csv"
    folder.mkdir(parents=True)
    shutil.copy(SAMPLES / "demo-roster.csv", roster_path)
    units = read_roster(roster_path)
    blank_dir = folder / "1-空白表"
    generate_forms(TEMPLATE, YEAR, units, blank_dir, portal_url=PORTAL, deadline=f"{YEAR}-03-01")
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

    from .merging import MergeOptions, run_merge

    summary = folder / "3-汇总" / f"{ROUNDS['project'].summary_title(YEAR)}.xlsx"
    returns = folder / "3-汇总" / "退回"
    started = time.perf_counter()
    result = run_merge([inbox], summary, MergeOptions(template=TEMPLATE, year=YEAR, roster=roster_path,
                                                      csv_dir=summary.parent / "csv", returns_dir=returns,
                                                      return_by=f"{YEAR}-03-15"))
    echo("3. 汇总并审核完成：")
    if print_merge:
        print_merge(result, time.perf_counter() - started, summary.parent / "csv", returns)
    ledger = summary.with_name(summary.stem + "_报送台账.sqlite")
    monitor = _followup_round(folder / "4-运行监控", "national/monitor", units, roster_path, ledger, _monitor_answers,
                              f"{YEAR}-08-10")
    echo(f"4. 运行监控：从台账生成监控表、单位填报（1 个单位预计完不成且未说明原因）并汇总 → {monitor}")
    selfeval = _followup_round(folder / "5-绩效自评", "national/selfeval", units, roster_path, ledger,
                               _selfeval_answers, f"{YEAR + 1}-01-31")
    echo(f"5. 绩效自评：从台账生成自评表、单位填报（1 个未完成目标并说明原因、1 个改动了申报的指标值、"
         f"1 个未填偏差原因）并评分汇总 → {selfeval}")
    next_year, compared = _next_year(folder / "6-次年申报", units, roster_path,
                                     [ledger, selfeval.with_name(selfeval.stem + "_报送台账.sqlite")], seed, rng)
    echo(f"6. 次年申报：{YEAR + 1} 年空白表附上年参考（上年指标值、实际完成值、自评得分），单位照上年填报（1 个单位"
         f"把数量指标降到上年实际完成值以下），汇总时对照上年和同类单位：历史对比 {compared} 条 → {next_year}")
    echo(f"打开汇总表查看：申报审核 {summary}；运行监控 {monitor}；绩效自评 {selfeval}；次年对照上年 {next_year}")
    return {"folder": folder, "inbox": inbox, "roster": roster_path, "blank": blank_dir, "summary": summary,
            "result": result, "returns": returns, "monitor": monitor, "selfeval": selfeval, "next_year": next_year}


def _next_year(folder: Path, units, roster: Path, history: list[Path], seed: list, rng) -> tuple[Path, int]:
    """The next year's declaration against this one: blank forms with 上年参考, the same projects declared
    again (one unit lowers a quantity below what it achieved), merged with the year's ledgers as history."""
    from .handout import generate_round
    from .merging import MergeOptions, run_merge

    year = YEAR + 1
    blank, inbox = folder / "空白表", folder / "收件箱"
    generate_round(TEMPLATE, year, units, blank, history=history, portal_url=PORTAL, deadline=f"{year}-03-01")
    spec = load_spec(TEMPLATE, year)
    for i, (unit, form) in enumerate(zip(units, sorted(blank.glob("*.xlsx")))):
        if form.name == "分发清单.xlsx" or i in (6, 13):  # the units that never answer
            continue
        projects = [_a_year_on(_scaled_project(seed[(i * 3 + k) % len(seed)], rng.uniform(0.4, 1.6), unit.name),
                               YEAR) for k in range(unit.projects or 1)]
        if i == 0:  # below what it achieved last year, with no basis given
            for row in projects[0]["tables"]["indicators"]:
                if row[1] == "数量指标" and _is_number(str(row[3])):
                    row[3] = _plain(str(row[3]), 0.5)  # 10000.00次 declared and achieved; 5000次 now
                    break
        fill_workbook(spec, form, inbox / unit.department / form.name, projects)
    summary = folder / f"{ROUNDS['project'].summary_title(year)}.xlsx"
    result = run_merge([inbox], summary, MergeOptions(template=TEMPLATE, year=year, roster=roster,
                                                      history=tuple(history)), materialize=True)
    rule = [title for title, _ in result.table("历史对比").columns].index("规则")
    return summary, sum(1 for row in result.table("历史对比").rows if "-" in str(row[rule] or ""))


def _a_year_on(project: dict, year: int) -> dict:
    """Last year's project as a clerk declares it again: every year it names moved on by one (起止时间
    2021-01-01至2021-12-31, 2021年12月底前 完成), its figures as they were."""
    moved = re.compile(rf"(?<!\d){year}(?!\d)")

    def on(value):
        return moved.sub(str(year + 1), value) if isinstance(value, str) else value

    return {"fields": {k: on(v) for k, v in project["fields"].items()},
            "tables": {t: [[on(v) for v in row] for row in rows] for t, rows in project["tables"].items()}}


def _followup_round(folder: Path, template: str, units, roster: Path, ledger: Path, answer, deadline: str) -> Path:
    """Generate a follow-up round from the ledger, fill every form with `answer`, merge it."""
    from .followup import generate_followups
    from .merging import MergeOptions, run_merge

    blank, inbox = folder / "空白表", folder / "收件箱"
    made = generate_followups(template, YEAR, units, ledger, blank, portal_url=PORTAL, deadline=deadline)
    spec = load_spec(template, YEAR)
    for i, entry in enumerate(made.manifest):
        _fill_followup(spec, blank / entry["file"], inbox / entry["file"], lambda row, fields, k=i: answer(k, row, fields))
    summary = folder / f"{spec.round.summary_title(YEAR)}.xlsx"
    run_merge([inbox], summary, MergeOptions(template=template, year=YEAR, roster=roster))
    return summary


def _fill_followup(spec, blank: Path, target: Path, answer) -> None:
    """What a unit types into a follow-up form: `answer(row, fields)` fills one indicator row (cells by
    column id) and the sheet's fields (a dict of field id → value) as a clerk would."""
    import openpyxl

    wb = openpyxl.load_workbook(blank)
    table = next(iter(spec.tables.values()))
    offsets = column_offsets(table)
    for title, names in names_by_sheet(wb).items():
        if table.name not in names or title not in wb.sheetnames:
            continue
        ws = wb[title]
        first, last = names[table.name].split(":")
        (r0, c0), (r1, _) = split_cell(first), split_cell(last)
        fields: dict = {}
        initial = ws[names["f_funds_total_initial"]].value if "f_funds_total_initial" in names else None
        fields["budget"] = float(initial or 10)
        for r in range(r0, r1 + 1):
            row = {cid: ws.cell(row=r + 1, column=c0 + off + 1) for cid, off in offsets.items()}
            if row["level3"].value:
                answer(row, fields)
        for fid, value in fields.items():
            name = f"f_{fid}"
            if name in names:
                ws[names[name].split(":")[0]] = value
    target.parent.mkdir(parents=True, exist_ok=True)
    wb.save(target)


def _plain(target: str, share: float = 1.0) -> str:
    """What a clerk reports for a declared target, at `share` of it: ≥95% → 95%, a cost tuple → its amount."""
    from .values import parse_target

    t = parse_target(target)
    amount, unit = (t.amount, "元") if t.kind == "cost" else (t.value, t.unit or "")
    return f"{amount * share:.6f}".rstrip("0").rstrip(".") + unit  # as typed: 2000000, never 2e+06


def _is_number(target: str) -> bool:
    from .values import parse_target

    t = parse_target(target)
    return t.kind in {"quantitative", "cost"} and t.value is not None


def _monitor_answers(unit_index: int, row, fields) -> None:
    fields.update(funds_budget=fields["budget"], funds_spent=round(fields["budget"] * 0.45, 2),
                  goal_progress="按计划推进。", preparer="填报人", phone="0816-2222222")
    target = str(row["target"].value)
    row["current"].value = "过半" if not _is_number(target) else None
    row["expected"].value = _plain(target) if _is_number(target) else "按期完成"
    row["likelihood"].value = "确定能"
    if unit_index == 1 and _is_number(target) and row["level2"].value == "数量指标":  # a miss, no cause named
        row["expected"].value = _plain(target, 0.5)
        row["likelihood"].value = "有可能"


def _selfeval_answers(unit_index: int, row, fields) -> None:
    spent = round(fields["budget"] * (0.92 if unit_index % 3 else 1.0), 2)
    fields.update(funds_total_budget=fields["budget"], funds_fiscal_budget=fields["budget"],
                  funds_total_spent=spent, funds_fiscal_spent=spent, goal_actual="完成年度目标。",
                  preparer="填报人", phone="0816-2222222")
    target = str(row["target"].value)
    if unit_index == 3 and row["level2"].value == "时效指标":  # the clerk unprotected the sheet and retyped it
        row["target"].value = f"{target}（已调整）"
    if not _is_number(target):
        row["actual"].value = "达成年度指标"
        row["score"].value = row["points"].value
        return
    row["actual"].value = _plain(target)
    if unit_index in (2, 4) and row["level2"].value == "数量指标":  # missed targets
        row["actual"].value = _plain(target, 0.8)
        if unit_index == 2:
            row["reason"].value = "受疫情影响，部分培训延期至次年举办"




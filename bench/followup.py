"""Year-end benchmark: merging N self-evaluation forms, against the declaration merge of the same campaign.

    python bench/followup.py --units 10000 [--jobs 2] [--out bench/results]

Needs the declaration campaign of `bench/run.py --units N` (its inbox and its ledger in bench/work/nN).
From that ledger it builds each unit's filled 项目支出绩效自评表 the way generate --from would prefill it,
with actual values typed in (most targets met, ~10% missed with a reason, ~3% missed without), written
by xlsxwriter in a process pool (setup, not timed). Then it times, each in its own process:
  generate  — `perfxl generate national/selfeval --from LEDGER` of the N blank forms;
  merge     — `perfxl merge` of the N filled forms (fresh ledger), with its scoring;
  remerge   — the same merge again over the unchanged inbox.
and writes the figures to JSON beside the declaration figures of bench/run.py, if present.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
from datetime import datetime
from multiprocessing import Pool
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from run import measure  # noqa: E402 - the same process measurement as the declaration benchmark

YEAR = 2022


def _answer(target: str, rng: random.Random) -> tuple[str, str, float | None]:
    """(actual, reason, typed score share) for one declared target."""
    from perfxl.values import parse_target

    t = parse_target(target)
    roll = rng.random()
    if t.kind in {"quantitative", "cost"} and (t.value is not None or t.amount is not None):
        amount, unit = (t.amount, "元") if t.kind == "cost" else (t.value, t.unit or "")
        share = 1.0 if roll > 0.13 else rng.uniform(0.6, 0.95)
        reason = "" if share == 1.0 or roll < 0.03 else "进度滞后，已调整实施计划"
        return f"{amount * share:.4f}".rstrip("0").rstrip(".") + unit, reason, None
    return "达成年度指标", "", 1.0


def _build(args) -> None:
    from perfxl.generator import build_workbook
    from perfxl.spec import load_spec

    path, unit, projects, seed = args
    rng = random.Random(seed)
    spec = load_spec("national/selfeval", YEAR, unit=unit, blank_rows=max(len(p["rows"]) for p in projects))
    values, declared = [], []
    for project in projects:
        rows = []
        for row in project["rows"]:
            actual, reason, share = _answer(row["target"], rng)
            score = round(row["points"] * share, 2) if share is not None else ""
            rows.append([row["level1"], row["level2"], row["level3"], row["target"], actual, row["points"], score,
                         reason])
        budget = project["fields"].get("funds_total_initial") or 10.0
        spent = round(budget * rng.uniform(0.8, 1.0), 2)
        values.append({"fields": {**project["fields"], "funds_total_budget": budget, "funds_fiscal_budget": budget,
                                  "funds_total_spent": spent, "funds_fiscal_spent": spent,
                                  "goal_actual": "基本完成年度目标。", "preparer": "填报人", "phone": "0816-2222222"},
                       "tables": {"indicators": rows}})
        declared.append([{**row, "row": i + 1} for i, row in enumerate(project["rows"])])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(build_workbook(spec, unit, values=values, declared=declared))


def build_inbox(campaign: Path, inbox: Path, jobs: int) -> int:
    from perfxl.followup import declarations, declared_projects, group_map
    from perfxl.roster import read_roster

    units = {u.code: u for u in read_roster(campaign / "roster.csv")}
    points, groups = group_map(None)
    tasks = []
    for i, (code, forms) in enumerate(sorted(declarations(campaign / "summary_报送台账.sqlite").items())):
        unit = units.get(code)
        if unit is None:
            continue
        projects = [{"fields": d.fields, "rows": d.rows} for checked, spec in forms
                    for d in declared_projects(checked, spec, unit, points, groups)]
        if projects:
            tasks.append((str(inbox / unit.department / f"{code}.xlsx"), unit.as_params(), projects, i))
    with Pool(jobs) as pool:
        for _ in pool.imap_unordered(_build, tasks, chunksize=32):
            pass
    return len(tasks)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, default=10000)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    campaign = args.work / f"n{args.units}"
    ledger = campaign / "summary_报送台账.sqlite"
    if not ledger.exists():
        raise SystemExit(f"run `python bench/run.py --units {args.units}` first: no declaration ledger {ledger}")
    inbox = campaign / "selfeval-inbox"
    if not inbox.exists():
        print(f"== building {args.units:,} filled self-evaluation forms from {ledger} …", flush=True)
        count = build_inbox(campaign, inbox, args.jobs)
        print(f"   {count:,} forms", flush=True)
    perfxl = [sys.executable, "-m", "perfxl"]
    results = {"generate": measure(perfxl + ["generate", "national/selfeval", "--year", str(YEAR), "--roster",
                                             str(campaign / "roster.csv"), "--from", str(ledger), "-o",
                                             str(campaign / "selfeval-blank")])}
    summary = campaign / "selfeval-summary.xlsx"
    for stale in campaign.glob("selfeval-summary_报送台账.sqlite*"):
        stale.unlink()
    merge = perfxl + ["merge", str(inbox), "-o", str(summary), "--roster", str(campaign / "roster.csv"), "--jobs",
                      str(args.jobs)]
    results["merge"] = measure(merge)
    results["remerge"] = measure(merge)
    forms = sum(1 for _ in inbox.rglob("*.xlsx"))
    figures = {"units": args.units, "forms": forms, "jobs": args.jobs}
    print(f"   {'step':<10} {'files/s':>8} {'wall s':>9} {'cpu s':>9} {'peak MB':>9}")
    for step, r in results.items():
        r.pop("output", None)
        r["files_per_s"] = round(forms / r["wall_s"], 1)
        figures[step] = r
        print(f"   {step:<10} {r['files_per_s']:>8.0f} {r['wall_s']:>9.1f} {r['cpu_s']:>9.1f} {r['peak_mb']:>9.0f}")
    figures["cpu_ms_per_form_merge"] = round(results["merge"]["cpu_s"] * 1000 / forms, 2)
    print(f"   {figures['cpu_ms_per_form_merge']} ms CPU per form for the whole self-evaluation merge")
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"followup-{datetime.now():%Y%m%d-%H%M}.json"
    target.write_text(json.dumps({"date": datetime.now().isoformat(timespec="seconds"),
                                  "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
                                  "run": figures}, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"figures → {target}")


if __name__ == "__main__":
    main()

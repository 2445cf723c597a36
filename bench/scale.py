"""Province scale (#11), side by side in one run: deadline-day re-merges, 100,000 forms, and a roll-up.

    python bench/scale.py [--units 10000] [--province 100000] [--counties 20] [--jobs 2]

Each step runs as `perfxl merge` in its own process; wall time, CPU time and peak memory of the whole
process tree are measured as in bench/run.py: peak_mb sums the processes' RSS (a page a forked worker
shares with the merge counted in each), peak_pss_mb their PSS (a shared page counted once).

1. Deadline day at N forms (the bench/run.py campaign, built if missing):
   fresh     — a first merge, fresh ledger;
   unchanged — the same merge again;
   +3 files  — three corrected forms arrive (new versions of three units' forms), merge again.
2. Province: the N-form campaign cloned into `--province` forms of distinct units (each clone's unit code
   and name rewritten in the stamp, so every file is a distinct unit with distinct content); a fresh
   merge, then an unchanged one. Peak memory is the figure to watch.
3. Roll-up (节点汇总): the N forms split over `--counties` county inboxes, 5 counties to a city; each
   county merges its own inbox, each city merges its counties' ledgers, the province merges the cities'
   ledgers. Its counts are checked against the one merge of all N files.

Figures go to bench/results/scale-YYYYMMDD-HHMM.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import shutil
import sys
import zipfile
from datetime import datetime
from multiprocessing import Pool
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from run import build_campaign, compile_perfxl, measure  # noqa: E402  (the same campaign and measuring as bench/run.py)

PERFXL = [sys.executable, "-m", "perfxl"]
_COUNTS = re.compile(r"已汇总 (\d+)，无法读取 (\d+)，重复 (\d+)，被更新版本取代 (\d+)")
_ROWS = re.compile(r"单位 (\d+)，项目 (\d+)，指标 (\d+) 行")


def campaign(n: int, work: Path) -> Path:
    folder = work / f"n{n}"
    roster = folder / "roster.csv"
    if not (roster.exists() and sum(1 for _ in roster.open(encoding="utf-8")) == n + 1):
        print(f"   building the {n:,}-form campaign in {folder} …", flush=True)
        if folder.exists():
            shutil.rmtree(folder)
        build_campaign(n, folder)
    return folder


def merge(inputs: list[Path], output: Path, roster: Path | None, jobs: int, fresh: bool = False) -> dict:
    if fresh:
        for stale in output.parent.glob(output.stem + "*"):
            stale.unlink()
    command = PERFXL + ["merge", *map(str, inputs), "-o", str(output), "--jobs", str(jobs)]
    if roster:
        command += ["--roster", str(roster)]
    figures = measure(command)
    out = figures.pop("output")
    counts, rows = _COUNTS.search(out), _ROWS.search(out)
    if counts:
        figures.update(dict(zip(("merged", "rejected", "duplicate", "superseded"), map(int, counts.groups()))))
    if rows:
        figures.update(dict(zip(("units", "projects", "indicator_rows"), map(int, rows.groups()))))
    return figures


# ----------------------------------------------------------------------------------------------------
# 1. Deadline day
# ----------------------------------------------------------------------------------------------------

def deadline_day(folder: Path, jobs: int) -> dict:
    inbox, roster = folder / "inbox", folder / "roster.csv"
    out = folder / "scale" / "summary.xlsx"
    out.parent.mkdir(exist_ok=True)
    late = folder / "late"
    if late.exists():
        shutil.rmtree(late)
    corrections = _corrections(folder, late)
    figures = {"fresh": merge([inbox], out, roster, jobs, fresh=True)}
    figures["unchanged"] = merge([inbox], out, roster, jobs)
    arrived = []
    for path in corrections:  # three units hand in a corrected form, as on deadline day
        target = inbox / "更正" / path.name
        target.parent.mkdir(exist_ok=True)
        shutil.copy2(path, target)
        arrived.append(target)
    try:
        figures["plus_3_files"] = merge([inbox], out, roster, jobs)
    finally:
        for target in arrived:
            target.unlink()
        (inbox / "更正").rmdir()
    return figures


def _corrections(folder: Path, late: Path) -> list[Path]:
    """Three forms of existing units, with other values: a small campaign of the same shape whose units
    are the big campaign's first three."""
    build_campaign(3, late, seed=7)
    return sorted((late / "inbox").rglob("*.xlsx"))


# ----------------------------------------------------------------------------------------------------
# 2. Province: clones of the campaign with distinct units
# ----------------------------------------------------------------------------------------------------

def _clone(args) -> None:
    source, target, k = args
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename in ("xl/sharedStrings.xml", "docProps/custom.xml"):
                text = data.decode("utf-8")
                text = re.sub(r"(?<!\d)(9\d{5})(?!\d)", rf"{k}\1", text)  # the unit code 9xxxxx → k9xxxxx
                text = re.sub(r"预算单位(\d{5})", rf"预算单位\1-{k}", text)
                data = text.encode("utf-8")
            dst.writestr(info, data)


def province_campaign(base: Path, n: int, work: Path) -> Path:
    folder = work / f"province{n}"
    roster = folder / "roster.csv"
    if roster.exists() and sum(1 for _ in roster.open(encoding="utf-8")) == n + 1:
        return folder
    copies = -(-n // sum(1 for _ in (base / "inbox").rglob("*.xlsx")))
    print(f"   cloning {base.name} {copies}× into {folder} …", flush=True)
    if folder.exists():
        shutil.rmtree(folder)
    rows = list(csv.DictReader((base / "roster.csv").open(encoding="utf-8")))
    jobs, lines = [], ["code,name,department,region"]
    files = sorted((base / "inbox").rglob("*.xlsx"))
    for k in range(copies):  # copy k: unit codes k9xxxxx, names 预算单位xxxxx-k
        for path in files:
            target = folder / "inbox" / f"批次{k}" / path.parent.name / f"{k}{path.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            jobs.append((path, target, k))
        lines += [f"{k}{r['code']},{r['name']}-{k},{r['department']},{r['region']}" for r in rows]
    jobs, lines = jobs[:n], lines[: n + 1]
    with Pool(os.cpu_count() or 1) as pool:
        pool.map(_clone, jobs, chunksize=256)
    roster.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


# ----------------------------------------------------------------------------------------------------
# 3. Roll-up: counties → cities → province
# ----------------------------------------------------------------------------------------------------

def roll_up(base: Path, counties: int, jobs: int, whole: dict) -> dict:
    root = base / "rollup"
    if root.exists():
        shutil.rmtree(root)
    rows = list(csv.DictReader((base / "roster.csv").open(encoding="utf-8")))
    files = sorted((base / "inbox").rglob("*.xlsx"))
    by_code = {f.name.split("_", 1)[0]: f for f in files}
    county_of = {r["code"]: f"县{i % counties:02d}" for i, r in enumerate(rows)}
    city_of = {f"县{c:02d}": f"市{c // 5}" for c in range(counties)}
    province_roster = root / "roster.csv"
    root.mkdir(parents=True)
    with province_roster.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["code", "name", "department", "region", "上级地区"])
        for r in rows:
            out.writerow([r["code"], r["name"], r["department"], county_of[r["code"]], city_of[county_of[r["code"]]]])
    for code, path in by_code.items():  # hard links: the same files, in each county's inbox
        target = root / county_of[code] / "inbox" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(path, target)
    figures: dict = {"counties": counties, "cities": len(set(city_of.values()))}
    county_steps = []
    for county in sorted(city_of):
        county_roster = root / county / "roster.csv"
        with county_roster.open("w", encoding="utf-8", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(["code", "name", "department", "region"])
            for r in rows:
                if county_of[r["code"]] == county:
                    out.writerow([r["code"], r["name"], r["department"], county])
        county_steps.append(merge([root / county / "inbox"], root / county / f"{county}.xlsx", county_roster, jobs))
    figures["county"] = _totals(county_steps)
    city_steps = []
    for city in sorted(set(city_of.values())):
        ledgers = [root / c / f"{c}_报送台账.sqlite" for c, parent in city_of.items() if parent == city]
        (root / city).mkdir()
        city_steps.append(merge(ledgers, root / city / f"{city}.xlsx", None, jobs))
    figures["city"] = _totals(city_steps)
    cities = [root / city / f"{city}_报送台账.sqlite" for city in sorted(set(city_of.values()))]
    figures["province"] = merge(cities, root / "省.xlsx", province_roster, jobs)
    figures["province_equals_one_merge"] = all(
        figures["province"].get(k) == whole.get(k) for k in ("merged", "projects", "indicator_rows"))
    return figures


def _totals(steps: list[dict]) -> dict:
    return {"merges": len(steps), "wall_s": round(sum(s["wall_s"] for s in steps), 2),
            "cpu_s": round(sum(s["cpu_s"] for s in steps), 2), "max_wall_s": max(s["wall_s"] for s in steps),
            "peak_mb": max(s["peak_mb"] for s in steps), "merged": sum(s.get("merged", 0) for s in steps),
            "indicator_rows": sum(s.get("indicator_rows", 0) for s in steps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=10_000)
    parser.add_argument("--province", type=int, default=100_000)
    parser.add_argument("--counties", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--skip", nargs="*", default=[], choices=["deadline", "province", "rollup"])
    args = parser.parse_args()
    compile_perfxl()
    report: dict = {"date": datetime.now().isoformat(timespec="seconds"), "machine": {
        "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "units": args.units, "jobs": args.jobs}
    base = campaign(args.units, args.work)
    whole = None
    if "deadline" not in args.skip:
        print(f"\n== deadline day, {args.units:,} forms", flush=True)
        report["deadline_day"] = day = deadline_day(base, args.jobs)
        whole = day["fresh"]
        for step, f in day.items():
            print(f"   {step:<14}{f['wall_s']:>8.1f} s wall {f['cpu_s']:>8.1f} s CPU {f['peak_mb']:>7.0f} MB RSS "
                  f"{f['peak_pss_mb'] or 0:>7.0f} MB PSS", flush=True)
    if "province" not in args.skip:
        print(f"\n== province, {args.province:,} forms", flush=True)
        folder = province_campaign(base, args.province, args.work)
        out = folder / "scale" / "summary.xlsx"
        out.parent.mkdir(exist_ok=True)
        fresh = merge([folder / "inbox"], out, folder / "roster.csv", args.jobs, fresh=True)
        again = merge([folder / "inbox"], out, folder / "roster.csv", args.jobs)
        report["province"] = {"forms": args.province, "fresh": fresh, "unchanged": again,
                              "summary_mb": round(out.stat().st_size / 2**20, 1)}
        for step, f in (("fresh", fresh), ("unchanged", again)):
            print(f"   {step:<14}{f['wall_s']:>8.1f} s wall {f['cpu_s']:>8.1f} s CPU {f['peak_mb']:>7.0f} MB RSS "
                  f"{f['peak_pss_mb'] or 0:>7.0f} MB PSS ({f.get('indicator_rows', 0):,} indicator rows)", flush=True)
    if "rollup" not in args.skip:
        print(f"\n== roll-up, {args.counties} counties → cities → province", flush=True)
        if whole is None:
            whole = merge([base / "inbox"], base / "scale" / "summary.xlsx", base / "roster.csv", args.jobs)
        report["rollup"] = r = roll_up(base, args.counties, args.jobs, whole)
        for level in ("county", "city"):
            f = r[level]
            print(f"   {level:<9}{f['merges']:>3} merges {f['wall_s']:>8.1f} s wall in all (longest "
                  f"{f['max_wall_s']:.1f} s), peak {f['peak_mb']:.0f} MB", flush=True)
        f = r["province"]
        print(f"   province   1 merge  {f['wall_s']:>8.1f} s wall, peak {f['peak_mb']:.0f} MB; equals the one merge "
              f"of all files: {r['province_equals_one_merge']}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"scale-{datetime.now():%Y%m%d-%H%M}.json"
    target.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"\nfigures → {target}")


if __name__ == "__main__":
    main()

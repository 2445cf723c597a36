"""Where one merge's time goes: each phase of `perfxl merge` timed in the merging process, with the CPU of the
worker processes that ended during it.

    python bench/phases.py [--campaign DIR] [--fresh | --db LEDGER] [--plus3 [--seed N]] [--jobs 2] [--out DIR]

The campaign is bench/run.py's (a folder holding inbox/ and roster.csv; bench/work/n10000 by default). The
merge runs in this process, as `perfxl merge inbox -o DIR/summary.xlsx --roster roster.csv --jobs N` does,
with every phase of `perfxl.merging.run.run_merge` wrapped: wall time, the merging process's CPU, and the
CPU of the children it reaped in that phase (each pool of workers is shut down, and so reaped, before its
phase ends; the sheet-writing helper within `_write`). With --fresh the merge starts from a new ledger (in a
temporary folder, so the campaign's own is left as it is); with --db, the ledger named, with the summary
beside it (a series of merges on a ledger of their own: fresh, again, then --plus3); with --plus3 three corrected forms are filed in
inbox/更正 for the merge and taken away after (bench/run.py's deadline-day step): with --seed, three made
now from that seed, so the ledger has never seen them (bench/run.py's own, seed 7, are kept in the `late`
folder and in the ledger once it ran). Run it twice without --fresh for an unchanged re-merge: the first may
read everything again after a code change.
Prints a table and writes bench/results/phases-*.json with the commit measured.

A phase's figures are its own: the workers of the reading pool are in `_read_until_settled`, those that
render each form's rows and parts in `_build`. Imports (perfxl's and the libraries') are timed separately.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PHASES = ("_prepare", "_open", "_take_lower_levels", "_take_known", "_read_until_settled", "_decide_outcomes",
          "_summary_context", "_build", "_write", "_record")


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _own_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def timed_merge(inbox: Path, output: Path, roster: Path, jobs: int, db: Path | None) -> dict:
    """One merge in this process, each phase timed; the import of perfxl timed before it."""
    started = time.perf_counter()
    sys.path.insert(0, str(ROOT))
    import perfxl.merging.run as merge_run
    from perfxl import cli

    imported = time.perf_counter() - started
    figures: dict[str, dict] = {}

    def wrapped(name, original):
        def phase(*args, **kwargs):
            wall, own, children = time.perf_counter(), _own_cpu(), _children_cpu()
            try:
                return original(*args, **kwargs)
            finally:
                figures[name] = {"wall_s": round(time.perf_counter() - wall, 3), "cpu_s": round(_own_cpu() - own, 3),
                                 "children_cpu_s": round(_children_cpu() - children, 3)}
        return phase

    originals = {name: getattr(merge_run, name) for name in PHASES}
    for name, original in originals.items():
        setattr(merge_run, name, wrapped(name, original))
    command = ["merge", str(inbox), "-o", str(output), "--roster", str(roster), "--jobs", str(jobs)]
    if db is not None:
        command += ["--db", str(db)]
    try:
        cli.cli(command, prog_name="perfxl", standalone_mode=False)
    finally:
        for name, original in originals.items():  # as they were, should this process merge again
            setattr(merge_run, name, original)
    return {"imports_s": round(imported, 3), "phases": figures, "wall_s": round(time.perf_counter() - started, 3),
            "cpu_s": round(_own_cpu(), 3), "children_cpu_s": round(_children_cpu(), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--campaign", type=Path, default=HERE / "work" / "n10000")
    parser.add_argument("--fresh", action="store_true", help="a new ledger, in a temporary folder")
    parser.add_argument("--db", type=Path, default=None, help="this ledger, the summary beside it")
    parser.add_argument("--plus3", action="store_true", help="three corrected forms filed for this merge")
    parser.add_argument("--seed", type=int, default=None,
                        help="with --plus3: corrections made from this seed, not the campaign's late/ folder")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    campaign = args.campaign
    if not (campaign / "inbox").is_dir() or not (campaign / "roster.csv").is_file():
        sys.exit(f"{campaign} holds no campaign (inbox/ and roster.csv): build one with bench/run.py")
    scratch = Path(tempfile.mkdtemp(prefix="perfxl-phases-")) if args.fresh else None
    if args.fresh and args.db:
        sys.exit("--fresh or --db, not both")
    output = args.db.parent / "summary.xlsx" if args.db else (scratch or campaign) / "summary.xlsx"
    filed: list[Path] = []
    made = None
    had_ledger = args.db is not None and args.db.exists()
    if args.db is not None:
        args.db.parent.mkdir(parents=True, exist_ok=True)
    try:
        if args.plus3:
            late_folder = campaign / "late"
            if args.seed is not None:  # made in a process of its own: perfxl's imports stay in the timing
                late_folder = made = Path(tempfile.mkdtemp(prefix="perfxl-late-"))
                subprocess.run([sys.executable, "-c", "import sys; from run import build_campaign; "
                                "build_campaign(3, __import__('pathlib').Path(sys.argv[1]), seed=int(sys.argv[2]))",
                                str(late_folder), str(args.seed)], cwd=HERE, check=True, stdout=subprocess.DEVNULL)
            late = sorted((late_folder / "inbox").rglob("*.xlsx"))
            if len(late) != 3:
                sys.exit(f"{late_folder} holds {len(late)} forms, not bench/run.py's three corrections")
            (campaign / "inbox" / "更正").mkdir(exist_ok=True)
            for path in late:
                filed.append(campaign / "inbox" / "更正" / path.name)
                shutil.copy2(path, filed[-1])
        result = timed_merge(campaign / "inbox", output, campaign / "roster.csv", args.jobs,
                             scratch / "ledger.sqlite" if scratch else args.db)
    finally:
        for path in filed:
            path.unlink()
        if filed:
            shutil.rmtree(campaign / "inbox" / "更正", ignore_errors=True)
        for folder in (scratch, made):
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    kind = "fresh" if args.fresh or (args.db and not had_ledger) else "plus3" if args.plus3 else "again"
    report = {"date": datetime.now().isoformat(timespec="seconds"), "commit": commit, "campaign": str(campaign),
              "merge": kind, "jobs": args.jobs, **result}
    print(f"\n{kind} merge at {commit}: wall {result['wall_s']:.2f} s, merging process {result['cpu_s']:.2f} s CPU, "
          f"workers {result['children_cpu_s']:.2f} s; imports {result['imports_s']:.2f} s", file=sys.stderr)
    print(f"   {'phase':<22}{'wall s':>9}{'CPU s':>9}{'workers s':>11}", file=sys.stderr)
    for name, f in result["phases"].items():
        print(f"   {name:<22}{f['wall_s']:>9.3f}{f['cpu_s']:>9.3f}{f['children_cpu_s']:>11.3f}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"phases-{kind}-{datetime.now():%Y%m%d-%H%M%S}.json"
    target.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"figures → {target}", file=sys.stderr)


if __name__ == "__main__":
    main()

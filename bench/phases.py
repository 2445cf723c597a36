"""Where one merge's time goes: each phase of `perfxl merge` timed in the merging process, with the CPU of the
worker processes that ended during it.

    python bench/phases.py [--campaign DIR] [--fresh | --db LEDGER] [--plus3 [--seed N]] [--jobs 2] [--out DIR]

The campaign is bench/run.py's (a folder holding inbox/ and roster.csv; bench/work/n10000 by default). The
merge runs in this process, as `perfxl merge inbox -o summary.xlsx --roster roster.csv --jobs N` does, with
every phase of `perfxl.merging.run.run_merge` wrapped: wall time, the merging process's CPU, and the CPU of
the children it reaped in that phase (each pool of workers is shut down, and so reaped, before its phase
ends; the sheet-writing helper within `_write`). What follows the last phase (the ledger closed, the CLI's
report) is `other`; importing perfxl is timed apart, modules a phase imports late are in that phase.

Which ledger: without options, the campaign's own (its summary.xlsx and ledger beside it are written, as
bench/run.py's merges write them); with --fresh a new one in a temporary folder, removed after; with --db the
one named, the summary beside it (a series of merges on a ledger of their own: fresh, again, then --plus3).
The run is labelled fresh when its ledger did not exist, again when it did. With --plus3 three corrected
forms are filed in inbox/更正 for the merge and taken away after (bench/run.py's deadline-day step): with
--seed, three made now from that seed, which the ledger has never seen (bench/run.py's own, seed 7, are in
the campaign's late/ folder, and in its ledger once bench/run.py ran). An inbox/更正 already there is refused.
A merge that does not finish (perfxl's exit code) records nothing. Prints a table and writes
bench/results/phases-*.json with the commit measured (`-dirty` for uncommitted code).
"""

from __future__ import annotations

import argparse
import compileall
import json
import resource
import shutil
import signal
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
    """One merge in this process, each phase timed; the import of perfxl (its modules compiled beforehand, as
    an installed perfxl has them) timed before it, and what follows the last phase as `other`. SystemExit if
    the merge did not finish (perfxl's exit code: 2 for a user's error, 130 for Ctrl-C)."""
    compileall.compile_dir(str(ROOT / "perfxl"), quiet=1)  # this machine sets PYTHONDONTWRITEBYTECODE=1
    started, own_at_start, children_at_start = time.perf_counter(), _own_cpu(), _children_cpu()
    sys.path.insert(0, str(ROOT))
    import perfxl.merging.run as merge_run
    from perfxl import cli

    imported, imported_cpu = time.perf_counter() - started, _own_cpu() - own_at_start
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
        code = cli.cli(command, prog_name="perfxl", standalone_mode=False)
    finally:
        for name, original in originals.items():  # as they were, should this process merge again
            setattr(merge_run, name, original)
    if code:  # perfxl said why on stderr; a merge that did not finish is not a figure
        raise SystemExit(f"the merge ended with exit code {code}: nothing recorded")
    wall = time.perf_counter() - started
    cpu, children = _own_cpu() - own_at_start, _children_cpu() - children_at_start
    figures["other"] = {  # the ledger and spool closed, the CLI's report: all after the last phase
        "wall_s": round(wall - imported - sum(f["wall_s"] for f in figures.values()), 3),
        "cpu_s": round(cpu - imported_cpu - sum(f["cpu_s"] for f in figures.values()), 3),
        "children_cpu_s": round(children - sum(f["children_cpu_s"] for f in figures.values()), 3)}
    return {"imports_s": round(imported, 3), "phases": figures, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "children_cpu_s": round(children, 3)}


def _commit() -> str:
    """HEAD, and `-dirty` when the tree differs from it: figures of uncommitted code say so."""
    described = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=7"],
                               capture_output=True, text=True)
    return described.stdout.strip() or "unknown"


def _late_forms(campaign: Path, seed: int | None, scratch: Path) -> list[Path]:
    """The three corrections: bench/run.py's (the campaign's late/ folder), or made now from `seed` in
    `scratch`, in a process of its own so that perfxl's imports stay in this one's timing."""
    folder = campaign / "late"
    if seed is not None:
        folder = scratch / "late"
        subprocess.run([sys.executable, "-c", "import sys, pathlib; from run import build_campaign; "
                        "build_campaign(3, pathlib.Path(sys.argv[1]), seed=int(sys.argv[2]))", str(folder), str(seed)],
                       cwd=HERE, check=True, stdout=subprocess.DEVNULL)
    late = sorted((folder / "inbox").rglob("*.xlsx"))
    if len(late) != 3:
        sys.exit(f"{folder} holds {len(late)} forms, not bench/run.py's three corrections")
    return late


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
    if args.fresh and args.db:
        sys.exit("--fresh or --db, not both")
    if args.seed is not None and not args.plus3:
        sys.exit("--seed makes the corrections of --plus3: give both")
    corrections = campaign / "inbox" / "更正"
    if corrections.exists():  # left by a run that was killed, or the campaign's own: either way not ours to take
        sys.exit(f"{corrections} exists already: a merge now would not be of the campaign; move it away first")
    output = args.db.parent / "summary.xlsx" if args.db else campaign / "summary.xlsx"
    db = args.db if args.db else output.with_name(f"{output.stem}_报送台账.sqlite")
    scratch = Path(tempfile.mkdtemp(prefix="perfxl-phases-"))
    kind = "plus3" if args.plus3 else "fresh" if args.fresh or not db.exists() else "again"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `finally` takes the corrections away on a kill too
    try:
        if args.fresh:
            output, db = scratch / "summary.xlsx", scratch / "ledger.sqlite"
        db.parent.mkdir(parents=True, exist_ok=True)
        if args.plus3:
            late = _late_forms(campaign, args.seed, scratch)
            corrections.mkdir()
            for path in late:
                shutil.copy2(path, corrections / path.name)
        result = timed_merge(campaign / "inbox", output, campaign / "roster.csv", args.jobs, db)
    finally:
        if args.plus3:
            shutil.rmtree(corrections, ignore_errors=True)  # made by this run (refused above if it was there)
        shutil.rmtree(scratch, ignore_errors=True)
    commit = _commit()
    report = {"date": datetime.now().isoformat(timespec="seconds"), "commit": commit, "campaign": str(campaign),
              "merge": kind, "jobs": args.jobs, **result}
    print(f"\n{kind} merge at {commit}: wall {result['wall_s']:.2f} s, merging process {result['cpu_s']:.2f} s CPU, "
          f"workers {result['children_cpu_s']:.2f} s; importing perfxl {result['imports_s']:.2f} s", file=sys.stderr)
    print(f"   {'phase':<22}{'wall s':>9}{'CPU s':>9}{'workers s':>11}", file=sys.stderr)
    for name, f in result["phases"].items():
        print(f"   {name:<22}{f['wall_s']:>9.3f}{f['cpu_s']:>9.3f}{f['children_cpu_s']:>11.3f}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"phases-{kind}-{datetime.now():%Y%m%d-%H%M%S}.json"
    target.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"figures → {target}", file=sys.stderr)


if __name__ == "__main__":
    main()

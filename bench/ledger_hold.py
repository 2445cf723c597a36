"""How long a merge keeps its ledger's write lock at a time: what an upload to the portal waits for when the
consolidator merges the portal's store (`perfxl merge 报送库/files --db 报送库/报送台账.sqlite`), since the portal
records every upload in that ledger (and gives up after 10 s, PORTAL_BUSY_SECONDS).

    python bench/ledger_hold.py [--units 2000] [--campaign DIR] [--checkout DIR] [--jobs 2]

A fresh merge and then an unchanged re-merge of a campaign (bench/run.py's, built in a temporary folder, or
the one in --campaign: a folder holding inbox/ and roster.csv), each while a second connection, as the
portal's writer, takes the write lock again and again (BEGIN IMMEDIATE, ROLLBACK, 10 ms apart) and times
each wait. --checkout runs another checkout's perfxl (`python -m perfxl` from there): the same campaign,
before and after a change. Prints the longest wait, the 99th percentile and how many waited over 1 s, and
writes them to bench/results/ledger-hold-*.json with the commit measured.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
PROBE_GAP = 0.01  # seconds between two takes of the lock: the portal's uploads come at any moment


def probe(ledger: Path, done: threading.Event, waits: list[float]) -> None:
    """Take the ledger's write lock and let it go, again and again until `done`, timing each wait."""
    while not ledger.exists() and not done.is_set():
        time.sleep(PROBE_GAP)
    while not done.is_set():
        try:
            db = sqlite3.connect(ledger, timeout=600, isolation_level=None)
            try:
                started = time.perf_counter()
                db.execute("BEGIN IMMEDIATE")
                waits.append(time.perf_counter() - started)
                db.execute("ROLLBACK")
            finally:
                db.close()
        except sqlite3.OperationalError:  # the schema being made, or the file being set back to one file
            pass
        time.sleep(PROBE_GAP)


def merge(command: list[str], cwd: Path, ledger: Path) -> dict:
    waits: list[float] = []
    done = threading.Event()
    thread = threading.Thread(target=probe, args=(ledger, done, waits))
    thread.start()
    started = time.perf_counter()
    try:
        subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    finally:
        wall = time.perf_counter() - started
        done.set()
        thread.join()
    waits.sort()
    return {"wall_s": round(wall, 2), "probes": len(waits),
            "longest_wait_s": round(waits[-1], 3) if waits else None,
            "p99_wait_s": round(waits[int(len(waits) * 0.99)], 3) if waits else None,
            "waits_over_1s": sum(w > 1 for w in waits)}


def commit_of(checkout: Path) -> str:
    found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=checkout, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=checkout,
                           capture_output=True, text=True).stdout.strip()
    return found.stdout.strip() + ("+changes" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=2000)
    parser.add_argument("--campaign", type=Path, help="a campaign built already (inbox/ and roster.csv)")
    parser.add_argument("--checkout", type=Path, default=ROOT, help="the perfxl checkout to run")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        campaign = args.campaign
        if campaign is None:
            from bench.run import build_campaign

            campaign = work / "campaign"
            build_campaign(args.units, campaign)
        units = sum(1 for _ in (campaign / "inbox").rglob("*.xlsx"))
        ledger = work / "out" / "报送台账.sqlite"
        command = [sys.executable, "-m", "perfxl", "merge", str(campaign / "inbox"), "-o", str(work / "out" / "汇总表.xlsx"),
                   "--db", str(ledger), "--roster", str(campaign / "roster.csv"), "--jobs", str(args.jobs)]
        results = {"forms": units, "jobs": args.jobs, "checkout": str(args.checkout.resolve()),
                   "commit": commit_of(args.checkout),
                   "measured_at": datetime.now().isoformat(timespec="seconds")}
        for step in ("fresh", "remerge"):
            results[step] = merge(command, args.checkout, ledger)
            print(f"{step}: {results[step]}", flush=True)
        shutil.rmtree(work / "out", ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"ledger-hold-{datetime.now():%Y%m%d-%H%M}.json"
    target.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"→ {target}")


if __name__ == "__main__":
    main()

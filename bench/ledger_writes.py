"""How a merge's ledger writes scale: N kept values put under content keys (in no order, as a merge puts
them), committed every 500 (as a merge does) against every 5,000 (tried in 3915251 and taken back: a merge
then held the ledger's write lock up to 8 times longer, and the portal's uploads wait on it), with and
without a page cache of 32 MB instead of SQLite's 2 MB. Each setting runs in its own fresh ledger.

    python bench/ledger_writes.py [--values 200000] [--out bench/results]

Prints the microseconds an insert costs in each fifth of the run (a growing index costs more per insert)
and the total, and writes them to JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from perfxl.ledger import Ledger  # noqa: E402

FINGERPRINT = hashlib.sha256(b"bench").hexdigest()
LARGER_COMMITS = 5000


def run(values: int, per_commit: int, cache_mb: int | None) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        ledger = Ledger(Path(folder) / "台账.sqlite")
        if cache_mb:
            ledger.db.execute(f"PRAGMA cache_size={-cache_mb * 1024}")
        kept = ledger.kept(ledger.start_run())
        kept_per_commit = per_commit
        value = os.urandom(1200) * 2  # a kept form part is about 2 KB
        fifths, started, last = [], time.perf_counter(), time.perf_counter()
        cpu_started = time.process_time()
        for i in range(values):
            key = f"check|{FINGERPRINT}|{hashlib.sha256(b'%d' % i).hexdigest()}"
            ledger.db.execute("INSERT OR REPLACE INTO kept (key, value, run, mac) VALUES (?,?,?,?)",
                              (key, value, kept.run_id, ledger.sealer.kept(key, value)))
            if (i + 1) % kept_per_commit == 0:
                ledger.db.commit()
            if (i + 1) % (values // 5) == 0:
                now = time.perf_counter()
                fifths.append(round((now - last) / (values // 5) * 1e6, 1))
                last = now
        ledger.db.commit()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        ledger.close()
    return {"per_commit": per_commit, "cache_mb": cache_mb or 2, "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2), "us_per_insert_by_fifth": fifths}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=200_000)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    results = []
    for per_commit, cache_mb in ((500, None), (LARGER_COMMITS, None), (LARGER_COMMITS, 32)):
        r = run(args.values, per_commit, cache_mb)
        results.append(r)
        print(f"commit every {per_commit:>5}, page cache {cache_mb or 2:>2} MB: "
              f"{r['wall_s']:6.2f} s wall, {r['cpu_s']:6.2f} s CPU; µs an insert by fifth: {r['us_per_insert_by_fifth']}")
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"ledger-writes-{datetime.now():%Y%m%d-%H%M}.json"
    out.write_text(json.dumps({"date": datetime.now().isoformat(timespec="seconds"), "values": args.values,
                               "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
                               "runs": results}, indent=1), encoding="utf-8")
    print(f"figures → {out}")


if __name__ == "__main__":
    main()

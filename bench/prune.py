"""How long a merge's prune of kept values holds the ledger's write lock, which the portal's uploads wait on
(30 s at most). On a copy of a ledger (a province's, after bench/scale.py), one value in three is marked as
used and Kept.close prunes the rest, as after a merge whose sheets' code changed. Prints the whole prune's
time, its transactions, and the longest one.

    python bench/prune.py LEDGER [--out bench/results]

The ledger named is copied first (beside it in a temporary folder) and never written.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from perfxl import ledger  # noqa: E402


def prune(path: Path) -> dict:
    own = ledger.Ledger(path)
    try:
        run = own.start_run()
        kept = own.kept(run)
        keys = [key for (key,) in own.db.execute("SELECT CAST(key AS BLOB) FROM kept")]
        kept.touched = {hash(key.decode("utf-8", "surrogateescape")) for key in keys[::3]}
        spans: list[float] = []
        opened: list[float | None] = [None]

        def trace(sql: str) -> None:  # a transaction's write lock: from its first DELETE to its COMMIT
            statement = sql.strip().upper()
            if statement.startswith("DELETE") and opened[0] is None:
                opened[0] = time.perf_counter()
            elif statement == "COMMIT" and opened[0] is not None:
                spans.append(time.perf_counter() - opened[0])
                opened[0] = None

        own.db.set_trace_callback(trace)
        start = time.perf_counter()
        kept.close()
        took = time.perf_counter() - start
        own.db.set_trace_callback(None)
        left = own.db.execute("SELECT COUNT(*) FROM kept").fetchone()[0]
    finally:
        own.close()
    return {"values": len(keys), "left": left, "prune_s": round(took, 2), "transactions": len(spans),
            "longest_s": round(max(spans, default=0.0), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ledger", type=Path)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.ledger.parent) as work:
        copy = Path(work) / "ledger.sqlite"
        shutil.copyfile(args.ledger, copy)
        figures = prune(copy)
    print(f"{figures['values']:,} values, {figures['left']:,} left: prune {figures['prune_s']} s in "
          f"{figures['transactions']} transactions, the longest {figures['longest_s']} s")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M")
    report = {"when": stamp, "machine": platform.platform(), "ledger": str(args.ledger), **figures}
    (args.out / f"prune-{stamp}.json").write_text(json.dumps(report, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()

"""What the portal's users wait for while a merge holds its ledger: `perfxl serve` started as a user starts it,
the ledger's write lock taken from outside (as `perfxl merge --db 报送库/报送台账.sqlite` holds it while it
writes), one unit's upload sent, and, once the upload is waiting for the lock, the time each page takes:
the consolidator's board (/api/status, /admin), another unit's page (/unit), and a second unit's upload.

    python bench/portal_wait.py

Run from a checkout: the server is that checkout's perfxl (`python -m perfxl serve`), the forms and roster
are made by the test suite's portal set-up (tests/portal_setup.py). Figures go to
bench/results/portal-wait-*.json, with the commit they were measured at.
"""

from __future__ import annotations

import argparse
import json
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


def main() -> None:
    import httpx

    from tests.portal_setup import ADMIN_PASSWORD, UNITS, served, set_up

    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    first, second = UNITS[0][0], UNITS[1][0]
    with tempfile.TemporaryDirectory() as work:
        base = Path(work)
        setup = set_up(base)
        with served(setup, base) as (_, url):
            http = httpx.Client(base_url=url, timeout=120)
            tokens = {u: http.post("/api/login", json={"unit": u, "code": setup["codes"][u]}).json()["token"]
                      for u in (first, second)}
            admin = http.post("/api/login", json={"admin_password": ADMIN_PASSWORD}).json()["token"]

            def upload(unit: str, out: dict) -> None:
                started = time.perf_counter()
                data = setup["files"][(unit, "good")].read_bytes()
                with httpx.Client(base_url=url, timeout=120) as own:
                    r = own.post("/api/submissions", files=[("file", (f"{unit}.xlsx", data))],
                                 headers={"Authorization": f"Bearer {tokens[unit]}"})
                out.update(status=r.status_code, seconds=round(time.perf_counter() - started, 3))

            merge = sqlite3.connect(setup["store"] / "报送台账.sqlite")
            merge.execute("BEGIN IMMEDIATE")
            held = time.monotonic()
            waiting: dict = {}
            thread = threading.Thread(target=upload, args=(first, waiting))
            thread.start()
            # The upload is written to files/ before it is recorded: once there, it waits for the lock
            deadline = time.monotonic() + 60
            while not any((setup["store"] / "files").rglob("*.xlsx")) and time.monotonic() < deadline:
                time.sleep(0.01)
            pages = {}
            for name, path, token in (("board /api/status", "/api/status", admin), ("board /admin", "/admin", admin),
                                      ("unit page /unit", "/unit", tokens[second])):
                started = time.perf_counter()
                r = http.get(path, headers={"Authorization": f"Bearer {token}"})
                pages[name] = {"status": r.status_code, "seconds": round(time.perf_counter() - started, 3)}
            queued: dict = {}
            upload(second, queued)
            pages["second upload (queued)"] = queued
            merge.rollback()
            merge.close()
            thread.join(120)
            pages["first upload (waiting)"] = waiting
            seconds_held = round(time.monotonic() - held, 2)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    report = {"commit": commit, "when": datetime.now().isoformat(timespec="seconds"), "lock_held_s": seconds_held,
              "pages": pages}
    for name, r in pages.items():
        print(f"{name:28s} {r['status']}  {r['seconds']:.3f} s")
    out = HERE / "results" / f"portal-wait-{datetime.now():%Y%m%d-%H%M}.json"
    out.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"→ {out}")


if __name__ == "__main__":
    main()

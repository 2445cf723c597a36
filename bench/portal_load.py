"""A bounded load test of the submission portal on loopback: C concurrent clients hand in N real filled
forms, each signing in as its own unit, against `perfxl serve` started as a user would start it.

    python bench/portal_load.py --units 1000 [--clients 50] [--jobs 2] [--limit-s 900]

Needs the campaign of `bench/run.py --units N` (its roster and filled inbox in bench/work/nN). It generates
the blank forms (and so the access codes) for that roster, starts the server, and times each upload from
sending it to the checked answer. It stops by itself when every form is answered or the time limit
passes, then reports throughput, p50 and p95 time to a checked answer, and whether the ledger's count of
submissions equals the uploads the server answered 已收到. Figures go to bench/results/portal-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
PASSWORD = "load-test-password"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _client(queue: asyncio.Queue, url: str, codes: dict, results: list, deadline: float) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=300) as http:
        while time.monotonic() < deadline:
            try:
                unit, path = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            started = time.perf_counter()
            login = await http.post("/api/login", json={"unit": unit, "code": codes[unit]})
            token = login.json().get("token") if login.status_code == 200 else None
            if token is None:
                results.append({"unit": unit, "status": login.status_code, "seconds": None})
                continue
            r = await http.post("/api/submissions", files=[("file", (path.name, path.read_bytes()))],
                                headers={"Authorization": f"Bearer {token}"})
            seconds = time.perf_counter() - started
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            results.append({"unit": unit, "status": r.status_code, "seconds": seconds,
                            "accepted": body.get("message") == "已收到",
                            "checked": [s["status"] for s in body.get("submissions", [])]})


async def _load(url: str, work: list, codes: dict, clients: int, limit_s: float) -> tuple[list, float]:
    queue: asyncio.Queue = asyncio.Queue()
    for item in work:
        queue.put_nowait(item)
    results: list = []
    started = time.perf_counter()
    deadline = time.monotonic() + limit_s
    await asyncio.gather(*(_client(queue, url, codes, results, deadline) for _ in range(clients)))
    return results, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--limit-s", type=float, default=900.0)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    campaign = HERE / "work" / f"n{args.units}"
    if not (campaign / "roster.csv").exists():
        raise SystemExit(f"run `python bench/run.py --units {args.units}` first: no campaign in {campaign}")
    perfxl = [sys.executable, "-m", "perfxl"]
    with tempfile.TemporaryDirectory(prefix="perfxl-portal-load-") as tmp:
        tmp = Path(tmp)
        subprocess.run(perfxl + ["generate", "national/project", "--year", "2022", "--roster",
                                 str(campaign / "roster.csv"), "-o", str(tmp / "blank")], check=True,
                       stdout=subprocess.DEVNULL)
        manifest = json.loads((tmp / "blank" / "manifest.json").read_text(encoding="utf-8"))
        codes = {m["unit_code"]: m["access_code"] for m in manifest["forms"]}
        work = []
        for path in sorted((campaign / "inbox").rglob("*.xlsx")):
            unit = path.name.split("_", 1)[0]
            if unit in codes:
                work.append((unit, path))
        port = _free_port()
        password = tmp / "admin-password.txt"  # never on the command line, as README shows
        password.write_text(PASSWORD + "\n", encoding="utf-8")
        server = subprocess.Popen(perfxl + ["serve", str(tmp / "store"), "--roster", str(campaign / "roster.csv"),
                                            "--forms", str(tmp / "blank"), "--admin-password-file", str(password),
                                            "--port", str(port), "--jobs", str(args.jobs)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            began = time.monotonic()
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() - began > 120:
                        raise SystemExit(f"the server did not start: {server.stderr.read().decode()[-2000:]}") from None
                    time.sleep(0.2)
            startup = time.monotonic() - began
            print(f"== {len(work):,} uploads by {args.clients} clients to http://127.0.0.1:{port} "
                  f"(server up in {startup:.1f} s)", flush=True)
            results, wall = asyncio.run(_load(f"http://127.0.0.1:{port}", work, codes, args.clients, args.limit_s))
        finally:
            server.terminate()
            server.wait(30)
        with sqlite3.connect(tmp / "store" / "报送台账.sqlite") as db:
            in_ledger = db.execute("SELECT COUNT(*) FROM submissions").fetchone()[0]
            checking = db.execute("SELECT COUNT(*) FROM submissions WHERE status='checking'").fetchone()[0]
    times = sorted(r["seconds"] for r in results if r.get("accepted"))
    accepted = len(times)
    figures = {
        "date": datetime.now().isoformat(timespec="seconds"), "machine": {"cores": os.cpu_count()},
        "uploads": len(work), "answered": len(results), "accepted": accepted, "clients": args.clients,
        "jobs": args.jobs, "wall_s": round(wall, 2), "uploads_per_s": round(accepted / wall, 1) if wall else None,
        "p50_s": round(statistics.median(times), 3) if times else None,
        "p95_s": round(times[int(0.95 * (len(times) - 1))], 3) if times else None,
        "ledger_submissions": in_ledger, "left_checking": checking, "ledger_equals_accepted": in_ledger == accepted,
        "statuses": {s: sum(1 for r in results for x in r.get("checked", []) if x == s)
                     for s in ("valid", "errors", "rejected")},
        "server_startup_s": round(startup, 1),
    }
    print(json.dumps(figures, ensure_ascii=False, indent=1))
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"portal-{datetime.now():%Y%m%d-%H%M}.json"
    out.write_text(json.dumps(figures, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"figures → {out}")
    if not figures["ledger_equals_accepted"] or accepted != len(work):
        raise SystemExit(1)


if __name__ == "__main__":
    main()

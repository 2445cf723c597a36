"""Pools of worker processes (perfxl.processes): every pool perfxl starts comes from one place, and its
workers end when the process that started them is killed."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .test_merge import _line_within as line_within

PACKAGE = Path(__file__).resolve().parents[1] / "perfxl"


def alive(pid: int) -> bool:
    """Whether a process runs (an orphan's zombie, waiting to be reaped by whoever adopted it, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def children(pid: int) -> set[int]:
    try:
        return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


def outlived(pids: set[int], seconds: float) -> set[int]:
    """Those of `pids` still running once `seconds` have passed (sooner if none is)."""
    deadline = time.monotonic() + seconds
    while (running := {p for p in pids if alive(p)}) and time.monotonic() < deadline:
        time.sleep(0.1)
    return running


def kill_all(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


linux_only = pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")


def descendants(pid: int) -> set[int]:
    """Every process under `pid`: its children, theirs, and so on."""
    found, todo = set(), [pid]
    while todo:
        kids = children(todo.pop())
        found |= kids
        todo += kids
    return found


@linux_only
@pytest.mark.parametrize("started", ["fork", "forkserver", "spawn"])
def test_a_pools_workers_end_when_the_process_that_made_it_is_killed(tmp_path, started):
    """kill -9 of the process that made the pool: its workers, busy for ten minutes, end within seconds, and
    so does everything it started. A process with another thread running (a merge run from a thread, the
    portal) starts its workers from a fork server: they are the fork server's children, not the killed
    process's, and each held the fork server's lifeline open, so both lived on for ever. Spawned workers (as
    on Windows, where no worker watched at all) wait on their parent's sentinel, the way they do there."""
    script = ("import multiprocessing, os, threading, time\nfrom perfxl.processes import worker_pool\n"
              + ("threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n"
                 if started == "forkserver" else "")
              + ("pool = worker_pool(2, multiprocessing.get_context('spawn'))\n" if started == "spawn"
                 else "pool = worker_pool(2)\n")
              + "futures = [pool.submit(time.sleep, 600) for _ in range(2)]\n"
              "deadline = time.monotonic() + 30\n"
              "while len(pool._processes) < 2 and time.monotonic() < deadline:\n    time.sleep(0.05)\n"
              "print(pool._mp_context.get_start_method(), *sorted(pool._processes), flush=True)\ntime.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)})
    tree: set[int] = set()
    try:
        line = (line_within(proc.stdout, 60) or "").split()
        assert line and line[0] == started, line
        workers = {int(pid) for pid in line[1:]}
        deadline = time.monotonic() + 30
        while not workers <= (tree := descendants(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(workers) == 2 and workers <= tree, "the pool never started its two workers"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    try:
        assert not outlived(tree, 15), "processes outlived the one that made the pool"
    finally:
        kill_all(tree)
        proc.stdout.close()


def test_every_pool_perfxl_starts_comes_from_worker_pool():
    """A ProcessPoolExecutor made anywhere else would have workers that outlive a killed merge (the
    render-ahead pool's did, for ever)."""
    made_elsewhere = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "processes.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and "ProcessPoolExecutor" in ast.unparse(node.func):
                made_elsewhere.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(("os.fork", "Process")):
                made_elsewhere.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert made_elsewhere == []


def _hold(marker: str) -> str:
    """A task that holds its worker until `marker` exists (at most a minute)."""
    deadline = time.monotonic() + 60
    while not os.path.exists(marker) and time.monotonic() < deadline:
        time.sleep(0.01)
    return "held"


def _die() -> None:
    os._exit(1)


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_a_worker_that_dies_beside_a_busy_one_breaks_the_pool_at_once(tmp_path, method):
    """A pool that starts its workers as tasks come (not forked) woke its manager before starting the new
    task's worker, and the manager could wait on the workers it knew: the second worker dying went unnoticed
    until the first's result came, a minute here (in the portal, a crashing upload and the one beside it
    held that long). worker_pool starts every worker at once."""
    import multiprocessing
    from concurrent.futures.process import BrokenProcessPool

    from perfxl.processes import worker_pool

    marker = tmp_path / "let-go"
    with worker_pool(2, multiprocessing.get_context(method)) as pool:
        held = pool.submit(_hold, str(marker))
        dying = pool.submit(_die)
        started = time.monotonic()
        with pytest.raises(BrokenProcessPool):
            dying.result(timeout=90)
        noticed = time.monotonic() - started
        marker.touch()
        assert noticed < 30, f"the dead worker was noticed after {noticed:.0f} s, once its busy sibling finished"
        with pytest.raises(BrokenProcessPool):
            held.result(timeout=90)

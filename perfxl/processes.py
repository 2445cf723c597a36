"""Pools of worker processes, started one way everywhere: forked only where that is safe, and each worker
ending once the process that started it is gone.

Every pool perfxl starts (the merge's readers and render-ahead, the summary's helper, follow-up forms,
earlier years' ledgers, the portal's checkers) comes from `worker_pool`: a merge killed with kill -9, or by
the out-of-memory killer, must not leave forked copies of itself behind holding its ledger open, which the
render-ahead pool's workers did (they waited on a pipe their sibling held, for ever)."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

PARENT_WATCH_SECONDS = 1.0  # how often a worker looks whether the process that made its pool is still there


def pool_context():
    """How workers are started: forked, where the system forks and this process runs one thread. A fork
    copies whatever lock another thread holds at that moment (SQLite's, a logging handler's) into the child,
    which then waits for it for ever: two merges run in two threads of one process (the Python API) hung
    so. A process with other threads starts its workers from a clean server process instead (spawn where
    there is none), as on Windows."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def worker_pool(workers: int, context=None, initializer: Callable | None = None,
                initargs: tuple = ()) -> ProcessPoolExecutor:
    """A ProcessPoolExecutor of `workers` processes (started by `context`, pool_context() by default) whose
    workers end within a second or two of this process ending, however it ends; `initializer(*initargs)`
    then runs in each, as ProcessPoolExecutor's own would."""
    context = context or pool_context()
    pool = ProcessPoolExecutor(max_workers=max(1, workers), mp_context=context,
                               initializer=_start_worker,
                               initargs=(os.getpid(), context.get_start_method() == "spawn", initializer, initargs))
    # Every worker started now, not one at a time as tasks come (as ProcessPoolExecutor does where it does not
    # fork): submit() wakes the pool's manager thread before it starts the worker for that task, so the
    # manager may already be waiting on the workers it knew, and a worker started then that dies (a file
    # that kills it) is not noticed until another worker's result comes, or ever. Seen in the portal: a
    # crash found a minute late, the upload beside it held as long (tests/test_processes.py).
    launch = getattr(pool, "_launch_processes", None)  # CPython's own, as it starts forked pools
    if launch is not None and context.get_start_method() != "fork":
        launch()
    return pool


def _start_worker(owner: int, spawned: bool, initializer: Callable | None, initargs: tuple) -> None:
    exit_with(owner, spawned)
    if initializer is not None:
        initializer(*initargs)


def exit_with(owner: int, spawned: bool = False) -> None:
    """This worker ends (exit status 3) once `owner`, the process that made its pool, is gone. A forked
    worker shares the task pipe with its siblings, so it would otherwise wait on it, or finish its work, for
    ever. The owner is not always the parent: a pool started from a process with other threads is forked by
    a fork server (pool_context), whose children hold its own lifeline open, so neither would ever end.

    A spawned worker (Windows, where nothing forks) is its owner's child, and waits on the sentinel
    multiprocessing gives it of its parent (on Windows a handle of the parent process, here a pipe only the
    parent holds): it ends the moment the owner does, without looking every second. The others look every
    second, POSIX only: on Windows os.kill ends the process it is given."""
    if spawned:
        parent = multiprocessing.parent_process()
        if parent is not None and parent.pid == owner and parent.sentinel is not None:
            threading.Thread(target=_exit_when_ready, args=(parent.sentinel,), name="perfxl-owner-watch",
                             daemon=True).start()
            return
    if os.name == "nt" or owner <= 1:
        return
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(PARENT_WATCH_SECONDS)
            if os.getppid() != parent or _gone(owner):
                os._exit(3)

    threading.Thread(target=watch, name="perfxl-owner-watch", daemon=True).start()


def _exit_when_ready(sentinel) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(3)


def _gone(pid: int) -> bool:
    """Whether process `pid` has ended (a zombie its parent has not reaped yet has ended too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # there, but another user's: the id was given to another process
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):  # no /proc (macOS): it answered the signal, so it is there
        return False
    return state in ("Z", "X")

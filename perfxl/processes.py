"""Pools of worker processes, started one way everywhere: forked only where that is safe, and each worker
ending once the process that started it is gone.

Every pool perfxl starts (the merge's readers and render-ahead, the summary's helper, follow-up forms,
earlier years' ledgers, the portal's checkers) comes from `worker_pool`: a merge killed with kill -9, or by
the out-of-memory killer, must not leave forked copies of itself behind holding its ledger open, which the
render-ahead pool's workers did (they waited on a pipe their sibling held, for ever)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

PARENT_WATCH_SECONDS = 1.0  # how often a worker looks whether its parent is still there


def pool_context():
    """How workers are started: forked, where the system forks and this process runs one thread. A fork
    copies whatever lock another thread holds at that moment (SQLite's, a logging handler's) into the child,
    which then waits for it for ever: two merges run in two threads of one process (the Python API) hung
    so. A process with other threads starts its workers from a clean server process instead (spawn where
    there is none), as on Windows."""
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def worker_pool(workers: int, context=None, initializer: Callable | None = None,
                initargs: tuple = ()) -> ProcessPoolExecutor:
    """A ProcessPoolExecutor of `workers` processes (started by `context`, pool_context() by default) whose
    workers end within a second or two of this process ending, however it ends; `initializer(*initargs)`
    then runs in each, as ProcessPoolExecutor's own would."""
    return ProcessPoolExecutor(max_workers=max(1, workers), mp_context=context or pool_context(),
                               initializer=_start_worker, initargs=(initializer, initargs))


def _start_worker(initializer: Callable | None, initargs: tuple) -> None:
    exit_with_parent()
    if initializer is not None:
        initializer(*initargs)


def exit_with_parent() -> None:
    """This worker ends (exit status 3) once the process that started it is gone: a forked worker shares the
    task pipe with its siblings, so it would otherwise wait on it, or finish its work, for ever.

    POSIX only: an orphan is handed to another parent, which os.getppid shows. On Windows the parent's id
    does not change when it dies, and the watch never fires (not checked here: no Windows machine)."""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(PARENT_WATCH_SECONDS)
            if os.getppid() != parent:
                os._exit(3)

    if parent > 1:
        threading.Thread(target=watch, name="perfxl-parent-watch", daemon=True).start()

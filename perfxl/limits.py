"""Time and memory limits for work on untrusted input (a returned workbook, a bureau's template), and the
cycle collector paused for work that makes millions of small objects.

Time, POSIX: SIGALRM interrupts the work wherever it is, in the main thread. Elsewhere (Windows, or a
thread other than the main one) the limit is cooperative: callers that loop check `expired`, and the
readers' size caps bound the rest.

Memory, Linux: the address space may grow by a fixed allowance while the work runs (RLIMIT_AS), so an
allocation past it raises MemoryError, even one made inside a single C call that no signal interrupts.
Elsewhere (macOS does not enforce RLIMIT_AS, Windows has none) the callers' own size caps bound the work.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from contextlib import contextmanager


@contextmanager
def collector_paused():
    """Python's cycle collector off while the work makes millions of small objects that form no cycle (a
    province's rows, their tuples and dicts): each full collection would walk every one of them again. What
    reference counting frees is freed as ever; collection resumes afterwards, as it was."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class TimeLimitExceeded(BaseException):
    """The work ran past its time limit. Not an Exception, as KeyboardInterrupt is not: the alarm fires
    wherever the work is, and a handler there for what the work itself may raise (`except Exception` around a
    template's code, xlrd, zipfile) took it for that (模板渲染出错, file-corrupt), a rejection kept by the form's
    content that no later merge read again. `outer`: the time that ran out was an enclosing limit's (a file's,
    around a template rendered while it is read), not this one's."""

    def __init__(self, outer: bool = False):
        super().__init__()
        self.outer = outer


_ACTIVE: list[time_limit] = []  # the limits armed in this process, innermost last


def ran_out() -> TimeLimitExceeded | None:
    """The timeout of an armed limit whose alarm has fired, if any. The alarm's exception, raised inside a
    callback from C (SQLite's progress handler, which every bounded connection has), is dropped there and the
    statement is stopped instead: the caller of that statement raises this one (see ledger._TimedCursor)."""
    me = threading.get_ident()  # only this thread's limits: another thread's SQLite error is its own
    for limit in reversed(_ACTIVE):
        if limit.fired is not None and limit.thread == me:
            return limit.fired
    return None


class time_limit:  # noqa: N801 - used as a context manager, like contextlib's
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.armed = False
        self.fired: TimeLimitExceeded | None = None
        self.thread = threading.get_ident()

    @property
    def expired(self) -> bool:
        return time.monotonic() > self.deadline

    def check(self) -> None:
        """For cooperative callers: raise when the time is up."""
        if self.expired:
            raise TimeLimitExceeded()

    def __enter__(self):
        self.deadline = time.monotonic() + self.seconds
        try:
            import signal

            # Nested limits (a template rendered while a worker reads a file under its own limit): the
            # inner one runs for the shorter time and gives the outer one back what is left of it.
            self.outer_left = signal.getitimer(signal.ITIMER_REAL)[0]
            self.started = time.monotonic()
            seconds = min(self.seconds, self.outer_left) if self.outer_left else self.seconds
            outer = bool(self.outer_left) and self.outer_left <= self.seconds

            def _raise(signum, frame):
                self.fired = TimeLimitExceeded(outer=outer)
                raise self.fired

            self.previous = signal.getsignal(signal.SIGALRM)
        except (ImportError, AttributeError, ValueError):  # no SIGALRM
            return self
        if threading.current_thread() is not threading.main_thread():
            return self  # signals come to the main thread only
        self.fired, self.thread, self.armed = None, threading.get_ident(), True
        _ACTIVE.append(self)  # before the alarm: one that comes at once finds the limit registered
        try:
            signal.signal(signal.SIGALRM, _raise)
            signal.setitimer(signal.ITIMER_REAL, seconds)
            return self
        except BaseException:  # it came before the block began (a limit of microseconds): all put back
            self.__exit__(None, None, None)
            raise

    def __exit__(self, *exc):
        if self.armed:
            import signal

            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)
            self.armed = False
            if self in _ACTIVE:
                _ACTIVE.remove(self)
            if self.outer_left:
                left = self.outer_left - (time.monotonic() - self.started)
                signal.setitimer(signal.ITIMER_REAL, max(left, 0.001))
        return False


def address_space() -> int:
    """This process's virtual size in bytes (Linux /proc); 0 where it cannot be read."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return 0


class memory_limit:  # noqa: N801 - used as a context manager, like time_limit
    """Let the address space grow by at most `allowance` bytes inside the block (MemoryError past it).

    Only in the main thread: the limit is the whole process's, and a server's other threads must not have
    their allocations refused because one of them renders a template. A limit already lower (a merge
    worker's) stays; the previous limit comes back on exit."""

    def __init__(self, allowance: int):
        self.allowance = allowance
        self.previous = None

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        current = address_space()
        if not current:
            return self
        try:
            import resource

            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            limit = current + self.allowance
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)
            if soft == resource.RLIM_INFINITY or soft > limit:
                resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
                self.previous = (soft, hard)
        except (ImportError, ValueError, OSError):  # no RLIMIT_AS here, or the OS refuses it
            pass
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, self.previous)
            self.previous = None
        return False

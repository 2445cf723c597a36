"""Time limits for work on untrusted input (a returned workbook, a bureau's template).

POSIX: SIGALRM interrupts the work wherever it is, in the main thread. Elsewhere (Windows, or a thread
other than the main one) the limit is cooperative: callers that loop check `expired`, and the readers'
size caps bound the rest.
"""

from __future__ import annotations

import time


class TimeLimitExceeded(Exception):
    """The work ran past its time limit."""


class time_limit:  # noqa: N801 - used as a context manager, like contextlib's
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.armed = False

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

            def _raise(signum, frame):
                raise TimeLimitExceeded()

            # Nested limits (a template rendered while a worker reads a file under its own limit): the
            # inner one runs for the shorter time and gives the outer one back what is left of it.
            self.outer_left = signal.getitimer(signal.ITIMER_REAL)[0]
            self.started = time.monotonic()
            seconds = min(self.seconds, self.outer_left) if self.outer_left else self.seconds
            self.previous = signal.signal(signal.SIGALRM, _raise)
            signal.setitimer(signal.ITIMER_REAL, seconds)
            self.armed = True
        except (ImportError, AttributeError, ValueError):  # no SIGALRM, or not the main thread
            pass
        return self

    def __exit__(self, *exc):
        if self.armed:
            import signal

            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)
            self.armed = False
            if self.outer_left:
                left = self.outer_left - (time.monotonic() - self.started)
                signal.setitimer(signal.ITIMER_REAL, max(left, 0.001))
        return False

"""The per-file time limit (perfxl.limits.time_limit): its alarm is the file's timeout, and only that."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time

import pytest

from perfxl import ledger, limits


def _bounded():
    return sqlite3.connect(":memory:", factory=ledger._BoundedConnection)


def test_a_limit_whose_alarm_comes_as_it_is_armed_leaves_no_timeout_behind(monkeypatch):
    """A template's limit nested in a file's with microseconds left: the alarm came right after the limit
    registered, before its block began, so nothing took it back, and every later SQLite error in that worker
    (a record's lookup, a form taken from the ledger) was reported as a timeout, outside any limit."""
    class Slow(list):
        def append(self, item):
            super().append(item)
            time.sleep(0.05)  # the alarm lands here

    monkeypatch.setattr(limits, "_ACTIVE", Slow())
    previous = signal.getsignal(signal.SIGALRM)
    with pytest.raises(limits.TimeLimitExceeded):
        with limits.time_limit(0.001):
            time.sleep(0.2)
    assert signal.getsignal(signal.SIGALRM) == previous and list(limits._ACTIVE) == []
    with pytest.raises(sqlite3.OperationalError):
        _bounded().execute("SELECT * FROM no_such_table")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_another_threads_sqlite_error_is_not_the_main_threads_timeout():
    """The main thread's alarm, dropped where it fired (a finalizer), made another thread's SQLite error
    read as a timeout."""
    class Slow:
        def __del__(self):
            time.sleep(0.3)  # the alarm's exception is raised here, and dropped

    got = []

    def other():
        try:
            _bounded().execute("SELECT * FROM no_such_table")
        except BaseException as exc:  # noqa: BLE001 - what it raises is what is asserted
            got.append(type(exc).__name__)

    with limits.time_limit(0.05):
        Slow()
        t = threading.Thread(target=other)
        t.start()
        t.join(timeout=10)
    assert got == ["OperationalError"]


def test_time_running_out_inside_an_sqlite_statement_is_that_timeout(monkeypatch):
    """SQLite drops the alarm's exception raised in its progress handler and stops the statement: the
    statement's caller gets the timeout, not 'interrupted'."""
    monkeypatch.setattr(ledger, "_PROGRESS_STEPS", 1)
    real = ledger._Clock.too_long

    def slow(self):
        time.sleep(0.01)
        return real(self)

    monkeypatch.setattr(ledger._Clock, "too_long", slow)
    db = _bounded()
    with pytest.raises(limits.TimeLimitExceeded):
        with limits.time_limit(0.05):
            db.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) "
                       "SELECT count(*) FROM n").fetchall()
    assert limits._ACTIVE == []
    with pytest.raises(sqlite3.OperationalError):
        db.execute("SELECT * FROM no_such_table")

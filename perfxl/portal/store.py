"""The portal's store: a folder holding the ledger (报送台账.sqlite, the same ledger `perfxl merge` keeps)
and every upload, content-addressed and never overwritten:

    STORE/files/<unit>/<sha256>.xlsx    what units handed in; `perfxl merge STORE/files --db STORE/报送台账.sqlite`
    STORE/refused/<sha256>.bin          what is not a unit's readable form (not a workbook, another unit's)

A file's unit is the signed-in unit: a form whose stamp, or (stampless) whose unit name, names another
roster unit is refused (`portal-other-unit`), never counted for either unit. The ledger also keeps the
sessions revoked at logout until they would have expired anyway.

An upload is on disk (fsynced) and in the ledger before it is checked, so a reply of 已收到 never covers
a file a crash could lose; a submission still 'checking' after a restart is checked again. Checking runs
in the merge's own worker pool with its per-file time and memory limits. A unit's current version follows
the merge's rule: its newest version without errors, else its newest.

A 退回 stands until the unit hands in, after it, a version whose content differs from the returned one's:
the returned file handed in again, or re-saved in Excel without a change, is still the returned
declaration, so the unit stays 已退回 and is told so. Content is the form's data as read, which the
summary takes, not the file's bytes.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import os
import sqlite3
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from perfxl import ledger as ledger_module
from perfxl.files import safe_filename
from perfxl.ledger import Ledger, StoredDataError
from perfxl.merging import MergeOptions, check_upload, start_checker
from perfxl.merging.versions import counting_order, version_that_counts
from perfxl.problems import problem
from perfxl.records import checked_from_bytes
from perfxl.roster import Unit

LEDGER_NAME = "报送台账.sqlite"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
STATUS_ZH = {"valid": "已报送", "errors": "有错误", "rejected": "无法读取", "refused": "已拒收", "checking": "检查中",
             "missing": "未报送", "returned": "已退回"}
# A unit's line of the board when nothing it handed in counts: the summary says 未报送, and so does the board,
# with what became of its newest upload. A file still being checked is in files/, where a merge reads it
# (and counts it, by what it says) now: received, not 未报送.
NOTHING_COUNTED_ZH = {"rejected": "未报送（无法读取）", "refused": "未报送（已拒收）", "checking": "已收到（检查中）"}
# What a form's content is, for a return: what was read from the file, not where or how it was read. The
# file's size and hash change when Excel saves it again without a change; its data does not.
_NOT_CONTENT = ("path", "size", "sha256", "notices", "stamp_source")


@dataclass
class Checked:
    submission: dict
    checked: object | None  # the CheckedForm, for the annotated copy


@dataclass
class _Outcome:
    """What a check found, before it is recorded: kept to record it again later, not to check again."""

    sub: dict
    path: Path
    status: str
    errors: int
    warnings: int
    problems: list
    checked: object = None  # the CheckedForm, where the file was read
    result: object = None  # the worker's FileResult, for the merge's cache


class CheckerDown(Exception):
    """No checker worker could be started (no processes left, one hung starting): the check waits."""


def _fsync_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):  # POSIX: the rename itself survives a power cut
        dir_fd = os.open(path.parent, os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


RECHECK_SECONDS = 15.0  # a check whose result found the ledger locked is tried again after this long
PORTAL_BUSY_SECONDS = 10.0  # a write into the ledger waits this long at most, its time queued behind others included
CHECKER_START_SECONDS = 120.0  # a checker worker that has not started by then never will (a hung start)
READ_BUSY_SECONDS = 0.5  # a read waits for no writer in WAL mode; this only bounds a rare recovery's wait


class LedgerBusy(Exception):
    """The ledger stayed locked past the wait (ledger.BUSY_SECONDS): a merge is writing into it. Nothing of
    the upload was kept."""


def _busy(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite gave up waiting for another connection's lock (not a full disk, not a damaged file)."""
    return "locked" in str(exc) or "busy" in str(exc)


class Store:
    def __init__(self, folder: Path, units: list[Unit], roster_path: Path | None, jobs: int = 2,
                 templates_dir: Path | None = None, year: int | None = None, issued: tuple[Path, ...] = ()):
        self.folder = Path(folder)
        self.files = self.folder / "files"
        self.refused = self.folder / "refused"
        for d in (self.folder, self.files, self.refused):
            d.mkdir(parents=True, exist_ok=True)
        self.ledger_path = self.folder / LEDGER_NAME
        # The one connection that writes, under `lock`, on one thread of its own (`write`), never the event
        # loop's nor the pool reads run in: it may wait for a merge's write lock. Everything read goes through
        # each thread's own read-only connection (`_reader`), which in WAL mode waits for no writer: while an
        # upload waited for a merge, every request, the session check of each page included, waited behind it
        # (up to 10 s each).
        self.ledger = Ledger(self.ledger_path, threads=True)
        # What the portal answers 已收到 or 已退出登录 to survives a power cut, not only a crash of the portal
        self.ledger.db.execute("PRAGMA synchronous=FULL")
        self._wait = min(ledger_module.BUSY_SECONDS, PORTAL_BUSY_SECONDS)
        self.ledger.db.execute(f"PRAGMA busy_timeout={int(self._wait * 1000)}")
        self.lock = threading.Lock()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="perfxl-ledger-writer")
        self._local = threading.local()
        self._readers: list[Ledger] = []  # every thread's, to be closed with the store
        self._readers_lock = threading.Lock()
        self._later: set[asyncio.Task] = set()  # checks to try again once a merge lets the ledger go
        self._renewing = asyncio.Lock()  # the checker pool is renewed by one check at a time
        self._down_until = 0.0  # a renewal failed: none is tried again before then
        self._checking = asyncio.Semaphore(max(1, jobs))  # checks under way, in the pool or alone
        self._alone_pools: set = set()  # one-worker pools re-checking what a crash took down
        self.units = {u.code: u for u in units}
        self.by_name: dict[str, set[str]] = {}  # a unit name as a form may write it → roster codes
        for u in units:
            self.by_name.setdefault(_name_key(u.name), set()).add(u.code)
        self.roster_path = roster_path
        self.options = MergeOptions(roster=roster_path, templates_dir=templates_dir, year=year, issued=tuple(issued))
        self.jobs = jobs
        self._contents: dict[str, str] = {}  # sha256 → content digest (files are content-addressed: never stale)
        self.pool = self._start_pool()

    def _start_pool(self):
        """The checker workers, forked now rather than at the first upload: a fork later would copy into
        them whatever descriptors the server holds by then (a browser driver's pipes in the tests). A pool
        whose worker does not start is stopped, its workers killed, not left behind."""
        pool = start_checker(self.options, self.units, str(self.ledger_path), self.jobs)
        try:
            pool.submit(os.getpid).result(timeout=CHECKER_START_SECONDS)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.kill()
            raise
        return pool

    def close(self) -> None:
        """Checks waiting to be tried again are dropped (a restart checks them), the write under way ends,
        and the checker workers, which read the ledger, are gone before it is closed: the last connection to
        close leaves it one file, and a worker still holding it kept it in WAL mode."""
        for task in list(self._later):
            task.cancel()
        self._writer.shutdown(wait=True, cancel_futures=True)
        for pool in [self.pool, *self._alone_pools]:
            pool.shutdown(wait=True, cancel_futures=True)
        with self.lock, self._readers_lock:
            for reader in self._readers:
                reader.close()
            self._readers.clear()
            self.ledger.close()

    def _reader(self) -> Ledger:
        """This thread's read-only connection to the ledger (see __init__)."""
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = Ledger(self.ledger_path, readonly=True, threads=True)
            reader.db.execute(f"PRAGMA busy_timeout={int(READ_BUSY_SECONDS * 1000)}")
            with self._readers_lock:
                self._readers.append(reader)
            self._local.reader = reader
        return reader

    @contextmanager
    def snapshot(self):
        """Every read on this thread inside the block sees one state of the ledger: a page made of several
        reads never shows a check's result in one place and not in another. No await inside it (the event
        loop's thread has one connection for every request)."""
        db = self._reader().db
        if db.in_transaction:
            yield
            return
        db.execute("BEGIN")
        try:
            yield
        finally:
            db.rollback()  # read only: nothing to keep

    async def write(self, fn, *args):
        """`fn(*args)`, a change to the ledger, on the store's writing thread (see __init__). It waits for a
        merge's lock at most PORTAL_BUSY_SECONDS from now, its time queued behind other writes included:
        past that, `fn` meets the lock as sqlite3.OperationalError ("database is locked") at once, and
        undoes what it must as it would after a wait (an upload not recorded takes its file away)."""
        deadline = time.monotonic() + PORTAL_BUSY_SECONDS
        return await asyncio.get_running_loop().run_in_executor(
            self._writer, functools.partial(self._within, deadline, fn, *args))

    def _within(self, deadline: float, fn, *args):
        left = min(deadline - time.monotonic(), self._wait)
        with self.lock:
            self.ledger.db.execute(f"PRAGMA busy_timeout={max(1, int(left * 1000))}")
        return fn(*args)

    @contextmanager
    def _writing(self):
        """The writing connection for one change, in a transaction; LedgerBusy when a merge holds the ledger
        past the wait. Call it from a worker thread (see __init__)."""
        with self.lock:
            try:
                with self.ledger.db:
                    yield self.ledger
            except sqlite3.OperationalError as exc:
                if _busy(exc):
                    raise LedgerBusy(str(exc)) from None
                raise

    # -- receiving ----------------------------------------------------------------------------------

    def receive(self, unit: str, file_name: str, data: bytes) -> int:
        """Put an upload on disk and in the ledger; returns its submission id. Nothing of the request is
        used as a path: the name on disk is the content's hash, under the signed-in unit's folder. (The
        portal's requests use `hand_in`, which does the same on its threads.)"""
        return self._record_submission(unit, file_name, data, self._place(unit, data))

    async def hand_in(self, unit: str, file_name: str, data: bytes) -> int:
        """`receive` from the event loop: the file written (fsynced) on a thread of the default pool, only its
        record on the writing thread, whose queue must hold nothing slow (every write waits in it)."""
        placed = await asyncio.get_running_loop().run_in_executor(None, self._place, unit, data)
        return await self.write(self._record_submission, unit, file_name, data, placed)

    def _place(self, unit: str, data: bytes) -> tuple[str, Path, bool]:
        """The upload written where its content names it, if it is not there already: (its sha256, its path,
        whether it was there)."""
        sha = hashlib.sha256(data).hexdigest()
        suffix = ".xls" if data.startswith(OLE_MAGIC) else ".xlsx"
        path = self.files / safe_filename(unit) / f"{sha}{suffix}"
        again = path.exists()
        if not again:
            _fsync_write(path, data)
        return sha, path, again

    def _record_submission(self, unit: str, file_name: str, data: bytes, placed: tuple[str, Path, bool]) -> int:
        sha, path, again = placed
        stored = str(path.relative_to(self.folder))
        with self.lock:
            try:
                sid = self.ledger.add_submission(unit, safe_filename(file_name or "未命名.xlsx"), sha, len(data), stored)
                if not path.exists():  # the same content's other upload, not recorded, took the file away meanwhile
                    _fsync_write(path, data)
                elif again:  # handed in again: the newest version by time, as merge sees it, in the order recorded
                    os.utime(path)
            except sqlite3.OperationalError as exc:
                # Not recorded, so not received: a file left in the store would be merged all the same, as
                # the unit's own claims say, while the unit was told it failed. Another upload of the same
                # content may have been recorded meanwhile (the file is written outside the lock): its stays.
                if not again and self.ledger.db.execute("SELECT 1 FROM submissions WHERE stored=? LIMIT 1",
                                                        (stored,)).fetchone() is None:
                    path.unlink(missing_ok=True)
                if _busy(exc):
                    raise LedgerBusy(str(exc)) from None
                raise
        return sid

    async def check(self, sid: int, outcome: _Outcome | None = None) -> Checked:
        """Check a received upload and record the result. Where a merge holds the ledger past the wait while
        the result is recorded, nothing of it is recorded: the submission stays 'checking' (检查中), is
        returned so, and its result is recorded a little later (RECHECK_SECONDS), the check not run again
        (a file that kills its checker broke the pool at every try). Where no checker can be started now (no
        processes left), it is checked again then."""
        try:
            if outcome is not None and not await asyncio.get_running_loop().run_in_executor(None, outcome.path.exists):
                outcome = None  # taken away since it was checked: what a check finds now, not what it found
            if outcome is None:
                outcome = await self._outcome(sid)
            return await self._commit(sid, outcome)
        except (LedgerBusy, sqlite3.OperationalError) as exc:
            if not isinstance(exc, LedgerBusy) and not _busy(exc):
                raise
            await asyncio.get_running_loop().run_in_executor(self._writer, self._out_of_transaction)
        except CheckerDown:
            logging.getLogger("perfxl.portal").exception("submission %s: no checker could be started", sid)
        self._check_later(sid, outcome)
        return Checked(self._reader().submission(sid), None)

    def _out_of_transaction(self) -> None:
        with self.lock:
            self.ledger.db.rollback()  # the writing connection out of the failed transaction, for the next

    def _check_later(self, sid: int, outcome: _Outcome | None) -> None:
        async def again():
            await asyncio.sleep(RECHECK_SECONDS)
            sub = self._reader().submission(sid)
            if sub is not None and sub["status"] == "checking":
                await self.check(sid, outcome)

        task = asyncio.get_running_loop().create_task(again())
        self._later.add(task)  # held until done: the loop keeps only weak references to its tasks
        task.add_done_callback(self._later.discard)

    async def _outcome(self, sid: int) -> _Outcome:
        """What the check of this submission finds (nothing recorded yet)."""
        sub = self._reader().submission(sid)
        path = self.folder / sub["stored"]
        if not path.exists():  # taken away by hand: nothing to check; the unit is asked to hand it in again
            gone = problem("file-unreadable", detail="上传的文件已不在报送库中，请重新上传")
            return _Outcome(sub, path, "rejected", 0, 0, [gone.to_dict("zh")])
        result = await self.in_checker(check_upload, path)
        if result is None:
            return _Outcome(sub, path, "rejected", 0, 0, [problem("worker-crash").to_dict("zh")])
        summary = result.summary
        checked = checked_from_bytes(result.checked)  # made by our own worker from this store's file
        problems = [p.to_dict("zh") for p in checked.problems]
        other = None if summary["read_error"] else self.other_unit(sub["unit_code"], summary)
        if summary["read_error"]:
            status = "rejected"
        elif other:
            found = problem("portal-other-unit", found=other, expected=self._named(sub["unit_code"]))
            problems.insert(0, found.to_dict("zh"))
            summary = {**summary, "errors": summary["errors"] + 1}
            status = "refused"
        else:
            status = "errors" if summary["errors"] else "valid"
        return _Outcome(sub, path, status, summary["errors"], summary["warnings"], problems, checked, result)

    async def _commit(self, sid: int, outcome: _Outcome) -> Checked:
        """The outcome recorded: the file's check in the merge's cache, a refused file copied out of files/
        (on a thread of the default pool: the writing thread's queue holds nothing slow), the result."""
        if outcome.result is not None:
            await self.write(self._record, outcome.result, outcome.path)
        target = None
        if outcome.status in ("rejected", "refused") and outcome.path.is_relative_to(self.files) \
                and outcome.path.exists():  # not a readable form of this unit: kept, out of what merge reads
            target = self.refused / f"{outcome.sub['sha256']}.bin"
            if not target.exists():
                data = await asyncio.get_running_loop().run_in_executor(None, outcome.path.read_bytes)
                await asyncio.get_running_loop().run_in_executor(None, _fsync_write, target, data)
        return await self.write(self._finish, sid, outcome, target)

    async def in_checker(self, fn, path: Path):
        """`fn(str(path))` in a checker worker: its result, or None when the file kills even a worker of its
        own. At most `jobs` at a time, so none waits in the pool: when a worker dies, it takes down only the
        checks under way, not every one queued."""
        async with self._checking:
            pool = self.pool
            try:
                return await asyncio.get_running_loop().run_in_executor(pool, fn, str(path))
            except BrokenProcessPool:
                # A worker died, and every check in the pool with it: this file's doing, or another upload's
                # checked beside it. The pool is renewed once for all it broke, and each of them is checked
                # again alone: only a file that kills its own worker too is rejected for it (an innocent
                # unit's upload was rejected as worker-crash whenever a hostile one broke the pool).
                await self._renew(pool)
                return await self._alone(fn, path)

    async def _renew(self, broken) -> None:
        """A fresh checker pool in place of `broken`, once for all the checks it broke, started in a thread:
        its workers' start is not waited for on the event loop."""
        async with self._renewing:
            if self.pool is broken:
                if time.monotonic() < self._down_until:  # failed a moment ago: the checks waiting do not each try
                    raise CheckerDown("the checker pool failed to start a moment ago")
                try:
                    self.pool = await asyncio.get_running_loop().run_in_executor(None, self._start_pool)
                except (OSError, FuturesTimeout, BrokenProcessPool) as exc:
                    self._down_until = time.monotonic() + RECHECK_SECONDS
                    raise CheckerDown(str(exc)) from exc
                broken.shutdown(wait=False, cancel_futures=True)

    async def _alone(self, fn, path: Path):
        try:
            alone = start_checker(self.options, self.units, str(self.ledger_path), 1)
        except OSError as exc:
            raise CheckerDown(str(exc)) from exc
        self._alone_pools.add(alone)
        try:
            return await asyncio.get_running_loop().run_in_executor(alone, fn, str(path))
        except BrokenProcessPool:
            return None
        finally:
            alone.shutdown(wait=False, cancel_futures=True)
            self._alone_pools.discard(alone)

    def _record(self, result, path: Path) -> None:
        with self.lock:  # the merge's cache, as the merge would record it: `perfxl merge` reads no file twice
            try:
                self.ledger.record(result.sha, result.stat, str(path), result.summary, result.form_blob,
                                   self.options.check_options().read_key())
                self.ledger.db.commit()
            except sqlite3.Error:
                self.ledger.db.rollback()
                raise

    def other_unit(self, unit: str, summary: dict) -> str | None:
        """The other roster unit a checked form belongs to, as its stamp says or, without a stamp, as its unit
        name matches the roster (the merge's rule); None when it is the signed-in unit's or cannot be told."""
        code = summary.get("unit_code")
        if code:
            return self._named(code) if code != unit else None
        name = _name_key(summary.get("unit_name") or "")
        if not name or unit in self.by_name.get(name, ()):
            return None
        others = sorted(self.by_name.get(name, ()))
        return self._named(others[0]) if others else None

    def _named(self, code: str) -> str:
        unit = self.units.get(code)
        return f"{code} {unit.name}" if unit else code

    def _finish(self, sid: int, outcome: _Outcome, target: Path | None) -> Checked:
        sub, path = outcome.sub, outcome.path
        with self.lock:
            # The move and the result recorded together, before the file leaves files/: a ledger locked now
            # leaves the submission 'checking' with its file where it names it, to be checked again
            try:
                with self.ledger.db:
                    if target is not None:
                        self.ledger.db.execute("UPDATE submissions SET stored=? WHERE id=?",
                                               (str(target.relative_to(self.folder)), sid))
                    self.ledger.finish_submission(sid, outcome.status, outcome.errors, outcome.warnings,
                                                  outcome.problems)
            except sqlite3.Error:
                self.ledger.db.rollback()
                raise
            if target is not None and not self._still_needed(sub, path):
                path.unlink(missing_ok=True)
            return Checked(self.ledger.submission(sid), outcome.checked)

    def _still_needed(self, sub: dict, path: Path) -> bool:
        """The same content handed in earlier and accepted, or handed in again and not checked yet, keeps its
        file in files/ (the same file twice in one upload: the first refused must not take the second's)."""
        rows = self.ledger.db.execute("SELECT COUNT(*) FROM submissions WHERE stored=? AND id<>? AND status IN "
                                      "('valid','errors','checking')",
                                      (str(path.relative_to(self.folder)), sub["id"])).fetchone()
        return bool(rows[0])

    async def recheck_interrupted(self) -> int:
        """Submissions a crash left 'checking': their files are on disk, so they are checked now."""
        pending = [s["id"] for s in self._reader().submissions(status="checking")]
        for sid in pending:
            try:
                await self.check(sid)
            except Exception:  # one submission must not keep the portal from starting: it stays 检查中
                logging.getLogger("perfxl.portal").exception("submission %s could not be checked again", sid)
        return len(pending)

    # -- reading ------------------------------------------------------------------------------------

    def history(self, unit: str) -> list[dict]:
        return self._reader().submissions(unit)

    def submission(self, sid: int) -> dict | None:
        return self._reader().submission(sid)

    # -- sessions -----------------------------------------------------------------------------------

    def revoke(self, nonce: str, expires: float) -> None:
        """A logged-out session: refused from now on; its entry goes once the token would have expired.
        From a worker thread; LedgerBusy while a merge holds the ledger."""
        with self._writing() as ledger:
            ledger.db.execute("DELETE FROM portal_revoked WHERE expires < ?", (time.time(),))
            ledger.db.execute("INSERT OR REPLACE INTO portal_revoked (nonce, expires) VALUES (?, ?)",
                              (nonce, expires))

    def revoked(self, nonce: str) -> bool:
        return self._reader().db.execute("SELECT 1 FROM portal_revoked WHERE nonce=?",
                                         (nonce,)).fetchone() is not None

    def returns(self, unit: str | None = None) -> list[dict]:
        return self._reader().returns(unit)

    def add_return(self, unit: str, comment: str) -> None:
        """From a worker thread; LedgerBusy while a merge holds the ledger. The version returned is the one
        that counts as the return is recorded: read by the writing connection under its lock, which every
        change to the submissions takes."""
        with self._writing() as ledger:
            current = _current(ledger.submissions(unit))
            ledger.add_return(unit, current["id"] if current else None, comment)

    def current(self, unit: str) -> dict | None:
        """The version that counts, by the merge's rule: newest without errors, else newest readable."""
        return _current(self.history(unit))

    def row(self, unit: str) -> dict:
        """One unit's line of the board."""
        with self.snapshot():
            return self._row(unit, self.units[unit], self.history(unit), next(iter(self.returns(unit)), None))

    def board(self) -> list[dict]:
        """One row per roster unit: its status, its current version's counts, when it last handed in."""
        with self.snapshot():
            reader = self._reader()
            everything = reader.submissions()
            returns = reader.returns()
        by_unit: dict[str, list[dict]] = {}
        for s in everything:
            by_unit.setdefault(s["unit_code"], []).append(s)
        last_return = {}
        for r in returns:
            last_return.setdefault(r["unit_code"], r)
        return [self._row(code, unit, by_unit.get(code, []), last_return.get(code))
                for code, unit in self.units.items()]

    def _row(self, code: str, unit: Unit, subs: list[dict], returned: dict | None) -> dict:
        """`subs` newest first. A refused or unreadable file never stands for the unit: with nothing else, the
        unit shows what became of its newest upload, and counts as not handed in (未报送, as the summary says)."""
        current = _current(subs)
        status = current["status"] if current else (shown_status(subs[0]) if subs else "missing")
        standing = returned is not None and self._return_stands(returned, subs)
        if standing:
            status = "returned"
        status_zh = STATUS_ZH[status] if current or standing else NOTHING_COUNTED_ZH.get(status, STATUS_ZH[status])
        return {"unit_code": code, "unit_name": unit.name, "department": unit.department,
                "status": status, "status_zh": status_zh, "submissions": len(subs),
                "last_time": subs[0]["received"] if subs else "",
                "errors": current["errors"] if current else 0, "warnings": current["warnings"] if current else 0,
                "current": current["id"] if current else None,
                "comment": returned["comment"] if standing else "",
                "returned_time": returned["returned"] if standing else ""}

    def _return_stands(self, returned: dict, subs: list[dict]) -> bool:
        """A return stands until the unit hands in, after it, a version of its own with other content than the
        returned version's; a refused or unreadable file does not lift it, nor does the returned content again."""
        later = [s for s in subs if counts_for_unit(s) and s["received"] > returned["returned"]]
        if not later:
            return True
        kept = self.submission(returned["submission"]) if returned["submission"] is not None else None
        if kept is None:  # returned before the unit had a version of its own: anything it hands in answers it
            return False
        return all(self.same_content(s, kept) for s in later)

    def unchanged_since_return(self, unit: str) -> set[int]:
        """Ids of the unit's versions, handed in after its standing return, whose content is the returned one's:
        what the unit page and the API answer say is still 已退回."""
        with self.snapshot():
            returned = next(iter(self.returns(unit)), None)
            subs = self.history(unit)
            if returned is None or returned["submission"] is None or not self._return_stands(returned, subs):
                return set()
            kept = self.submission(returned["submission"])
        if kept is None:
            return set()
        # Times are to the second: a copy handed in the second the return was made is after it, if it is newer
        # than the returned version (the same content either way, so the return stands whatever the order).
        return {s["id"] for s in subs if counts_for_unit(s) and s["id"] > kept["id"]
                and s["received"] >= returned["returned"] and self.same_content(s, kept)}

    def same_content(self, a: dict, b: dict) -> bool:
        return a["sha256"] == b["sha256"] or self._content(a["sha256"]) == self._content(b["sha256"])

    def _content(self, sha: str) -> str:
        """The digest of the form data read from this file (kept in the ledger when it was checked); the file's
        own hash when there is none to compare."""
        if sha not in self._contents:
            try:
                form = self._reader().stored_form(sha)
            except StoredDataError:
                form = None
            if form is None:
                self._contents[sha] = f"file:{sha}"
            else:
                content = {k: v for k, v in form.items() if k not in _NOT_CONTENT}
                text = json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
                self._contents[sha] = "form:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        return self._contents[sha]

    def current_files(self) -> list[tuple[str, Path]]:
        """(name in a zip, file) for every unit's current version."""
        out = []
        for row in self.board():
            if row["current"] is None:
                continue
            sub = self.submission(row["current"])
            path = self.folder / sub["stored"]
            out.append((safe_filename(f"{row['unit_code']}_{row['unit_name']}") + path.suffix, path))
        return out


def counts_for_unit(sub: dict) -> bool:
    """A submission that is its unit's: read and kept in files/ (not refused, not unreadable, not checking)."""
    return sub["status"] in {"valid", "errors"} and not sub["stored"].startswith("refused")


def shown_status(sub: dict) -> str:
    """A submission's status as shown; another unit's form refused by an earlier version of the portal was
    recorded as 'errors' with its file under refused/."""
    return "refused" if sub["status"] in {"valid", "errors"} and not counts_for_unit(sub) else sub["status"]


def _current(subs: list[dict]) -> dict | None:
    """The unit's version that counts, by the merge's own rule (merging.versions): newest by when it was handed
    in (an upload handed in again is made the newest file, as merge sees it), one without errors first."""
    return version_that_counts((s for s in subs if counts_for_unit(s)),
                               lambda s: counting_order(s["status"], s["received"], s["id"]))


def _name_key(name: str) -> str:
    """A unit name as the roster match compares it: without any whitespace (full-width included)."""
    return "".join(str(name).split())


def checked_form(path: str):
    """In a checker worker: the CheckedForm of a stored file, for its annotated copy (the ledger's cache
    makes this a lookup, not a second read)."""
    result = check_upload(path)
    return checked_from_bytes(result.checked)

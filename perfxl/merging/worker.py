"""The merge's workers: each file read (or taken from the ledger) and validated in a pool of worker
processes, under a time and memory limit, so a parser that hangs, blows up or crashes the process costs
that one file, not the run. A worker sends back a FileResult: a small summary for the main process and the
checked form already serialised as data. The submission portal checks its uploads in the same workers."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator
from concurrent.futures import as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfxl import datajson
from perfxl.errors import ReadError
from perfxl.files import display_path
from perfxl.inbox import FileStat, NotRegularFile, TooLarge, read_regular_file
from perfxl.issued import FINDINGS
from perfxl.ledger import Ledger, pack
from perfxl.limits import TimeLimitExceeded, address_space, time_limit
from perfxl.pipeline import MEMORY_LIMIT, NESTING_LIMIT, READING, CheckOptions, check_read
from perfxl.problems import L
from perfxl.processes import pool_context, worker_pool
from perfxl.read import MAX_FILE_BYTES, FormData, found_at, read_workbook, rejection_at, too_large
from perfxl.records import Seen, checked_bytes
from perfxl.validator import CheckedForm, rejected, rejected_by

from .options import MergeOptions

_WORKER: dict[str, Any] = {}
# A form taken from the ledger without its data, read again from its file to make a sheet (`recheck`): the
# time it may take, as a merge's reading of one file may by default (MergeOptions.file_timeout).
RECHECK_SECONDS = 60.0


def init_worker(options: MergeOptions, roster: dict | None, db_path: str | None,
                parts=None) -> tuple[int, int] | None:
    """Set up a worker; returns the address-space limit it replaced (None if none was set), so an
    in-process run can give its caller's process its limit back. `parts` (merging.render_ahead's
    PartsWhereRead) makes what each form adds to the sheets where it is read."""
    _WORKER.update(options=options, roster=roster, db_path=db_path, ledger=None, parts=parts)
    try:  # POSIX: cap the address space so one file cannot exhaust the machine
        import resource

        # A forked worker starts as large as its parent: the allowance comes on top of that.
        limit = address_space() + options.file_memory_mb * 1024 * 1024
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard == resource.RLIM_INFINITY or hard > limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
            return soft, hard
    except (ImportError, ValueError, OSError):  # Windows, or a limit the OS refuses: size caps still apply
        pass
    return None


def restore_address_space(previous: tuple[int, int] | None) -> None:
    if previous is None:
        return
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, previous)
    except (ImportError, ValueError, OSError):
        pass


def _worker_ledger():
    if _WORKER.get("ledger") is None and _WORKER.get("db_path") and Path(_WORKER["db_path"]).exists():
        _WORKER["ledger"] = Ledger(Path(_WORKER["db_path"]), readonly=True)
    return _WORKER.get("ledger")


@dataclass(frozen=True, slots=True)
class FileResult:
    """What a worker sends back for one file: a small summary for the main process, and the checked form
    already serialised as data (records.checked_bytes), which the main process spools as it is."""

    path: str
    sha: str  # of the file's content; of a lower level's form, of its data (see rollup.rolled_up)
    stat: FileStat  # of the very file descriptor the bytes were read from
    source: str  # read | ledger | rollup
    form_blob: bytes | None  # the form data to store in the ledger (read afresh, or from a lower level)
    summary: dict
    checked: bytes
    kept: tuple[tuple[str, bytes], ...] = ()  # what the form adds to the sheets, made here (PartsWhereRead)


def finished(path: str, checked: CheckedForm, *, sha: str, stat: FileStat, source: str,
             form_blob: bytes | None = None, claimed: str = "") -> FileResult:
    problems = datajson.dumps([p.to_record() for p in checked.problems])
    summary = {"template": checked.template, "version": checked.version, "year": checked.year,
               "unit_code": checked.unit_code, "unit_name": checked.unit_name, "status": checked.status,
               "errors": checked.errors, "warnings": checked.warnings, "read_error": checked.read_error,
               "project_names": tuple(p.name for p in checked.projects),
               "indicator_rows": sum(len(p.indicators) for p in checked.projects),
               "problems": problems.decode("utf-8", "surrogatepass"),
               # what the sheets show of the check follows from its problems (records.Seen.checked)
               "checked": hashlib.sha256(problems).hexdigest()[:16],
               # what finding the form's record said of it (an earlier round, missing, altered; kept.kept_check)
               "issued_finding": next((p.code for p in checked.problems if p.code in FINDINGS), ""),
               "claimed": claimed, "round": checked.round, "issued": checked.issued, "signature": checked.signature}
    return FileResult(path=path, sha=sha, stat=stat, source=source, form_blob=form_blob, summary=summary,
                      checked=checked_bytes(checked), kept=_made_here(path, checked, summary, sha, stat, source))


def _made_here(path: str, checked: CheckedForm, summary: dict, sha: str, stat: FileStat,
               source: str) -> tuple[tuple[str, bytes], ...]:
    """What the form adds to the sheets, made from the checked form at hand when the merge asked for it
    (`parts`): the Seen is the one the main process will make of this result."""
    parts = _WORKER.get("parts")
    if parts is None or not sha or source not in ("read", "ledger"):
        return ()
    seen = seen_of(path, sha, stat, source, summary)
    seen.outcome = "merged"
    try:
        return parts.items(path, checked, seen)
    except Exception:  # noqa: BLE001 - an optimisation: what is not made here is rendered ahead as before
        return ()


def seen_of(path: str, sha: str, stat: FileStat, source: str, summary: dict, offset: int = 0,
            length: int = 0) -> Seen:
    """How the main process remembers a file's result (`collect`); a worker making the form's parts makes
    the same, so that their keys agree."""
    fields = {k: v for k, v in summary.items() if k not in {"problems", "version", "issued_finding"}}
    for k in _REPEATED:  # the same few texts in every file's summary, unpickled anew for each: held once
        if type(fields.get(k)) is str:
            fields[k] = sys.intern(fields[k])
    return Seen(path=display_path(path), size=stat.size, mtime_ns=stat.mtime_ns, ctime_ns=stat.ctime_ns,
                ino=stat.ino, sha=sha, source=sys.intern(source), offset=offset, length=length, **fields)


_REPEATED = ("template", "status", "read_error", "round", "issued")


Task = tuple[str, "str | None", FileStat]  # path, the sha the ledger knows for the stat the walk saw, that stat


def stored_form(ledger, sha: str, path: str, reader: str) -> FormData | None:
    """The form data the ledger keeps for this content read under `reader` (cachekeys.read_key), if it is
    usable (otherwise the file is read)."""
    cached = ledger.cached_form(sha, reader) if ledger else None
    if cached is None:
        return None
    try:
        form = FormData.from_dict(cached)
    except (TypeError, ValueError, KeyError, AttributeError):  # not what this perfxl stored: read the file
        return None
    return found_at(form, path)


def process(task: Task) -> FileResult:
    """Read (or take from the ledger) and validate one file."""
    path, known_sha, seen = task
    options: MergeOptions = _WORKER["options"]
    check = options.check_options()
    ledger = _worker_ledger()
    data = None
    sha = None

    def unread(checked: CheckedForm) -> FileResult:
        return finished(path, checked, sha="", stat=seen, source="read")

    try:
        if known_sha is not None:
            # The main process knew this file by the stat its walk saw; trust the ledger only while the
            # file still has that stat, so a correction written since is read, never taken for the old one.
            st = os.stat(path)
            if FileStat.of(st) == seen:
                sha = known_sha
        if sha is None:
            data, st = read_regular_file(path, MAX_FILE_BYTES)
            sha = hashlib.sha256(data).hexdigest()
    except NotRegularFile:
        return unread(rejected(path, "not-a-file"))
    except TooLarge as exc:
        return unread(rejected(path, "file-too-large", **too_large(exc.size)))
    except OSError as exc:
        return unread(rejected(path, "file-unreadable", detail=str(exc.strerror or exc)))
    stat = FileStat.of(st)
    reader = check.read_key()
    form = stored_form(ledger, sha, path, reader)
    if form is not None:
        return finished(path, check_read(form, check, _WORKER["roster"]), sha=sha, stat=stat, source="ledger")
    refused = ledger.cached_rejection(sha, reader) if ledger else None
    if refused is not None:
        return finished(path, rejected_by(path, rejection_at(refused, path)), sha=sha, stat=stat, source="ledger")
    if data is None:  # known content whose form the ledger lacks (another reader version): read it now
        try:
            data, st = read_regular_file(path, MAX_FILE_BYTES)
        except OSError as exc:
            return unread(rejected(path, "file-unreadable", detail=str(exc.strerror or exc)))
        sha, stat = hashlib.sha256(data).hexdigest(), FileStat.of(st)
    checked, form = _read_and_check(path, data, options.file_timeout, check, _WORKER["roster"])
    return finished(path, checked, sha=sha, stat=stat, source="read",
                    form_blob=pack(form.to_dict()) if form is not None else None)


def _read_and_check(path: str, data: bytes, seconds: float, check: CheckOptions,
                    roster: dict | None) -> tuple[CheckedForm, FormData | None]:
    """A file's bytes read and checked within `seconds`, and its form data (None: rejected). A file that
    cannot be read is rejected for what reading it found, whoever reads it: a form the ledger lacked data
    for, read again to make a sheet, was rejected as file-unreadable (台账中缺少此表的数据) where a fresh merge
    says file-corrupt."""
    try:
        with time_limit(seconds):
            form = read_workbook(Path(path), templates_dir=Path(check.templates_dir) if check.templates_dir else None,
                                 template=check.template, year=check.year, data=data)
            return check_read(form, check, roster), form
    except ReadError as exc:
        return rejected_by(path, exc.problem), None
    except TimeLimitExceeded:
        return rejected(path, "file-timeout", seconds=f"{seconds:g}"), None
    except MemoryError:
        return rejected(path, "file-too-complex", limit=MEMORY_LIMIT), None
    except RecursionError:
        return rejected(path, "file-too-complex", limit=NESTING_LIMIT), None
    except Exception as exc:  # a reader bug costs one file
        return rejected(path, "internal-error", during=READING, detail=f"{type(exc).__name__}: {exc}"), None


def _process_chunk(tasks: list[Task]) -> list[FileResult]:
    return [process(t) for t in tasks]


def start_checker(options: MergeOptions, roster: dict | None, db_path: str | None, jobs: int):
    """A pool of the merge's own workers that checks one file at a time (the submission portal): the same
    reader and rules, and the same per-file time and memory limits, as `perfxl merge`."""
    return worker_pool(jobs, pool_context(), init_worker, (options, roster, db_path))


def check_upload(path: str) -> FileResult:
    """In a checker worker: one uploaded file read and checked, as the merge's workers do it."""
    return process((path, None, FileStat.of(os.stat(path))))


def check_files(tasks: list[Task], options: MergeOptions, roster: dict | None, db_path: str | None,
                jobs: int, parts=None) -> Iterator[FileResult]:
    """Every task's result, as it comes. With one job the files are read in this process (under the same
    limits, given back afterwards); otherwise even one file is read in a worker: a crash must cost the file,
    not the run. With `parts`, each result holds what its form adds to the sheets (FileResult.kept)."""
    if jobs > 1:
        yield from _run_pool(tasks, options, roster, db_path, jobs,
                             chunk=max(1, min(32, len(tasks) // (jobs * 8) or 1)), parts=parts)
        return
    previous = init_worker(options, roster, db_path, parts=parts)
    try:
        for task in tasks:
            yield process(task)
    finally:  # the caller's process (the Python API, a test, the portal) gets its own limit back
        restore_address_space(previous)
        _WORKER["parts"] = None


def _run_pool(tasks, options, roster, db_path, jobs, chunk, parts=None):
    """Yield results. When a worker dies, the files it may have held are retried one per task, and
    those that fail again each run alone in a fresh worker: a file that kills even that worker is
    the culprit, reported as such; the others are read normally."""
    suspects: list = []
    for size, pending in ((chunk, list(tasks)), (1, None)):
        if pending is None:
            pending, suspects = suspects, []
        if not pending:
            continue
        workers = min(jobs, -(-len(pending) // size))  # no more than there are chunks: a worker costs its start
        with worker_pool(workers, pool_context(), init_worker, (options, roster, db_path, _renewed(parts))) as pool:
            futures = {pool.submit(_process_chunk, pending[i:i + size]): pending[i:i + size]
                       for i in range(0, len(pending), size)}
            for future in as_completed(futures):
                # let go of each chunk's results once given on: kept until the pool ends, every checked form
                # of the run would stay in memory after it was spooled
                held = futures.pop(future)
                try:
                    yield from future.result()
                except BrokenProcessPool:
                    suspects.extend(held)
                del future
    for task in suspects:
        with worker_pool(1, pool_context(), init_worker, (options, roster, db_path, _renewed(parts))) as pool:
            try:
                yield from pool.submit(_process_chunk, [task]).result()
            except BrokenProcessPool:
                path, _, stat = task
                yield finished(path, rejected(path, "worker-crash"), sha="", stat=stat, source="read")


def _renewed(parts):
    """`parts` (merging.render_ahead.PartsWhereRead) for a new pool: a lock of its own (see `renewed`)."""
    return parts.renewed() if parts is not None else None


def recheck(ledger, s, path: str, check: CheckOptions, roster: dict | None) -> CheckedForm:
    """A form taken from the ledger without its checked form: checked again from its stored data, here; or,
    when what the ledger keeps of it cannot be used (changed since it was sealed), read again from the file,
    if the file still holds that content."""
    form = stored_form(ledger, s.sha, path, check.read_key())
    if form is not None:
        return check_read(form, check, roster)
    refused = ledger.cached_rejection(s.sha, check.read_key())
    if refused is not None:
        return rejected_by(path, rejection_at(refused, path))
    try:
        data, _ = read_regular_file(path, MAX_FILE_BYTES)
    except OSError:
        data = None
    if data is None or hashlib.sha256(data).hexdigest() != s.sha:  # gone, or changed since
        return rejected(path, "file-unreadable", detail=L("台账中缺少此表的数据", "the ledger lacks this form's data"))
    return _read_and_check(path, data, RECHECK_SECONDS, check, roster)[0]

"""Merge stage: every returned workbook → checked forms → the summary tables.

Files are read and validated in a pool of worker processes, each file under a time and memory limit, so
a parser that hangs, blows up or crashes the process costs that one file, not the run. Results stream
back to the main process, which records them in the ledger and spools them to a temporary file; only a
small index stays in memory. Then each unit's newest valid version is chosen, identical copies are
counted once, and the tables are built for the report stage.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
import re
import sqlite3
import tempfile
import threading
import time
import zipfile
from collections import Counter, defaultdict
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, as_completed, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from .domain import default_year
from .errors import OutputError, ReadError, missing_input
from .files import TEMP_PREFIX, display_path, ensure_writable_dir, remove_debris
from .inbox import STAT_IDENTIFIES_CONTENT, FileStat, NotRegularFile, TooLarge, read_regular_file, scan
from .issued import book as issued_book
from .ledger import (
    READER_VERSION,
    Ledger,
    StoredDataError,
    check_ledger_file,
    claims_ledger,
    pack,
    unpack,
)
from .limits import TimeLimitExceeded, address_space, time_limit
from .pipeline import MEMORY_LIMIT, NESTING_LIMIT, READING, CheckOptions, check_read
from .problems import L
from .read import MAX_FILE_BYTES, FormData, read_workbook, too_large
from .records import Seen, checked_bytes, checked_from_bytes
from .roster import Unit, read_roster
from .spec import load_spec
from .summary import CSV_FIRST_TITLES, SHEET_NAMES, Context, Table
from .summary import build as build_summary
from .summary.about import accounting_line
from .validator import CheckedForm, rejected, rejected_by


@dataclass(frozen=True)
class MergeOptions:
    template: str | None = None
    year: int | None = None
    roster: Path | None = None
    jobs: int = 0  # 0: one worker per core
    db: Path | None = None
    csv_dir: Path | None = None
    parquet_dir: Path | None = None
    lang: str = "zh"
    templates_dir: Path | None = None
    file_timeout: float = 60.0
    file_memory_mb: int = 2048
    returns_dir: Path | None = None  # the return package: annotated copies and 退回通知 for units to revise
    return_by: str | None = None  # the date the notices give, YYYY-MM-DD (default: a week from today)
    issued: tuple[Path, ...] = ()  # records of what follow-up forms were issued with (perfxl.issued), besides
    #                                the rounds this machine registered

    def check_options(self) -> CheckOptions:
        return CheckOptions(template=self.template, year=self.year,
                            templates_dir=str(self.templates_dir) if self.templates_dir else None,
                            issued=tuple(str(Path(p).resolve()) for p in self.issued))


@dataclass
class MergeResult:
    """Counts, the per-file index and the tables. Lazy tables can only be iterated inside run_merge."""

    output: Path | None
    tables: list[Table]
    counts: dict[str, int]
    files: list[Seen] = field(default_factory=list)
    money_unit: str = "元"
    missing_units: list[Unit] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): lock, hidden, not a file
    unsettled: list[str] = field(default_factory=list)  # files still changing when the merge ended
    returns: list[Path] = field(default_factory=list)  # the return package's files

    @property
    def accounting(self) -> str:
        """收到 N = 已汇总 + 无法读取 + 重复 + 被取代 + 不符合条件, as the CLI and 说明 state it."""
        return accounting_line(self.counts)

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)


# ----------------------------------------------------------------------------------------------------
# Workers
# ----------------------------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(options: MergeOptions, roster: dict | None, db_path: str | None,
                 watch_parent: bool = True) -> tuple[int, int] | None:
    """Set up a worker; returns the address-space limit it replaced (None if none was set), so an
    in-process run can give its caller's process its limit back."""
    _WORKER.update(options=options, roster=roster, db_path=db_path, ledger=None)
    if watch_parent:
        _exit_with_parent()
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


def _restore_address_space(previous: tuple[int, int] | None) -> None:
    if previous is None:
        return
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, previous)
    except (ImportError, ValueError, OSError):
        pass


def _exit_with_parent() -> None:
    """A worker ends within a second or two of its merge being killed (kill -9 included): a forked worker
    shares the task pipe with its siblings, so it would otherwise wait on it, or finish its file, forever."""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(3)

    if parent > 1:
        threading.Thread(target=watch, name="perfxl-parent-watch", daemon=True).start()


def _worker_ledger():
    if _WORKER.get("ledger") is None and _WORKER.get("db_path") and Path(_WORKER["db_path"]).exists():
        _WORKER["ledger"] = Ledger(Path(_WORKER["db_path"]), readonly=True)
    return _WORKER.get("ledger")


class FileResult(NamedTuple):
    """What a worker sends back for one file: a small summary for the main process, and the checked form
    already serialised as data (records.checked_bytes), which the main process spools as it is."""

    path: str
    sha: str  # of the file's content; of a lower level's form, of its data (see _rolled_up)
    stat: FileStat  # of the very file descriptor the bytes were read from
    source: str  # read | ledger | rollup
    form_blob: bytes | None  # the form data to store in the ledger (read afresh, or from a lower level)
    summary: dict
    checked: bytes


def _finished(path, sha, stat: FileStat, source, form_blob, checked: CheckedForm, claimed: str = "") -> FileResult:
    summary = {"template": checked.template, "version": checked.version, "year": checked.year,
               "unit_code": checked.unit_code, "unit_name": checked.unit_name, "status": checked.status,
               "errors": checked.errors, "warnings": checked.warnings, "read_error": checked.read_error,
               "project_names": tuple(p.name for p in checked.projects),
               "indicator_rows": sum(len(p.indicators) for p in checked.projects),
               "problems": json.dumps([p.to_record() for p in checked.problems], ensure_ascii=False),
               "claimed": claimed, "round": checked.round, "issued": checked.issued, "signature": checked.signature}
    return FileResult(path, sha, stat, source, form_blob, summary, checked_bytes(checked))


Task = tuple[str, "str | None", FileStat]  # path, the sha the ledger knows for the stat the walk saw, that stat


def _process(task: Task) -> FileResult:
    """Read (or take from the ledger) and validate one file."""
    return _finished(*_process_raw(task))


def _stored_form(ledger, sha: str, path: str) -> FormData | None:
    """The form data the ledger keeps for this content, if it is usable (otherwise the file is read)."""
    cached = ledger.cached_form(sha) if ledger else None
    if cached is None:
        return None
    try:
        form = FormData.from_dict(cached)
    except (TypeError, ValueError, KeyError, AttributeError):  # not what this perfxl stored: read the file
        return None
    form.path = path
    return form


def _process_raw(task: Task) -> tuple:
    path, known_sha, seen = task
    options: MergeOptions = _WORKER["options"]
    check = options.check_options()
    ledger = _worker_ledger()
    data = None
    sha = None
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
        return path, "", seen, "read", None, rejected(path, "not-a-file")
    except TooLarge as exc:
        return path, "", seen, "read", None, rejected(path, "file-too-large", **too_large(exc.size))
    except OSError as exc:
        return path, "", seen, "read", None, rejected(path, "file-unreadable", detail=str(exc.strerror or exc))
    stat = FileStat.of(st)
    form = _stored_form(ledger, sha, path)
    if form is not None:
        return path, sha, stat, "ledger", None, check_read(form, check, _WORKER["roster"])
    refused = ledger.cached_rejection(sha) if ledger else None
    if refused is not None:
        return path, sha, stat, "ledger", None, rejected_by(path, refused)
    if data is None:  # known content whose form the ledger lacks (another reader version): read it now
        try:
            data, st = read_regular_file(path, MAX_FILE_BYTES)
        except OSError as exc:
            return path, "", seen, "read", None, rejected(path, "file-unreadable", detail=str(exc.strerror or exc))
        sha, stat = hashlib.sha256(data).hexdigest(), FileStat.of(st)
    try:
        with time_limit(options.file_timeout):
            form = read_workbook(Path(path), templates_dir=options.templates_dir, template=options.template,
                                 year=options.year, data=data)
            checked = check_read(form, check, _WORKER["roster"])
        return path, sha, stat, "read", pack(form.to_dict()), checked
    except ReadError as exc:
        checked = rejected_by(path, exc.problem)
    except TimeLimitExceeded:
        checked = rejected(path, "file-timeout", seconds=f"{options.file_timeout:g}")
    except MemoryError:
        checked = rejected(path, "file-too-complex", limit=MEMORY_LIMIT)
    except RecursionError:
        checked = rejected(path, "file-too-complex", limit=NESTING_LIMIT)
    except Exception as exc:  # a reader bug costs one file
        checked = rejected(path, "internal-error", during=READING, detail=f"{type(exc).__name__}: {exc}")
    return path, sha, stat, "read", None, checked


def _process_chunk(tasks: list[Task]) -> list[FileResult]:
    return [_process(t) for t in tasks]


def start_checker(options: MergeOptions, roster: dict | None, db_path: str | None, jobs: int):
    """A pool of the merge's own workers that checks one file at a time (the submission portal): the same
    reader and rules, and the same per-file time and memory limits, as `perfxl merge`."""
    return ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=_context(), initializer=_init_worker,
                               initargs=(options, roster, db_path))


def check_upload(path: str) -> FileResult:
    """In a checker worker: one uploaded file read and checked, as the merge's workers do it."""
    return _process((path, None, FileStat.of(os.stat(path))))


def _context():
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _run_pool(tasks, options, roster, db_path, jobs, chunk):
    """Yield results. When a worker dies, the files it may have held are retried one per task, and
    those that fail again each run alone in a fresh worker: a file that kills even that worker is
    the culprit, reported as such; the others are read normally."""
    suspects: list = []
    for size, pending in ((chunk, list(tasks)), (1, None)):
        if pending is None:
            pending, suspects = suspects, []
        if not pending:
            continue
        with ProcessPoolExecutor(max_workers=jobs, mp_context=_context(), initializer=_init_worker,
                                 initargs=(options, roster, db_path)) as pool:
            futures = {pool.submit(_process_chunk, pending[i:i + size]): pending[i:i + size]
                       for i in range(0, len(pending), size)}
            for future in as_completed(futures):
                try:
                    yield from future.result()
                except BrokenProcessPool:
                    suspects.extend(futures[future])
    for task in suspects:
        with ProcessPoolExecutor(max_workers=1, mp_context=_context(), initializer=_init_worker,
                                 initargs=(options, roster, db_path)) as pool:
            try:
                yield from pool.submit(_process_chunk, [task]).result()
            except BrokenProcessPool:
                path, _, stat = task
                yield _finished(path, "", stat, "read", None, rejected(path, "worker-crash"))


# ----------------------------------------------------------------------------------------------------
# The merge
# ----------------------------------------------------------------------------------------------------

def default_db(output: Path) -> Path:
    return Path(output).with_name(Path(output).stem + "_报送台账.sqlite")


# A file still changing after this many passes is merged as it was last read, and 说明 says so.
SETTLE_ROUNDS = 4


def _is_own_output(path: Path, what: str) -> bool:
    """True when an existing file is one perfxl itself wrote as `what` (summary, ledger or a CSV)."""
    try:
        if what == "summary":
            from .report import SUMMARY_MARK

            with zipfile.ZipFile(path) as zf:
                return SUMMARY_MARK.encode() in zf.read("docProps/core.xml")
        if what == "parquet":  # the footer's metadata, read without any parquet library
            from .report import PARQUET_MARK

            with open(path, "rb") as fh:
                head = fh.read(4)
                fh.seek(max(0, path.stat().st_size - 65536))
                return head == b"PAR1" and PARQUET_MARK in fh.read()
        if what.startswith("csv:"):
            with open(path, "rb") as fh:
                head = fh.read(64)
            return head.startswith(("\ufeff" + CSV_FIRST_TITLES[what[4:]] + ",").encode("utf-8"))
    except (OSError, zipfile.BadZipFile, KeyError, OutputError):
        return False
    return False


def _outputs(output: Path | None, db_path: Path | None, options: MergeOptions) -> list[tuple[str, Path]]:
    targets: list[tuple[str, Path]] = []
    if output is not None:
        targets.append(("summary", output))
    if db_path is not None:
        targets.append(("ledger", db_path))
    if options.csv_dir:
        targets += [(f"csv:{name}", Path(options.csv_dir) / f"{name}.csv") for name in SHEET_NAMES]
    if options.parquet_dir:
        targets += [("parquet", Path(options.parquet_dir) / f"{name}.parquet") for name in SHEET_NAMES]
    return targets


_WHAT_ZH = {"summary": "汇总表 (-o)", "ledger": "报送台账 (--db)"}


def _guard_outputs(targets: list[tuple[str, Path]], inputs: list[Path], options: MergeOptions) -> None:
    """perfxl overwrites only what it wrote itself: never an input, the roster, or anyone else's file."""
    def key(path) -> str:
        return os.path.normcase(os.path.realpath(path))

    named = {key(p) for p in inputs if not Path(p).is_dir()}
    if options.roster:
        named.add(key(options.roster))
    written: dict[str, str] = {}
    for what, target in targets:
        label = _WHAT_ZH.get(what, f"{'Parquet' if what == 'parquet' else 'CSV'} {target.name}")
        k = key(target)
        if k in named:
            raise OutputError(f"{label} {target} 是输入文件或名单，perfxl 不会覆盖输入；请换一个输出路径 "
                              f"(refusing to overwrite an input)")
        if k in written:
            raise OutputError(f"{label} 与 {written[k]} 是同一个文件 {target}；请换一个输出路径")
        written[k] = label
        if what == "ledger":
            check_ledger_file(target)  # refuses a foreign or non-SQLite file, saying which
        elif target.exists():
            if not _is_own_output(target, what):
                raise OutputError(f"{label} {target} 已存在，且不是 perfxl 写出的文件，perfxl 不会覆盖它；"
                                  f"请换一个文件名或先移走它 (refusing to overwrite a file perfxl did not write)")
    if targets and targets[0][0] == "summary" and targets[0][1].suffix.lower() not in {".xlsx", ".xlsm"}:
        raise OutputError(f"汇总表应为 .xlsx 文件: {targets[0][1]}")


def run_merge(inputs: list[Path], output: Path | None, options: MergeOptions, progress=None,
              on_total=None, materialize: bool = False) -> MergeResult:
    """Merge every file under `inputs`. `on_total(n)` is told how many files were found, `progress(1)`
    each time one is done. With `materialize`, every table's rows are kept in memory so the result can be
    used after the merge (otherwise 指标明细 is produced lazily, only while the merge runs).

    Long because it is the merge's one transaction: outputs guarded, inbox walked, files settled, outcomes
    decided, sheets built and written, ledger closed — each step a call, the order being the point."""
    from .report import write_csv, write_parquet, write_summary

    inputs = [Path(p) for p in inputs]
    output = Path(output) if output else None
    units = read_roster(options.roster) if options.roster else None
    roster = {u.code: u for u in units} if units is not None else None
    if options.template:
        load_spec(options.template, options.year or default_year(), templates_dir=options.templates_dir)
    db_path = Path(options.db) if options.db else (default_db(output) if output else None)
    targets = _outputs(output, db_path, options)
    _guard_outputs(targets, inputs, options)
    # Every target is now perfxl's own (or about to be): the walk passes over them and the ledger's journals.
    own_outputs = {target for _, target in targets}
    if db_path is not None:
        own_outputs |= {db_path.with_name(db_path.name + suffix) for suffix in ("-wal", "-shm", "-journal")}
    # 节点汇总: a county's ledger as input; one that claims to be a ledger but cannot be used is refused as
    # that input (file-corrupt, saying why), not read as a workbook
    lower_levels = [p for p in inputs if p.is_file() and claims_ledger(p)]
    inputs = [p for p in inputs if p not in lower_levels]
    try:
        inbox = scan(inputs, exclude=own_outputs)
    except FileNotFoundError as exc:  # an input named that is not there: a PerfxlError, saying which
        raise missing_input(exc) from None
    if output is not None:
        ensure_writable_dir(output.parent)
        remove_debris(output.parent)
    ledger = Ledger(db_path) if db_path else None
    run_id = ledger.start_run() if ledger else None
    jobs = options.jobs or os.cpu_count() or 1
    if on_total:
        on_total(len(inbox.files))
    check = options.check_options()

    spool = tempfile.TemporaryFile(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=output.parent if output else None)
    seen: dict[str, Seen] = {}  # by the path as the file system knows it
    unsettled: list[str] = []
    kept = ledger.kept(run_id) if ledger else None
    fingerprint = _fingerprint(options) if ledger else None
    try:
        for lower, label in _input_labels(lower_levels):
            _collect(_rolled_up(lower, check, roster, label), seen, spool, ledger, None)
        tasks = []
        sightings = ledger.sightings() if ledger else {}
        known_shas = [sightings.get((display_path(f.path), f.stat)) for f in inbox.files]
        del sightings
        if not STAT_IDENTIFIES_CONTENT:  # the stat may hide a rewrite: the content must be what the ledger says
            known_shas = [sha if sha and _content_is(f.path, sha) else None for f, sha in zip(inbox.files, known_shas)]
        for i, (f, known) in enumerate(zip(inbox.files, known_shas)):
            if kept is not None and i % 1000 == 0:  # looked up a thousand at a time
                kept.prefetch([f"check|{fingerprint}|{sha}" for sha in known_shas[i:i + 1000] if sha])
            summary = _kept_check(kept, fingerprint, known, roster, check) if known else None
            if summary is None:
                tasks.append((f.path, known, f.stat))
                continue
            # Known content, checked under these very settings: nothing to read or check again. Its checked
            # form is rebuilt from the ledger only if a sheet not kept needs it (offset -1).
            seen[f.path] = Seen(path=display_path(f.path), size=f.size, mtime_ns=f.mtime_ns, ctime_ns=f.ctime_ns,
                                ino=f.ino, sha=known, source="ledger", offset=-1, **summary)
            if progress:
                progress(1)
        for round_no in range(SETTLE_ROUNDS):
            _run_tasks(tasks, seen, spool, ledger, options, roster, db_path, jobs, progress if round_no == 0 else None,
                       keep=(kept, fingerprint, roster))
            # The result must be that of the inbox as it is now: look again, and read what changed meanwhile.
            now = {f.path: f for f in scan(inputs, exclude=own_outputs).files}
            for path in [p for p in seen if p not in now and seen[p].source != "rollup"]:
                del seen[path]  # moved away during the run
            tasks = [(f.path, None, f.stat) for f in now.values() if f.path not in seen or seen[f.path].stat != f.stat]
            if not tasks:
                break
        else:
            unsettled = [display_path(t[0]) for t in tasks]
        files = sorted(seen.values(), key=lambda x: x.path)
        if ledger:  # a portal store: a file's unit is the unit that handed it in, whatever the file says
            _units_from_store(ledger, seen)
        if units:  # forms that lost their stamp name their unit only by name: find its code on the roster
            by_name = {u.name: u.code for u in units}
            for s in files:
                if not s.unit_code and s.unit_name in by_name:
                    s.unit_code = by_name[s.unit_name]
        _decide(files, options, units)
        skipped = [(display_path(p), reason) for p, reason in inbox.skipped]
        real_paths = {s.path: path for path, s in seen.items()}

        def load(s: Seen) -> CheckedForm:
            if s.offset >= 0:
                return _load(spool, s)
            return _recheck(ledger, s, real_paths.get(s.path, s.path), check, roster)

        ctx = Context(files=files, load=load, units=units, template=options.template,
                      year=options.year, roster=options.roster, lang=options.lang,
                      templates_dir=options.templates_dir, skipped=skipped, unsettled=unsettled,
                      fingerprint=fingerprint, cache=kept)
        if kept is not None and output is not None:
            _render_ahead(ctx, spool, kept, jobs)
        tables, counts, missing = build_summary(ctx)
        result = MergeResult(output=None, tables=tables, counts=counts, files=files, money_unit=ctx.money_unit,
                             missing_units=missing, skipped=skipped, unsettled=unsettled)
        if output:
            write_summary(result, output, cache=kept)
            result.output = output
        if options.csv_dir:
            write_csv(result, Path(options.csv_dir))
        if options.parquet_dir:
            write_parquet(result, Path(options.parquet_dir))
        if options.returns_dir:
            from .returns import write_returns

            result.returns = write_returns(result, ctx.load, Path(options.returns_dir), options.return_by,
                                           avoid={f.path for f in inbox.files})
        if ledger:
            # The settings and the roster as they were: a past merge is rebuilt from these, not from today's roster.
            ledger.record_outcomes(run_id, files, {
                "template": options.template, "year": options.year, "lang": options.lang,
                "roster": str(Path(options.roster).resolve()) if options.roster else None,
                "roster_digest": _keep_roster(ledger, options.roster, units),
                "templates_dir": str(Path(options.templates_dir).resolve()) if options.templates_dir else None,
                "issued": list(check.issued)})
            ledger.finish_run(run_id, display_path(output or ""), result.counts)
            kept.close()
        if materialize:  # for callers outside this function (the Python API): lazy sheets need the spool
            for table in result.tables:
                if table.lazy:
                    table.rows, table.blocks = list(table.iter_rows()), None
        return result
    finally:
        spool.close()
        if ledger:
            ledger.close()


def _keep_roster(ledger: Ledger, roster: Path | None, units: list[Unit] | None) -> str | None:
    """The digest under which the ledger keeps the roster this merge read (see Ledger.keep_roster)."""
    if roster is None or units is None:
        return None
    try:
        digest = hashlib.sha256(Path(roster).read_bytes()).hexdigest()
    except OSError:  # gone since it was read: kept under the digest of what was read
        digest = hashlib.sha256(json.dumps([u.to_dict() for u in units], ensure_ascii=False).encode()).hexdigest()
    ledger.keep_roster(digest, units)
    return digest


def _fingerprint(options: MergeOptions) -> str:
    """The settings a form's check and its summary rows depend on, besides its content and its unit's
    roster entry: the reader and rules (perfxl's version), what the merge expects, whether there is a
    roster, and the templates folder's files. (A unit's entry is checked per form, so adding a unit to the
    roster on deadline day does not make every other form be checked and rendered again.)"""
    h = hashlib.sha256(repr((READER_VERSION, options.template, options.year, options.lang,
                             options.roster is not None, options.check_options().issued)).encode("utf-8"))
    if options.templates_dir is not None:
        folder = Path(options.templates_dir)
        for path in sorted(folder.rglob("*")):
            try:
                st = path.stat()
            except OSError:
                continue
            h.update(f"{path.relative_to(folder)}|{st.st_size}|{st.st_mtime_ns}|".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _entry(roster: dict | None, code: str | None) -> str:
    """A unit's roster entry as a form's check saw it."""
    return repr(roster.get(code or "")) if roster is not None else "-"


_SEEN_FIELDS = ("template", "year", "unit_code", "unit_name", "status", "errors", "warnings", "read_error",
                "project_names", "indicator_rows", "round", "issued", "signature")


_AHEAD: dict[str, Any] = {}  # what a worker rendering ahead inherits from the merge (forked, not pickled)
AHEAD_MIN_FORMS = 200  # fewer forms than this are rendered in the main process: a pool would cost more


def _render_ahead(ctx: Context, spool, kept, jobs: int) -> None:
    """Render, in a pool of workers, what the merged forms not yet kept add to the sheets (their parts and
    their big sheets' segments), into the kept values the summary is then built from. An optimisation
    only: whatever is missing after it (a worker lost, no fork on this system) is rendered in the main
    process as before."""
    todo = [s for s in ctx.merged if s.offset >= 0 and ctx.form_key(s)]
    if jobs <= 1 or len(todo) < AHEAD_MIN_FORMS or _context().get_start_method() != "fork":
        return
    spool.flush()
    _AHEAD.update(ctx=ctx, fd=spool.fileno())
    chunk = max(8, min(64, len(todo) // (jobs * 4) or 1))
    batches = iter([todo[i:i + chunk] for i in range(0, len(todo), chunk)])
    try:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=_context()) as pool:
            # A few batches in flight per worker, not all: results wait in memory until they are kept.
            running = {pool.submit(_render_share, b) for b in itertools.islice(batches, jobs * 3)}
            while running:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    for key, value in future.result():
                        kept.put(key, value)
                running |= {pool.submit(_render_share, b) for b in itertools.islice(batches, len(done))}
    except (BrokenProcessPool, OSError):
        pass  # the main process renders what is missing
    finally:
        _AHEAD.clear()


class _Collected:
    """A worker's cache: nothing kept yet, everything put is sent back."""

    def __init__(self):
        self.items: list[tuple[str, bytes]] = []

    def get(self, key: str) -> None:
        return None

    def prefetch(self, keys) -> None:
        pass

    def put(self, key: str, value: bytes) -> None:
        self.items.append((key, value))


def _render_share(batch: list[Seen]) -> list[tuple[str, bytes]]:
    """In a worker: the parts and segments of these merged forms, loaded from the inherited spool."""
    from .report import render_ahead
    from .summary import form_part, per_form_tables

    fd = _AHEAD["fd"]
    loaded: dict[int, CheckedForm] = {}

    def load(s: Seen) -> CheckedForm:
        if s.offset not in loaded:
            loaded[s.offset] = checked_from_bytes(os.pread(fd, s.length, s.offset))
        return loaded[s.offset]

    share = copy.copy(_AHEAD["ctx"])
    share.merged, share.load, share.cache, share.senders = batch, load, _Collected(), {}
    for s in batch:
        form_part(share, s)
    render_ahead(per_form_tables(share), share.cache)
    return share.cache.items


# What a kept check holds, and the types each may have: a kept value of any other shape is not used.
_CHECK_TYPES = {"template": (str, type(None)), "year": (int, type(None)), "unit_code": (str, type(None)),
                "unit_name": (str, type(None)), "status": (str,), "errors": (int,), "warnings": (int,),
                "read_error": (str, type(None)), "project_names": (list,), "indicator_rows": (int,),
                "round": (str, type(None)), "issued": (str, type(None)), "signature": (str, type(None)),
                "roster_entry": (str,)}


def _kept_check(kept, fingerprint: str, sha: str, roster: dict | None, check: CheckOptions) -> dict | None:
    blob = kept.get(f"check|{fingerprint}|{sha}")
    if blob is None:
        return None
    try:
        summary = json.loads(blob)
    except (ValueError, RecursionError):
        return None
    if not (isinstance(summary, dict) and summary.keys() == _CHECK_TYPES.keys()
            and all(type(summary[k]) in types for k, types in _CHECK_TYPES.items())
            and all(type(name) is str for name in summary["project_names"])):
        return None  # not what a merge keeps: the file is checked again
    if summary.pop("roster_entry") != _entry(roster, summary["unit_code"]):
        return None  # the unit's roster entry changed since: check it again
    if summary["issued"] is not None:  # a follow-up form: checked against a record that must still be the one
        record = issued_book(check.issued).lookup(summary["round"], summary["unit_code"], summary["template"],
                                                  summary["year"])
        if (record.digest if record else "") != summary["issued"]:
            return None
    summary["project_names"] = tuple(summary["project_names"])
    return summary


def _recheck(ledger, s: Seen, path: str, check: CheckOptions, roster: dict | None) -> CheckedForm:
    """A form taken from the ledger without its checked form: checked again from its stored data, here; or,
    when what the ledger keeps of it cannot be used (changed since it was sealed), read again from the file,
    if the file still holds that content."""
    form = _stored_form(ledger, s.sha, path)
    if form is not None:
        return check_read(form, check, roster)
    refused = ledger.cached_rejection(s.sha)
    if refused is not None:
        return rejected_by(path, refused)
    try:
        data, _ = read_regular_file(path, MAX_FILE_BYTES)
        if hashlib.sha256(data).hexdigest() != s.sha:
            raise OSError("changed")
        with time_limit(60.0):
            return check_read(read_workbook(Path(path), templates_dir=check.templates_dir and Path(check.templates_dir),
                                            template=check.template, year=check.year, data=data), check, roster)
    except (OSError, ReadError, TimeLimitExceeded, MemoryError, RecursionError):
        return rejected(path, "file-unreadable", detail=L("台账中缺少此表的数据", "the ledger lacks this form's data"))


def _run_tasks(tasks, seen: dict[str, Seen], spool, ledger, options, roster, db_path, jobs, progress,
               keep=(None, None, None)) -> None:
    if not tasks:
        return
    previous = None
    if jobs <= 1:  # otherwise even one file is read in a worker: a crash must cost the file, not the run
        previous = _init_worker(options, roster, str(db_path) if db_path else None, watch_parent=False)
        results = (_process(t) for t in tasks)
    else:
        results = _run_pool(tasks, options, roster, str(db_path) if db_path else None, jobs,
                            chunk=max(1, min(32, len(tasks) // (jobs * 8) or 1)))
    try:
        _collect(results, seen, spool, ledger, progress, keep)
    finally:  # the caller's process (the Python API, a test, the portal) gets its own limit back
        _restore_address_space(previous)


def _input_labels(paths: list[Path]) -> list[tuple[Path, str]]:
    """How each lower level's file is named in the summary: its file name, or its whole path where two
    inputs share a name (two counties' `export.perfxl`), so their forms never stand for each other."""
    names = [p.name for p in paths]
    return [(p, p.name if names.count(p.name) == 1 else display_path(p)) for p in paths]


def _rolled_up(path: Path, check: CheckOptions, roster: dict | None, label: str | None = None):
    """The merged forms of a lower level's merge (节点汇总), from its ledger or export: each form's stored
    data checked again here, named `input#original path`.

    A lower level's file is evidence, not a record: a form is known by the digest of its stored data,
    recomputed here (never by the sha256 the file claims for it), and its data must name the file the
    outcome claims it came from. Whatever in it cannot be used (the file, its last run, an outcome, a
    form's data) costs that input or that form, as `file-corrupt` under `input#…`, never the run. A unit in
    two lower levels is then decided like two versions of one file: the same data is a duplicate, otherwise
    the newest wins; two copies claiming one original file with different data are a conflict (_decide)."""
    name = label or path.name

    def refused(shown: str, detail, claimed: str = "") -> FileResult:
        return _finished(shown, "", FileStat(0, 0, 0, 0), "rollup", None,
                         rejected(shown, "file-corrupt", detail=detail), claimed=claimed)

    try:
        lower = Ledger(path, readonly=True)
    except OutputError as exc:
        yield refused(name, str(exc))
        return
    try:
        run = lower.last_run()
        if run is None:
            yield refused(name, L("其中没有完成的汇总", "it holds no finished merge"))
            return
        for number, text in enumerate(lower.outcome_rows(run), start=1):
            o = _lower_outcome(text)
            if o is None:
                yield refused(f"{name}#{number}", L("汇总结果记录无法识别", "an outcome record that cannot be read"))
                continue
            if o["outcome"] != "merged":
                continue
            shown = f"{name}#{o['path']}"
            blob = lower.stored_blob(o["sha"])
            if blob is None:  # merged below but its data is not in the ledger: said, never dropped silently
                yield _finished(shown, "", _lower_stat(o), "rollup", None, rejected(
                    shown, "file-unreadable", detail=L("下级台账中缺少此表的数据", "the lower ledger lacks this form's data")),
                    claimed=o.get("claimed") or o["sha"])
                continue
            original = o.get("claimed") or o["sha"]  # a city's outcome names its forms by their data's digest
            try:
                stored = unpack(blob)
                if stored.get("sha256") != original:
                    raise StoredDataError(L("表单数据与其声称的原文件摘要不符",
                                            "the form's data does not match the original file it claims"))
                digest = _content_digest(stored)
                form = FormData.from_dict(stored)
            except StoredDataError as exc:
                yield refused(shown, exc.args[0] if exc.args else "", claimed=original)
                continue
            except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
                yield refused(shown, L(f"表单数据结构无法识别（{type(exc).__name__}）",
                                       f"form data of an unknown shape ({type(exc).__name__})"), claimed=original)
                continue
            form.path = shown
            checked = check_read(form, check, roster)
            yield _finished(shown, digest, _lower_stat(o), "rollup", blob, checked, claimed=original)
    except sqlite3.Error as exc:
        yield refused(name, L(f"无法作为报送台账读取（{exc}）", f"cannot be read as a ledger ({exc})"))
    finally:
        lower.close()


_SHA256 = re.compile(r"[0-9a-f]{64}")
# What a form's identity is made of when it arrives from a lower level: what was read from the file, not
# where the lower level found it (its path) nor what its perfxl version noticed on the way.
_WHERE_AND_HOW = ("path", "sha256", "notices", "stamp_source")


def _content_digest(stored: dict) -> str:
    """The digest of a lower level's form by its data, recomputed here: two counties that read one file
    agree on it, and a copy with other data never passes for it. StoredDataError for text no reader makes
    (half a UTF-16 pair, which no summary, ledger or JSON can write)."""
    content = {k: v for k, v in stored.items() if k not in _WHERE_AND_HOW}
    try:
        text = json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
        json.dumps(stored.get("notices"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise StoredDataError(L("表单数据含有无效字符", "the form's data holds characters no text can")) from None
    except (TypeError, ValueError) as exc:  # NaN passes, but keys of other types and the like do not
        raise StoredDataError(L(f"表单数据结构无法识别（{exc}）", f"form data of an unknown shape ({exc})")) from None
    return hashlib.sha256(text).hexdigest()


def _lower_outcome(text) -> dict | None:
    """One outcome of a lower level's last run, if it has the shape perfxl writes; None otherwise."""
    try:
        o = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return None
    if not isinstance(o, dict):
        return None
    if not (isinstance(o.get("path"), str) and isinstance(o.get("outcome"), str) and isinstance(o.get("sha"), str)
            and isinstance(o.get("claimed", ""), str) and type(o.get("size")) is int and type(o.get("mtime_ns")) is int):
        return None
    if o["outcome"] == "merged" and not (_SHA256.fullmatch(o["sha"]) and _SHA256.fullmatch(o.get("claimed") or o["sha"])):
        return None
    if not (0 <= o["size"] < 1 << 40 and 0 <= o["mtime_ns"] <= _LATEST_NS):  # a time a summary can show
        return None
    return o


_LATEST_NS = 4_102_444_800 * 10**9  # 2100-01-01


def _lower_stat(o: dict) -> FileStat:
    """A lower level's form as its outcome describes the file it came from: its size and time only."""
    return FileStat(o["size"], o["mtime_ns"], 0, 0)


def _collect(results, seen: dict[str, Seen], spool, ledger, progress, keep=(None, None, None)) -> None:
    pending_writes = 0
    kept, fingerprint, roster = keep
    for path, sha, stat, source, blob, summary, checked in results:
        if kept is not None and sha and source != "rollup":  # the next merge with these settings skips the check
            kept.put(f"check|{fingerprint}|{sha}", json.dumps(
                {**{k: summary[k] for k in _SEEN_FIELDS}, "roster_entry": _entry(roster, summary["unit_code"])},
                ensure_ascii=False).encode("utf-8", "surrogatepass"))
        offset = spool.tell()
        spool.write(checked)
        shown = display_path(path)
        seen[path] = Seen(path=shown, size=stat.size, mtime_ns=stat.mtime_ns, ctime_ns=stat.ctime_ns, ino=stat.ino,
                          sha=sha, source=source, offset=offset, length=len(checked),
                          **{k: v for k, v in summary.items() if k not in {"problems", "version"}})
        if ledger and sha:  # the sighting and the status are recorded even for a file taken from the ledger
            ledger.record(sha, stat, shown, summary, blob)
            pending_writes += 1
            if pending_writes >= 200:
                ledger.db.commit()
                pending_writes = 0
        if progress:
            progress(1)
    if ledger:
        ledger.db.commit()


def _units_from_store(ledger: Ledger, seen: dict[str, Seen]) -> None:
    """Files of a portal store (perfxl serve) merged with its ledger: each is the signed-in unit's that
    handed it in, as the store recorded, never the unit its stamp or its unit name claims. A file whose
    stamp names another unit is set aside (the portal refuses such files; this one was put there by hand)."""
    handed_in = ledger.store_units()
    if not handed_in:
        return
    for path, s in seen.items():
        unit, sha = handed_in.get(os.path.normcase(os.path.realpath(path)), (None, None))
        if unit is None or s.read_error or s.sha != sha:  # a file not as the portal stored it: its own claims
            continue
        if s.unit_code and s.unit_code != unit:
            s.read_error = "portal-other-unit"
        s.unit_code = unit


def _content_is(path: str, sha: str) -> bool:
    """Whether the file now holds the content the ledger knows by that sha256 (read and hashed)."""
    try:
        data, _ = read_regular_file(path, MAX_FILE_BYTES)
    except OSError:
        return False
    return hashlib.sha256(data).hexdigest() == sha


def _input_of(s: Seen) -> str:
    """The lower level's file a rolled-up form came from (`甲县.perfxl#原路径` → `甲县.perfxl`)."""
    return s.path.split("#", 1)[0]


def _out_of_place(seen: list[Seen], units: list[Unit] | None) -> dict[str, str]:
    """Lower levels' forms of a unit the roster places in another region than the rest of that input's
    forms: {path: the region the input speaks for}. A county's export speaks for the units of its county; a
    form in it for another county's unit (a unit it claims, a copy it forged) is set aside, whatever its
    time or claims, and the genuine form from that unit's own county stands."""
    from .summary.base import place

    where = {u.code: place(u) for u in units or [] if u.region}
    if not where:
        return {}
    regions: dict[str, Counter] = defaultdict(Counter)
    for s in seen:
        if s.source == "rollup" and not s.read_error and s.unit_code in where:
            regions[_input_of(s)][where[s.unit_code]] += 1
    home = {}
    for source, counts in regions.items():
        (top, n), *rest = counts.most_common(2) + [("", 0)]
        if n > rest[0][1]:  # a clear majority: a tie tells no region
            home[source] = top
    return {s.path: f"{_input_of(s)}（{home[_input_of(s)]}）" for s in seen
            if s.source == "rollup" and not s.read_error and s.unit_code in where
            and _input_of(s) in home and where[s.unit_code] != home[_input_of(s)]}


def _rival_inputs(versions: list[Seen]) -> dict[str, str]:
    """Versions of one declaration that came from two or more lower levels with different data: {path: a
    rival's path}. (From one lower level, or as files of this level's own inbox, versions are decided by
    time as ever.)"""
    rolled = [s for s in versions if s.source == "rollup"]
    if len({_input_of(s) for s in rolled}) < 2 or len({s.sha for s in rolled}) < 2:
        return {}
    return {s.path: min(o.path for o in rolled if _input_of(o) != _input_of(s)) for s in rolled}


def _conflicts(seen: list[Seen]) -> dict[str, str]:
    """Lower levels' forms that claim one original file with different data: {path: another claimant}.
    Neither can be told genuine from the files alone, so none of them wins, whatever the inputs are named;
    copies with the same data are simply duplicates."""
    by_claim: dict[str, list[Seen]] = defaultdict(list)
    for s in seen:
        if s.claimed and s.sha and not s.read_error:
            by_claim[s.claimed].append(s)
    out = {}
    for claimants in by_claim.values():
        if len({s.sha for s in claimants}) > 1:
            for s in claimants:
                out[s.path] = min(o.path for o in claimants if o.sha != s.sha)
    return out


def _slot(s: Seen, multi_project: bool) -> tuple:
    """Which declaration a file is a version of. A multi-project workbook is the unit's whole declaration;
    a single-project form is one of the unit's projects, known by its name (see `_renamed_together`)."""
    unit = s.unit_code or s.unit_name or s.path
    if multi_project or not s.project_names:
        return s.template, s.year, unit
    return s.template, s.year, unit, s.project_names[0]


def _renamed_together(slots: dict[tuple, list[Seen]]) -> dict[tuple, list[Seen]]:
    """Single-project slots of one unit whose files are one project renamed: a re-send that corrects the
    project's name is known by what it did not change, its budget and its indicator rows (the signature,
    validator.project_signature). Their versions are decided together; the newest wins."""
    root: dict[tuple, tuple] = {}

    def find(key: tuple) -> tuple:
        while root.get(key, key) != key:
            key = root[key]
        return key

    first_with: dict[tuple, tuple] = {}  # (template, year, unit, signature) → the first slot holding it
    for key, versions in slots.items():
        if len(key) < 4:  # a multi-project workbook: the unit's one declaration
            continue
        for s in versions:
            if s.signature:
                other = first_with.setdefault((*key[:3], s.signature), key)
                a, b = find(key), find(other)
                if a != b:
                    root[a] = b
    if not root:
        return slots
    merged: dict[tuple, list[Seen]] = defaultdict(list)
    for key, versions in slots.items():
        merged[find(key)].extend(versions)
    return merged


def _decide(seen: list[Seen], options: MergeOptions, units: list[Unit] | None = None) -> None:
    """Each file's outcome: merged, rejected, excluded, duplicate or superseded."""
    elsewhere = _out_of_place(seen, units)
    conflicts = _conflicts([s for s in seen if s.path not in elsewhere])
    first_by_sha: dict[str, Seen] = {}
    candidates = []
    for s in sorted(seen, key=lambda x: x.path):
        if s.read_error:
            s.outcome, s.reason = "rejected", s.read_error
            continue
        if s.path in elsewhere:
            s.outcome, s.reason, s.duplicate_of = "rejected", "rollup-other-region", elsewhere[s.path]
            continue
        if s.path in conflicts:
            s.outcome, s.reason, s.duplicate_of = "rejected", "rollup-conflict", conflicts[s.path]
            continue
        if s.sha in first_by_sha:
            s.outcome, s.reason, s.duplicate_of = "duplicate", "same-content", first_by_sha[s.sha].path
            continue
        first_by_sha[s.sha] = s
        if options.template and s.template != options.template:
            s.outcome, s.reason = "excluded", "other-template"
        elif options.year and s.year != options.year:
            s.outcome, s.reason = "excluded", "other-year"
        else:
            candidates.append(s)
    slots: dict[tuple, list[Seen]] = defaultdict(list)
    multi = {}
    for s in candidates:
        if s.template not in multi:
            multi[s.template] = load_spec(s.template, s.year or options.year or default_year(), templates_dir=options.templates_dir).multi_project
        slots[_slot(s, multi[s.template])].append(s)
    for versions in _renamed_together(slots).values():
        rival = _rival_inputs(versions)
        if rival:  # one unit, other data, from two lower levels: neither can be told genuine
            for s in versions:
                if s.path in rival:
                    s.outcome, s.reason, s.duplicate_of = "rejected", "rollup-unit-conflict", rival[s.path]
            versions = [s for s in versions if s.path not in rival]
            if not versions:
                continue
        versions.sort(key=lambda v: (v.status != "errors", v.mtime_ns, v.path), reverse=True)
        versions[0].outcome = "merged"
        for older in versions[1:]:
            older.outcome, older.reason, older.duplicate_of = "superseded", "newer-version", versions[0].path


# ----------------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------------

def _load(spool, s: Seen) -> CheckedForm:
    spool.seek(s.offset)
    return checked_from_bytes(spool.read(s.length))

"""Merge stage: every returned workbook → checked forms → the summary tables.

Files are read and validated in a pool of worker processes, each file under a time and memory limit, so
a parser that hangs, blows up or crashes the process costs that one file, not the run. Results stream
back to the main process, which records them in the ledger and spools them to a temporary file; only a
small index stays in memory. Then each unit's newest valid version is chosen, identical copies are
counted once, and the tables are built for the report stage.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import tempfile
import threading
import time
import zipfile
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from . import __version__
from .domain import MONEY_UNITS, default_year
from .errors import OutputError, ReadError
from .files import TEMP_PREFIX, display_path, ensure_writable_dir, remove_debris
from .inbox import SKIP_REASONS, NotRegularFile, TooLarge, read_regular_file, scan
from .ledger import Ledger, check_ledger_file, pack
from .limits import TimeLimitExceeded, time_limit
from .pipeline import MEMORY_LIMIT, NESTING_LIMIT, READING, CheckOptions, check_read
from .problems import Problem
from .read import MAX_FILE_BYTES, FormData, read_workbook, too_large
from .roster import Unit, read_roster
from .spec import load_spec
from .validate import CheckedForm, cost_total, rejected, rejected_by

OUTCOME_ZH = {"merged": "已汇总", "rejected": "无法读取", "excluded": "未汇总（不符合本次汇总条件）",
              "duplicate": "重复文件", "superseded": "已被更新版本取代"}
# The sheets of the summary workbook, which are also the names of the CSV files.
SUMMARY_SHEETS = ("汇总", "项目清单", "指标明细", "部门预算", "报送情况", "目标质量", "校验问题", "变更记录", "说明")
STATUS_ZH = {"valid": "通过", "warnings": "通过（有提醒）", "errors": "有错误", "rejected": "无法读取"}


@dataclass(frozen=True)
class MergeOptions:
    template: str | None = None
    year: int | None = None
    roster: Path | None = None
    jobs: int = 0  # 0: one worker per core
    db: Path | None = None
    csv_dir: Path | None = None
    lang: str = "zh"
    templates_dir: Path | None = None
    file_timeout: float = 60.0
    file_memory_mb: int = 2048

    def check_options(self) -> CheckOptions:
        return CheckOptions(template=self.template, year=self.year,
                            templates_dir=str(self.templates_dir) if self.templates_dir else None)


@dataclass
class Seen:
    """One input file, as the main process remembers it (the checked form itself is spooled)."""

    path: str
    size: int
    mtime_ns: int
    sha: str
    source: str  # read | ledger
    offset: int
    template: str | None
    year: int | None
    unit_code: str | None
    unit_name: str | None
    status: str
    errors: int
    warnings: int
    read_error: str | None
    project_names: tuple[str, ...]
    indicator_rows: int
    outcome: str = ""
    reason: str = ""
    duplicate_of: str = ""


@dataclass
class Table:
    """One summary sheet: column titles with kinds, rows, and whether a totals row is wanted."""

    name: str
    columns: list[tuple[str, str]]  # (title, kind: text|money|int|percent|date|count)
    rows: Any  # list of lists, or a zero-argument callable giving a fresh iterator (large sheets)
    totals: bool = False
    note: str = ""


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


# ----------------------------------------------------------------------------------------------------
# Workers
# ----------------------------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(options: MergeOptions, roster: dict | None, db_path: str | None, watch_parent: bool = True) -> None:
    _WORKER.update(options=options, roster=roster, db_path=db_path, ledger=None)
    if watch_parent:
        _exit_with_parent()
    try:  # POSIX: cap the address space so one file cannot exhaust the machine
        import resource

        # A forked worker starts as large as its parent: the allowance comes on top of that.
        limit = _address_space() + options.file_memory_mb * 1024 * 1024
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard == resource.RLIM_INFINITY or hard > limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):  # Windows, or a limit the OS refuses: size caps still apply
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


def _address_space() -> int:
    """This process's virtual size in bytes (Linux /proc; elsewhere 0, where RLIMIT_AS is not enforced
    the same way and the reader's size caps do the work)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return 0


def _worker_ledger():
    if _WORKER.get("ledger") is None and _WORKER.get("db_path") and Path(_WORKER["db_path"]).exists():
        _WORKER["ledger"] = Ledger(Path(_WORKER["db_path"]), readonly=True)
    return _WORKER.get("ledger")


def _finished(path, sha, size, mtime_ns, source, form_blob, checked: CheckedForm) -> tuple:
    """What a worker sends back: a small summary for the main process, and the checked form already
    pickled, which the main process appends to its spool without unpickling it."""
    summary = {"template": checked.template, "version": checked.version, "year": checked.year,
               "unit_code": checked.unit_code, "unit_name": checked.unit_name, "status": checked.status,
               "errors": checked.errors, "warnings": checked.warnings, "read_error": checked.read_error,
               "project_names": tuple(p.name for p in checked.projects),
               "indicator_rows": sum(len(p.indicators) for p in checked.projects),
               "problems": json.dumps([p.to_record() for p in checked.problems], ensure_ascii=False)}
    return path, sha, size, mtime_ns, source, form_blob, summary, pickle.dumps(checked, pickle.HIGHEST_PROTOCOL)


Task = tuple[str, "str | None", int, int]  # path, sha the ledger knows for that stat, size, mtime_ns


def _process(task: Task) -> tuple:
    """Read (or take from the ledger) and validate one file."""
    return _finished(*_process_raw(task))


def _process_raw(task: Task) -> tuple:
    path, known_sha, seen_size, seen_mtime = task
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
            if (st.st_size, st.st_mtime_ns) == (seen_size, seen_mtime):
                sha = known_sha
        if sha is None:
            data, st = read_regular_file(path, MAX_FILE_BYTES)
            sha = hashlib.sha256(data).hexdigest()
    except NotRegularFile:
        return path, "", seen_size, seen_mtime, "read", None, rejected(path, "not-a-file")
    except TooLarge as exc:
        return path, "", seen_size, seen_mtime, "read", None, rejected(path, "file-too-large", **too_large(exc.size))
    except OSError as exc:
        return path, "", seen_size, seen_mtime, "read", None, rejected(
            path, "file-unreadable", detail=str(exc.strerror or exc))
    size, mtime_ns = st.st_size, st.st_mtime_ns
    cached = ledger.cached_form(sha) if ledger else None
    if cached is not None:
        form = FormData.from_dict(cached)
        form.path = path
        return path, sha, size, mtime_ns, "ledger", None, check_read(form, check, _WORKER["roster"])
    refused = ledger.cached_rejection(sha) if ledger else None
    if refused is not None:
        return path, sha, size, mtime_ns, "ledger", None, rejected_by(path, refused)
    if data is None:  # known content whose form the ledger lacks (another reader version): read it now
        try:
            data, st = read_regular_file(path, MAX_FILE_BYTES)
        except OSError as exc:
            return path, "", seen_size, seen_mtime, "read", None, rejected(
                path, "file-unreadable", detail=str(exc.strerror or exc))
        sha, size, mtime_ns = hashlib.sha256(data).hexdigest(), st.st_size, st.st_mtime_ns
    try:
        with time_limit(options.file_timeout):
            form = read_workbook(Path(path), templates_dir=options.templates_dir, template=options.template,
                                 year=options.year, data=data)
            checked = check_read(form, check, _WORKER["roster"])
        return path, sha, size, mtime_ns, "read", pack(form.to_dict()), checked
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
    return path, sha, size, mtime_ns, "read", None, checked


def _process_chunk(tasks: list[Task]) -> list[tuple]:
    return [_process(t) for t in tasks]


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
                path, _, size, mtime_ns = task
                yield _finished(path, "", size, mtime_ns, "read", None, rejected(path, "worker-crash"))


# ----------------------------------------------------------------------------------------------------
# The merge
# ----------------------------------------------------------------------------------------------------

def default_db(output: Path) -> Path:
    return Path(output).with_name(Path(output).stem + "_报送台账.sqlite")


# A file still changing after this many passes is merged as it was last read, and 说明 says so.
SETTLE_ROUNDS = 4


_CSV_FIRST_TITLE = {"汇总": "地区", "项目清单": "地区", "指标明细": "单位编码", "部门预算": "地区", "报送情况": "地区",
                    "目标质量": "地区", "校验问题": "文件", "变更记录": "单位名称", "说明": "项目"}


def _is_own_output(path: Path, what: str) -> bool:
    """True when an existing file is one perfxl itself wrote as `what` (summary, ledger or a CSV)."""
    try:
        if what == "summary":
            from .report import SUMMARY_MARK

            with zipfile.ZipFile(path) as zf:
                return SUMMARY_MARK.encode() in zf.read("docProps/core.xml")
        if what.startswith("csv:"):
            with open(path, "rb") as fh:
                head = fh.read(64)
            return head.startswith(("\ufeff" + _CSV_FIRST_TITLE[what[4:]] + ",").encode("utf-8"))
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
        targets += [(f"csv:{name}", Path(options.csv_dir) / f"{name}.csv") for name in SUMMARY_SHEETS]
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
        label = _WHAT_ZH.get(what, f"CSV {target.name}")
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
              on_total=None) -> MergeResult:
    """Merge every file under `inputs`. `on_total(n)` is told how many files were found, `progress(1)`
    each time one is done."""
    from .report import write_csv, write_summary

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
    inbox = scan(inputs, exclude=own_outputs)
    if output is not None:
        ensure_writable_dir(output.parent)
        remove_debris(output.parent)
    ledger = Ledger(db_path) if db_path else None
    run_id = ledger.start_run() if ledger else None
    jobs = options.jobs or os.cpu_count() or 1
    if on_total:
        on_total(len(inbox.files))

    spool = tempfile.TemporaryFile(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=output.parent if output else None)
    seen: dict[str, Seen] = {}  # by the path as the file system knows it
    unsettled: list[str] = []
    try:
        tasks = [(f.path, ledger.known_sha(display_path(f.path), f.size, f.mtime_ns) if ledger else None,
                  f.size, f.mtime_ns) for f in inbox.files]
        for round_no in range(SETTLE_ROUNDS):
            _run_tasks(tasks, seen, spool, ledger, options, roster, db_path, jobs, progress if round_no == 0 else None)
            # The result must be that of the inbox as it is now: look again, and read what changed meanwhile.
            now = {f.path: f for f in scan(inputs, exclude=own_outputs).files}
            for path in [p for p in seen if p not in now]:
                del seen[path]  # moved away during the run
            tasks = [(f.path, None, f.size, f.mtime_ns) for f in now.values()
                     if f.path not in seen or (seen[f.path].size, seen[f.path].mtime_ns) != (f.size, f.mtime_ns)]
            if not tasks:
                break
        else:
            unsettled = [display_path(t[0]) for t in tasks]
        files = sorted(seen.values(), key=lambda x: x.path)
        if units:  # forms that lost their stamp name their unit only by name: find its code on the roster
            by_name = {u.name: u.code for u in units}
            for s in files:
                if not s.unit_code and s.unit_name in by_name:
                    s.unit_code = by_name[s.unit_name]
        _decide(files, options)
        skipped = [(display_path(p), reason) for p, reason in inbox.skipped]
        result = _build(files, spool, options, units, skipped, unsettled)
        if output:
            write_summary(result, output)
            result.output = output
        if options.csv_dir:
            write_csv(result, Path(options.csv_dir))
        if ledger:
            ledger.finish_run(run_id, display_path(output or ""), result.counts)
        return result
    finally:
        spool.close()
        if ledger:
            ledger.close()


def _run_tasks(tasks, seen: dict[str, Seen], spool, ledger, options, roster, db_path, jobs, progress) -> None:
    if not tasks:
        return
    if jobs <= 1:  # otherwise even one file is read in a worker: a crash must cost the file, not the run
        _init_worker(options, roster, str(db_path) if db_path else None, watch_parent=False)
        results = (_process(t) for t in tasks)
    else:
        results = _run_pool(tasks, options, roster, str(db_path) if db_path else None, jobs,
                            chunk=max(1, min(32, len(tasks) // (jobs * 8) or 1)))
    pending_writes = 0
    for path, sha, size, mtime_ns, source, blob, summary, pickled in results:
        offset = spool.tell()
        spool.write(pickled)
        shown = display_path(path)
        seen[path] = Seen(path=shown, size=size, mtime_ns=mtime_ns, sha=sha, source=source, offset=offset,
                          **{k: v for k, v in summary.items() if k not in {"problems", "version"}})
        if ledger and sha:  # the sighting and the status are recorded even for a file taken from the ledger
            ledger.record(sha, size, shown, mtime_ns, summary, blob)
            pending_writes += 1
            if pending_writes >= 200:
                ledger.db.commit()
                pending_writes = 0
        if progress:
            progress(1)
    if ledger:
        ledger.db.commit()


def _slot(s: Seen, multi_project: bool) -> tuple:
    unit = s.unit_code or s.unit_name or s.path
    if multi_project or not s.project_names:
        return s.template, s.year, unit
    return s.template, s.year, unit, s.project_names[0]


def _decide(seen: list[Seen], options: MergeOptions) -> None:
    """Each file's outcome: merged, rejected, excluded, duplicate or superseded."""
    first_by_sha: dict[str, Seen] = {}
    candidates = []
    for s in sorted(seen, key=lambda x: x.path):
        if s.read_error:
            s.outcome, s.reason = "rejected", s.read_error
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
    for versions in slots.values():
        versions.sort(key=lambda v: (v.status != "errors", v.mtime_ns, v.path), reverse=True)
        versions[0].outcome = "merged"
        for older in versions[1:]:
            older.outcome, older.reason, older.duplicate_of = "superseded", "newer-version", versions[0].path


# ----------------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------------

def _load(spool, offset: int) -> CheckedForm:
    spool.seek(offset)
    return pickle.load(spool)


def _received(mtime_ns: int) -> str:
    return datetime.fromtimestamp(mtime_ns / 1e9).strftime("%Y-%m-%d %H:%M") if mtime_ns else ""


def _build(seen: list[Seen], spool, options: MergeOptions, units: list[Unit] | None,
           skipped: list[tuple[str, str]], unsettled: list[str]) -> MergeResult:
    merged = [s for s in seen if s.outcome == "merged"]
    specs = {}
    for s in merged:
        key = (s.template, s.year)
        if key not in specs:
            specs[key] = load_spec(s.template, s.year or options.year or default_year(), templates_dir=options.templates_dir)
    units_by_code = {u.code: u for u in units or []}
    money_units = {sp.money_unit for sp in specs.values()}
    unit = money_units.pop() if len(money_units) == 1 else "元"

    def factor(sp) -> float:
        return MONEY_UNITS[sp.money_unit] / MONEY_UNITS[unit]

    def who(s: Seen, checked: CheckedForm | None = None):
        roster_unit = units_by_code.get(s.unit_code or "")
        department = roster_unit.department if roster_unit else ""
        region = (roster_unit.region if roster_unit and roster_unit.region else "") or (checked.region if checked else "") or ""
        if not department and checked and checked.projects:
            department = str(checked.projects[0].values.get("department") or "")
        return region, department or "（名单外）", s.unit_code or "", (roster_unit.name if roster_unit else s.unit_name) or ""

    project_specs = [sp for sp in specs.values() if sp.family == "project"]
    key_labels = _union([sp.fields[f].label.rstrip("：: ") for f in sp.key_fields] for sp in project_specs)
    money_keys = {sp.fields[f].label.rstrip("：: ") for sp in project_specs for f in sp.key_fields
                  if sp.fields[f].type == "money"}
    funding_labels = _union([sp.fields[f].label for f in sp.funding_fields] for sp in project_specs)
    level1s = _union(list(sp.indicator_table().indicator.hierarchy.levels) for sp in specs.values())
    value_labels = _union([sp.indicator_table().column(v).label for v in sp.indicator_table().indicator.values]
                          for sp in specs.values())

    projects_rows, indicator_count, quality_rows, budget_rows, changes = [], 0, [], [], []
    per_group: dict[tuple, Counter] = defaultdict(Counter)
    per_group_money: dict[tuple, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    rows_merged = 0

    def indicator_rows():
        for s in merged:
            checked = _load(spool, s.offset)
            sp = specs[(s.template, s.year)]
            table = sp.indicator_table()
            ind = table.indicator
            region, department, code, name = who(s, checked)
            for p in checked.projects:
                for r in p.indicators:
                    main = r.targets[ind.values[-1]]
                    values = {table.column(v).label: r.texts[v] for v in ind.values}
                    yield ([code, name, p.name, r.level1, r.level2, r.level3]
                           + [values.get(label, "") for label in value_labels]
                           + [main.op or _KIND_ZH.get(main.kind, ""), main.value, main.unit or "",
                              main.word or main.deadline or "", f"{p.sheet}!{r.cells.get(ind.values[-1], '')}"])

    problem_rows = []
    for s in merged:  # one pass over the spool for everything but the indicator detail
        checked = _load(spool, s.offset)
        sp = specs[(s.template, s.year)]
        region, department, code, name = who(s, checked)
        for q in checked.problems:
            problem_rows.append(_problem_row(s, name, q, options.lang))
        group = (region, department)
        rows_merged += s.indicator_rows
        for p in checked.projects:
            indicator_count += len(p.indicators)
            if sp.family != "project":
                for grid in sp.grids.values():
                    for rid, _, label in grid.rows:
                        budget_rows.append([region, department, code, name, grid.header[0] if grid.header else grid.id,
                                            label] + [_money(p.values.get(f"{grid.id}_{rid}_{cid}"), factor(sp))
                                                      for cid in grid.columns[:3]]
                                           + [None] * (3 - len(grid.columns[:3])))
                continue
            budget = _money(p.values.get(sp.budget_field), factor(sp)) if sp.budget_field else None
            counts = Counter(sp.indicator_table().indicator.hierarchy.canonical(r.level1) for r in p.indicators)
            keys = {sp.fields[f].label.rstrip("：: "): _key_value(p.values.get(f), sp.fields[f].type, factor(sp))
                    for f in sp.key_fields}
            funds = {sp.fields[f].label: _money(p.values.get(f), factor(sp)) for f in sp.funding_fields}
            projects_rows.append([region, s.year, department, code, name, p.name, sp.template]
                                 + [keys.get(label, "") for label in key_labels] + [budget]
                                 + [funds.get(label) for label in funding_labels] + [len(p.indicators)]
                                 + [counts.get(level, 0) for level in level1s]
                                 + [STATUS_ZH["errors" if p.errors else ("warnings" if p.warnings else "valid")],
                                    p.errors, p.warnings, Path(s.path).name, p.sheet])
            per_group[group]["projects"] += 1
            per_group_money[group]["budget"] += budget or 0
            for label, amount in funds.items():
                per_group_money[group][label] += amount or 0
            quality_rows.append(_quality(sp, checked, p, region, department, name, budget, factor(sp)))
    projects_rows.sort(key=lambda r: (str(r[0]), str(r[2]), str(r[3]), str(r[5])))
    quality_rows.sort(key=lambda r: (r[-3], str(r[2]), str(r[3])))  # weakest first: reviewers start there

    # 报送情况 — every roster unit, and units that sent something though not on the roster
    by_unit: dict[str, list[Seen]] = defaultdict(list)
    for s in seen:
        if s.outcome in {"merged", "superseded"} and (s.unit_code or s.unit_name):
            by_unit[s.unit_code or s.unit_name].append(s)
    status_rows = []
    expected = list(units or [])
    missing: list[Unit] = []
    for u in expected:
        sent = by_unit.pop(u.code, [])
        chosen = [s for s in sent if s.outcome == "merged"]
        group = (u.region, u.department)
        per_group[group]["expected"] += 1
        if chosen:
            per_group[group]["submitted"] += 1
            bad = any(c.status == "errors" for c in chosen)
            per_group[group]["errors" if bad else "valid"] += 1
            c = max(chosen, key=lambda x: x.mtime_ns)
            status_rows.append([u.region, u.department, u.code, u.name, "已报送",
                                STATUS_ZH["errors" if bad else c.status], "；".join(Path(x.path).name for x in chosen),
                                _received(c.mtime_ns), len(sent), sum(x.errors for x in chosen),
                                sum(x.warnings for x in chosen)])
        else:
            per_group[group]["missing"] += 1
            missing.append(u)
            status_rows.append([u.region, u.department, u.code, u.name, "未报送", "", "", "", 0, None, None])
    for _, sent in sorted(by_unit.items()):
        chosen = [s for s in sent if s.outcome == "merged"]
        c = max(chosen or sent, key=lambda x: x.mtime_ns)
        checked = _load(spool, c.offset)
        region, department, code, name = who(c, checked)
        group = (region, department)
        if units is None:
            per_group[group]["expected"] += 1
        per_group[group]["submitted"] += 1
        per_group[group]["errors" if c.status == "errors" else "valid"] += 1
        status_rows.append([region, department, code, name, "已报送（名单外）" if units is not None else "已报送",
                            STATUS_ZH[c.status], "；".join(Path(x.path).name for x in chosen), _received(c.mtime_ns),
                            len(sent), c.errors, c.warnings])
    status_rows.sort(key=lambda r: (r[4] != "未报送", str(r[0]), str(r[1]), str(r[2])))

    summary_rows = []
    for (region, department), c in sorted(per_group.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        money = per_group_money[(region, department)]
        summary_rows.append([region, department, c["expected"], c["submitted"], c["valid"], c["errors"], c["missing"],
                             c["projects"], money.get("budget", 0.0)] + [money.get(label, 0.0) for label in funding_labels])

    for s in seen:
        if s.outcome in {"duplicate", "superseded", "merged"}:
            continue
        checked = _load(spool, s.offset)
        region, department, code, name = who(s, checked)
        for p in checked.problems:
            problem_rows.append(_problem_row(s, name, p, options.lang))
        if s.outcome == "excluded":
            expected = options.year if s.reason == "other-year" else options.template
            problem_rows.append(_problem_row(s, name, Problem("error", s.reason, params={
                "expected": expected, "found": s.year, "template": s.template}), options.lang))

    problem_rows.sort(key=lambda r: r[0])  # by file; each file's problems keep the rules' order
    for s in seen:
        if s.outcome == "superseded":
            newer = next(x for x in seen if x.path == s.duplicate_of)
            changes.extend(_changes(_load(spool, s.offset), _load(spool, newer.offset), s, newer, who(newer)[3],
                                    specs[(newer.template, newer.year)]))

    counts = Counter(s.outcome for s in seen)
    rows_in = sum(s.indicator_rows for s in seen)
    result_counts = {
        "files_in": len(seen), "merged": counts["merged"], "rejected": counts["rejected"],
        "excluded": counts["excluded"], "duplicate": counts["duplicate"], "superseded": counts["superseded"],
        "read": sum(1 for s in seen if s.source == "read"), "from_ledger": sum(1 for s in seen if s.source == "ledger"),
        "projects": len(projects_rows), "units": len({(s.unit_code or s.unit_name) for s in merged}),
        "errors": sum(s.errors for s in seen if s.outcome in {"merged", "rejected", "excluded"}),
        "warnings": sum(s.warnings for s in seen if s.outcome in {"merged", "rejected", "excluded"}),
        "missing": len(missing), "rows_in": rows_in, "rows_merged": rows_merged,
        "rows_set_aside": rows_in - rows_merged, "indicators": indicator_count,
    }

    m = f"（{unit}）"
    tables = [
        Table("汇总", [("地区", "text"), ("主管部门", "text"), ("应报单位数", "count"), ("已报单位数", "count"),
                     ("通过校验", "count"), ("有错误", "count"), ("未报送", "count"), ("项目数", "count"),
                     ("预算金额合计" + m, "money")] + [(label + m, "money") for label in funding_labels],
              summary_rows, totals=True),
        Table("项目清单", [("地区", "text"), ("年度", "int"), ("主管部门", "text"), ("单位编码", "text"),
                       ("单位名称", "text"), ("项目名称", "text"), ("模板", "text")]
              + [(_UNIT_IN_LABEL.sub("", label).strip() + m, "money") if label in money_keys else (label, "text")
                 for label in key_labels]
              + [("预算金额" + m, "money")]
              + [(label + m, "money") for label in funding_labels] + [("指标数", "count")]
              + [(level, "count") for level in level1s]
              + [("校验状态", "text"), ("错误数", "count"), ("提醒数", "count"), ("来源文件", "text"), ("工作表", "text")],
              projects_rows, totals=True),
        Table("指标明细", [("单位编码", "text"), ("单位名称", "text"), ("项目名称", "text"), ("一级指标", "text"),
                       ("二级指标", "text"), ("三级指标", "text")]
              + [(label, "text") for label in value_labels]
              + [("比较符/类型", "text"), ("数值", "number"), ("计量单位", "text"), ("定性描述/期限", "text"),
                 ("位置", "text")],
              indicator_rows, note="来源文件见「项目清单」；位置为 工作表!单元格（最后一个指标值列）。"),
    ]
    if budget_rows:
        tables.append(Table("部门预算", [("地区", "text"), ("主管部门", "text"), ("单位编码", "text"), ("单位名称", "text"),
                                     ("收支", "text"), ("项目", "text"), ("全年数" + m, "money"), ("上半年数" + m, "money"),
                                     ("前三季度数" + m, "money")], budget_rows))
    tables += [
        Table("报送情况", [("地区", "text"), ("主管部门", "text"), ("单位编码", "text"), ("单位名称", "text"),
                       ("报送状态", "text"), ("校验状态", "text"), ("文件", "text"), ("收到时间", "text"),
                       ("收到版本数", "count"), ("错误数", "count"), ("提醒数", "count")], status_rows),
        Table("目标质量", [("地区", "text"), ("主管部门", "text"), ("单位名称", "text"), ("项目名称", "text"),
                       ("指标数", "count"), ("定量指标", "count"), ("可衡量（定量占比）", "percent"),
                       ("完整性问题", "count"), ("成本指标覆盖预算", "percent"), ("方向提醒", "count"),
                       ("占位符", "count"), ("无法识别", "count"), ("得分", "number"), ("等级", "text"),
                       ("主要问题", "text")], quality_rows,
              note="按得分从低到高排列，审核从最弱的申报开始。"),
        Table("校验问题", [("文件", "text"), ("单位名称", "text"), ("工作表", "text"), ("单元格", "text"), ("字段", "text"),
                       ("规则", "text"), ("严重程度", "text"), ("说明", "text"), ("处理", "text")], problem_rows),
        Table("变更记录", [("单位名称", "text"), ("工作表", "text"), ("项目名称", "text"), ("内容", "text"),
                       ("原值", "text"), ("新值", "text"), ("单元格", "text"), ("原文件", "text"), ("新文件", "text")],
              changes),
        Table("说明", [("项目", "text"), ("内容", "text"), ("", "text"), ("", "text")],
              _about(seen, result_counts, options, specs, unit, skipped, unsettled)),
    ]
    return MergeResult(output=None, tables=tables, counts=result_counts, files=seen, money_unit=unit,
                       missing_units=missing, skipped=skipped, unsettled=unsettled)


_KIND_ZH = {"quantitative": "定量", "qualitative": "定性", "range": "区间", "deadline": "期限", "cost": "成本构成",
            "placeholder": "占位符", "unparseable": "无法识别", "empty": "空"}


def _problem_row(s: Seen, unit_name: str, q: Problem, lang: str) -> list:
    """A row of 校验问题: the printed label of the field, never its id."""
    return [Path(s.path).name, unit_name, q.sheet, q.cell, q.label or q.field, q.code,
            "错误" if q.severity == "error" else "提醒", q.text(lang), OUTCOME_ZH[s.outcome]]


def _union(lists) -> list[str]:
    out: list[str] = []
    for items in lists:
        for item in items:
            if item not in out:
                out.append(item)
    return out


def _money(value, factor: float):
    return None if value is None or isinstance(value, str) else round(value * factor, 6)


def _plain(value):
    return "" if value is None else value


# "项目总预算(元)": the summary states its own unit, which may differ when forms of several units are merged.
_UNIT_IN_LABEL = re.compile(r"\s*[(（]\s*(?:" + "|".join(MONEY_UNITS) + r")\s*[)）]\s*")


def _key_value(value, field_type: str, factor: float):
    """A key column of 项目清单: money as a number in the summary's unit (text a clerk typed stays text)."""
    if field_type == "money" and isinstance(value, int | float) and not isinstance(value, bool):
        return round(value * factor, 6)
    return _plain(value)


def _quality(sp, checked: CheckedForm, p, region, department, name, budget, factor) -> list:
    """The mechanical part of 绩效目标审核: completeness, measurability, relevance, direction."""
    problems = [q for q in checked.problems if q.sheet == p.sheet]
    codes = Counter(q.code for q in problems)
    main = sp.indicator_table().indicator.values[-1]
    quantitative = sum(1 for r in p.indicators if r.targets[main].quantitative)
    share = quantitative / len(p.indicators) if p.indicators else 0.0
    complete = codes["required"] + codes["indicator-category-missing"] + codes["indicator-empty-value"] \
        + codes["indicator-incomplete"] + codes["table-empty"]
    costs = cost_total(sp, p.indicators)
    coverage = (costs / (budget / factor)) if costs is not None and budget else None
    score = 100.0
    score -= 15 * codes["indicator-category-missing"]
    score -= min(30, 5 * (codes["required"] + codes["indicator-empty-value"] + codes["indicator-incomplete"]))
    if share < 0.5:
        score -= (0.5 - share) * 40
    if coverage is not None and not 0.9 <= coverage <= 1.1:
        score -= 10
    score -= min(15, 3 * codes["indicator-direction"])
    score -= 10 * codes["indicator-placeholder"] + 5 * codes["indicator-unparseable"]
    score -= 2 * (codes["indicator-percent-over-100"] + codes["indicator-rate-as-fraction"]
                  + codes["indicator-money-as-output"] + codes["indicator-deadline-before-year"])
    errors = sum(1 for q in problems if q.severity == "error")
    score -= min(40, 10 * errors)
    score = max(0.0, round(score, 1))
    grade = "优" if score >= 90 else "良" if score >= 75 else "中" if score >= 60 else "差"
    if errors and grade in {"优", "良"}:
        grade = "中"  # a declaration with errors goes back to the unit, whatever else it does well
    main_issues = "；".join(q.message for q in problems if q.severity == "error")[:300] or \
        "；".join(q.message for q in problems)[:300]
    return [region, department, name, p.name, len(p.indicators), quantitative, share, complete, coverage,
            codes["indicator-direction"], codes["indicator-placeholder"], codes["indicator-unparseable"], score, grade,
            main_issues]


def _changes(old: CheckedForm, new: CheckedForm, old_seen: Seen, new_seen: Seen, unit_name: str, spec) -> list[list]:
    """What a resubmission changed: fields and indicator values, with the new cell."""
    rows = []
    old_projects = {p.sheet: p for p in old.projects}
    for p in new.projects:
        before = old_projects.get(p.sheet)
        if before is None:
            rows.append([unit_name, p.sheet, p.name, "新增项目", "", p.name, "", Path(old_seen.path).name,
                         Path(new_seen.path).name])
            continue
        for fid, value in p.values.items():
            if before.values.get(fid) != value:
                rows.append([unit_name, p.sheet, p.name, spec.fields[fid].label, _text(before.values.get(fid)),
                             _text(value), p.cells.get(fid, ""), Path(old_seen.path).name, Path(new_seen.path).name])
        old_ind = {(r.level1, r.level2, r.level3): r for r in before.indicators}
        for r in p.indicators:
            o = old_ind.pop((r.level1, r.level2, r.level3), None)
            for vid, text in r.texts.items():
                old_text = o.texts.get(vid, "") if o else ""
                if old_text != text:
                    rows.append([unit_name, p.sheet, p.name, f"指标 {r.level1}/{r.level2}/{r.level3}", old_text, text,
                                 r.cells.get(vid, ""), Path(old_seen.path).name, Path(new_seen.path).name])
        for key, gone in old_ind.items():
            rows.append([unit_name, p.sheet, p.name, f"删除指标 {'/'.join(key)}", "；".join(gone.texts.values()), "", "",
                         Path(old_seen.path).name, Path(new_seen.path).name])
    return rows


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def accounting_line(counts: dict) -> str:
    """files in = merged + rejected + duplicate + superseded + excluded, in the words of 说明 and the CLI."""
    return (f"收到 {counts['files_in']} = 已汇总 {counts['merged']} + 无法读取 {counts['rejected']} + "
            f"重复 {counts['duplicate']} + 被取代 {counts['superseded']} + 不符合条件 {counts['excluded']}")


def _about(seen, counts, options: MergeOptions, specs, unit, skipped, unsettled) -> list[list]:
    rows = [
        ["生成时间", datetime.now().strftime("%Y-%m-%d %H:%M:%S"), "", ""],
        ["perfxl 版本", __version__, "", ""],
        ["金额单位", unit, "", ""],
        ["汇总条件", f"模板={options.template or '全部'}；年度={options.year or '全部'}", "", ""],
        ["单位名单", str(options.roster or "（未提供）"), "", ""],
        ["模板版本", "；".join(f"{sp.template} v{sp.version} ({sp.fingerprint})"
                           for sp in sorted(specs.values(), key=lambda x: x.template)), "", ""],
        ["文件核对", accounting_line(counts), "", ""],
        ["指标行核对", f"读到 {counts['rows_in']} = 已汇总 {counts['rows_merged']} + 未汇总 {counts['rows_set_aside']}", "", ""],
        ["读取", f"本次读取 {counts['read']} 个文件，{counts['from_ledger']} 个未变化的文件取自台账", "", ""],
        ["跳过（不计入收到）", "；".join(f"{SKIP_REASONS[k][0]} {n} 个" for k, n in
                                     sorted(Counter(r for _, r in skipped).items())) or "无", "", ""],
    ]
    if unsettled:
        rows.append(["注意", f"{len(unsettled)} 个文件在汇总期间一直在变化，按最后一次读到的内容汇总："
                     + "、".join(unsettled[:20]), "", ""])
    rows += [
        ["", "", "", ""],
        ["输入文件", "处理", "原因", "sha256"],
    ]
    for s in seen:
        rows.append([s.path, OUTCOME_ZH[s.outcome], s.reason + (f" → {Path(s.duplicate_of).name}" if s.duplicate_of else ""),
                     s.sha])
    for path, reason in skipped:
        rows.append([path, "已跳过", SKIP_REASONS[reason][0], ""])
    return rows


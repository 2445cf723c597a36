"""The merge as one transaction, a short list of named steps: outputs guarded, inbox walked, known files
taken from the ledger, the others read until the inbox settles, outcomes decided, sheets built and
written, the run recorded in the ledger."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from perfxl.cachekeys import READER_VERSION, check_key, settings_fingerprint
from perfxl.domain import default_year
from perfxl.errors import OutputError, missing_input
from perfxl.files import TEMP_PREFIX, display_path, ensure_writable_dir, remove_debris
from perfxl.history import load_history
from perfxl.inbox import STAT_IDENTIFIES_CONTENT, Inbox, read_regular_file, scan
from perfxl.issued import book
from perfxl.ledger import Ledger, claims_ledger
from perfxl.library import load_library
from perfxl.limits import collector_paused
from perfxl.pipeline import CheckOptions
from perfxl.read import MAX_FILE_BYTES
from perfxl.records import Seen, checked_from_bytes
from perfxl.roster import Unit, read_roster
from perfxl.spec import load_spec
from perfxl.summary import Context
from perfxl.summary import build as build_summary
from perfxl.validator import CheckedForm
from perfxl.versions import all_versions, as_rows

from .guard import default_db, guard_outputs, outputs, own_outputs
from .kept import collect, keep_roster, kept_check
from .options import MergeOptions, MergeResult
from .render_ahead import PartsWhereRead, Recheck, render_ahead, renders_ahead
from .rollup import input_labels, rolled_up
from .versions import decide
from .worker import Task, check_files, recheck

# A file still changing after this many passes is merged as it was last read, and 说明 says so.
SETTLE_ROUNDS = 4


@dataclass
class _Run:
    """One merge's inputs, settings and open resources, as its steps share them."""

    inputs: list[Path]  # folders and workbooks (lower levels' ledgers taken out)
    lower_levels: list[Path]  # 节点汇总: lower levels' ledgers or exports
    output: Path | None
    options: MergeOptions
    units: list[Unit] | None
    roster: dict | None
    db_path: Path | None
    own_outputs: set[Path]
    inbox: Inbox
    check: CheckOptions
    jobs: int
    history: object = None  # perfxl.comparison.History of the --history ledgers
    library: dict = field(default_factory=dict)  # 固化指标 per form family (perfxl.library)
    ledger: Ledger | None = None
    run_id: int | None = None
    spool: object = None
    kept: object = None
    fingerprint: str | None = None
    seen: dict[str, Seen] = field(default_factory=dict)  # by the path as the file system knows it

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()
        if self.ledger:
            self.ledger.close()


def run_merge(inputs: list[Path], output: Path | None, options: MergeOptions, progress=None,
              on_total=None, materialize: bool = False, let_go: bool = False) -> MergeResult:
    """Merge every file under `inputs`. `on_total(n)` is told how many files were found, `progress(1)`
    each time one is done. With `materialize`, every table's rows are kept in memory so the result can be
    used after the merge (otherwise 指标明细 is produced lazily, only while the merge runs). With `let_go` (a
    caller that uses only the counts and files after, as the CLI), each sheet's rows are let go once written,
    unless the CSV, Parquet or return package still needs them: a province's sheets hold hundreds of MB."""
    run = _prepare(inputs, Path(output) if output else None, options)
    try:
        _open(run)
        if on_total:
            on_total(len(run.inbox.files))
        _take_lower_levels(run)
        tasks = _take_known(run, progress)
        unsettled = _read_until_settled(run, tasks, progress)
        files = _decide_outcomes(run)
        ctx = _summary_context(run, files, unsettled)
        with collector_paused():  # the sheets' lines and rows: millions of objects, none in a cycle
            result = _build(run, ctx, files, unsettled)
            _write(run, result, ctx, let_go=let_go and not materialize)
        _record(run, result, files)
        if materialize:
            _materialize(result)
        return result
    finally:
        run.close()


def _prepare(inputs: list[Path], output: Path | None, options: MergeOptions) -> _Run:
    """The roster and template read, the outputs guarded, the inbox walked: nothing written yet."""
    inputs = [Path(p) for p in inputs]
    units = read_roster(options.roster) if options.roster else None
    if options.template:
        load_spec(options.template, options.year or default_year(), templates_dir=options.templates_dir)
    db_path = Path(options.db) if options.db else (default_db(output) if output else None)
    targets = outputs(output, db_path, options)
    guard_outputs(targets, inputs, options)
    # Every target is now perfxl's own (or about to be): the walk passes over them and the ledger's journals.
    own = own_outputs(targets, db_path)
    # History is evidence read, never an input: a history ledger named as an input, or lying in the inbox, is
    # not merged, and the merge's own ledger cannot be one
    history_files = {os.path.realpath(p) for p in options.history}
    if db_path is not None and os.path.realpath(db_path) in history_files:
        raise OutputError(f"--history {db_path} 是本次汇总的报送台账，不能同时作为历史台账；请用 --db 另指定一个")
    inputs = [p for p in inputs if os.path.realpath(p) not in history_files]
    history = load_history(list(options.history), options.templates_dir, options.jobs,
                           issued=options.issued) if options.history else None
    library = load_library(options.library).required_by_family() if options.library else {}
    # 节点汇总: a county's ledger as input; one that claims to be a ledger but cannot be used is refused as
    # that input (file-corrupt, saying why), not read as a workbook
    lower_levels = [p for p in inputs if p.is_file() and claims_ledger(p)]
    inputs = [p for p in inputs if p not in lower_levels]
    try:
        inbox = scan(inputs, exclude=own)
    except FileNotFoundError as exc:  # an input named that is not there: a PerfxlError, saying which
        raise missing_input(exc) from None
    return _Run(inputs=inputs, lower_levels=lower_levels, output=output, options=options, units=units,
                roster={u.code: u for u in units} if units is not None else None, db_path=db_path,
                own_outputs=own, inbox=inbox, check=options.check_options(),
                jobs=options.jobs or os.cpu_count() or 1, history=history, library=library)


def _open(run: _Run) -> None:
    """The output folder cleared of debris, the ledger's run started, the spool opened."""
    if run.output is not None:
        ensure_writable_dir(run.output.parent)
        remove_debris(run.output.parent)
    if run.db_path:
        run.ledger = Ledger(run.db_path)
        run.run_id = run.ledger.start_run()
    run.spool = tempfile.TemporaryFile(prefix=f"{TEMP_PREFIX}{os.getpid()}-",
                                       dir=run.output.parent if run.output else None)
    if run.ledger:
        run.kept = run.ledger.kept(run.run_id)
        run.fingerprint = settings_fingerprint(run.options)


def _take_lower_levels(run: _Run) -> None:
    for lower, label in input_labels(run.lower_levels):
        # a lower level's forms, as it read them: recorded under the reader alone, never taken as this level's reads
        collect(rolled_up(lower, run.check, run.roster, label), run.seen, run.spool, run.ledger, None, READER_VERSION)


def _take_known(run: _Run, progress) -> list[Task]:
    """Files whose content the ledger knows, checked under these very settings, are taken as they were
    checked: nothing to read or check again. The others are returned, to be read."""
    files = run.inbox.files
    sightings = run.ledger.sightings() if run.ledger else {}
    known_shas = [sightings.get((display_path(f.path), f.stat)) for f in files]
    if None in known_shas and sightings:
        known_shas = _known_by_stat(files, known_shas, sightings)
    del sightings
    if not STAT_IDENTIFIES_CONTENT:  # the stat may hide a rewrite: the content must be what the ledger says
        known_shas = [sha if sha and _content_is(f.path, sha) else None for f, sha in zip(files, known_shas)]
    kept, tasks = run.kept, []
    for i, (f, known) in enumerate(zip(files, known_shas)):
        if kept is not None and i % 1000 == 0:  # looked up a thousand at a time
            kept.prefetch([check_key(run.fingerprint, sha, g.path) for g, sha in zip(files[i:i + 1000],
                                                                                  known_shas[i:i + 1000]) if sha])
        summary = (kept_check(kept, run.fingerprint, known, f.path, run.roster, run.check)
                   if known and kept is not None else None)
        if summary is None:
            tasks.append((f.path, known, f.stat))
            continue
        # Its checked form is rebuilt from the ledger only if a sheet not kept needs it (offset -1).
        run.seen[f.path] = Seen(path=display_path(f.path), size=f.size, mtime_ns=f.mtime_ns, ctime_ns=f.ctime_ns,
                                ino=f.ino, sha=known, source="ledger", offset=-1, **summary)
        if progress:
            progress(1)
    return tasks


def _known_by_stat(files, known_shas: list, sightings: dict) -> list:
    """A file the ledger saw under another name with this very stat is mostly that file: the inbox named
    another way (a relative path from another folder, an absolute one; the portal's store as `perfxl serve`
    was given it), or renamed or moved whole. Known by name and stat only, such files were read and checked
    again, 12 s against 2.7 s for an unchanged re-merge of 10,000 forms. But a stat under another name is a
    hint, not proof: on an exFAT stick (FUSE) the change time is the mtime, which anyone sets, and inodes are
    numbered afresh at each mount, so one unit's form can be given another's stat (helper-45). The file is
    hashed first (here; where the stat is never trusted alone, as on Windows, with every known file below),
    and its kept check is taken only for the content the ledger knows. What the sheets show of it, its path,
    is rendered again."""
    by_stat = {stat: sha for (_, stat), sha in sightings.items()}  # the newest sighting of each: oldest come first
    known = []
    for f, sha in zip(files, known_shas):
        if sha is None:
            other = by_stat.get(f.stat)
            if other is not None and (not STAT_IDENTIFIES_CONTENT or _content_is(f.path, other)):
                sha = other
        known.append(sha)
    return known


def _read_until_settled(run: _Run, tasks: list[Task], progress) -> list[str]:
    """Read and check `tasks`; then, as the result must be that of the inbox as it is now, look again and
    read what changed meanwhile. Returns the files still changing after SETTLE_ROUNDS passes."""
    for round_no in range(SETTLE_ROUNDS):
        _read(run, tasks, progress if round_no == 0 else None)
        now = {f.path: f for f in scan(run.inputs, exclude=run.own_outputs).files}
        for path in [p for p in run.seen if p not in now and run.seen[p].source != "rollup"]:
            del run.seen[path]  # moved away during the run
        tasks = [(f.path, None, f.stat) for f in now.values() if f.path not in run.seen or run.seen[f.path].stat != f.stat]
        if not tasks:
            return []
    return [display_path(t[0]) for t in tasks]


def _read(run: _Run, tasks: list[Task], progress) -> None:
    if not tasks:
        return
    parts = None
    # Where no forked pool will render ahead (Windows; a few forms), the workers that read the forms make
    # their parts, which the main process would otherwise make alone. Where one will, it is as fast or
    # faster (10,000 forms, 2 cores); and a spawned worker cannot be sent earlier years' ledgers.
    if (run.kept is not None and run.output is not None and run.history is None and run.jobs > 1
            and not renders_ahead(run.jobs, len(tasks) + len(run.seen))):
        parts = PartsWhereRead(run.fingerprint, run.units, run.options, run.library)
        for s in run.seen.values():  # forms taken as they were checked: merged too
            if s.template and not s.read_error:
                parts.note(s.template, s.year, s.path)
    # A ledger that holds no file this reader read (a first merge) is not asked for each file's form
    reader = run.check.read_key()
    known = str(run.db_path) if run.ledger is not None and run.ledger.holds_reads(reader) else None
    results = check_files(tasks, run.options, run.roster, known, run.jobs, parts=parts)
    collect(results, run.seen, run.spool, run.ledger, progress, reader, keep=(run.kept, run.fingerprint, run.roster))


def _decide_outcomes(run: _Run) -> list[Seen]:
    """Each file's unit settled (the portal's, or the roster's by name), then its outcome; sorted by path."""
    files = sorted(run.seen.values(), key=lambda x: x.path)
    if run.ledger:  # a portal store: a file's unit is the unit that handed it in, whatever the file says
        _units_from_store(run.ledger, run.seen)
    if run.units:  # forms that lost their stamp name their unit only by name: find its code on the roster
        by_name = {u.name: u.code for u in run.units}
        for s in files:
            if not s.unit_code and s.unit_name in by_name:
                s.unit_code = by_name[s.unit_name]
    decide(files, run.options, run.units)
    return files


def _summary_context(run: _Run, files: list[Seen], unsettled: list[str]) -> Context:
    options = run.options
    real_paths = {s.path: path for path, s in run.seen.items()}

    def load(s: Seen) -> CheckedForm:
        if s.offset >= 0:
            return load_spooled(run.spool, s)
        return recheck(run.ledger, s, real_paths.get(s.path, s.path), run.check, run.roster)

    return Context(files=files, load=load, units=run.units, template=options.template,
                   year=options.year, roster=options.roster, lang=options.lang,
                   templates_dir=options.templates_dir, skipped=_skipped(run), unsettled=unsettled,
                   fingerprint=run.fingerprint, cache=run.kept, issued=tuple(options.issued or ()),
                   versions=as_rows(all_versions(run.ledger.db)) if run.ledger is not None else [],
                   history=run.history, library=run.library)


def _skipped(run: _Run) -> list[tuple[str, str]]:
    return [(display_path(p), reason) for p, reason in run.inbox.skipped]


def _build(run: _Run, ctx: Context, files: list[Seen], unsettled: list[str]) -> MergeResult:
    if run.kept is not None and run.output is not None:
        again = Recheck(str(run.db_path), run.check, run.roster, {s.path: path for path, s in run.seen.items()})
        render_ahead(ctx, run.spool, run.kept, run.jobs, again)
    tables, counts, missing = build_summary(ctx)
    return MergeResult(output=None, tables=tables, counts=counts, files=files, money_unit=ctx.money_unit,
                       missing_units=missing, skipped=ctx.skipped, unsettled=unsettled,
                       notes=list(run.history.notes) if run.history is not None else [])


def _write(run: _Run, result: MergeResult, ctx: Context, let_go: bool) -> None:
    """The summary, its CSV and Parquet tables, and the return package, as asked."""
    from perfxl.report import write_csv, write_parquet, write_summary

    options = run.options
    if run.output:
        # Sheets nothing else waits on (历史对比) are written by a helper beside the others, where a merge of
        # this size renders ahead in forked workers (two cores at least)
        release = let_go and not (options.csv_dir or options.parquet_dir or options.returns_dir)
        write_summary(result, run.output, cache=run.kept, apart=renders_ahead(run.jobs, len(ctx.merged)),
                      release=release)
        result.output = run.output
    if options.csv_dir:
        write_csv(result, Path(options.csv_dir))
    if options.parquet_dir:
        write_parquet(result, Path(options.parquet_dir))
    if options.returns_dir:
        from perfxl.returns import write_returns

        result.returns = write_returns(result, ctx.load, Path(options.returns_dir), options.return_by,
                                       avoid={f.path for f in run.inbox.files})


def _record(run: _Run, result: MergeResult, files: list[Seen]) -> None:
    """The run's outcomes in the ledger, with the settings and the roster as they were: a past merge is
    rebuilt from these, not from today's roster."""
    if not run.ledger:
        return
    options = run.options
    run.ledger.record_outcomes(run.run_id, files, {
        "template": options.template, "year": options.year, "lang": options.lang,
        "roster": str(Path(options.roster).resolve()) if options.roster else None,
        "roster_digest": keep_roster(run.ledger, options.roster, run.units),
        "templates_dir": str(Path(options.templates_dir).resolve()) if options.templates_dir else None,
        "issued": list(run.check.issued),
        # what the targets were compared with (not needed to rebuild the run: 历史对比 is made again with them)
        "history": [str(Path(h).resolve()) for h in options.history],
        "library": str(Path(options.library).resolve()) if options.library else None})
    _keep_issued(run, files)
    run.ledger.finish_run(run.run_id, display_path(run.output or ""), result.counts)
    run.kept.close()


def _keep_issued(run: _Run, files: list[Seen]) -> None:
    """What each merged follow-up form was checked against, copied into the merge's ledger: the ledger is the
    record of what was accepted and against what, wherever the forms' record file goes."""
    records = book(run.check.issued)
    kept = run.ledger.issued_kept()  # a row of a round and unit kept already is not written again (OR IGNORE)
    rows = []
    for s in files:
        if s.outcome != "merged" or not s.issued or (s.round, s.unit_code) in kept:
            continue
        found = records.lookup(s.round, s.unit_code, s.template, s.year, parse=False)
        if found is not None and found.digest == s.issued and found.text:
            rows.append(found.record_row())
    if rows:
        run.ledger.keep_issued(rows)


def _materialize(result: MergeResult) -> None:
    """For callers outside run_merge (the Python API): lazy sheets need the spool, so their rows are kept."""
    for table in result.tables:
        if table.lazy:
            table.rows, table.blocks = list(table.iter_rows()), None


def load_spooled(spool, s: Seen) -> CheckedForm:
    spool.seek(s.offset)
    return checked_from_bytes(spool.read(s.length))


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

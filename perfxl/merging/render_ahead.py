"""Render-ahead: what the merged forms not yet kept add to the sheets, rendered in a pool of workers into
the kept values the summary is then built from; where no such pool can run (no fork), made by the workers
that read the forms (PartsWhereRead). An optimisation only: whatever is missing after it is rendered in
the main process."""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
from concurrent.futures import FIRST_COMPLETED, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfxl.domain import default_year
from perfxl.errors import PerfxlError
from perfxl.ledger import Ledger
from perfxl.pipeline import CheckOptions
from perfxl.processes import pool_context, worker_pool
from perfxl.records import Seen, checked_from_bytes
from perfxl.spec import load_spec
from perfxl.summary import Context
from perfxl.validator import CheckedForm

from .worker import recheck

_AHEAD: dict[str, Any] = {}  # what a worker rendering ahead inherits from the merge (forked, not pickled)
AHEAD_MIN_FORMS = 200
LOCK_SECONDS = 10.0  # a worker waits this long at most for the templates other workers saw  # fewer forms than this are rendered in the main process: a pool would cost more


class PartsWhereRead:
    """What a form adds to the sheets (its part and its big sheets' segments), made by the worker that read
    it, from the checked form it holds: no second pool, and no form loaded back from the spool.

    A form's part and its keys depend on every template and year merged (the sheets' columns, the money
    unit), which are known only once every form is read. The workers share the templates and years of the
    forms read so far, and each makes its form's part for those and its own: once every template in play
    has been seen, which is early in a campaign, the merge's own keys are the workers' and it finds
    everything kept. Forms made for fewer (read before a template first came, or a unit settled by name
    after reading) have other keys, and are made later as before. Used where no forked pool renders ahead
    (merging.run._read: a system without fork, or a few forms) and the merge does not compare with history;
    inherited by forked workers and sent to spawned ones."""

    _ROOM = 8192  # bytes of shared memory for the templates and years seen (JSON); beyond, nothing is made

    def __init__(self, fingerprint: str, units, options, library: dict):
        self.fingerprint, self.units, self.options, self.library = fingerprint, units, options, library
        self._contexts: dict[tuple, Context] = {}
        mp = pool_context()
        self._lock, self._seen = mp.Lock(), mp.RawArray("c", self._ROOM)

    def __getstate__(self):
        return {**self.__dict__, "_contexts": {}}

    def renewed(self) -> PartsWhereRead:
        """The same, with a lock and memory of its own, for a new pool of workers: a worker of a pool that
        broke may have been stopped while it held the lock, which would hold every later worker forever.
        Called while no worker runs; what was shared so far is kept unless a stopped worker left it half
        written (then forms made for fewer templates are made later)."""
        fresh = object.__new__(PartsWhereRead)
        fresh.__dict__.update(self.__getstate__())
        mp = pool_context()
        fresh._lock, fresh._seen = mp.Lock(), mp.RawArray("c", self._ROOM)
        raw = self._seen.value
        try:
            if raw and raw != b"-":
                json.loads(raw)
            fresh._seen.value = raw
        except ValueError:
            pass
        return fresh

    def note(self, template: str | None, year: int | None, path: str) -> tuple | None:
        """A form of this template and year, at `path`, will be merged: shared with the other workers.
        Returns every template and year shared, in the order the merge's own context will have them (by
        the first path each is found at, as the merged forms are sorted by path); None once they no longer
        fit the shared memory."""
        if not self._lock.acquire(timeout=LOCK_SECONDS):  # a worker stopped holding it: make nothing here
            return None
        try:
            raw = self._seen.value
            if raw == b"-":
                return None
            first = {(t, y): p for t, y, p in json.loads(raw)} if raw else {}
            if (template, year) not in first or path < first[(template, year)]:
                first[(template, year)] = path
                text = json.dumps([[t, y, p] for (t, y), p in first.items()], ensure_ascii=True).encode()
                if len(text) >= self._ROOM:
                    self._seen.value = b"-"
                    return None
                self._seen.value = text
            return tuple(sorted(first, key=first.__getitem__))
        finally:
            self._lock.release()

    def items(self, path: str, checked: CheckedForm, seen: Seen) -> tuple[tuple[str, bytes], ...]:
        """The kept values of one checked form (none for a form that will not be merged)."""
        from perfxl.report import render_ahead as render_segments
        from perfxl.summary import form_part, per_form_tables

        o = self.options
        if checked.read_error or not checked.template or (o.template and checked.template != o.template) or (
                o.year and checked.year != o.year):
            return ()
        together = self.note(checked.template, checked.year, seen.path)
        if together is None:
            return ()
        base = self._contexts.get(together)
        if base is None:
            specs = {(t, y): load_spec(t, y or o.year or default_year(), templates_dir=o.templates_dir)
                     for t, y in together}  # in order
            base = self._contexts[together] = Context(
                files=[], load=None, units=self.units, template=o.template, year=o.year, roster=o.roster,
                lang=o.lang, templates_dir=o.templates_dir, fingerprint=self.fingerprint, cache=_Collected(),
                issued=tuple(o.issued or ()), library=self.library, specs=specs)
        one = base.narrowed([seen], lambda _: checked, _Collected())
        if not one.form_key(seen):
            return ()
        form_part(one, seen)
        render_segments(per_form_tables(one), one.cache)
        return tuple(one.cache.items)


def renders_ahead(jobs: int, forms: int) -> bool:
    """Whether a merge of this many forms renders ahead in a pool of forked workers."""
    return jobs > 1 and forms >= AHEAD_MIN_FORMS and pool_context().get_start_method() == "fork"


def render_ahead(ctx: Context, spool, kept, jobs: int, again: Recheck | None = None) -> None:
    """Render, in a pool of workers, what the merged forms not yet kept add to the sheets (their parts and
    their big sheets' segments), into the kept values the summary is then built from. An optimisation
    only: whatever is missing after it (a worker lost, no fork on this system) is rendered in the main
    process as before. Forms whose parts the workers that read them made (PartsWhereRead) are not
    rendered again. With `again`, forms taken from the ledger whose parts are not kept (perfxl's sheet code
    or their unit's roster entry changed since) are checked again from their stored data by the workers,
    as the main process would check them: a first re-merge after an upgrade rendered every form in the main
    process alone, slower than a fresh merge."""
    todo = [s for s in ctx.merged if (s.offset >= 0 or again is not None) and ctx.form_key(s)
            and not kept.holds(f"part|{ctx.form_key(s)}")]
    taken = [f"part|{ctx.form_key(s)}" for s in todo if s.offset < 0]
    if taken:  # a form taken from the ledger is checked again only if its part is not kept (nothing looked it up yet)
        parts = kept.present(taken)
        todo = [s for s in todo if s.offset >= 0 or f"part|{ctx.form_key(s)}" not in parts]
    if not renders_ahead(jobs, len(todo)):
        return
    from perfxl.report import block_starts
    from perfxl.summary import per_form_tables

    spool.flush()
    # Where each form's rows will start in the big sheets, known from the rows each form was read with: the
    # workers place and compress them there, which the writer would otherwise do alone with the workers idle
    _AHEAD.update(ctx=ctx, fd=spool.fileno(), starts=block_starts(per_form_tables(ctx)), again=again)
    chunk = max(8, min(64, len(todo) // (jobs * 4) or 1))
    batches = iter([todo[i:i + chunk] for i in range(0, len(todo), chunk)])
    try:
        with worker_pool(jobs, pool_context()) as pool:
            # A few batches in flight per worker, not all: results wait in memory until they are kept.
            running = {pool.submit(_render_share, b) for b in itertools.islice(batches, jobs * 3)}
            while running:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    try:
                        made = future.result()
                    except (PerfxlError, sqlite3.Error):  # the worker could not read the ledger: its forms are
                        continue  # rendered by the main process, as a lost worker's
                    for key, value in made:
                        kept.put(key, value)
                running |= {pool.submit(_render_share, b) for b in itertools.islice(batches, len(done))}
    except (BrokenProcessPool, OSError):
        pass  # the main process renders what is missing
    finally:
        _AHEAD.clear()


@dataclass
class Recheck:
    """How a worker rendering ahead checks again a form taken from the ledger: as the merge's main process
    does (merging.worker.recheck), through a read-only connection of the worker's own (a connection is never
    used across a fork), opened when first needed."""

    db_path: str
    check: CheckOptions
    roster: dict | None
    real_paths: dict[str, str]  # a form's path as shown → as the file system knows it
    ledger: Ledger | None = None

    def checked(self, s: Seen) -> CheckedForm:
        if self.ledger is None:
            self.ledger = Ledger(Path(self.db_path), readonly=True)
        return recheck(self.ledger, s, self.real_paths.get(s.path, s.path), self.check, self.roster)


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
    from perfxl.report import render_ahead as render_segments
    from perfxl.summary import form_part, per_form_tables

    fd = _AHEAD["fd"]
    loaded: dict[int | str, CheckedForm] = {}

    def load(s: Seen) -> CheckedForm:  # once a form, for its part and for its rows alike
        if s.offset < 0:  # taken from the ledger: checked again from its stored data
            if s.path not in loaded:
                loaded[s.path] = _AHEAD["again"].checked(s)
            return loaded[s.path]
        if s.offset not in loaded:
            loaded[s.offset] = checked_from_bytes(os.pread(fd, s.length, s.offset))
        return loaded[s.offset]

    share = _AHEAD["ctx"].narrowed(batch, load, _Collected())
    for s in batch:
        form_part(share, s)
    render_segments(per_form_tables(share), share.cache, _AHEAD.get("starts"))
    return share.cache.items

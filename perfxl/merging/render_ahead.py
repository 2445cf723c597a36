"""Render-ahead: what the merged forms not yet kept add to the sheets, rendered in a pool of workers into
the kept values the summary is then built from. An optimisation only: whatever is missing after it is
rendered in the main process."""

from __future__ import annotations

import copy
import itertools
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from perfxl.records import Seen, checked_from_bytes
from perfxl.summary import Context
from perfxl.validator import CheckedForm

from .worker import pool_context

_AHEAD: dict[str, Any] = {}  # what a worker rendering ahead inherits from the merge (forked, not pickled)
AHEAD_MIN_FORMS = 200  # fewer forms than this are rendered in the main process: a pool would cost more


def render_ahead(ctx: Context, spool, kept, jobs: int) -> None:
    """Render, in a pool of workers, what the merged forms not yet kept add to the sheets (their parts and
    their big sheets' segments), into the kept values the summary is then built from. An optimisation
    only: whatever is missing after it (a worker lost, no fork on this system) is rendered in the main
    process as before."""
    todo = [s for s in ctx.merged if s.offset >= 0 and ctx.form_key(s)]
    if jobs <= 1 or len(todo) < AHEAD_MIN_FORMS or pool_context().get_start_method() != "fork":
        return
    spool.flush()
    _AHEAD.update(ctx=ctx, fd=spool.fileno())
    chunk = max(8, min(64, len(todo) // (jobs * 4) or 1))
    batches = iter([todo[i:i + chunk] for i in range(0, len(todo), chunk)])
    try:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=pool_context()) as pool:
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
    from perfxl.report import render_ahead as render_segments
    from perfxl.summary import form_part, per_form_tables

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
    render_segments(per_form_tables(share), share.cache)
    return share.cache.items

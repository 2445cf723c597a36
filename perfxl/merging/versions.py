"""Which version of a unit's file counts: each input's outcome (merged, rejected, excluded, duplicate or
superseded). The rule itself, `counting_order`, is also the submission portal's: the version a unit's page
and the board call current is the one the summary takes."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import TypeVar

from perfxl.domain import default_year
from perfxl.records import Seen
from perfxl.roster import Unit
from perfxl.spec import load_spec

from .options import MergeOptions

V = TypeVar("V")


def counting_order(status: str, newness, tiebreak) -> tuple:
    """How the versions of one declaration rank, first counts: one without errors before one with errors,
    then the newest, then (for versions equally new) the greater tiebreak."""
    return status != "errors", newness, tiebreak


def version_that_counts(versions: Iterable[V], order: Callable[[V], tuple]) -> V | None:
    """The version that counts among `versions` of one declaration (None if there are none); `order` gives
    each one's `counting_order`."""
    return max(versions, key=order, default=None)


def input_of(s: Seen) -> str:
    """The lower level's file a rolled-up form came from (`甲县.perfxl#原路径` → `甲县.perfxl`)."""
    return s.path.split("#", 1)[0]


def out_of_place(seen: list[Seen], units: list[Unit] | None) -> dict[str, str]:
    """Lower levels' forms of a unit the roster places in another region than the rest of that input's
    forms: {path: the region the input speaks for}. A county's export speaks for the units of its county; a
    form in it for another county's unit (a unit it claims, a copy it forged) is set aside, whatever its
    time or claims, and the genuine form from that unit's own county stands."""
    from perfxl.summary.base import place

    where = {u.code: place(u) for u in units or [] if u.region}
    if not where:
        return {}
    regions: dict[str, Counter] = defaultdict(Counter)
    for s in seen:
        if s.source == "rollup" and not s.read_error and s.unit_code in where:
            regions[input_of(s)][where[s.unit_code]] += 1
    home = {}
    for source, counts in regions.items():
        (top, n), *rest = counts.most_common(2) + [("", 0)]
        if n > rest[0][1]:  # a clear majority: a tie tells no region
            home[source] = top
    return {s.path: f"{input_of(s)}（{home[input_of(s)]}）" for s in seen
            if s.source == "rollup" and not s.read_error and s.unit_code in where
            and input_of(s) in home and where[s.unit_code] != home[input_of(s)]}


def rival_inputs(versions: list[Seen]) -> dict[str, str]:
    """Versions of one declaration that came from two or more lower levels with different data: {path: a
    rival's path}. (From one lower level, or as files of this level's own inbox, versions are decided by
    time as ever.)"""
    rolled = [s for s in versions if s.source == "rollup"]
    if len({input_of(s) for s in rolled}) < 2 or len({s.sha for s in rolled}) < 2:
        return {}
    return {s.path: min(o.path for o in rolled if input_of(o) != input_of(s)) for s in rolled}


def conflicts(seen: list[Seen]) -> dict[str, str]:
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


def slot(s: Seen, multi_project: bool) -> tuple:
    """Which declaration a file is a version of. A multi-project workbook is the unit's whole declaration;
    a single-project form is one of the unit's projects, known by its name (see `renamed_together`)."""
    unit = s.unit_code or s.unit_name or s.path
    if multi_project or not s.project_names:
        return s.template, s.year, unit
    return s.template, s.year, unit, s.project_names[0]


def renamed_together(slots: dict[tuple, list[Seen]]) -> dict[tuple, list[Seen]]:
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


def _order(s: Seen) -> tuple:
    return counting_order(s.status, s.mtime_ns, s.path)


def decide(seen: list[Seen], options: MergeOptions, units: list[Unit] | None = None) -> None:
    """Each file's outcome: merged, rejected, excluded, duplicate or superseded."""
    elsewhere = out_of_place(seen, units)
    conflicting = conflicts([s for s in seen if s.path not in elsewhere])
    first_by_sha: dict[str, Seen] = {}
    candidates = []
    for s in sorted(seen, key=lambda x: x.path):
        if s.read_error:
            s.outcome, s.reason = "rejected", s.read_error
            continue
        if s.path in elsewhere:
            s.outcome, s.reason, s.duplicate_of = "excluded", "rollup-other-region", elsewhere[s.path]
            continue
        if s.path in conflicting:
            s.outcome, s.reason, s.duplicate_of = "excluded", "rollup-conflict", conflicting[s.path]
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
            multi[s.template] = load_spec(s.template, s.year or options.year or default_year(),
                                          templates_dir=options.templates_dir).multi_project
        slots[slot(s, multi[s.template])].append(s)
    for versions in renamed_together(slots).values():
        rival = rival_inputs(versions)
        if rival:  # one unit, other data, from two lower levels: neither can be told genuine
            for s in versions:
                if s.path in rival:
                    s.outcome, s.reason, s.duplicate_of = "excluded", "rollup-unit-conflict", rival[s.path]
            versions = [s for s in versions if s.path not in rival]
            if not versions:
                continue
        counted = version_that_counts(versions, _order)
        counted.outcome = "merged"
        for older in versions:
            if older is not counted:
                older.outcome, older.reason, older.duplicate_of = "superseded", "newer-version", counted.path

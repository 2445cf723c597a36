"""历史标准: this year's targets beside their past and their peers.

What earlier years' ledgers say of a project (`PastProject`: each year's targets as issued, what was
achieved, the self-evaluation's score and grade, the review grade of its declaration) is loaded by
perfxl.history; this module holds that data, matches this year's projects and indicators to it, and finds
what a reviewer of 适当性 should look at (`compare`). Pure data and functions: no file is read here.

Matching, as README's "历史标准" says it:
- a project by its project code where its template has one (a field `project_code`), else by its
  normalised name within the same unit: full-width folded, a year in it (2024年, 2024年度) dropped, then
  everything but letters and digits dropped. A project renamed in other words is a new project: it has no
  history, and last year's project shows as not continued.
- an indicator by its 二级 (as the hierarchy names it), its normalised 三级 and its unit of measure.

Findings, each a warning at the cell it is about (see `compare`):
- history-below-last-actual / history-above-last-actual: a more-is-better target below last year's actual,
  or a less-is-better one (cost, time) above it, with no 指标值确定依据 (a form without that column gives
  none);
- history-target-not-raised: met by 120 % or more two years running, and not raised (目标可能偏低);
- history-indicator-dropped: an indicator of last year's not declared again, and no sentence of the project's
  own words (its goals, any 指标值确定依据) both names it and says it was given up (取消, 不再, 调整, 改为 …);
- peer-outlier: a value outside P10–P90 of the same indicator declared this year by at least 5 other units
  (the unit itself left out; percentiles interpolated linearly, as numpy's default), with the peers' median
  as 参考值;
- library-required-missing: a 固化指标 of the bureau's indicator library (perfxl.library) not declared.
"""

from __future__ import annotations

import bisect
import json
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

from .limits import collector_paused
from .problems import Problem, fmt_number, short_text
from .values import Target, normalize_text, parse_target

PEERS_MIN = 5  # other units declaring an indicator before its peers' range means anything
PEER_RANGE = (0.10, 0.90)
OVERMET = 1.2  # met by 120 % or more: the target was probably too low
COMPARABLE_KINDS = frozenset({"quantitative", "cost", "range"})

# A minus sign before the number: the parser reads "≥-5%" as 5 (its sign dropped), which compared as it is
# would be a silent wrong number; such a target is not compared.
_NEGATIVE = re.compile(r"[-－−﹣]\s*\d")
_YEAR_IN_NAME = re.compile(r"(?:19|20)\d{2}\s*年度?")
_NOT_WORD = re.compile(r"[\W_]+")


@lru_cache(maxsize=65536)  # the same names recur across thousands of forms and years
def _text_key(text: str) -> str:
    return _NOT_WORD.sub("", _YEAR_IN_NAME.sub("", normalize_text(text))).lower()


def name_key(name: Any) -> str:
    """A project's (or an indicator's) name as matching compares it: 2024年度 "乡村道路 养护" 项目 and
    2025年乡村道路养护项目 are the same project."""
    return _text_key(name if isinstance(name, str) else normalize_text(name))


def unit_key(unit: Any) -> str:
    return _NOT_WORD.sub("", normalize_text(unit or "")).lower() if unit != "%" else "%"


@lru_cache(maxsize=65536)
def indicator_key(level2: str, level3: str, unit: str | None) -> tuple[str, str, str]:
    """(二级, normalised 三级, unit of measure): one indicator across forms, units and years. The 二级 is
    normalised too, without a closing 指标: a form's hierarchy may name it 服务对象满意度指标 where the
    self-evaluation issued from it says 服务对象满意度, as a unit wrote it."""
    return (level2_key(level2), name_key(level3), unit_key(unit))


def level2_key(level2: str) -> str:
    key = name_key(level2)
    return key[:-2] if key.endswith("指标") and len(key) > 2 else key


def value_of(target: Target | None) -> float | None:
    """The number a target compares by: its value (a range's low end), for kinds that have one."""
    if target is None or target.kind not in COMPARABLE_KINDS or target.value is None:
        return None
    if target.kind != "range" and _NEGATIVE.search(target.text):
        return None
    return float(target.value)


def direction_of(target: Target | None) -> str | None:
    """more (≥, >), less (≤, <), or None (=, a word, a range)."""
    if target is None or target.kind == "range":
        return None
    return target.direction


class PastRow(NamedTuple):
    """One indicator of a past year: its target as issued (declared, or as an adjustment last approved)
    and, after a self-evaluation, what was achieved. A tuple: two years of a province's history are
    millions of them, made from a kept list each."""

    level1: str
    level2: str
    level3: str
    target: str
    actual: str = ""

    @property
    def parsed_target(self) -> Target:
        return parse_target(self.target)

    @property
    def parsed_actual(self) -> Target | None:
        return parse_target(self.actual) if self.actual else None

    @property
    def key(self) -> tuple[str, str, str]:
        return _text_facts(self.level2, self.level3, self.target)[0]

    def actual_value(self) -> float | None:
        """The actual as a number in the target's unit (a bare 96 beside ≥95% counts as 96%), else None."""
        return _past_facts(self.target, self.actual)[2]

    def completion(self, usual: str | None = None) -> float | None:
        """How far the target was met: actual ÷ target (more-is-better), target ÷ actual (less-is-better);
        a target without a sign points `usual`'s way."""
        return _past_facts(self.target, self.actual, usual or "")[3]


@lru_cache(maxsize=65536)  # the same targets and actuals recur across thousands of projects
def _past_facts(target_text: str, actual_text: str, usual: str = "") -> tuple:
    """(target value, direction, actual value, completion) of a past row's texts; a target without a sign
    points the `usual` way of its kind of indicator."""
    target = parse_target(target_text)
    value, direction = value_of(target), direction_of(target)
    if direction is None and value is not None and not target.op and usual:
        direction = usual
    actual = parse_target(actual_text) if actual_text else None
    if actual is None or actual.value is None or actual.kind not in COMPARABLE_KINDS | {"unparseable"} or (
            actual.unit and unit_key(actual.unit) != unit_key(target.unit)):
        achieved = None
    else:
        achieved = float(actual.value)
    completion = None
    if value is not None and achieved is not None and direction is not None:
        if direction == "more":
            completion = achieved / value if value > 0 else None
        else:
            completion = value / achieved if achieved > 0 else None
    return value, direction, achieved, completion


@dataclass
class PastProject:
    """One project (or whole department) of one past year, as that year's ledgers hold it."""

    year: int
    unit_code: str
    unit_name: str
    department: str
    name: str
    code: str = ""  # its project code, where the template has one
    subject_code: str = ""  # 功能科目
    budget: float | None = None  # 万元
    spent: float | None = None  # 万元, after a self-evaluation
    score: float | None = None  # the self-evaluation's total
    grade: str = ""  # the self-evaluation's grade
    review_grade: str = ""  # 目标审核's grade of its declaration
    rows: list[PastRow] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # the rounds it was seen in: 申报, 调整, 自评
    family: str = ""  # the family of its declaration form (project, department)
    _keyed: tuple | None = field(default=None, repr=False, compare=False)

    @property
    def execution(self) -> float | None:
        if isinstance(self.budget, int | float) and self.budget and isinstance(self.spent, int | float):
            return self.spent / self.budget
        return None

    def rows_by_key(self) -> dict[tuple[str, str, str], PastRow]:
        """Its rows by indicator (the first of two alike), worked out once: a project is compared twice."""
        if self._keyed is None or self._keyed[0] is not self.rows:
            out: dict[tuple[str, str, str], PastRow] = {}
            for row in self.rows:
                out.setdefault(row.key, row)
            self._keyed = (self.rows, out)
        return self._keyed[1]

    def to_data(self) -> list:
        return [self.year, self.unit_code, self.unit_name, self.department, self.name, self.code, self.subject_code,
                self.budget, self.spent, self.score, self.grade, self.review_grade,
                [[r.level1, r.level2, r.level3, r.target, r.actual] for r in self.rows], self.sources, self.family]

    @classmethod
    def from_data(cls, data: list) -> PastProject:
        """Back from `to_data`; ValueError for anything else (a cache of another shape is read afresh)."""
        try:
            (year, unit_code, unit_name, department, name, code, subject_code, budget, spent, score, grade,
             review_grade, rows, sources, family) = data
            texts = (unit_code, unit_name, department, name, code, subject_code, grade, review_grade, family)
            numbers = (budget, spent, score)
            if type(year) is not int or not all(type(t) is str for t in texts) or not all(
                    n is None or type(n) in (int, float) for n in numbers):
                raise ValueError("a past project of another shape")
            # kept data, sealed by this user's key: of perfxl's own shape, so each row is taken as it is
            past_rows = [_new_row(PastRow, r) for r in rows if len(r) == 5]
            return cls(year, unit_code, unit_name, department, name, code, subject_code, budget, spent, score,
                       grade, review_grade, past_rows, [str(s) for s in sources], family)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"a past project of another shape: {exc}") from None


_new_row = tuple.__new__  # PastRow._make without its call and its length check (made above)


class Pack(NamedTuple):
    """One ledger's past projects as kept: each project's JSON text (PastProject.to_data) one after another in
    `body`, and an index of (unit code, year, matched name, project code, offset, length). A project is
    decoded only when it is looked up: a province's history stays one bytes object, which a merge's forked
    workers read without copying, and each decodes only its own forms' units."""

    index: list[list]
    body: bytes

    @classmethod
    def of(cls, projects: list[PastProject]) -> Pack:
        index, parts, offset = [], [], 0
        for p in projects:
            text = json.dumps(p.to_data(), ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
            index.append([p.unit_code, p.year, name_key(p.name), p.code, offset, len(text)])
            parts.append(text)
            offset += len(text)
        return cls(index, b"".join(parts))

    def project(self, offset: int, length: int) -> PastProject:
        return PastProject.from_data(json.loads(self.body[offset:offset + length].decode("utf-8", "surrogatepass")))


def together(projects: list[PastProject]) -> list[PastProject]:
    """One project per unit, year and matched name: a declaration and its self-evaluation from two ledgers
    become one (the self-evaluation's rows, with what was achieved, over the declaration's)."""
    out: dict[tuple, PastProject] = {}
    for p in sorted(projects, key=lambda p: "自评" in p.sources):  # declarations first
        key = (p.unit_code, p.year, name_key(p.name))
        had = out.get(key)
        if had is None:
            out[key] = p
            continue
        had.sources = sorted(set(had.sources) | set(p.sources))
        if "自评" in p.sources:
            had.rows = p.rows or had.rows
            had.spent, had.score, had.grade = p.spent, p.score, p.grade
            had.budget = p.budget if p.budget is not None else had.budget
        had.family = had.family or p.family
        had.code = had.code or p.code
        had.subject_code = had.subject_code or p.subject_code
        had.review_grade = had.review_grade or p.review_grade
    return list(out.values())


class History:
    """Every past project of the history ledgers, found by unit, year and code or name; decoded from the
    ledgers' packs when first looked up (the same project in two ledgers put together then)."""

    def __init__(self, projects: list[PastProject] | None = None, sources: list[str] | None = None,
                 notes: list[str] | None = None, packs: list[Pack] | None = None):
        self.packs = list(packs or [])
        if projects:
            self.packs.append(Pack.of(projects))
        self.sources = sources or []  # the ledgers, as given
        self.notes = notes or []  # what a user should know of how they were read (in Chinese)
        self.identity = ""  # the ledgers' contents, as read (perfxl.history): what findings kept with a form name
        self._where: dict[tuple[str, int, str], list[tuple[int, int, int]]] = defaultdict(list)
        self._by_code: dict[tuple[str, int, str], str] = {}
        self._names: dict[tuple[str, int], list[str]] = defaultdict(list)
        for n, pack in enumerate(self.packs):
            for unit_code, year, name, code, offset, length in pack.index:
                key = (unit_code, year, name)
                if key not in self._where:
                    self._names[(unit_code, year)].append(name)
                self._where[key].append((n, offset, length))
                if code:
                    self._by_code.setdefault((unit_code, year, code), name)
        self._decoded: dict[tuple[str, int, str], PastProject] = {}

    def project(self, key: tuple[str, int, str]) -> PastProject | None:
        found = self._decoded.get(key)
        if found is None and key in self._where:
            where = self._where[key]
            if len(where) == 1:  # in one ledger only: nothing to put together
                n, offset, length = where[0]
                found = self._decoded[key] = self.packs[n].project(offset, length)
            else:
                found = self._decoded[key] = together(
                    [self.packs[n].project(offset, length) for n, offset, length in where])[0]
        return found

    @property
    def projects(self) -> list[PastProject]:
        """Every past project (all of them decoded: for the library and for looking at the whole)."""
        return [self.project(key) for key in self._where]

    @property
    def years(self) -> list[int]:
        return sorted({year for _, year, _ in self._where})

    def find(self, unit_code: str, year: int, name: str, code: str = "") -> tuple[PastProject | None, str]:
        """(the unit's project of `year` this one continues, how it was matched: 项目编码 or 项目名称)."""
        key, how = self.locate(unit_code, year, name, code)
        return (self.project(key), how) if key is not None else (None, "")

    def locate(self, unit_code: str, year: int, name: str, code: str = "") -> tuple[tuple | None, str]:
        """`find`'s project as its key (for `project`), not decoded."""
        if code:
            by_code = self._by_code.get((unit_code, year, code))
            if by_code is not None:
                return (unit_code, year, by_code), "项目编码"
        key = (unit_code, year, name_key(name))
        return (key, "项目名称") if key in self._where else (None, "")

    def of_unit(self, unit_code: str, year: int) -> list[PastProject]:
        return [self.project((unit_code, year, name)) for name in self._names.get((unit_code, year), [])]


# ----------------------------------------------------------------------------------------------------
# This year's declarations, as the comparison sees them
# ----------------------------------------------------------------------------------------------------

class DeclaredRow(NamedTuple):
    row: int  # its place in the table, from 1
    cell: str  # the target's cell
    level1: str
    level2: str
    level3: str
    target: str  # as written
    basis: str = ""  # 指标值确定依据, where the form has that column
    usual: str = ""  # the direction its kind of indicator normally has (more, less): for a target without a sign

    @property
    def parsed(self) -> Target:
        return parse_target(self.target)

    @property
    def key(self) -> tuple[str, str, str]:
        return indicator_key(self.level2, self.level3, self.parsed.unit)


_make_declared = DeclaredRow._make


@dataclass
class DeclaredProject:
    """One declared project of this year's merge, with what the comparison needs of it."""

    file: str
    sheet: str
    year: int
    unit_code: str
    unit_name: str
    department: str
    region: str
    name: str
    name_cell: str
    code: str
    text: str  # the project's own words (goals, explanations): where dropping an indicator may be explained
    rows: list[DeclaredRow]
    library: str = ""  # the family of its form: 固化指标 are per family

    def to_data(self) -> list:
        return [self.file, self.sheet, self.year, self.unit_code, self.unit_name, self.department, self.region,
                self.name, self.name_cell, self.code, self.text,
                [[r.row, r.cell, r.level1, r.level2, r.level3, r.target, r.basis] for r in self.rows], self.library]

    @classmethod
    def from_data(cls, data: list) -> DeclaredProject:
        (file, sheet, year, unit_code, unit_name, department, region, name, name_cell, code, text, rows,
         library) = data
        return cls(file, sheet, int(year), unit_code, unit_name, department, region, name, name_cell, code, text,
                   [_make_declared(r) for r in rows], library)


class RowFacts(NamedTuple):
    """What the comparison needs of one declared row, worked out once."""

    row: DeclaredRow
    key: tuple[str, str, str]
    target: Target
    value: float | None
    direction: str | None


def row_facts(p: DeclaredProject) -> list[RowFacts]:
    """Each row's facts; a number written without a sign (360天) points the way its kind usually does."""
    out = []
    for r in p.rows:
        key, target, value, direction = _text_facts(r.level2, r.level3, r.target)
        if direction is None and value is not None and not target.op and r.usual:
            direction = r.usual
        out.append(RowFacts(r, key, target, value, direction))
    return out


@lru_cache(maxsize=262144)  # 二级, 三级 and target recur across units and years
def _text_facts(level2: str, level3: str, target_text: str) -> tuple:
    """(indicator key, parsed target, its value, its direction) of a row's texts."""
    target = parse_target(target_text)
    return indicator_key(level2, level3, target.unit), target, value_of(target), direction_of(target)


@dataclass
class Match:
    """How one declared project met its past."""

    project: DeclaredProject
    last: PastProject | None  # last year's
    how: str  # 项目编码 | 项目名称 | "" (no history)
    rows_matched: int = 0
    dropped: list[PastRow] = field(default_factory=list)
    history: History | None = field(default=None, repr=False)
    before_key: tuple | None = None  # where the year before's is in `history`

    @property
    def before(self) -> PastProject | None:
        """The year before's project it continues: decoded only when asked (a target met well two years
        running), as most projects need only last year's."""
        return self.history.project(self.before_key) if self.before_key is not None else None


@dataclass
class Finding:
    """A comparison's finding: the problem (a warning at its cell), and the project it belongs to."""

    project: DeclaredProject
    problem: Problem
    row: DeclaredRow | None = None
    reference: str = ""  # 参考值: last year's actual, or the peers' median
    basis: str = ""  # what the reference is (上年实际完成值, 同类单位中位数 …)


# ----------------------------------------------------------------------------------------------------
# Percentiles of the peers, the unit itself left out
# ----------------------------------------------------------------------------------------------------

def _nth_without(values: list[float], removed_at: list[int], k: int) -> float:
    """The k-th smallest (from 0) of sorted `values` without the elements at sorted positions `removed_at`."""
    skipped = 0
    for position in removed_at:
        if position <= k + skipped:
            skipped += 1
        else:
            break
    return values[k + skipped]


def percentile_without(values: list[float], removed_at: list[int], q: float) -> float:
    """The q-quantile (linear interpolation between closest ranks, numpy's default) of sorted `values`
    without the elements at `removed_at`; at least one must remain."""
    n = len(values) - len(removed_at)
    h = (n - 1) * q
    low = int(h)
    a = _nth_without(values, removed_at, low)
    if low + 1 >= n:
        return a
    b = _nth_without(values, removed_at, low + 1)
    return a + (h - low) * (b - a)


@dataclass
class Peers:
    """The values declared this year per indicator, with whose they are, and their range value by value:
    what `outside_peers` uses for a unit that declared an indicator more than once, and what it is held
    equal to (tests/test_history.py)."""

    values: dict[tuple, list[float]] = field(default_factory=dict)  # sorted
    units: dict[tuple, dict[str, list[float]]] = field(default_factory=dict)  # per unit code, its own values

    @classmethod
    def of_values(cls, values) -> Peers:
        """The peers of (unit code, indicator key, value) triples; indicators fewer than PEERS_MIN units
        declared are left out (no unit has enough peers in them)."""
        units: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for unit_code, key, value in values:
            units[key][unit_code].append(value)
        kept = {key: dict(per_unit) for key, per_unit in units.items() if len(per_unit) >= PEERS_MIN}
        return cls({key: sorted(v for vs in per_unit.values() for v in vs) for key, per_unit in kept.items()}, kept)

    def range_for(self, key: tuple, unit_code: str) -> tuple[float, float, float, int] | None:
        """(P10, P90, median, how many other units) of the indicator's values by other units, or None
        when fewer than PEERS_MIN other units declared it."""
        per_unit = self.units.get(key)
        if per_unit is None or len(per_unit) < PEERS_MIN:
            return None
        own = per_unit.get(unit_code, ())
        others = len(per_unit) - (1 if own else 0)
        if others < PEERS_MIN:
            return None
        values = self.values[key]
        if len(own) == 1:  # the usual case: one value of its own, the first position holding it left out
            removed_at = [bisect.bisect_left(values, own[0])]
        else:
            removed_at, last = [], {}
            for v in sorted(own):  # each own value takes the first free position holding it
                start = last.get(v, bisect.bisect_left(values, v))
                removed_at.append(start)
                last[v] = start + 1
            removed_at.sort()
        low, high = PEER_RANGE
        return (percentile_without(values, removed_at, low), percentile_without(values, removed_at, high),
                percentile_without(values, removed_at, 0.5), others)


def _numbered(items: Sequence) -> tuple[dict, Any]:
    """Each distinct item's number (in order of first appearance), and every item's number as an array."""
    import numpy as np

    ids = {item: i for i, item in enumerate(dict.fromkeys(items))}
    return ids, np.fromiter(map(ids.__getitem__, items), np.int64, len(items))


def outside_peers(unit_codes: Sequence[str], keys: Sequence, values: Sequence[float]) -> list[tuple]:
    """The values outside their peers' range: of each (unit code, indicator key, value) whose indicator at
    least PEERS_MIN other units declared, whether it lies outside P10–P90 of the indicator's values with the
    unit's own left out. Returns (index, P10, P90, median, other units) of each value outside, in order.

    What `Peers.range_for` works out value by value, for all values at once (a province declares millions):
    each indicator's values sorted once, and a unit's single value left out by shifting the two ranks a
    quantile falls between past the position it held. A unit that declared an indicator more than once has
    its values left out by `Peers.range_for`."""
    import numpy as np

    n = len(values)
    if not n:
        return []
    key_ids, k = _numbered(keys)
    unit_ids, u = _numbered(unit_codes)
    v = np.asarray(values, dtype=np.float64)
    pairs, pair_of, per_pair = np.unique(k * len(unit_ids) + u, return_inverse=True, return_counts=True)
    others = np.bincount(pairs // len(unit_ids), minlength=len(key_ids))[k] - 1
    eligible = others >= PEERS_MIN
    single = per_pair[pair_of.reshape(-1)] == 1
    order = np.lexsort((v, k))
    sorted_k, sorted_v = k[order], v[order]
    size = np.bincount(k, minlength=len(key_ids))
    start = np.concatenate(([0], np.cumsum(size)[:-1]))
    # the position left out: the first of the indicator's sorted values equal to the unit's (bisect_left)
    new_run = np.ones(n, dtype=bool)
    new_run[1:] = (sorted_k[1:] != sorted_k[:-1]) | (sorted_v[1:] != sorted_v[:-1])
    first_equal = np.maximum.accumulate(np.where(new_run, np.arange(n), 0))
    removed = np.empty(n, dtype=np.int64)
    removed[order] = first_equal

    at = np.flatnonzero(eligible & single)
    base, left, gone = start[k[at]], size[k[at]] - 1, removed[at]

    def without(rank):  # the rank-th smallest of the others' values
        position = base + rank
        return sorted_v[np.minimum(np.where(gone <= position, position + 1, position), n - 1)]

    def quantile(q: float):  # as percentile_without
        h = (left - 1) * q
        low = h.astype(np.int64)
        a = without(low)
        inner = low + 1 < left
        return np.where(inner, a + (h - low) * (without(np.where(inner, low + 1, low)) - a), a)

    p_low, p_high, median = quantile(PEER_RANGE[0]), quantile(PEER_RANGE[1]), quantile(0.5)
    mine = v[at]
    outside = (mine < p_low - 1e-9) | (mine > p_high + 1e-9)
    out = list(zip(at[outside].tolist(), p_low[outside].tolist(), p_high[outside].tolist(),
                   median[outside].tolist(), others[at][outside].tolist()))

    several = np.flatnonzero(eligible & ~single).tolist()
    if several:
        wanted = {keys[i] for i in several}
        peers = Peers.of_values((unit_codes[i], keys[i], values[i]) for i in range(n) if keys[i] in wanted)
        for i in several:
            low, high, median_, count = peers.range_for(keys[i], unit_codes[i])
            if not low - 1e-9 <= values[i] <= high + 1e-9:
                out.append((i, low, high, median_, count))
        out.sort()
    return out


# ----------------------------------------------------------------------------------------------------
# The comparison
# ----------------------------------------------------------------------------------------------------

def _number(v: float) -> str:
    return fmt_number(round(v, 6))


def match_one(p: DeclaredProject, history: History, rows: list[RowFacts]) -> Match:
    """A declared project with last year's and the year before's project it continues, if any."""
    last, how = history.find(p.unit_code, p.year - 1, p.name, p.code)
    match = Match(p, last, how, history=history)
    if last is not None:
        match.before_key = history.locate(p.unit_code, p.year - 2, last.name, last.code)[0]
        keys = {f.key for f in rows}
        past = last.rows_by_key()
        match.rows_matched = len(keys & past.keys())
        match.dropped = [row for k, row in past.items() if k not in keys]
    return match


def match_projects(projects: list[DeclaredProject], history: History,
                   facts: list[list[RowFacts]] | None = None) -> list[Match]:
    """Each declared project with last year's and the year before's project it continues, if any."""
    return [match_one(p, history, rows)
            for p, rows in zip(projects, facts if facts is not None else map(row_facts, projects))]


def one_project(p: DeclaredProject, history: History | None, required=None) -> tuple[Match, list[Finding], list[RowFacts]]:
    """What one declared project gives on its own (a merge's workers work it out form by form): its match,
    its findings against its past and the library's 固化指标, and its rows' facts for the peers."""
    rows = row_facts(p)
    match = match_one(p, history, rows) if history is not None else Match(p, None, "")
    found = _against_history(match, rows)
    if required:  # a 固化指标 of no family (its 适用表样 left blank) is of every family, as on the forms
        found += _required_missing(p, [*required.get(p.library, ()), *(required.get("", ()) if p.library else ())])
    return match, found, rows


def peer_findings(projects: list[DeclaredProject], facts: list[list[RowFacts]]) -> list[Finding]:
    """The values outside their peers' range, once every project is known."""
    flat = [(p, f) for p, rows in zip(projects, facts) for f in rows if f.value is not None]
    return [peer_finding(flat[i][0], flat[i][1], *found)
            for i, *found in outside_peers([p.unit_code for p, _ in flat], [f.key for _, f in flat],
                                           [f.value for _, f in flat])]


def compare(projects: list[DeclaredProject], history: History | None, required=None) -> tuple[list[Match], list[Finding]]:
    """Every declared project matched to its past, and the findings: each a warning at its cell (see the
    module's docstring). `required` is the library's 固化指标 per form family (perfxl.library)."""
    with collector_paused():
        matches, findings, facts = [], [], []
        for p in projects:
            match, found, rows = one_project(p, history, required)
            matches.append(match)
            findings += found
            facts.append(rows)
        by_project = {id(p): i for i, p in enumerate(projects)}
        findings += peer_findings(projects, facts)
        findings.sort(key=lambda f: by_project[id(f.project)])  # each project's findings together, in order
        return matches, findings


def _warning(p: DeclaredProject, code: str, cell: str, row: DeclaredRow | None, reference: str = "",
             basis: str = "", **params) -> Finding:
    return Finding(p, Problem("warning", code, sheet=p.sheet, cell=cell, field="indicators", label="绩效指标",
                              params=params), row, reference, basis)


def _against_history(m: Match, rows: list[RowFacts]) -> list[Finding]:
    p, last = m.project, m.last
    if last is None:
        return []
    out = []
    past = last.rows_by_key()
    before, earlier = None, None  # the year before's project and rows, looked at only for a target met well
    for f in rows:
        old = past.get(f.key)
        if old is None:
            continue
        r, value, direction = f.row, f.value, f.direction
        if value is None or direction is None:
            continue
        actual = old.actual_value()
        if actual is not None and not r.basis.strip():
            if direction == "more" and value < actual - 1e-9:
                out.append(_warning(p, "history-below-last-actual", r.cell, r, old.actual, "上年实际完成值",
                                    level3=short_text(r.level3), value=short_text(r.target),
                                    actual=short_text(old.actual),
                                    year=last.year))
            elif direction == "less" and value > actual + 1e-9:
                out.append(_warning(p, "history-above-last-actual", r.cell, r, old.actual, "上年实际完成值",
                                    level3=short_text(r.level3), value=short_text(r.target),
                                    actual=short_text(old.actual),
                                    year=last.year))
        usual = r.usual
        met_last = old.completion(usual)
        if met_last is None or met_last < OVERMET:
            continue
        if earlier is None:
            before = m.before
            earlier = before.rows_by_key() if before is not None else {}
        older = earlier.get(f.key)
        met_before = older.completion(usual) if older is not None else None
        last_target = _past_facts(old.target, old.actual)[0]
        if met_before is not None and met_before >= OVERMET and last_target is not None and (
                value <= last_target + 1e-9 if direction == "more" else value >= last_target - 1e-9):
            out.append(_warning(p, "history-target-not-raised", r.cell, r, old.target, "上年指标值",
                                level3=short_text(r.level3), value=short_text(r.target), last=short_text(old.target),
                                met_last=f"{met_last:.0%}", met_before=f"{met_before:.0%}",
                                year=last.year, before=before.year))
    explained = _explanations(p)
    for old in m.dropped:
        name = name_key(old.level3)
        if name and any(name in sentence for sentence in explained):
            continue  # the project says why, in its own words
        out.append(_warning(p, "history-indicator-dropped", p.name_cell, None, old.target, "上年指标值",
                            level3=short_text(old.level3), level1=old.level1, level2=old.level2,
                            target=short_text(old.target), year=last.year))
    return out


# Words that say an indicator was given up, not merely named: a goal that restates an indicator
# ("路面优良率达到85%") does not explain dropping it.
REASON_WORDS = ("取消", "不再", "删除", "调整", "合并", "改为", "替换", "停止", "改由", "并入", "不单列", "不设")
_SENTENCE = re.compile(r"[。；;！!？?\n]+")


def _explanations(p: DeclaredProject) -> list[str]:
    """The sentences of the project's own words (goals, 指标值确定依据) that say something was given up,
    normalised as names are."""
    text = p.text + "。" + "。".join(r.basis for r in p.rows)
    return [name_key(sentence) for sentence in _SENTENCE.split(text)
            if any(word in sentence for word in REASON_WORDS)]


def peer_finding(p: DeclaredProject, f: RowFacts, low: float, high: float, median: float, others: int) -> Finding:
    """The finding of a value outside its peers' range (`outside_peers`)."""
    r, unit = f.row, f.target.unit or ""
    middle = f"{_number(median)}{unit}"
    return _warning(p, "peer-outlier", r.cell, r, middle, f"{others} 个同类单位中位数",
                    level3=short_text(r.level3), value=short_text(r.target), low=f"{_number(low)}{unit}",
                    high=f"{_number(high)}{unit}", median=middle, peers=others)


def _required_missing(p: DeclaredProject, required) -> list[Finding]:
    """固化指标 (level1, level2, level3) of the library not among the project's rows (by 二级 and 三级)."""
    have = {(level2_key(r.level2), name_key(r.level3)) for r in p.rows}
    out = []
    for level1, level2, level3, typical in required:
        key = (level2_key(level2), name_key(level3))
        if key not in have:
            have.add(key)  # a row the bureau left twice in the library is one missing indicator
            out.append(_warning(p, "library-required-missing", p.name_cell, None, typical, "指标库典型值",
                                level3=short_text(level3), level1=level1, level2=level2))
    return out

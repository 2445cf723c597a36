"""What every summary sheet is made of: declared columns, a table, and the context of one merge."""

from __future__ import annotations

import copy
import hashlib
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime
from functools import cache
from operator import attrgetter
from pathlib import Path
from sys import intern
from typing import Any, ClassVar

from perfxl.cachekeys import RENDER_VERSION
from perfxl.domain import MONEY_UNITS, default_year
from perfxl.files import shown_name
from perfxl.issued import book
from perfxl.records import CheckedForm, Seen
from perfxl.roster import Unit
from perfxl.spec import Spec, load_spec

OUTCOME_ZH = {"merged": "已汇总", "rejected": "无法读取", "excluded": "未汇总（不符合本次汇总条件）",
              "duplicate": "重复文件", "superseded": "已被更新版本取代"}
OFF_ROSTER = "（名单外）"  # the region or department of a unit the roster does not name
STATUS_ZH = {"valid": "通过", "warnings": "通过（有提醒）", "errors": "有错误", "rejected": "无法读取"}
KINDS = ("text", "money", "int", "count", "percent", "number", "score")  # how report formats and sums a column


@dataclass(frozen=True)
class Column:
    """One column of a sheet: its title, its kind, and how its value is obtained from a row's record
    (an attribute or key name, or a function of the record)."""

    title: str
    kind: str
    value: str | Callable[[Any], Any]

    def getter(self, sample: Any) -> Callable[[Any], Any]:
        """A function from a record to this column's value, chosen once per sheet (a sheet's rows are
        400,000 at 10,000 forms: the choice must not be made per cell)."""
        if callable(self.value):
            return self.value
        if isinstance(sample, dict):
            key = self.value
            return lambda record: record.get(key)
        return attrgetter(self.value)


@dataclass(frozen=True)
class Chart:
    """A native Excel chart on a cover: `series` are (title, column index) over the block's rows."""

    kind: str  # column | pie | bar
    title: str
    block: str  # the name of the Block whose rows it plots
    categories: int  # column index of the category labels
    series: tuple[tuple[str, int], ...]
    stacked: bool = False


@dataclass
class Block:
    """A small titled table on a cover sheet (rows written as they are, no streaming)."""

    name: str
    columns: list[tuple[str, str]]
    rows: list[list]


@dataclass(frozen=True)
class Tally:
    """What the cover counts by kind, beside the departments' chart: a review's or a self-evaluation's
    projects by grade, or a monitoring's indicators by light. Only what the merge holds: a monitoring round
    has no grades, and a cover that showed it 目标审核 0/0/0/0 would say a review happened."""

    name: str  # 目标审核等级, 绩效自评等级, 监控预警
    kind: str  # the category's title: 等级, 预警
    counted: str  # what is counted: 项目数, 指标数
    counts: tuple[tuple[str, int], ...]  # in the order a reader expects (优 … 差, 红 … 无预警)
    # The round's own key figures after the cover's common ones: (label, value, kind: money, percent, score,
    # count); a self-evaluation's execution rate and mean score, a monitoring's spending to date and its lights.
    figures: tuple[tuple[str, float | None, str], ...] = ()


@dataclass
class Cover:
    """What a leader reads first: a title, the lines under it, key figures, small tables and charts."""

    title: str
    lines: list[str]
    figures: list[tuple[str, Any, str]]  # (label, value, kind)
    blocks: list[Block] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)  # small tables above the main one (the totals per level)
    caption: str = ""  # over the main table


@dataclass(frozen=True)
class RowBlock:
    """One form's rows of a big sheet. `key` names the form's content, place and the merge's settings
    (None: nothing to keep); `rows()` computes the rows, which a report keeping the block rendered under
    that key never needs to call."""

    key: str | None
    rows: Callable[[], list[list]]
    # How many rows the block is expected to hold, known before its rows are made (None: not known). Where
    # every block before it is known, so is the row it starts at, and a worker rendering ahead places the
    # block's rows there (perfxl.report.block_starts): the writer then uses them as they are.
    expected: int | None = None


@dataclass
class Table:
    """One summary sheet: column titles with kinds, rows, and whether a totals row is wanted. A sheet
    with a `cover` prints that above its table; its CSV holds the table only."""

    name: str
    columns: list[tuple[str, str]]  # (title, kind)
    rows: Any  # list of lists, or a zero-argument callable giving a fresh iterator (large sheets)
    totals: bool = False
    note: str = ""
    cover: Cover | None = None
    records: list | None = None  # the named records behind the rows, for the report stage (the return package)
    blocks: Callable[[], Iterable[RowBlock]] | None = None  # a big sheet: its rows form by form
    # The largest paper the sheet may print on: A4, or A3 for a sheet declared too wide for A4 (it prints on
    # A4 all the same when its columns fit one at a readable scale).
    paper: str = "A4"
    # Cells coloured by what they say: column index → {text: fill colour} (监控预警's 红/黄/蓝 lights). The
    # colour is a conditional format of the column, so it follows the text through sorting and filtering.
    colours: dict[int, dict[str, str]] = field(default_factory=dict)
    # Whether its rows may be made and rendered in a helper process while the other sheets are written: a
    # sheet nothing else in the workbook waits on (perfxl.report, `apart`).
    apart: bool = False

    @property
    def lazy(self) -> bool:
        """Whether the rows are produced while the merge runs (and so only then)."""
        return callable(self.rows) or self.blocks is not None

    def iter_rows(self):
        """The rows, whether held, produced lazily or form by form."""
        if self.blocks is not None:
            return (row for block in self.blocks() for row in block.rows())
        return self.rows() if callable(self.rows) else iter(self.rows)


class RowsOf(Sequence):
    """A sheet's rows, made from its records each time they are read rather than held beside them: at
    100,000 forms the rows of the sheets sorted across forms would hold another few hundred MB.

    The records may be a callable that makes them: they are then made when the rows are first read, in
    the process that reads them (perfxl.report may write a sheet `apart`, in a helper process)."""

    def __init__(self, records: list | Callable[[], Iterable[Any]], columns: list[Column]):
        self._records = records
        self._columns = columns
        self._getters: list | None = None

    @property
    def made(self) -> bool:
        """Whether the records are made (in this process)."""
        return not callable(self._records)

    @property
    def records(self) -> list:
        if callable(self._records):
            self._records = list(self._records())
        return self._records

    @property
    def getters(self) -> list:
        if self._getters is None:
            records = self.records
            self._getters = [c.getter(records[0]) for c in self._columns] if records else []
        return self._getters

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        record = self.records[i]
        return [get(record) for get in self.getters]

    def __iter__(self):
        getters = self.getters
        for record in self.records:
            yield [get(record) for get in getters]


def table(name: str, columns: list[Column], records: Iterable[Any] | Callable[[], Iterable[Any]], **kw) -> Table:
    """A sheet from declared columns and named records; a callable gives rows lazily (big sheets)."""
    titles = [(c.title, c.kind) for c in columns]
    assert all(kind in KINDS for _, kind in titles), titles

    def rows(source: Iterable[Any]):
        getters = None
        for record in source:
            if getters is None:
                getters = [c.getter(record) for c in columns]
            yield [get(record) for get in getters]

    if callable(records):
        return Table(name, titles, lambda: rows(records()), **kw)
    return Table(name, titles, RowsOf(list(records), columns), **kw)


def table_made_later(name: str, columns: list[Column], make_records: Callable[[], Iterable[Any]], **kw) -> Table:
    """A sheet whose records `make_records()` makes when its rows are first read, in whichever process reads
    them; laid out as a sheet whose rows are at hand (its widths measured), unlike `table`'s lazy sheets."""
    titles = [(c.title, c.kind) for c in columns]
    assert all(kind in KINDS for _, kind in titles), titles
    return Table(name, titles, RowsOf(make_records, columns), **kw)


def per_form_table(name: str, columns: list[Column],
                   forms: Callable[[], Iterable[tuple[str | None, Callable, int | None]]], **kw) -> Table:
    """A big sheet whose rows come form by form: `forms()` gives (key, records(), expected rows or None) per
    form, in order."""
    titles = [(c.title, c.kind) for c in columns]
    assert all(kind in KINDS for _, kind in titles), titles

    def rows_of(records: Callable) -> Callable[[], list[list]]:
        def rows():
            out = []
            getters = None
            for record in records():
                if getters is None:
                    getters = [c.getter(record) for c in columns]
                out.append([get(record) for get in getters])
            return out
        return rows

    def blocks():
        for key, records, expected in forms():
            yield RowBlock(key, rows_of(records), expected)

    return Table(name, titles, None, blocks=blocks, **kw)


class Collector:
    """A sheet's collector (a dataclass holding its `ctx`): what one form adds to it can be kept as its
    `state()` and added to another collector with `absorb`, so a re-merge need not load the form again.
    Its fields are lists (extended), counters per group (added) and counts (added).

    What is kept in the ledger is `state_data()`: JSON-able lists, never a pickle, and read back by
    `state_from_data`, which builds only the records named in RECORDS and refuses any other shape."""

    RECORDS: ClassVar[dict[str, type]] = {}  # a list field of dataclass records: the records' class

    def state(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "ctx"}

    def state_data(self) -> dict:
        out: dict[str, Any] = {}
        for name, value in self.state().items():
            record = self.RECORDS.get(name)
            if record is not None:
                names = _record_fields(record)
                out[name] = [[getattr(item, f) for f in names] for item in value]
            elif isinstance(value, dict):  # counters per group, keyed by (region, department)
                out[name] = [[list(group), dict(counts)] for group, counts in value.items()]
            else:
                out[name] = value
        return out

    @classmethod
    def state_from_data(cls, data: Any) -> dict:
        """A state back from `state_data`; ValueError for anything else (the form is then rendered afresh)."""
        if not isinstance(data, dict):
            raise ValueError("a kept state is not a mapping")
        state: dict[str, Any] = {}
        for name, kind, record in _state_fields(cls):
            value = data.get(name)
            try:
                if kind == "records":
                    state[name] = [record(*map(shared, item)) for item in value]
                elif kind == "lines":
                    state[name] = [shared(item) if type(item) is dict else dict(item) for item in value]
                elif kind == "groups":  # absorbed into counters: a plain dict of the counts is enough here
                    state[name] = {tuple(group): dict(counts) for group, counts in value}
                elif type(value) in (int, float):
                    state[name] = value
                else:
                    raise TypeError(type(value).__name__)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"kept state {cls.__name__}.{name}: {exc}") from None
        return state

    def absorb(self, state: dict) -> None:
        for name, theirs in state.items():
            mine = getattr(self, name)
            if isinstance(mine, list):
                mine.extend(theirs)
            elif isinstance(mine, dict):
                for group, counts in theirs.items():
                    mine[group].update(counts)
            else:
                setattr(self, name, mine + theirs)


def shared(value: Any) -> Any:
    """A value decoded from a kept state with its texts interned: every form's states are held until the
    sheets are written, and decoding makes a new string of every text in every form (a file's name in four
    sheets, the same 主管部门, status and column keys in 100,000 lines). Held once each, a form's states take
    6.4 KB instead of 10.7 (at 100,000 forms, 430 MB less)."""
    kind = type(value)
    if kind is str:
        return intern(value)
    if kind is dict:
        return {(intern(k) if type(k) is str else k): shared(v) for k, v in value.items()}
    # Lists are left as decoded: walking them (历史对比's state holds rows of earlier years) cost the main
    # process 21 µs a form more for 4 KB a form, and what 20 % history may add to a merge is tight already
    return value


@cache
def _state_fields(collector: type) -> tuple[tuple[str, str, type | None], ...]:
    """A collector's state fields, each with how it is kept: records, lines (dicts), groups or a count.
    Worked out once per class: a re-merge reads 10,000 forms' states."""
    out = []
    for f in fields(collector):
        if f.name == "ctx":
            continue
        record = collector.RECORDS.get(f.name)
        kind = ("records" if record is not None else "lines" if f.default_factory is list
                else "groups" if f.default_factory is not MISSING else "count")
        out.append((f.name, kind, record))
    return tuple(out)


@cache
def _record_fields(record: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(record))


@dataclass(frozen=True)
class Who:
    region: str
    department: str
    unit_code: str
    unit_name: str


@dataclass
class Context:
    """One merge as the sheets see it: every input with its outcome, a way to load its checked form,
    the specs of what was merged, and the money unit the summary states."""

    files: list[Seen]
    load: Callable[[Seen], CheckedForm]
    units: list[Unit] | None
    template: str | None = None
    year: int | None = None
    roster: Path | None = None
    lang: str = "zh"
    templates_dir: Path | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)
    specs: dict[tuple, Spec] = field(default_factory=dict)
    money_unit: str = "元"
    # What a form adds to the sheets can be kept between merges (perfxl.ledger): `fingerprint` names the
    # merge's settings (reader, rules, roster, templates); `cache` has get(key) → bytes | None, put(key, bytes)
    # and prefetch(keys) (look up many at once before getting them). None: nothing kept.
    fingerprint: str | None = None
    cache: Any = None
    issued: tuple[Path, ...] = ()  # the records of what was issued named for the merge (--issued)
    versions: list[dict] = field(default_factory=list)  # the ledger's decided adjustments (perfxl.versions.as_rows)
    # 历史标准 (perfxl.comparison): earlier years' projects (--history), and the library's 固化指标 per form
    # family (--library): {family: [(一级, 二级, 三级, typical value)]}
    history: Any = None
    library: dict = field(default_factory=dict)

    def __post_init__(self):
        self.merged = [s for s in self.files if s.outcome == "merged"]
        for s in self.merged:
            key = (s.template, s.year)
            if key not in self.specs:
                self.specs[key] = load_spec(s.template, s.year or self.year or default_year(),
                                            templates_dir=self.templates_dir)
        units = {sp.money_unit for sp in self.specs.values()}
        self.money_unit = units.pop() if len(units) == 1 else "元"
        self._units_by_code = {u.code: u for u in self.units or []}
        self._roster_places = any(u.region for u in self.units or [])
        self.senders: dict[str, Who] = {}  # who sent each merged file (by path), once its part is known
        self._layout = None
        self._form_keys: dict[str, str] = {}
        self.compares = self.history is not None or any(self.library.values())
        if self.fingerprint and self.cache is not None:  # every sheet's columns follow from these
            self._layout = hashlib.sha256(repr((
                # the templates in the order they first come: the sheets' columns (unions of theirs) follow it
                self.fingerprint, RENDER_VERSION, self.money_unit, list(self.specs), self.lang,
                self.template, self.year, self.units is not None, self._roster_places,
                # what a form's own comparisons were made with (kept with its part)
                self.compares, getattr(self.history, "identity", None), sorted(self.library.items()),
                )).encode()).hexdigest()

    def units_issued(self) -> set[str] | None:
        """For a merge of follow-up forms only (监控, 自评): the units a form was issued to, which are the units
        expected to hand one in (a unit that declared nothing got none). None for a declaration round, or
        when no record of what was issued can be found."""
        rounds = {(sp.template, sp.year) for sp in self.specs.values()}
        if self.template:
            rounds.add((self.template, self.year))
        specs = [load_spec(t, y or default_year(), templates_dir=self.templates_dir) for t, y in rounds]
        if not specs or not all(sp.round.followup for sp in specs):
            return None
        found: set[str] | None = None
        for template, year in rounds:
            units = book(tuple(str(p) for p in self.issued)).units_issued(template, year)
            if units is not None:
                found = (found or set()) | units
        return found

    def form_key(self, s: Seen) -> str | None:
        """The key under which what this form adds to the sheets is kept: its content, where and when it
        was found, its unit and the unit's roster entry, and the merge's settings and layout."""
        if self._layout is None:
            return None
        key = self._form_keys.get(s.path)
        if key is None:  # asked for three times a form (prefetch, part, rows): made once
            entry = repr(self._units_by_code.get(s.unit_code or ""))
            key = self._form_keys[s.path] = hashlib.sha256(
                f"{self._layout}|{s.sha}|{s.path}|{s.size}|{s.mtime_ns}|{s.unit_code}|{s.unit_name}|{entry}|"
                f"{s.issued}|{s.checked}".encode()).hexdigest()
        return key

    def narrowed(self, forms: list[Seen], load: Callable[[Seen], CheckedForm], cache) -> Context:
        """This merge's context for these merged forms alone (a worker's share of them): the same settings,
        specs and layout, so the same keys, with its own way to load a form, its own cache and senders."""
        share = copy.copy(self)
        share.merged, share.load, share.cache, share.senders, share._form_keys = list(forms), load, cache, {}, {}
        return share

    def sender(self, s: Seen) -> Who:
        """Who sent a file: known without loading it once its part is (a merged form), else from its form."""
        return self.senders.get(s.path) or self.who(s, self.load(s))

    def spec_of(self, s: Seen) -> Spec:
        return self.specs[(s.template, s.year)]

    def factor(self, spec: Spec) -> float:
        """Multiply a form's money by this to state it in the summary's unit."""
        return MONEY_UNITS[spec.money_unit] / MONEY_UNITS[self.money_unit]

    def who(self, s: Seen, checked: CheckedForm | None = None) -> Who:
        """Region, department, code and name of a file's unit: the roster first, then the form. Where the
        roster places its units, a unit not on it is placed nowhere (（名单外）): the region in its form's
        stamp is the template's, not a place the roster knows."""
        unit = self._units_by_code.get(s.unit_code or "")
        department = unit.department if unit else ""
        if unit is None and self._roster_places:
            region = OFF_ROSTER
        else:
            region = (place(unit) if unit and unit.region else "") or (checked.region if checked else "") or ""
        if not department and checked and checked.projects:
            department = str(checked.projects[0].values.get("department") or "")
        return Who(region, department or OFF_ROSTER, s.unit_code or "", (unit.name if unit else s.unit_name) or "")

    @property
    def money_suffix(self) -> str:
        return f"（{self.money_unit}）"


def place(unit: Unit) -> str:
    """Where a roster unit is, by its whole path: its region under its parent (丙市高新区), so two counties of
    one name in two cities stay apart in every sheet. A region already written under its parent
    (绵阳市涪城区 under 绵阳市) is kept as it is."""
    if not unit.parent or unit.region.startswith(unit.parent):
        return unit.region
    return unit.parent + unit.region


def places(units: list[Unit] | None) -> dict[str, tuple[str, str]]:
    """Each place the roster names (see `place`) → (its parent, its region)."""
    return {place(u): (u.parent, u.region) for u in units or [] if u.region}


def received(mtime_ns: int) -> str:
    return datetime.fromtimestamp(mtime_ns / 1e9).strftime("%Y-%m-%d %H:%M") if mtime_ns else ""


def union(lists) -> list[str]:
    out: list[str] = []
    for items in lists:
        for item in items:
            if item not in out:
                out.append(item)
    return out


def money(value, factor: float):
    return None if value is None or isinstance(value, str) else round(value * factor, 6)


def file_name(s: Seen) -> str:
    """A file as the sheets name it: its file name. A lower level's form (a roll-up) is named with the export
    or ledger it came from, `甲县.perfxl#619999.xlsx`: two counties may each hand up a file of one name."""
    if s.source != "rollup" or "#" not in s.path:
        return shown_name(os.path.basename(s.path))  # a twentieth of Path(path).name's cost, called per row
    lower, original = s.path.split("#", 1)  # the input as the merge names it, then the original path(s)
    return shown_name(lower + "#" + "#".join(map(os.path.basename, original.split("#"))))


# "项目总预算(元)": the summary states its own unit, which may differ when forms of several units are merged.
UNIT_IN_LABEL = re.compile(r"\s*[(（]\s*(?:" + "|".join(MONEY_UNITS) + r")\s*[)）]\s*")

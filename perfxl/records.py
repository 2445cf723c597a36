"""What validation makes of a form: normalised records per project and the problems found.

The merge, the summary sheets and the public API consume these; nothing here reads a file or a spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import datajson
from .cachekeys import DATA_VERSION
from .inbox import FileStat
from .problems import Problem, problem
from .values import Target

# A checked form crosses from a merge's workers to its main process and is spooled to disk until the sheets
# are built, and the portal keeps it between checking and annotating. On disk it is data (JSON of these
# lists, their shape cachekeys.DATA_VERSION), never a pickle: whatever a file holds, reading it back builds
# records, it cannot run code.


@dataclass
class IndicatorRecord:
    row: int
    level1: str
    level2: str
    level3: str
    cells: dict[str, str]
    texts: dict[str, str]
    targets: dict[str, Target]

    def to_data(self) -> list:
        return [self.row, self.level1, self.level2, self.level3, self.cells, self.texts,
                {k: list(t) for k, t in self.targets.items()}]

    @classmethod
    def from_data(cls, data: list) -> IndicatorRecord:
        row, level1, level2, level3, cells, texts, targets = data
        return cls(row, level1, level2, level3, cells, texts, {k: Target(*t) for k, t in targets.items()})


@dataclass
class ProjectRecord:
    sheet: str
    name: str
    values: dict[str, Any]  # field id → normalised value (numbers in the form's money unit, dates ISO)
    cells: dict[str, str]  # field id → cell address
    tables: dict[str, list[dict[str, Any]]]
    indicators: list[IndicatorRecord]
    errors: int = 0
    warnings: int = 0
    scores: dict[str, Any] | None = None  # a self-evaluation's scores (perfxl.rules.selfeval)

    def to_data(self) -> list:
        return [self.sheet, self.name, self.values, self.cells, self.tables,
                [r.to_data() for r in self.indicators], self.errors, self.warnings, self.scores]

    @classmethod
    def from_data(cls, data: list) -> ProjectRecord:
        sheet, name, values, cells, tables, indicators, errors, warnings, scores = data
        return cls(sheet, name, values, cells, tables, [IndicatorRecord.from_data(r) for r in indicators],
                   errors, warnings, scores)


@dataclass
class CheckedForm:
    path: str
    template: str | None
    version: str | None
    year: int | None
    region: str | None
    unit_code: str | None
    unit_name: str | None
    money_unit: str | None
    family: str | None
    projects: list[ProjectRecord]
    problems: list[Problem]
    read_error: str | None = None
    round: str | None = None  # a follow-up form's round, as its stamp names it
    issued: str | None = None  # a follow-up form: the digest of the issued record it was checked against ("" none)
    signature: str | None = None  # a single-project form: what a re-send that renames the project keeps

    def to_data(self) -> list:
        """The form as JSON-able lists (see DATA_VERSION): what is spooled and kept, instead of a pickle."""
        return [DATA_VERSION, self.path, self.template, self.version, self.year, self.region, self.unit_code,
                self.unit_name, self.money_unit, self.family, [p.to_data() for p in self.projects],
                [q.to_record() for q in self.problems], self.read_error, self.round, self.issued, self.signature]

    @classmethod
    def from_data(cls, data: list) -> CheckedForm:
        """Back from `to_data`. Raises ValueError for data of another shape (the caller checks it again)."""
        try:
            (version, path, template, form_version, year, region, unit_code, unit_name, money_unit, family, projects,
             problems, read_error, round_id, issued, signature) = data
            if version != DATA_VERSION:
                raise ValueError(f"checked form data of version {version!r}")
            return cls(path, template, form_version, year, region, unit_code, unit_name, money_unit, family,
                       [ProjectRecord.from_data(p) for p in projects], [Problem.from_dict(q) for q in problems],
                       read_error, round_id, issued, signature)
        except (TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"checked form data of another shape: {type(exc).__name__}: {exc}") from None

    @property
    def errors(self) -> int:
        return sum(1 for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> int:
        return sum(1 for p in self.problems if p.severity == "warning")

    @property
    def status(self) -> str:
        if self.read_error:
            return "rejected"
        return "errors" if self.errors else ("warnings" if self.warnings else "valid")


def checked_bytes(checked: CheckedForm) -> bytes:
    return datajson.dumps(checked.to_data())


def checked_from_bytes(data: bytes) -> CheckedForm:
    """Raises ValueError for bytes that are not a checked form's data."""
    try:
        return CheckedForm.from_data(datajson.loads(data))
    except (UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"not a checked form's data: {type(exc).__name__}") from None


def rejected(path: str, code: str, **params) -> CheckedForm:
    """A file that could not be read at all, as a checked form with one problem of the catalogue."""
    return rejected_by(path, problem(code, **params))


def rejected_by(path: str, problem: Problem) -> CheckedForm:
    """A file that could not be read at all, as a checked form with that one problem."""
    code = problem.code
    return CheckedForm(path=path, template=None, version=None, year=None, region=None, unit_code=None,
                       unit_name=None, money_unit=None, family=None, projects=[], problems=[problem], read_error=code)


@dataclass(slots=True)  # 100,000 of them at province scale
class Seen:
    """One input file of a merge, as the main process remembers it (the checked form itself is spooled),
    with the outcome the merge decided for it."""

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
    length: int = 0  # of its checked form in the merge's spool (offset -1: not spooled, rebuilt if needed)
    claimed: str = ""  # a lower level's form (roll-up): the sha256 of the original file its data claims
    ctime_ns: int = 0  # with size, mtime and inode, how the ledger knows the file is unchanged (inbox.FileStat)
    ino: int = 0
    round: str | None = None  # a follow-up form's round (perfxl.issued)
    issued: str | None = None  # a follow-up form: the digest of the record it was checked against ("" none)
    signature: str | None = None  # a single-project form: its budget and indicator rows (merging.versions.renamed_together)
    # A digest of its check's problems: what the sheets show of the form follows from them, and a check of the
    # same content can change (a newer round issued to its unit since), so a form's kept part is keyed by it
    checked: str = ""

    @property
    def stat(self) -> FileStat:
        return FileStat(self.size, self.mtime_ns, self.ctime_ns, self.ino)

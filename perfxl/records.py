"""What validation makes of a form: normalised records per project and the problems found.

The merge, the summary sheets and the public API consume these; nothing here reads a file or a spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .problems import Problem, problem
from .values import Target


@dataclass
class IndicatorRecord:
    row: int
    level1: str
    level2: str
    level3: str
    cells: dict[str, str]
    texts: dict[str, str]
    targets: dict[str, Target]


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

"""What a merge is asked to do (MergeOptions) and what it hands back (MergeResult)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from perfxl.pipeline import CheckOptions
from perfxl.records import Seen
from perfxl.roster import Unit
from perfxl.summary import Table
from perfxl.summary.about import accounting_line


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
    history: tuple[Path, ...] = ()  # ledgers (or exports) of earlier years: targets compared (perfxl.history)
    library: Path | None = None  # an indicator library (perfxl.library): its 固化指标 are checked

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
    notes: list[str] = field(default_factory=list)  # what the user should know of how history was read

    @property
    def accounting(self) -> str:
        """收到 N = 已汇总 + 无法读取 + 重复 + 被取代 + 不符合条件, as the CLI and 说明 state it."""
        return accounting_line(self.counts)

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)

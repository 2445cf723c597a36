"""The public Python API: what an analyst at a bureau calls from a script or Jupyter.

    import perfxl
    spec = perfxl.load_template("national/project", year=2025, region="某市")
    perfxl.generate("national/project", "名单.xlsx", "空白表", year=2025)
    report = perfxl.validate("某单位.xlsx")              # the same as one file of `validate --json`
    result = perfxl.merge(["收件箱"], "汇总.xlsx", roster="名单.xlsx")
    ledger = perfxl.open_ledger("汇总_报送台账.sqlite")
    ledger.indicators()                                  # a DataFrame with the rows of 指标明细

Every function raises `perfxl.PerfxlError` (with a Chinese message) for what a user can cause; a bad
workbook is never an exception, it is a report with problems.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas

    from .merging import MergeResult
    from .spec import Spec

__all__ = ["load_template", "generate", "validate", "merge", "open_ledger", "LedgerView"]


def load_template(name: str, year: int | None = None, region: str | None = None,
                  templates_dir: str | Path | None = None) -> Spec:
    """The frozen model of a template (fields, tables, rules, layout). `year` defaults to next year."""
    from .spec import load_spec

    return load_spec(name, year, region, templates_dir=Path(templates_dir) if templates_dir else None)


def generate(template: str, roster: str | Path, output: str | Path, *, year: int, region: str | None = None,
             projects: int | None = None, password: str | None = None, templates_dir: str | Path | None = None,
             ledger: str | Path | None = None, portal_url: str | None = None,
             deadline: str | None = None, history: list[str | Path] = (),
             library: str | Path | None = None) -> list[dict]:
    """The forms of the template's round into `output`, with manifest.json and 分发清单.xlsx; returns the
    manifest entries. A declaration round (申报) gets one blank form per roster unit; a follow-up round (监控,
    自评, for projects or 部门整体) one form per unit that declared, prefilled from `ledger`, the declaration
    round's ledger (the units that declared nothing are in manifest.json's without_declaration). Blank
    declaration forms take `history` (earlier years' ledgers: a 上年参考 sheet) and `library` (指标库.xlsx)."""
    from .handout import generate_round
    from .roster import read_roster
    from .spec import load_spec

    templates = Path(templates_dir) if templates_dir else None
    load_spec(template, year, region, templates_dir=templates)  # an unknown template: before any folder
    handout = generate_round(template, year, read_roster(Path(roster)), Path(output),
                             ledger=Path(ledger) if ledger is not None else None, region=region, projects=projects,
                             password=password, templates_dir=templates, avoid={Path(roster)},
                             portal_url=portal_url, deadline=deadline,
                             history=[Path(p) for p in ([history] if isinstance(history, str | Path) else history)],
                             library=Path(library) if library is not None else None)
    return handout.forms


def validate(path: str | Path, lang: str = "zh", *, template: str | None = None, year: int | None = None,
             roster: str | Path | None = None, templates_dir: str | Path | None = None) -> dict:
    """Read and check one workbook; the report as data, the same as its entry in `perfxl validate --json`:
    path, template, version, year, unit, status, projects and problems (messages in `lang`)."""
    from .pipeline import CheckOptions, check_file
    from .report import checked_report
    from .roster import read_roster

    units = {u.code: u for u in read_roster(Path(roster))} if roster else None
    options = CheckOptions(template=template, year=year, templates_dir=str(templates_dir) if templates_dir else None)
    return checked_report(check_file(Path(path), options, units), "en" if lang == "en" else "zh")


def merge(inputs: list[str | Path] | str | Path, output: str | Path | None = None, **options: Any) -> MergeResult:
    """Merge every workbook under `inputs` (files or folders) into the summary `output` (.xlsx; None for
    none). Options as the CLI's: roster, template, year, db, csv_dir, parquet_dir, jobs, lang, returns_dir,
    return_by, templates_dir, issued, history (earlier years' ledgers), library (指标库.xlsx). The result
    holds `counts`, `accounting`, `files` (each with its outcome) and every sheet's rows (`table(name)`)."""
    from .merging import MergeOptions, run_merge

    if isinstance(inputs, str | Path):
        inputs = [inputs]
    for key in ("roster", "db", "csv_dir", "parquet_dir", "returns_dir", "templates_dir", "library"):
        if options.get(key) is not None:
            options[key] = Path(options[key])
    for key in ("issued", "history"):
        if options.get(key):
            options[key] = tuple(Path(p) for p in ([options[key]] if isinstance(options[key], str | Path)
                                                   else options[key]))
    return run_merge([Path(p) for p in inputs], Path(output) if output else None, MergeOptions(**options),
                     materialize=True)


def open_ledger(path: str | Path) -> LedgerView:
    """A merge's ledger (the .sqlite beside the summary), read back as pandas DataFrames."""
    return LedgerView(Path(path))


class LedgerView:
    """The ledger of a merge, as DataFrames. Tables are rebuilt from what the last run decided and the
    form data the ledger keeps, through the same sheet builders as the summary workbook, so
    `indicators()` has the rows of 指标明细 and `projects()` those of 项目清单 (without the totals row)."""

    def __init__(self, path: Path):
        from .errors import OutputError
        from .ledger import Ledger, check_ledger_file

        if not Path(path).is_file():
            raise OutputError(f"找不到报送台账 (no such ledger): {path}")
        check_ledger_file(Path(path))
        self.path = Path(path)
        self._ledger = Ledger(self.path, readonly=True)
        self.run = self._ledger.last_run()
        self._tables: dict[str, Any] | None = None
        self._files: list = []  # the last run's files (records.Seen) and its summary's context, once built
        self._context: Any = None

    def close(self) -> None:
        self._ledger.close()

    def __enter__(self) -> LedgerView:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def submissions(self) -> pandas.DataFrame:
        """Every file the last merge saw, in the words of 说明 and 报送情况: 文件, 处理 (已汇总, 无法读取, …),
        原因 (why it was not merged, in words) and its 代码, 对应文件 (the file it duplicates or that
        superseded it), 单位编码, 单位名称, 模板, 年度, 校验状态, 错误数, 提醒数, 文件大小 (bytes), 修改时间
        and sha256. Years and counts are integers; what is not known is missing."""
        from .summary.about import reason
        from .summary.base import OUTCOME_ZH, STATUS_ZH

        columns = [("文件", "text"), ("处理", "text"), ("原因", "text"), ("代码", "text"), ("对应文件", "text"),
                   ("单位编码", "text"), ("单位名称", "text"), ("模板", "text"), ("年度", "int"), ("校验状态", "text"),
                   ("错误数", "count"), ("提醒数", "count"), ("文件大小", "count"), ("修改时间", "time"),
                   ("sha256", "text")]
        self._build()
        files = self._files
        by_path = {s.path: s for s in files}
        rows = [[s.path, OUTCOME_ZH.get(s.outcome, s.outcome), reason(self._context, s, by_path), s.reason,
                 s.duplicate_of, s.unit_code, s.unit_name, s.template, s.year, STATUS_ZH.get(s.status, s.status),
                 s.errors, s.warnings, s.size, s.mtime_ns, s.sha] for s in files]
        return _typed_frame(rows, columns)

    def versions(self) -> pandas.DataFrame:
        """Every decided adjustment of a project's targets (perfxl.versions), oldest first: 版本, 单位编码,
        项目名称, 决定 (已批准 / 已退回), 调整类型, 批次, 决定时间, 决定人, 意见, 来源, 调整前预算数, 调整后预算数,
        调整的指标数, 调整后指标 (how many targets the version has)."""
        import pandas

        from .versions import all_versions, as_rows

        rows = as_rows(all_versions(self._ledger.db))
        return pandas.DataFrame(rows, columns=["版本", "单位编码", "项目名称", "决定", "调整类型", "批次", "决定时间",
                                               "决定人", "意见", "来源", "调整前预算数", "调整后预算数", "调整的指标数",
                                               "调整后指标"])

    def projects(self) -> pandas.DataFrame:
        return self._frame("项目清单")

    def indicators(self) -> pandas.DataFrame:
        return self._frame("指标明细")

    def problems(self) -> pandas.DataFrame:
        return self._frame("校验问题")

    def tables(self) -> dict[str, pandas.DataFrame]:
        """Every summary sheet as a DataFrame (汇总 as its table per 主管部门)."""
        return {name: self._frame(name) for name in self._build()}

    def _frame(self, name: str) -> pandas.DataFrame:
        import pandas as pd

        table = self._build().get(name)
        if table is None:
            return pd.DataFrame()
        rows = list(table.iter_rows())
        if table.totals and rows:
            rows = rows[:-1] if rows[-1][0] == "合计" else rows
        return _typed_frame(rows, table.columns)

    def _build(self) -> dict[str, Any]:
        if self._tables is None:
            from .records import Seen
            from .roster import read_roster
            from .summary import Context
            from .summary import build as build_summary

            self._tables = {}
            if self.run is None:
                return self._tables
            seen, settings = self._ledger.run_outcomes(self.run)
            files = self._files = [Seen(**{**s, "project_names": tuple(s["project_names"])}) for s in seen]
            roster = Path(settings["roster"]) if settings.get("roster") else None
            units = _units_of(self._ledger.kept_roster(settings.get("roster_digest")))  # as that merge read it
            if units is None and roster is not None:  # a ledger of perfxl before it kept the roster
                units = read_roster(roster) if roster.is_file() else None
            templates_dir = Path(settings["templates_dir"]) if settings.get("templates_dir") else None
            # By content and name (what the reader says of a name's extension is that name's), and whether the
            # run rejected the file: its content may hold form data read under other settings, not shown for it.
            load = lru_cache(maxsize=None)(lambda sha, path, rejected: self._checked(
                sha, path, rejected, settings, units, templates_dir))
            ctx = self._context = Context(files=files, load=lambda s: load(s.sha, s.path, bool(s.read_error)),
                                          units=units,
                                          template=settings.get("template"), year=settings.get("year"),
                                          roster=roster, lang=settings.get("lang") or "zh",
                                          templates_dir=templates_dir)
            tables, _, _ = build_summary(ctx)
            self._tables = {t.name: t for t in tables}
        return self._tables

    def _checked(self, sha: str, path: str, rejected: bool, settings: dict, units, templates_dir):
        from .pipeline import CheckOptions, check_stored
        from .problems import Problem
        from .read import rejection_at
        from .records import rejected_by

        stored = self._ledger.stored_form(sha) if sha and not rejected else None
        if stored is None:
            problems = [Problem.from_dict(p) for p in self._ledger.stored_problems(sha)] if sha else []
            return rejected_by("", rejection_at(problems[0], path) if problems else Problem(
                "error", "file-unreadable", params={"detail": "not in the ledger"}))
        options = CheckOptions(template=settings.get("template"), year=settings.get("year"),
                               templates_dir=str(templates_dir) if templates_dir else None,
                               issued=tuple(settings.get("issued") or ()))
        return check_stored(stored, options, {u.code: u for u in units} if units else None, path=path)


_FLOAT_KINDS = {"money", "number", "score", "percent"}  # the Parquet output's float64 columns (report.py)
_INT_KINDS = {"count", "int"}  # and its int64 ones


def _typed_frame(rows: list[list], columns: list[tuple[str, str]]) -> pandas.DataFrame:
    """Rows as a DataFrame typed as the Parquet output types them, an empty cell missing as it is in the
    workbook and the Parquet file: None in a text column, NaN in a number column, <NA> in an integer one
    (pandas' nullable Int64, so that a year stays 2021 where another row has none). A "time" column holds
    nanoseconds since the epoch and becomes local time, as 报送情况's 收到时间 shows it."""
    from datetime import datetime

    import pandas as pd

    data = {}
    for c, (_, kind) in enumerate(columns):
        values = [row[c] if c < len(row) else None for row in rows]
        if kind in _FLOAT_KINDS:
            series = pd.Series([v if type(v) in (int, float) else None for v in values], dtype="float64")
        elif kind in _INT_KINDS:
            series = pd.Series([int(v) if type(v) in (int, float) else None for v in values], dtype="Int64")
        elif kind == "time":
            series = pd.Series([datetime.fromtimestamp(v / 1e9) if v else None for v in values],
                               dtype="datetime64[ns]")
        else:
            series = pd.Series([None if v is None or v == "" else v for v in values], dtype=object)
        data[c] = series
    frame = pd.DataFrame(data, index=range(len(rows)))
    frame.columns = [title for title, _ in columns]
    return frame


def _units_of(data) -> list | None:
    """The roster a merge kept in its settings, or None if it kept none (or not in the shape perfxl writes)."""
    from .roster import Unit

    if not isinstance(data, list):
        return None
    try:
        return [Unit(**u) for u in data]
    except TypeError:
        return None

"""Summary stage: the merge's outcomes → the summary sheets, one module per sheet.

Each sheet module declares its columns once (`Column`: title, kind, how the value is obtained) and builds
its rows from named records. The merged forms pass once through the collectors that need them; the big
指标明细 sheet is produced lazily from the spool. Merge decides outcomes, this package builds sheets, report
writes files. To add a sheet: a module here with NAME, FIRST_TITLE and a builder, and a line in `build`
and SHEETS.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from sys import intern

from perfxl import datajson
from perfxl.cachekeys import PART_VERSION
from perfxl.rounds import DEPARTMENT, PROJECT

from . import (
    about,
    adjust,
    budgets,
    changes,
    comparison,
    cover,
    history,
    indicators,
    monitor,
    problems,
    projects,
    review,
    selfeval,
    status,
)
from .base import Context, Table, Who

__all__ = ["SHEETS", "CSV_FIRST_TITLES", "Context", "Table", "build"]

# In workbook order; also the names of the CSV files.
SHEETS = (cover, projects, indicators, budgets, adjust, selfeval, monitor, status, review, comparison, problems, changes,
          history, about)
# Every table written as a file of its own (CSV, Parquet): the sheets, and the cover's 分级合计.
SHEET_NAMES = tuple(m.NAME for m in SHEETS) + (selfeval.DEPARTMENTS, selfeval.INDICATORS, cover.LEVELS,
                                               comparison.MATCHES)
CSV_FIRST_TITLES = {m.NAME: m.FIRST_TITLE for m in SHEETS} | {selfeval.INDICATORS: "单位编码",  # a CSV perfxl wrote
                                                               selfeval.DEPARTMENTS: "地区", cover.LEVELS: "层级",
                                                               comparison.MATCHES: comparison.MATCHES_FIRST_TITLE}


# The sheets a merged form adds lines to, in the order of a kept part's states.
COLLECTORS = (projects.Projects, review.Review, budgets.Budgets, problems.Problems, selfeval.SelfEvaluation,
              monitor.Monitoring, adjust.Adjustments, comparison.Comparison)


def form_part(ctx: Context, s) -> tuple[int, list[dict], Who]:
    """What one merged form adds: its indicator rows, each collector's state after that form alone, and
    who sent it.
    Kept in `ctx.cache` under the form's key (as JSON, see `_part_from_kept`), so an unchanged form is not
    loaded by the next merge."""
    key = ctx.form_key(s)
    if key is not None:
        kept = ctx.cache.get("part|" + key)
        if kept is not None:
            part = _part_from_kept(kept)
            if part is not None:
                return part
    checked = ctx.load(s)
    sp, who = ctx.spec_of(s), ctx.who(s, checked)
    collectors = []
    for kind in COLLECTORS:
        collector = kind(ctx)
        collector.add(s, checked, sp, who)
        collectors.append(collector)
    rows = sum(len(p.indicators) for p in checked.projects)
    if key is not None:
        ctx.cache.put("part|" + key, datajson.dumps(
            [PART_VERSION, rows, [c.state_data() for c in collectors], list(dataclasses.astuple(who))]))
    return rows, [c.state() for c in collectors], who



def _part_from_kept(blob: bytes) -> tuple[int, list[dict], Who] | None:
    """A kept part back as data; None when it is of another shape (an older perfxl's, or a ledger that is
    not what it claims): the form is then loaded and its part made again. Never code, whatever it holds."""
    try:
        version, rows, states, who = datajson.loads(blob)
        if version != PART_VERSION or type(rows) is not int or len(states) != len(COLLECTORS):
            return None
        if not all(type(v) is str for v in who):
            return None
        return rows, [kind.state_from_data(state) for kind, state in zip(COLLECTORS, states)], Who(*map(intern, who))
    except (ValueError, TypeError, RecursionError):
        return None


def per_form_tables(ctx: Context) -> list[Table]:
    """The big sheets made form by form (their rows can be rendered ahead, in any order, per form)."""
    return [indicators.build(ctx), selfeval.indicator_table(ctx)]


def build(ctx: Context) -> tuple[list[Table], dict, list]:
    """The sheets, the counts (the accounting) and the roster units that sent nothing."""
    collectors = [kind(ctx) for kind in COLLECTORS]
    (project_sheet, review_sheet, budget_sheet, problem_sheet, selfeval_sheets, monitor_sheet, adjust_sheet,
     comparison_sheet) = collectors
    indicator_count = 0
    for start in range(0, len(ctx.merged), 500):  # one pass for everything but the per-form big sheets
        batch = ctx.merged[start:start + 500]
        if ctx.cache is not None:
            ctx.cache.prefetch([f"part|{ctx.form_key(s)}" for s in batch])
        for s in batch:
            rows, states, ctx.senders[s.path] = form_part(ctx, s)
            indicator_count += rows
            for collector, state in zip(collectors, states):
                collector.absorb(state)
    problem_sheet.add_set_aside()
    # Against history, peers and the library: found only now that every form was seen (perfxl.comparison)
    compared = comparison_sheet.compare()
    if compared.codes:
        review_sheet.add_findings(compared.codes)
    status_sheet = status.Status(ctx)
    status_table = status_sheet.build()

    per_group = status_sheet.per_group
    for collector in (project_sheet, selfeval_sheets, monitor_sheet, adjust_sheet):
        for group, money in collector.per_group.items():
            per_group[group].update(money)
    projects = sum(1 for p in selfeval_sheets.projects if p.get("subject", PROJECT) == PROJECT)
    counts = accounting(ctx, len(project_sheet.lines) + projects + monitor_sheet.projects + adjust_sheet.projects,
                        indicator_count + selfeval_sheets.indicator_count + len(monitor_sheet.lines)
                        + adjust_sheet.indicator_count,
                        len(status_sheet.missing))
    if ctx.compares:
        counts["compared"] = compared.count  # 历史对比's findings: the review's, not a file's own problems

    # A merge of follow-up forms only (自评表, 监控表) leaves out the declaration sheets, which would be empty.
    declarations = not ctx.specs or any(sp.round.declaration for sp in ctx.specs.values())
    tally = cover.grade_tally(review_sheet.grades(), "目标审核")
    if not declarations and selfeval_sheets.projects:
        tally = cover.grade_tally(Counter(p["grade"] for p in selfeval_sheets.projects), "绩效自评",
                                  selfeval_sheets.figures(ctx.money_suffix))
    elif not declarations and adjust_sheet.lines:
        tally = adjust_sheet.tally()
    elif not declarations and monitor_sheet.lines:
        tally = monitor_sheet.tally()
    tables = [cover.build(ctx, counts, per_group, project_sheet.funding_labels, tally)]
    if declarations:
        tables += [project_sheet.table(), indicators.build(ctx)]
    budget_table = budget_sheet.table()
    if budget_table is not None:
        tables.append(budget_table)
    tables += selfeval_sheets.tables()
    tables += monitor_sheet.tables()
    adjust_table = adjust_sheet.table()
    if adjust_table is not None:
        tables.append(adjust_table)
    tables += [status_table] + ([review_sheet.table()] if declarations else []) + [
        *comparison.tables(ctx, compared), problem_sheet.table(), changes.build(ctx)] + [t for t in [history.build(ctx)] if t is not None] + [
        about.build(ctx, counts)]
    return tables, counts, status_sheet.missing


def accounting(ctx: Context, projects_count: int, indicator_count: int, missing: int) -> dict:
    """Every count the CLI, 说明 and the cover state. files in = merged + rejected + duplicate +
    superseded + excluded; indicator rows read = merged + set aside."""
    outcomes = Counter(s.outcome for s in ctx.files)
    rows_in = sum(s.indicator_rows for s in ctx.files)
    rows_merged = sum(s.indicator_rows for s in ctx.merged)
    counted = {"merged", "rejected", "excluded"}
    return {
        "files_in": len(ctx.files), "merged": outcomes["merged"], "rejected": outcomes["rejected"],
        "excluded": outcomes["excluded"], "duplicate": outcomes["duplicate"], "superseded": outcomes["superseded"],
        "read": sum(1 for s in ctx.files if s.source == "read"),
        "from_ledger": sum(1 for s in ctx.files if s.source == "ledger"),
        "projects": projects_count, "units": len({(s.unit_code or s.unit_name) for s in ctx.merged}),
        # whole departments (部门整体) merged: one each, not projects
        "departments": sum(max(1, len(s.project_names)) for s in ctx.merged
                           if ctx.spec_of(s).round.subject == DEPARTMENT),
        "errors": sum(s.errors for s in ctx.files if s.outcome in counted),
        "warnings": sum(s.warnings for s in ctx.files if s.outcome in counted),
        "missing": missing, "rows_in": rows_in, "rows_merged": rows_merged, "rows_set_aside": rows_in - rows_merged,
        "indicators": indicator_count,
    }

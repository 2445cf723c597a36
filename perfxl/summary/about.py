"""说明: how the summary was made — when, by which version, on what conditions, and every input's fate."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from operator import itemgetter

from perfxl import __version__
from perfxl.domain import ABOUT_SHEET
from perfxl.inbox import SKIP_REASONS
from perfxl.problems import Problem
from perfxl.records import Seen

from .base import OUTCOME_ZH, Column, Context, Table, file_name, table

NAME = ABOUT_SHEET
FIRST_TITLE = "项目"
# The reason in words; its code last, for a machine (a filter, a script reading 说明.csv).
TITLES = ("项目", "内容", "原因", "sha256", "代码")
COLUMNS = [Column(title, "text", itemgetter(i)) for i, title in enumerate(TITLES)]
ROLLUP_REASONS = ("rollup-conflict", "rollup-unit-conflict", "rollup-other-region")


def accounting_line(counts: dict) -> str:
    """files in = merged + rejected + duplicate + superseded + excluded, in the words of 说明 and the CLI."""
    return (f"收到 {counts['files_in']} = 已汇总 {counts['merged']} + 无法读取 {counts['rejected']} + "
            f"重复 {counts['duplicate']} + 被取代 {counts['superseded']} + 不符合条件 {counts['excluded']}")


def build(ctx: Context, counts: dict) -> Table:
    rows = [
        ["生成时间", datetime.now().strftime("%Y-%m-%d %H:%M:%S")],
        ["perfxl 版本", __version__],
        ["金额单位", ctx.money_unit],
        ["汇总条件", f"模板={ctx.template or '全部'}；年度={ctx.year or '全部'}"],
        ["单位名单", str(ctx.roster or "（未提供）")],
        ["模板版本", "；".join(f"{sp.template} v{sp.version} ({sp.fingerprint})"
                           for sp in sorted(ctx.specs.values(), key=lambda x: x.template))],
        ["文件核对", accounting_line(counts)],
        ["指标行核对", f"读到 {counts['rows_in']} = 已汇总 {counts['rows_merged']} + 未汇总 {counts['rows_set_aside']}"],
        ["读取", f"本次读取 {counts['read']} 个文件，{counts['from_ledger']} 个未变化的文件取自台账"],
        ["跳过（不计入收到）", "；".join(f"{SKIP_REASONS[k][0]} {n} 个" for k, n in
                                     sorted(Counter(r for _, r in ctx.skipped).items())) or "无"],
    ]
    if ctx.history is not None:
        rows.append(["历史台账（--history）", "；".join(ctx.history.sources)])
        rows += [["历史台账注意", note] for note in ctx.history.notes]
    if "compared" in counts:
        rows.append(["历史对比", f"{counts['compared']} 条发现（提醒，计入目标审核，不计入各文件的提醒数）"])
    if ctx.library:
        rows.append(["指标库固化指标（--library）", "；".join(f"{family}：{len(rows_)} 个" for family, rows_ in ctx.library.items())])
    if ctx.unsettled:
        rows.append(["注意", f"{len(ctx.unsettled)} 个文件在汇总期间一直在变化，按最后一次读到的内容汇总："
                     + "、".join(ctx.unsettled[:20])])
    rows += [[], list(("输入文件", "处理", "原因", "sha256", "代码"))]
    by_path = {s.path: s for s in ctx.files}
    for s in ctx.files:
        rows.append([s.path, OUTCOME_ZH[s.outcome], reason(ctx, s, by_path), s.claimed or s.sha, s.reason])
    for path, skipped in ctx.skipped:
        rows.append([path, "已跳过", SKIP_REASONS[skipped][0], "", skipped])
    return table(NAME, COLUMNS, [row + [""] * (len(TITLES) - len(row)) for row in rows])


def reason(ctx: Context, s: Seen, by_path: dict[str, Seen]) -> str:
    """Why a file was not merged, in words: the file it duplicates or that superseded it (named as the sheets
    name files, a roll-up's with the export it came from), or the problem that kept it out as the catalogue
    words it, with its detail."""
    other = by_path.get(s.duplicate_of)
    other_name = file_name(other) if other is not None else s.duplicate_of
    if s.reason == "same-content":
        return f"与 {other_name} 内容完全相同，只计一次"
    if s.reason == "newer-version":
        return f"已被同一单位较新的版本 {other_name} 取代"
    if s.reason in ("other-year", "other-template"):
        expected = ctx.year if s.reason == "other-year" else ctx.template
        return Problem("error", s.reason, params={"expected": expected, "found": s.year,
                                                  "template": s.template}).text(ctx.lang)
    if s.reason in ROLLUP_REASONS:
        return Problem("error", s.reason, params={"other": other_name, "claimed": s.claimed}).text(ctx.lang)
    if s.outcome == "rejected":  # could not be read: the problem says why, with its detail
        problems = ctx.load(s).problems
        said = next((q for q in problems if q.code == s.reason), None) or next(
            (q for q in problems if q.severity == "error"), None)
        return said.text(ctx.lang) if said is not None else "无法读取"
    return ""

"""说明: how the summary was made — when, by which version, on what conditions, and every input's fate."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from operator import itemgetter
from pathlib import Path

from perfxl import __version__
from perfxl.domain import ABOUT_SHEET
from perfxl.inbox import SKIP_REASONS

from .base import OUTCOME_ZH, Column, Context, Table, table

NAME = ABOUT_SHEET
FIRST_TITLE = "项目"
COLUMNS = [Column(title, "text", itemgetter(i)) for i, title in enumerate(("项目", "内容", "原因", "sha256"))]


def accounting_line(counts: dict) -> str:
    """files in = merged + rejected + duplicate + superseded + excluded, in the words of 说明 and the CLI."""
    return (f"收到 {counts['files_in']} = 已汇总 {counts['merged']} + 无法读取 {counts['rejected']} + "
            f"重复 {counts['duplicate']} + 被取代 {counts['superseded']} + 不符合条件 {counts['excluded']}")


def build(ctx: Context, counts: dict) -> Table:
    rows = [
        ["生成时间", datetime.now().strftime("%Y-%m-%d %H:%M:%S"), "", ""],
        ["perfxl 版本", __version__, "", ""],
        ["金额单位", ctx.money_unit, "", ""],
        ["汇总条件", f"模板={ctx.template or '全部'}；年度={ctx.year or '全部'}", "", ""],
        ["单位名单", str(ctx.roster or "（未提供）"), "", ""],
        ["模板版本", "；".join(f"{sp.template} v{sp.version} ({sp.fingerprint})"
                           for sp in sorted(ctx.specs.values(), key=lambda x: x.template)), "", ""],
        ["文件核对", accounting_line(counts), "", ""],
        ["指标行核对", f"读到 {counts['rows_in']} = 已汇总 {counts['rows_merged']} + 未汇总 {counts['rows_set_aside']}", "", ""],
        ["读取", f"本次读取 {counts['read']} 个文件，{counts['from_ledger']} 个未变化的文件取自台账", "", ""],
        ["跳过（不计入收到）", "；".join(f"{SKIP_REASONS[k][0]} {n} 个" for k, n in
                                     sorted(Counter(r for _, r in ctx.skipped).items())) or "无", "", ""],
    ]
    if ctx.unsettled:
        rows.append(["注意", f"{len(ctx.unsettled)} 个文件在汇总期间一直在变化，按最后一次读到的内容汇总："
                     + "、".join(ctx.unsettled[:20]), "", ""])
    rows += [["", "", "", ""], ["输入文件", "处理", "原因", "sha256"]]
    for s in ctx.files:
        rows.append([s.path, OUTCOME_ZH[s.outcome],
                     s.reason + (f" → {Path(s.duplicate_of).name}" if s.duplicate_of else ""), s.claimed or s.sha])
    for path, reason in ctx.skipped:
        rows.append([path, "已跳过", SKIP_REASONS[reason][0], ""])
    return table(NAME, COLUMNS, rows)

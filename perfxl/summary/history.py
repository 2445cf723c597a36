"""调整情况: every decision the bureau took on an adjustment of targets kept in this merge's ledger (perfxl.versions,
`perfxl approve` or the portal's board): approved and rejected, oldest first, with its batch, kind, who decided,
the comment and how many targets it changed. Present when the ledger holds any (a declaration's ledger after
its adjustment round): the history a target was scored against."""

from __future__ import annotations

from .base import Column, Context, Table, table

NAME = "调整情况"
FIRST_TITLE = "版本"
COLUMNS = [Column(title, kind, title) for title, kind in (
    ("版本", "int"), ("单位编码", "text"), ("项目名称", "text"), ("决定", "text"), ("调整类型", "text"), ("批次", "text"),
    ("决定时间", "text"), ("决定人", "text"), ("意见", "text"), ("调整前预算数", "money"), ("调整后预算数", "money"),
    ("调整的指标数", "count"), ("来源", "text"))]


def build(ctx: Context) -> Table | None:
    if not ctx.versions:
        return None
    return table(NAME, COLUMNS, ctx.versions, note="每次批准或退回都保留；批准后的版本是之后监控表、自评表预填和计分所用的指标（金额单位：万元）。")

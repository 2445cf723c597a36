"""调整审核: the adjustment round reviewed — every indicator a unit asks to change, add or remove, 调整前 and
调整后 side by side with the reason and the project's budget before and after, the rows the reviewer must
read first (a target lowered while the budget is not cut) at the top.

Present when the merge holds adjustment forms. What the bureau approves becomes a version of the project's
targets in the declaration's ledger (perfxl.versions, `perfxl approve`)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from perfxl.rounds import ADJUST

from .base import Collector, Column, Context, Table, Tally, money, table

NAME = "调整审核"
FIRST_TITLE = "地区"


@dataclass
class Adjustments(Collector):
    ctx: Context
    lines: list[dict] = field(default_factory=list)
    projects: int = 0
    indicator_count: int = 0  # every indicator row of the forms, changed or not (the cover's 指标数)
    per_group: dict[tuple, Counter] = field(default_factory=lambda: defaultdict(Counter))  # for the cover

    def add(self, s, checked, sp, who) -> None:
        if sp.round.stage != ADJUST:
            return
        factor = self.ctx.factor(sp)
        for p in checked.projects:
            scores = p.scores or {}
            self.projects += 1
            self.indicator_count += len(scores.get("indicators") or [])
            group = self.per_group[(who.region, who.department)]
            group["projects"] += 1
            group["budget"] += money(scores.get("budget_before"), factor) or 0.0
            flagged = {q.cell for q in checked.problems if q.sheet == p.sheet and q.code == "adjust-target-lowered"}
            for line in scores.get("indicators") or []:
                if not line["change"]:
                    continue
                self.lines.append({
                    "region": who.region, "department": who.department, "unit_code": who.unit_code,
                    "unit_name": who.unit_name, "project": p.name, "kind": scores.get("kind") or "",
                    "budget_before": money(scores.get("budget_before"), factor),
                    "budget_after": money(scores.get("budget_after"), factor),
                    "level1": line["level1"], "level2": line["level2"], "level3": line["level3"],
                    "before": line["before"], "after": line["after"], "change": line["change"],
                    "reason": line["reason"] or "（未填写）",
                    "attention": "调低指标而预算未调减" if line["cell"] in flagged else (
                        "" if line["reason"] else "缺少调整原因"),
                    "where": f"{p.sheet}!{line['cell']}"})

    def tally(self) -> Tally:
        """The cover's count of the indicators asked to change, by how; and the projects whose budget moves."""
        changes = Counter(line["change"] for line in self.lines)
        projects = {(line["unit_code"], line["project"]): line for line in self.lines}
        moved = [line for line in projects.values() if line["budget_after"] is not None]
        return Tally(NAME, "调整方式", "指标数", tuple((c, changes.get(c, 0)) for c in ("修改", "新增", "删除")),
                     (("申请调整的项目", len(projects), "count"), ("调整预算的项目", len(moved), "count"),
                      ("待关注", sum(1 for line in self.lines if line["attention"]), "count")))

    def table(self) -> Table | None:
        if not self.lines:
            return None
        m = self.ctx.money_suffix
        first = {"调低指标而预算未调减": 0, "缺少调整原因": 1, "": 2}
        self.lines.sort(key=lambda r: (first[r["attention"]], str(r["department"]), str(r["unit_code"]),
                                       str(r["project"])))
        return table(NAME, [
            Column("地区", "text", "region"), Column("主管部门", "text", "department"),
            Column("单位编码", "text", "unit_code"), Column("单位名称", "text", "unit_name"),
            Column("项目名称", "text", "project"), Column("调整类型", "text", "kind"),
            Column("调整前预算数" + m, "money", "budget_before"), Column("调整后预算数" + m, "money", "budget_after"),
            Column("一级指标", "text", "level1"), Column("二级指标", "text", "level2"), Column("三级指标", "text", "level3"),
            Column("调整前指标值", "text", "before"), Column("调整后指标值", "text", "after"),
            Column("调整方式", "text", "change"), Column("调整原因", "text", "reason"),
            Column("审核关注", "text", "attention"), Column("位置", "text", "where")],
            self.lines, note="调整后为空的不调整；批准后的调整成为该项目指标的新版本（perfxl approve），之后生成的监控表、自评表按它预填和计分。",
            paper="A3")

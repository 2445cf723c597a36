"""部门预算: the budget grids of department forms (收入/支出 by period), in the summary's money unit."""

from __future__ import annotations

from dataclasses import dataclass, field

from perfxl.rounds import DEPARTMENT

from .base import Collector, Column, Context, Table, money, table

NAME = "部门预算"
FIRST_TITLE = "地区"


@dataclass
class Budgets(Collector):
    ctx: Context
    lines: list[dict] = field(default_factory=list)

    def add(self, s, checked, sp, who) -> None:
        if not (sp.round.declaration and sp.round.subject == DEPARTMENT):  # the department declaration's 收支 grids; not a project's or self-evaluation's
            return
        factor = self.ctx.factor(sp)
        for p in checked.projects:
            for grid in sp.grids.values():
                for rid, _, label in grid.rows:
                    amounts = [money(p.values.get(f"{grid.id}_{rid}_{cid}"), factor) for cid in grid.columns[:3]]
                    self.lines.append({"region": who.region, "department": who.department, "unit_code": who.unit_code,
                                       "unit_name": who.unit_name, "side": grid.header[0] if grid.header else grid.id,
                                       "item": label, "periods": amounts + [None] * (3 - len(amounts))})

    def table(self) -> Table | None:
        if not self.lines:
            return None
        m = self.ctx.money_suffix
        columns = [Column("地区", "text", "region"), Column("主管部门", "text", "department"),
                   Column("单位编码", "text", "unit_code"), Column("单位名称", "text", "unit_name"),
                   Column("收支", "text", "side"), Column("项目", "text", "item")] + [
            Column(title + m, "money", _period(i)) for i, title in enumerate(("全年数", "上半年数", "前三季度数"))]
        return table(NAME, columns, self.lines)


def _period(i):
    return lambda r: r["periods"][i]

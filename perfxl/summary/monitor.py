"""监控预警: the mid-year monitoring merged — every indicator with its light (红 / 黄 / 蓝), reddest first,
beside its project's spending (执行率 = 1—7月执行数 ÷ 全年预算数)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from perfxl.rounds import DEPARTMENT, MONITOR, PROJECT

from .base import Collector, Column, Context, Table, Tally, money, table

NAME = "监控预警"
FIRST_TITLE = "地区"
ORDER = {"红": 0, "黄": 1, "蓝": 2, "": 3}
LIGHT_COLOURS = {"红": "#C00000", "黄": "#FFD966", "蓝": "#2F5597"}  # the lights as the online systems show them


@dataclass
class Monitoring(Collector):
    ctx: Context
    lines: list[dict] = field(default_factory=list)
    projects: int = 0
    per_group: dict[tuple, Counter] = field(default_factory=lambda: defaultdict(Counter))  # for the cover

    def add(self, s, checked, sp, who) -> None:
        if sp.round.stage != MONITOR:
            return
        factor = self.ctx.factor(sp)
        for p in checked.projects:
            scores = p.scores or {}
            self.projects += sp.round.subject == PROJECT  # a whole department is counted as one (accounting)
            group = self.per_group[(who.region, who.department)]
            group["projects"] += 1
            group["budget"] += money(scores.get("budget"), factor) or 0.0
            for line in scores.get("indicators") or []:
                self.lines.append({"region": who.region, "department": who.department, "unit_code": who.unit_code,
                                   "unit_name": who.unit_name, "project": p.name, "subject": sp.round.subject,
                                   "budget": money(scores.get("budget"), factor),
                                   "spent": money(scores.get("spent"), factor), "rate": scores.get("rate"),
                                   **line, "where": f"{p.sheet}!{line['cell']}"})

    def tally(self) -> Tally:
        """The cover's count of indicators by light, reddest first; 无预警 for those on course."""
        lights = Counter(line["light"] for line in self.lines)
        forms = {(line["unit_code"], line["project"], line["where"].split("!")[0]): line for line in self.lines}
        budget = sum(line["budget"] or 0.0 for line in forms.values())
        spent = sum(line["spent"] or 0.0 for line in forms.values())
        return Tally(NAME, "预警", "指标数", tuple((f"{light}灯" if light else "无预警", lights.get(light, 0))
                                              for light in ORDER),
                     (("1—7月执行数合计" + self.ctx.money_suffix, spent, "money"),
                      ("执行率", spent / budget if budget else None, "percent"),
                      ("红灯指标", lights.get("红", 0), "count")))

    def tables(self) -> list[Table]:
        """监控预警 for projects; 部门整体监控预警 for whole departments, named by 部门名称."""
        self.lines.sort(key=lambda r: (ORDER[r["light"]], str(r["department"]), str(r["unit_name"]), r["row"]))
        out = []
        for subject, prefix, name_title in ((PROJECT, "", "项目名称"), (DEPARTMENT, "部门整体", "部门名称")):
            mine = [line for line in self.lines if line.get("subject", PROJECT) == subject]
            if mine:
                out.append(self._table(prefix + NAME, name_title, mine))
        return out

    def _table(self, name: str, name_title: str, lines: list[dict]) -> Table:
        m = self.ctx.money_suffix
        columns = [
            Column("地区", "text", "region"), Column("主管部门", "text", "department"),
            Column("单位编码", "text", "unit_code"), Column("单位名称", "text", "unit_name"),
            Column(name_title, "text", "project"), Column("全年预算数" + m, "money", "budget"),
            Column("1—7月执行数" + m, "money", "spent"), Column("执行率", "percent", "rate"),
            Column("一级指标", "text", "level1"), Column("二级指标", "text", "level2"), Column("三级指标", "text", "level3"),
            Column("年度指标值", "text", "target"), Column("1—7月完成值", "text", "current"),
            Column("全年预计完成值", "text", "expected"), Column("预计完成比例", "percent", "share"),
            Column("预警", "text", "light"), Column("完成目标可能性", "text", "likelihood"),
            Column("偏差原因", "text", "cause"), Column("偏差原因说明", "text", "note"),
            Column("整改措施", "text", "measures"), Column("位置", "text", "where")]
        light = next(i for i, c in enumerate(columns) if c.value == "light")
        return table(name, columns, lines, note="红灯：预计完不成或完全不可能；黄灯：有风险；蓝灯：略有偏差。按预警从重到轻排列。",
                     paper="A3", colours={light: LIGHT_COLOURS})

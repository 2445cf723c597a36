"""自评得分 and 指标得分: the year-end self-evaluation scored — one row per project, one row per indicator.

Present when the merge holds self-evaluation forms. Scores come from the project records the `selfeval`
rule kind filled (perfxl/rules/selfeval.py); money is in the summary's unit. Whole departments (the
部门整体 self-evaluation) get sheets of their own, 部门整体自评得分 and 部门整体指标得分, named by 部门名称 and
with their own scoring groups (templates/hierarchies/department-selfeval-groups.yaml).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import partial

from perfxl.rounds import DEPARTMENT, PROJECT, SELFEVAL

from .base import Collector, Column, Context, Table, file_name, money, per_form_table, table

SCORES = "自评得分"
INDICATORS = "指标得分"
DEPARTMENTS = "自评部门汇总"
NAME = SCORES
FIRST_TITLE = "地区"
# The scoring groups in the order their columns are shown: the project form's, then the 部门整体 form's; a group
# a bureau names itself comes after them.
GROUPS = ("产出", "效益", "满意度", "过程", "部门投入", "过程管理", "部门产出", "履职效果")
SHEET_PREFIX = {PROJECT: "", DEPARTMENT: "部门整体"}


def _groups_of(projects: list[dict]) -> list[str]:
    found = {g for p in projects for g in p.get("groups") or ()}
    return [g for g in GROUPS if g in found] + sorted(found - set(GROUPS))


@dataclass
class SelfEvaluation(Collector):
    ctx: Context
    projects: list[dict] = field(default_factory=list)
    indicator_count: int = 0  # the rows of 指标得分, which are read again from the spool as they are written
    per_group: dict[tuple, Counter] = field(default_factory=lambda: defaultdict(Counter))  # for the cover

    def add(self, s, checked, sp, who) -> None:
        if sp.round.stage != SELFEVAL:
            return
        factor = self.ctx.factor(sp)
        for p in checked.projects:
            scores = p.scores or {}
            execution = scores.get("execution") or {}
            budget, spent = execution.get("budget"), execution.get("spent")
            problems = [q for q in checked.problems if q.sheet == p.sheet]
            group = self.per_group[(who.region, who.department)]
            group["projects"] += 1
            group["budget"] += money(budget, factor) or 0.0
            self.projects.append({
                "region": who.region, "department": who.department, "unit_code": who.unit_code,
                "unit_name": who.unit_name, "project": p.name, "budget": money(budget, factor),
                "spent": money(spent, factor),
                "rate": spent / budget if isinstance(budget, int | float) and budget and isinstance(spent, int | float)
                else None,
                "execution": execution.get("score"), "subject": sp.round.subject,
                "groups": dict(scores.get("groups") or {}),
                "total": scores.get("total"), "grade": scores.get("grade", ""),
                "errors": sum(1 for q in problems if q.severity == "error"),
                "issues": "；".join(q.text(self.ctx.lang) for q in problems if q.severity == "error")[:300],
                "file": file_name(s), "sheet": p.sheet})
            self.indicator_count += len(scores.get("indicators") or [])

    def figures(self, money_suffix: str) -> tuple:
        """The cover's figures for the round: what was spent, the execution rate (ΣB ÷ ΣA) and the mean score."""
        budget = sum(p["budget"] or 0.0 for p in self.projects)
        spent = sum(p["spent"] or 0.0 for p in self.projects)
        totals = [p["total"] for p in self.projects if p["total"] is not None]
        return (("全年执行数合计" + money_suffix, spent, "money"),
                ("预算执行率", spent / budget if budget else None, "percent"),
                ("平均总分", sum(totals) / len(totals) if totals else None, "score"))

    def tables(self) -> list[Table]:
        out = []
        for subject in (PROJECT, DEPARTMENT):
            mine = [p for p in self.projects if p.get("subject", PROJECT) == subject]
            if mine:
                out += self._subject_tables(subject, mine)
        return out

    def _subject_tables(self, subject: str, projects: list[dict]) -> list[Table]:
        m = self.ctx.money_suffix
        projects.sort(key=lambda r: (r["total"] is None, r["total"] or 0, str(r["department"]), str(r["unit_name"])))
        groups = _groups_of(projects)
        for p in projects:
            for g in groups:
                p[f"group:{g}"] = (p.get("groups") or {}).get(g)
        prefix = SHEET_PREFIX[subject]
        name_title = "部门名称" if subject == DEPARTMENT else "项目名称"
        sheets = [table(prefix + SCORES, [
            Column("地区", "text", "region"), Column("主管部门", "text", "department"),
            Column("单位编码", "text", "unit_code"), Column("单位名称", "text", "unit_name"),
            Column(name_title, "text", "project"), Column("全年预算数（A）" + m, "money", "budget"),
            Column("全年执行数（B）" + m, "money", "spent"), Column("执行率", "percent", "rate"),
            Column("预算执行得分", "score", "execution")]
            + [Column(f"{g}指标得分" if subject == PROJECT else f"{g}得分", "score", f"group:{g}") for g in groups]
            + [Column("总分", "score", "total"), Column("等级", "text", "grade"), Column("错误数", "count", "errors"),
               Column("主要问题", "text", "issues"), Column("来源文件", "text", "file"), Column("工作表", "text", "sheet")],
            projects, totals=True, note="按总分从低到高排列；总分 = 预算执行得分 + 各类指标得分。", paper="A3")]
        if subject == PROJECT:  # a whole department is already one line per unit: no roll-up per 主管部门
            sheets.append(table(DEPARTMENTS, [
                Column("地区", "text", "region"), Column("主管部门", "text", "department"),
                Column("项目数", "count", "projects"), Column("全年预算数（A）" + m, "money", "budget"),
                Column("全年执行数（B）" + m, "money", "spent"), Column("执行率", "percent", "rate"),
                Column("平均总分（按预算加权）", "score", "score"), Column("优", "count", "优"), Column("良", "count", "良"),
                Column("中", "count", "中"), Column("差", "count", "差")],
                department_rollup(projects), totals=True,
                note="金额相加；执行率 = ΣB ÷ ΣA；平均总分按全年预算数加权。"))
        return sheets + [indicator_table(self.ctx, subject)]


def indicator_table(ctx: Context, subject: str = PROJECT) -> Table:
    """指标得分, form by form like 指标明细: at 10,000 forms it holds 350,000 rows, and holding them all as
    dicts cost the merge 450 MB. Each form's rows are rendered once and kept under its key."""
    def forms():
        for s in ctx.merged:
            form_round = ctx.spec_of(s).round
            if form_round.stage == SELFEVAL and form_round.subject == subject:
                yield ctx.form_key(s), partial(_indicator_lines, ctx, s), None  # scored lines: not counted ahead

    return per_form_table(SHEET_PREFIX[subject] + INDICATORS, [
        Column("单位编码", "text", "unit_code"), Column("单位名称", "text", "unit_name"),
        Column("部门名称" if subject == DEPARTMENT else "项目名称", "text", "project"), Column("一级指标", "text", "level1"),
        Column("二级指标", "text", "level2"), Column("三级指标", "text", "level3"),
        Column("计分类别", "text", "group"), Column("年度指标值", "text", "target"),
        Column("实际完成值", "text", "actual"), Column("分值", "score", "points"),
        Column("得分", "score", "score"), Column("计分方法", "text", "how"),
        Column("偏差原因分析及改进措施", "text", "reason"), Column("目标版本", "text", "version"),
        Column("位置", "text", "where")], forms, paper="A3")


def _indicator_lines(ctx: Context, s):
    checked = ctx.load(s)
    who = ctx.who(s, checked)
    for p in checked.projects:
        for line in (p.scores or {}).get("indicators") or []:
            yield {"unit_code": who.unit_code, "unit_name": who.unit_name, "project": p.name, **line,
                   "version": str(p.values.get("target_version") or ""), "where": f"{p.sheet}!{line['cell']}"}


def department_rollup(projects: list[dict]) -> list[dict]:
    """Per 地区/主管部门: absolute values add; the rate and the score are averaged weighted by the budget
    (a project without a budget counts with weight 1 in the score, so it is not dropped)."""
    groups: dict[tuple, dict] = {}
    for p in projects:
        g = groups.setdefault((p["region"], p["department"]), {
            "region": p["region"], "department": p["department"], "projects": 0, "budget": 0.0, "spent": 0.0,
            "_weighted": 0.0, "_weights": 0.0, "优": 0, "良": 0, "中": 0, "差": 0})
        g["projects"] += 1
        g["budget"] += p["budget"] or 0.0
        g["spent"] += p["spent"] or 0.0
        if p["total"] is not None:
            weight = p["budget"] or 1.0
            g["_weighted"] += p["total"] * weight
            g["_weights"] += weight
        if p["grade"] in ("优", "良", "中", "差"):
            g[p["grade"]] += 1
    out = []
    for key in sorted(groups, key=lambda k: (str(k[0]), str(k[1]))):
        g = groups[key]
        g["rate"] = g["spent"] / g["budget"] if g["budget"] else None
        g["score"] = round(g["_weighted"] / g["_weights"], 2) if g["_weights"] else None
        out.append(g)
    return out

"""目标质量: the mechanical part of 绩效目标审核 — completeness, measurability, cost coverage, direction —
scored from the problems validation found. The weights are the tables below, not numbers in code."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from perfxl.rules.indicators import cost_total

from .base import Column, Context, Table, table

NAME = "目标质量"
FIRST_TITLE = "地区"
NOTE = "按得分从低到高排列，审核从最弱的申报开始。"


@dataclass(frozen=True)
class Deduction:
    """Points off per problem of these codes, capped per project (None: no cap)."""

    codes: tuple[str, ...]
    points: float
    cap: float | None = None


# Every deduction from 100. README ("目标质量") prints this table.
DEDUCTIONS = (
    Deduction(("indicator-category-missing",), 15),
    Deduction(("required", "indicator-empty-value", "indicator-incomplete"), 5, cap=30),
    Deduction(("indicator-direction",), 3, cap=15),
    Deduction(("indicator-placeholder",), 10),
    Deduction(("indicator-unparseable",), 5),
    Deduction(("indicator-percent-over-100", "indicator-rate-as-fraction", "indicator-money-as-output",
               "indicator-deadline-before-year"), 2),
)
ERROR_POINTS, ERROR_CAP = 10, 40  # every error of any code, on top of the above
MEASURABLE_SHARE, MEASURABLE_POINTS = 0.5, 40  # below half quantitative: 40 points per unit of share missing
COVERAGE_RANGE, COVERAGE_POINTS = (0.9, 1.1), 10  # cost targets should cover the budget
GRADES = ((90, "优"), (75, "良"), (60, "中"), (0, "差"))
WITH_ERRORS_AT_BEST = "中"  # a declaration with errors goes back to the unit, whatever else it does well
COMPLETENESS_CODES = ("required", "indicator-category-missing", "indicator-empty-value", "indicator-incomplete",
                      "table-empty")


@dataclass
class QualityLine:
    region: str
    department: str
    unit_name: str
    project: str
    indicators: int
    quantitative: int
    share: float
    completeness: int
    coverage: float | None
    direction: int
    placeholders: int
    unparseable: int
    score: float
    grade: str
    issues: str


def score(codes: Counter, errors: int, share: float, coverage: float | None) -> tuple[float, str]:
    """Score and grade of one project from its problem codes, error count, quantitative share and cost coverage."""
    points = 100.0
    for d in DEDUCTIONS:
        off = d.points * sum(codes[c] for c in d.codes)
        points -= min(d.cap, off) if d.cap is not None else off
    if share < MEASURABLE_SHARE:
        points -= (MEASURABLE_SHARE - share) * MEASURABLE_POINTS
    if coverage is not None and not COVERAGE_RANGE[0] <= coverage <= COVERAGE_RANGE[1]:
        points -= COVERAGE_POINTS
    points -= min(ERROR_CAP, ERROR_POINTS * errors)
    points = max(0.0, round(points, 1))
    grade = next(g for floor, g in GRADES if points >= floor)
    if errors and [g for _, g in GRADES].index(grade) < [g for _, g in GRADES].index(WITH_ERRORS_AT_BEST):
        grade = WITH_ERRORS_AT_BEST
    return points, grade


@dataclass
class Quality:
    ctx: Context
    lines: list[QualityLine] = field(default_factory=list)

    def add(self, s, checked, sp, who) -> None:
        if sp.family != "project":
            return
        main = sp.indicator_table().indicator.values[-1]
        for p in checked.projects:
            problems = [q for q in checked.problems if q.sheet == p.sheet]
            codes = Counter(q.code for q in problems)
            quantitative = sum(1 for r in p.indicators if r.targets[main].quantitative)
            share = quantitative / len(p.indicators) if p.indicators else 0.0
            budget = p.values.get(sp.budget_field) if sp.budget_field else None
            costs = cost_total(sp, p.indicators)
            coverage = costs / budget if costs is not None and isinstance(budget, int | float) and budget else None
            errors = sum(1 for q in problems if q.severity == "error")
            points, grade = score(codes, errors, share, coverage)
            issues = "；".join(q.text(self.ctx.lang) for q in problems if q.severity == "error")[:300] or \
                "；".join(q.text(self.ctx.lang) for q in problems)[:300]
            self.lines.append(QualityLine(
                who.region, who.department, who.unit_name, p.name, len(p.indicators), quantitative, share,
                sum(codes[c] for c in COMPLETENESS_CODES), coverage, codes["indicator-direction"],
                codes["indicator-placeholder"], codes["indicator-unparseable"], points, grade, issues))

    def grades(self) -> Counter:
        return Counter(line.grade for line in self.lines)

    def table(self) -> Table:
        self.lines.sort(key=lambda r: (r.score, str(r.unit_name), str(r.project)))  # weakest first
        return table(NAME, COLUMNS, self.lines, note=NOTE)


COLUMNS = [
    Column("地区", "text", "region"), Column("主管部门", "text", "department"), Column("单位名称", "text", "unit_name"),
    Column("项目名称", "text", "project"), Column("指标数", "count", "indicators"),
    Column("定量指标", "count", "quantitative"), Column("可衡量（定量占比）", "percent", "share"),
    Column("完整性问题", "count", "completeness"), Column("成本指标覆盖预算", "percent", "coverage"),
    Column("方向提醒", "count", "direction"), Column("占位符", "count", "placeholders"),
    Column("无法识别", "count", "unparseable"), Column("得分", "number", "score"), Column("等级", "text", "grade"),
    Column("主要问题", "text", "issues"),
]

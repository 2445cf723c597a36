"""目标审核: the review of declared targets (绩效目标审核, 财预〔2015〕88号) — its mechanical part.

Each project gets four dimensions of 25 points, each losing points for the problems validation found that
belong to it (the table below), a total, a grade and the grade's fixed consequence. What a reviewer judges
by reading (whether targets fit the department's duties) stays the reviewer's; this sheet says where to
look first, weakest first. A declaration with errors is graded 中 at most: it goes back to the unit.

A form whose template has no indicator table (a bureau's own design may have none) is graded on what it
has: required fields, name, errors. No indicator check can cost it points, its 定量占比 is blank rather
than 0 %, and the sheet's note says such forms were reviewed without indicators.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from perfxl.rounds import PROJECT
from perfxl.rules.indicators import cost_total

from .base import Collector, Column, Context, Table, table

NAME = "目标审核"
FIRST_TITLE = "地区"
NOTE = "四个维度各 25 分，按机械检查扣分；按等级（差、中、良、优）再按总分从低到高排列，审核从最弱的申报开始。"
NOTE_WITHOUT_INDICATORS = "定量占比空白的项目，其表样没有绩效指标表：只按必填项、项目名称和错误评分，指标未经审核。"


@dataclass(frozen=True)
class Check:
    """Points off per problem of these codes, within one dimension."""

    codes: tuple[str, ...]
    points: float
    what: str  # the check in a reviewer's words, as it reads when it passes (README's table)
    failed: str  # what is wrong when it fails: the words of a lost point


@dataclass(frozen=True)
class Dimension:
    name: str
    meaning: str
    checks: tuple[Check, ...]
    points: float = 25.0


# README ("目标审核") prints this table. A finding says what failed and what it cost: 必填项未填写（1 处，−5）.
DIMENSIONS = (
    Dimension("完整性", "填写完整、格式规范", (
        Check(("required", "table-empty"), 5, "必填项已填写", "必填项未填写"),
        Check(("indicator-category-missing",), 10, "各类一级指标齐全", "缺少一类一级指标"),
        Check(("indicator-empty-value", "indicator-incomplete"), 5, "指标名称和指标值完整",
              "指标名称或指标值不完整"),
        Check(("indicator-placeholder",), 5, "无未替换的占位符", "留有未替换的占位符"),
    )),
    Dimension("相关性", "目标与支出内容相符", (
        Check(("indicator-money-as-output",), 5, "未把资金支出写成产出", "把资金支出写成了产出"),
        Check(("cost-sum-mismatch", "cost-exceeds-budget"), 10, "成本指标与预算一致", "成本指标与预算不一致"),
        Check(("name-mismatch",), 3, "项目名称前后一致", "项目名称前后不一致"),
    )),
    Dimension("适当性", "目标与资金量相匹配、可衡量", (
        Check(("indicator-direction",), 3, "指标方向正确（如成本、时效用 ≤）", "指标方向写反（成本、时效应为 ≤）"),
        Check(("indicator-percent-over-100", "indicator-rate-as-fraction"), 3, "比率写法正确", "比率写法有误"),
        Check(("indicator-rate-without-number",), 3, "比率类指标有数值", "比率类指标没有数值"),
    )),
    Dimension("可行性", "目标可实现、有时间安排", (
        Check(("indicator-unparseable",), 5, "指标值可识别", "指标值无法识别"),
        Check(("indicator-deadline-before-year",), 3, "完成时间在预算年度内", "完成时间早于预算年度"),
    )),
)
MEASURABLE_SHARE = 0.5  # 适当性: below half quantitative, up to 10 points off
MEASURABLE_POINTS = 20.0  # points per unit of share missing
COVERAGE_RANGE, COVERAGE_POINTS = (0.9, 1.1), 5.0  # 相关性: cost targets should cover the budget
ERROR_POINTS, ERROR_CAP = 5.0, 20.0  # 可行性: every error of any code
GRADES = ((90, "优", "进入预算"), (75, "良", "协商修改后进入预算"), (60, "中", "退回修改后复审"),
          (0, "差", "不得进入预算"))
WITH_ERRORS_AT_BEST = "中"


@dataclass(slots=True)  # one a project: 100,000 at province scale
class ReviewLine:
    region: str
    department: str
    unit_code: str
    unit_name: str
    project: str
    indicators: int
    quantitative: int
    share: float | None  # None: the template has no indicator table
    coverage: float | None
    dimensions: dict[str, float]
    findings: dict[str, str]
    total: float
    grade: str
    consequence: str
    errors: int
    issues: str
    file: str
    sheet: str


def review(codes: Counter, errors: int, share: float | None, coverage: float | None) -> tuple[dict, dict, float, str, str]:
    """Points per dimension, what was found in each, the total, the grade and its consequence. `share` is
    None for a form with no indicator table: nothing to measure, so nothing lost for it."""
    points, findings = {}, {}
    for d in DIMENSIONS:
        lost, said = 0.0, []
        for check in d.checks:
            n = sum(codes[c] for c in check.codes)
            if n:
                lost += check.points * n
                said.append(f"{check.failed}（{n} 处，{_off(check.points * n)}）")
        if d.name == "适当性" and share is None:
            said.append("表样没有绩效指标表，指标未审核")
        if d.name == "适当性" and share is not None and share < MEASURABLE_SHARE:
            off = (MEASURABLE_SHARE - share) * MEASURABLE_POINTS
            lost += off
            said.append(f"定量指标只占 {share:.0%}，不足一半（{_off(off)}）")
        if d.name == "相关性" and coverage is not None and not COVERAGE_RANGE[0] <= coverage <= COVERAGE_RANGE[1]:
            lost += COVERAGE_POINTS
            said.append(f"成本指标只覆盖预算的 {coverage:.0%}（{_off(COVERAGE_POINTS)}）" if coverage < 1 else
                        f"成本指标合计为预算的 {coverage:.0%}，超出预算（{_off(COVERAGE_POINTS)}）")
        if d.name == "可行性" and errors:
            off = min(ERROR_CAP, ERROR_POINTS * errors)
            lost += off
            capped = f"，最多扣 {ERROR_CAP:g} 分" if ERROR_POINTS * errors > ERROR_CAP else ""
            said.append(f"有 {errors} 个错误（{_off(off)}{capped}）")
        points[d.name] = round(max(0.0, d.points - lost), 1)
        findings[d.name] = "；".join(said)
    total = round(sum(points.values()), 1)
    grade, consequence = next((g, c) for floor, g, c in GRADES if total >= floor)
    order = [g for _, g, _ in GRADES]
    if errors and order.index(grade) < order.index(WITH_ERRORS_AT_BEST):
        grade, consequence = WITH_ERRORS_AT_BEST, dict((g, c) for _, g, c in GRADES)[WITH_ERRORS_AT_BEST]
    return points, findings, total, grade, consequence


@dataclass
class Review(Collector):
    ctx: Context
    lines: list[ReviewLine] = field(default_factory=list)
    RECORDS = {"lines": ReviewLine}

    def add(self, s, checked, sp, who) -> None:
        if not (sp.round.declaration and sp.round.subject == PROJECT):
            return
        indicator_table = sp.indicator_table()
        main = indicator_table.indicator.main if indicator_table is not None else None
        for p in checked.projects:
            problems = [q for q in checked.problems if q.sheet == p.sheet]
            codes = Counter(q.code for q in problems)
            quantitative = sum(1 for r in p.indicators if r.targets[main].quantitative) if main else 0
            share = None if main is None else (quantitative / len(p.indicators) if p.indicators else 0.0)
            budget = p.values.get(sp.budget_field) if sp.budget_field else None
            costs = cost_total(sp, p.indicators)
            coverage = costs / budget if costs is not None and isinstance(budget, int | float) and budget else None
            errors = sum(1 for q in problems if q.severity == "error")
            points, findings, total, grade, consequence = review(codes, errors, share, coverage)
            issues = "；".join(q.text(self.ctx.lang) for q in problems if q.severity == "error")[:300] or \
                "；".join(q.text(self.ctx.lang) for q in problems)[:300]
            self.lines.append(ReviewLine(
                who.region, who.department, who.unit_code, who.unit_name, p.name, len(p.indicators), quantitative,
                share, coverage, points, findings, total, grade, consequence, errors, issues, s.path, p.sheet))

    def grades(self) -> Counter:
        return Counter(line.grade for line in self.lines)

    def table(self) -> Table:
        # Weakest first: by grade (差, 中, 良, 优), then by points. A 中 at 95 (it has errors) comes before a 优 at 94.
        weakest = {grade: -i for i, (_, grade, _) in enumerate(GRADES)}
        self.lines.sort(key=lambda r: (weakest[r.grade], r.total, str(r.unit_name), str(r.project)))
        columns = [Column("地区", "text", "region"), Column("主管部门", "text", "department"),
                   Column("单位名称", "text", "unit_name"), Column("项目名称", "text", "project"),
                   Column("指标数", "count", "indicators"), Column("定量指标", "count", "quantitative"),
                   Column("定量占比", "percent", "share"), Column("成本指标覆盖预算", "percent", "coverage")]
        for d in DIMENSIONS:
            columns += [Column(f"{d.name}（{d.points:g}）", "score", _points(d.name)),
                        Column(f"{d.name}扣分原因", "text", _finding(d.name))]
        columns += [Column("得分", "score", "total"), Column("等级", "text", "grade"),
                    Column("审核结论", "text", "consequence"), Column("主要问题", "text", "issues")]
        note = NOTE + (NOTE_WITHOUT_INDICATORS if any(line.share is None for line in self.lines) else "")
        sheet = table(NAME, columns, self.lines, note=note, paper="A3")
        sheet.records = self.lines
        return sheet


def _off(points: float) -> str:
    """Points lost as a reader writes them: −5, −2.5."""
    return f"−{round(points, 1):g}"


def _points(name):
    return lambda r: r.dimensions[name]


def _finding(name):
    return lambda r: r.findings[name]

"""目标审核: the review of declared targets (绩效目标审核, 财预〔2015〕88号) — its mechanical part.

Each project gets four dimensions of 25 points, each losing points for the problems validation found that
belong to it (the table below), a total, a grade and the grade's fixed consequence. What a reviewer judges
by reading (whether targets fit the department's duties) stays the reviewer's; this sheet says where to
look first, weakest first. A declaration with errors is graded 中 at most: it goes back to the unit.

A form whose template has no indicator table (a bureau's own design may have none) is graded on what it
has: required fields, name, errors. No indicator check can cost it points, its 定量占比 is blank rather
than 0 %, and the sheet's note says such forms were reviewed without indicators.

The review also foresees the year-end self-evaluation: a 一级 whose scoring group carries points in the
groups file of the self-evaluation round that follows the declaration (perfxl.rounds: Round.groups_file,
templates/hierarchies/selfeval-groups.yaml) but of which the project declared no indicator (a 一级 the form
only recommends, such as 绵阳's 效益指标) costs points under 完整性: at year end those points cannot be
earned, whatever is achieved.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from perfxl.rounds import PROJECT, ROUNDS, SELFEVAL
from perfxl.rules.indicators import cost_total
from perfxl.scoring import grade as self_evaluation_grade
from perfxl.spec import Spec, load_data

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
        Check(("library-required-missing",), 5, "指标库的固化指标已设置", "缺少指标库的固化指标"),
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
        # With --history (perfxl.comparison): found once every form is seen, added by Review.add_findings
        Check(("history-below-last-actual", "history-above-last-actual"), 3, "目标不比上年实际完成值宽松，或写明了依据",
              "目标比上年实际完成值宽松且未写明依据"),
        Check(("history-target-not-raised",), 3, "连续超额完成的指标已提高目标", "连续两年超额完成仍未提高目标"),
        Check(("history-indicator-dropped",), 2, "上年指标延续或说明了原因", "上年指标未说明原因即取消"),
        Check(("peer-outlier",), 2, "指标值在同类单位常见范围内", "指标值超出同类单位常见范围"),
    )),
    Dimension("可行性", "目标可实现、有时间安排", (
        Check(("indicator-unparseable",), 5, "指标值可识别", "指标值无法识别"),
        Check(("indicator-deadline-before-year",), 3, "完成时间在预算年度内", "完成时间早于预算年度"),
    )),
)
# The codes found across forms, after every form was seen (Review.add_findings), not by a form's own check
LATE_CODES = frozenset({"history-below-last-actual", "history-above-last-actual", "history-target-not-raised",
                        "history-indicator-dropped", "peer-outlier", "library-required-missing"})
MEASURABLE_SHARE = 0.5  # 适当性: below half quantitative, up to 10 points off
MEASURABLE_POINTS = 20.0  # points per unit of share missing
COVERAGE_RANGE, COVERAGE_POINTS = (0.9, 1.1), 5.0  # 相关性: cost targets should cover the budget
ERROR_POINTS, ERROR_CAP = 5.0, 20.0  # 可行性: every error of any code
GRADES = ((90, "优", "进入预算"), (75, "良", "协商修改后进入预算"), (60, "中", "退回修改后复审"),
          (0, "差", "不得进入预算"))
WITH_ERRORS_AT_BEST = "中"
# 完整性, foreseen: a scoring group with self-evaluation points that none of the project's indicators reaches.
# It costs what a missing required 一级 costs (缺少一类一级指标, 10 above): seen from the year's end the gap
# is the same one, and 完整性 weighs every gap by a flat amount per gap, not by what hangs on it; the words
# say how many year-end points are at stake. A required 一级 is not charged twice: its absence is already
# an error (and 缺少一类一级指标), so only groups no required 一级 leads to are foreseen here.
UNSCORABLE_POINTS = 10.0


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


def review(codes: Counter, errors: int, share: float | None, coverage: float | None,
           unscorable: Sequence[tuple[str, float]] = ()) -> tuple[dict, dict, float, str, str]:
    """Points per dimension, what was found in each, the total, the grade and its consequence. `share` is
    None for a form with no indicator table: nothing to measure, so nothing lost for it. `unscorable` is
    (what was not declared, the self-evaluation points it leaves unearnable) per scoring group the project's
    indicators do not reach (`unscorable_groups`)."""
    points, findings = {}, {}
    for d in DIMENSIONS:
        lost, said = 0.0, []
        for check in d.checks:
            n = sum(codes[c] for c in check.codes)
            if n:
                lost += check.points * n
                said.append(f"{check.failed}（{n} 处，{_off(check.points * n)}）")
        if d.name == "完整性":
            for missing, at_stake in unscorable:
                lost += UNSCORABLE_POINTS
                said.append(f"未设{missing}，自评时 {at_stake:g} 分无法得分（{_off(UNSCORABLE_POINTS)}）")
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
    consequences = dict((g, c) for _, g, c in GRADES)
    if errors and order.index(grade) < order.index(WITH_ERRORS_AT_BEST):
        grade, consequence = WITH_ERRORS_AT_BEST, consequences[WITH_ERRORS_AT_BEST]
    if unscorable:  # no better than the best the year-end self-evaluation can give with every target met
        reachable = 100.0 - sum(at_stake for _, at_stake in unscorable)
        best = self_evaluation_grade(reachable)
        if order.index(grade) < order.index(best):
            grade, consequence = best, consequences[best]
            findings["完整性"] += f"；自评最高只能得 {reachable:g} 分，审核等级至多为{best}"
    return points, findings, total, grade, consequence


@dataclass(frozen=True)
class ScoredGroup:
    """A scoring group of the self-evaluation that a declaration of this form can leave unreached."""

    group: str
    points: float
    reached_by: tuple[str, ...]  # its 一级 (or 一级/二级) in the groups file, in the file's order

    @property
    def missing(self) -> str:
        """What the declaration lacks, in a reader's words: 效益指标; 效果目标下的满意度."""
        return "或".join(key.replace("/", "下的") for key in self.reached_by)


def _group_of(mapping: dict[str, str], level1: str, level2: str) -> str:
    """The scoring group of an indicator row, by the rule the self-evaluation form is prefilled with
    (followup.declared_projects): its 一级/二级 where the groups file names that, else its 一级, else 过程."""
    return mapping.get(f"{level1}/{level2}") or mapping.get(level1, "过程")


@lru_cache(maxsize=16)
def _groups_file(name: str, templates_dir: Path | None) -> tuple[dict[str, float], dict[str, dict[str, str]]]:
    """(points per group, {hierarchy: {一级 or 一级/二级: group}}), read as followup.group_map reads it."""
    data = load_data("hierarchies", name, templates_dir)
    return ({str(k): float(v) for k, v in data["points"].items()},
            {str(h): {str(k): str(v) for k, v in m.items()} for h, m in data["groups"].items()})


@lru_cache(maxsize=64)  # a Spec hashes by identity: one entry per template and year of the merge
def scored_groups(sp: Spec, templates_dir: Path | None) -> tuple[dict[str, str], tuple[ScoredGroup, ...]]:
    """(the form's 一级 → group mapping, the groups a project of this form can leave unreached): groups with
    points in the groups file of the self-evaluation round that follows the form's round, reached by some
    一级 of the form's hierarchy, none of them a required 一级 (missing, that is already an error). Empty
    for a form without an indicator table, a round no self-evaluation follows, or a hierarchy the groups
    file does not map."""
    table = sp.indicator_table()
    followed_by = next((r for r in ROUNDS.values()
                        if r.stage == SELFEVAL and r.prefilled_from == sp.round.key and r.groups_file), None)
    if table is None or followed_by is None:
        return {}, ()
    points, groups = _groups_file(followed_by.groups_file, templates_dir)
    mapping = groups.get(table.indicator.hierarchy.name, {})
    keys_of: dict[str, list[str]] = {}
    for key, group in mapping.items():
        keys_of.setdefault(group, []).append(key)
    required = set(table.indicator.required_levels)
    return mapping, tuple(ScoredGroup(group, points[group], tuple(keys)) for group, keys in keys_of.items()
                          if points.get(group, 0.0) > 0 and not required.intersection(keys))


def unscorable_groups(sp: Spec, templates_dir: Path | None, indicators) -> list[tuple[str, float]]:
    """(what was not declared, the points at stake) for each scoring group no row of `indicators` reaches."""
    mapping, scored = scored_groups(sp, templates_dir)
    if not scored:
        return []
    hierarchy = sp.indicator_table().indicator.hierarchy
    reached = {_group_of(mapping, hierarchy.canonical(r.level1), hierarchy.canonical(r.level2)) for r in indicators}
    return [(g.missing, g.points) for g in scored if g.group not in reached]


@dataclass(frozen=True)
class Assessment:
    """目标审核 of one declared project, before anything found across forms (add_findings)."""

    problems: list
    quantitative: int
    share: float | None
    coverage: float | None
    errors: int
    points: dict
    findings: dict
    total: float
    grade: str
    consequence: str


def assess(sp: Spec, checked, p, templates_dir: Path | None) -> Assessment:
    """The review of project `p` of a checked declaration: what the sheet says of it, and what an indicator
    library built from past ledgers keeps of its grade (perfxl.history)."""
    indicator_table = sp.indicator_table()
    main = indicator_table.indicator.main if indicator_table is not None else None
    problems = [q for q in checked.problems if q.sheet == p.sheet]
    codes = Counter(q.code for q in problems)
    quantitative = sum(1 for r in p.indicators if r.targets[main].quantitative) if main else 0
    share = None if main is None else (quantitative / len(p.indicators) if p.indicators else 0.0)
    budget = p.values.get(sp.budget_field) if sp.budget_field else None
    costs = cost_total(sp, p.indicators)
    coverage = costs / budget if costs is not None and isinstance(budget, int | float) and budget else None
    errors = sum(1 for q in problems if q.severity == "error")
    unscorable = unscorable_groups(sp, templates_dir, p.indicators)
    points, findings, total, grade, consequence = review(codes, errors, share, coverage, unscorable)
    return Assessment(problems, quantitative, share, coverage, errors, points, findings, total, grade, consequence)


@dataclass
class Review(Collector):
    ctx: Context
    lines: list[ReviewLine] = field(default_factory=list)
    RECORDS = {"lines": ReviewLine}

    def add(self, s, checked, sp, who) -> None:
        if not (sp.round.declaration and sp.round.subject == PROJECT):
            return
        for p in checked.projects:
            a = assess(sp, checked, p, self.ctx.templates_dir)
            issues = "；".join(q.text(self.ctx.lang) for q in a.problems if q.severity == "error")[:300] or \
                "；".join(q.text(self.ctx.lang) for q in a.problems)[:300]
            self.lines.append(ReviewLine(
                who.region, who.department, who.unit_code, who.unit_name, p.name, len(p.indicators), a.quantitative,
                a.share, a.coverage, a.points, a.findings, a.total, a.grade, a.consequence, a.errors, issues, s.path,
                p.sheet))

    def add_findings(self, found: dict[tuple[str, str], Counter]) -> None:
        """Findings made after every form was seen (perfxl.comparison: against history and peers), per
        (file, sheet): points off under their dimension, said as every check says it, and the grade again. A
        grade held down before (errors, unearnable points) stays held down."""
        order = [g for _, g, _ in GRADES]
        # Only the checks of such findings take points off here (worked out once, not for every line).
        late = [(d, checks) for d, checks in ((d, [check for check in d.checks
                                                   if any(c in LATE_CODES for c in check.codes)])
                                              for d in DIMENSIONS) if checks]
        for line in self.lines:
            codes = found.get((line.file, line.sheet))
            if not codes:
                continue
            for d, checks in late:
                lost, said = 0.0, []
                for check in checks:
                    n = sum(codes[c] for c in check.codes)
                    if n:
                        lost += check.points * n
                        said.append(f"{check.failed}（{n} 处，{_off(check.points * n)}）")
                if not said:
                    continue
                line.dimensions[d.name] = round(max(0.0, line.dimensions[d.name] - lost), 1)
                line.findings[d.name] = "；".join([t for t in (line.findings[d.name],) if t] + said)
            line.total = round(sum(line.dimensions.values()), 1)
            grade, consequence = next((g, c) for floor, g, c in GRADES if line.total >= floor)
            if order.index(grade) > order.index(line.grade):
                line.grade, line.consequence = grade, consequence

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

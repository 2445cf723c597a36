"""Year-end self-evaluation scoring (绩效自评, 项目支出绩效自评表 of 财预〔2020〕10号), as pure functions.

Each indicator is scored by the sign of its declared target:
- ≥, ＞ (more is better): 实际 ÷ 指标 × 分值;
- ≤, ＜ (less is better): 指标 ÷ 实际 × 分值;
- ＝ (or no sign): full when met, else 实际 ÷ 指标 × 分值;
- a range: full inside it, else the ratio to the nearer bound;
- a qualitative target (or a deadline met in words): the unit's tier — 达成年度指标 80–100%, 部分达成 60–80%,
  未达成 0–60% of 分值 — with the score it typed, which must lie in the tier's band; none typed is the
  band's lower bound, with a warning.
No score is ever above its 分值. The actual value is converted to the target's unit (元 ↔ 万元, 小时 ↔ 天,
人 ↔ 万人, ‰ ↔ %); a rate written as a fraction against a % target is not guessed at but reported.
Budget execution: 分值 × B ÷ A, at most 分值. Grades: 优 ≥ 90, 良 80–89, 中 60–79, 差 < 60.

A score that cannot be computed is None with the problem code that says why; the validator reports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

from .domain import MONEY_UNITS
from .values import Target

TIERS = {"达成年度指标": (0.8, 1.0), "部分达成": (0.6, 0.8), "未达成": (0.0, 0.6)}
GRADES = ((90, "优"), (80, "良"), (60, "中"), (0, "差"))
MET_TOLERANCE = 1e-9

# Units a clerk may write the actual in when the target used the other one: factor to the base unit.
_SCALES: dict[str, tuple[str, float]] = {
    **{unit: ("元", factor) for unit, factor in MONEY_UNITS.items()},
    "%": ("%", 1.0), "‰": ("%", 0.1),
    "小时": ("小时", 1.0), "分钟": ("小时", 1 / 60), "天": ("小时", 24.0), "日": ("小时", 24.0),
    "周": ("小时", 24.0 * 7),
    "个月": ("月", 1.0), "月": ("月", 1.0), "年": ("月", 12.0),
    "个工作日": ("工作日", 1.0), "工作日": ("工作日", 1.0),
}
for _counted in ("人", "户", "人次", "次", "笔"):
    _SCALES[_counted] = (_counted, 1.0)
    _SCALES["万" + _counted] = (_counted, 10_000.0)


@dataclass(frozen=True)
class Score:
    points: float | None  # None: it cannot be scored, `problem` says why
    weight: float
    how: str  # the rule applied, in the words of the 自评表's notes
    problem: str | None = None  # a problem code of the catalogue
    warning: str | None = None  # scored, but with a warning code (the tier's lower bound was used)

    @property
    def missed(self) -> bool:
        return self.points is not None and self.points < self.weight - MET_TOLERANCE


def convert(value: float, unit: str | None, to_unit: str | None) -> float | None:
    """`value` in `unit` expressed in `to_unit`; None when the two cannot be compared."""
    if (unit or "") == (to_unit or ""):
        return value
    if not unit or not to_unit:
        return None
    a, b = _SCALES.get(unit), _SCALES.get(to_unit)
    if a is None or b is None or a[0] != b[0]:
        return None
    return value * a[1] / b[1]


def _capped(ratio: float, weight: float) -> float:
    if not math.isfinite(ratio):  # min(1.0, nan) is 1.0: a ratio that is no number earns nothing
        ratio = 0.0 if ratio != ratio else ratio
    return round(max(0.0, min(1.0, ratio)) * weight, 4)


def _tier_score(tier: str | None, typed: float | None, weight: float, how: str) -> Score:
    if tier not in TIERS:
        return Score(None, weight, how, problem="selfeval-tier-missing")
    low, high = TIERS[tier]
    if typed is None:
        return Score(round(low * weight, 4), weight, f"{tier}，未填得分，按下限 {low:.0%} 计", warning="selfeval-tier-score-missing")
    if not low * weight - MET_TOLERANCE <= typed <= high * weight + MET_TOLERANCE:
        return Score(None, weight, f"{tier}：得分应在 {low * weight:g}–{high * weight:g} 之间",
                     problem="selfeval-tier-score-out-of-band")
    return Score(round(typed, 4), weight, f"{tier}（{low:.0%}–{high:.0%}），按填报得分")


def indicator_score(target: Target, actual: Target, weight: float, tier: str | None = None,
                    typed: float | None = None) -> Score:
    """The score of one indicator: its declared `target`, the `actual` the unit wrote, its 分值, and for
    targets that are not numbers the tier the unit chose and the score it typed."""
    if weight <= 0:
        return Score(0.0, 0.0, "不计分（分值为 0）")
    if target.kind in {"qualitative", "deadline", "placeholder"} or (target.kind == "quantitative" and target.value is None):
        if target.kind == "deadline" and actual.kind == "deadline" and actual.deadline and target.deadline:
            met = date.fromisoformat(actual.deadline) <= date.fromisoformat(target.deadline)
            if met:
                return Score(weight, weight, "按期完成，得满分")
        return _tier_score(tier, typed, weight, "定性指标按完成档次计分")
    if target.kind not in {"quantitative", "range", "cost"}:
        return Score(None, weight, "年度指标值无法识别，不能计分", problem="selfeval-target-unreadable")
    if actual.kind == "empty":
        if tier in TIERS:  # no number, but the unit chose how far the target was met
            return _tier_score(tier, typed, weight, "未填写数值，按完成档次计分")
        return Score(None, weight, "未填写实际完成值", problem="selfeval-actual-missing")
    if actual.kind not in {"quantitative", "cost"} or actual.value is None:
        if tier in TIERS:  # a number was expected; the unit chose a tier instead
            return _tier_score(tier, typed, weight, "实际完成值不是数值，按完成档次计分")
        return Score(None, weight, "实际完成值不是数值", problem="selfeval-actual-unreadable")
    # A cost tuple (数量×单价＝金额, the 绵阳 form) is met by money: its unit is the quantity's (套), its
    # amount is in 元.
    goal_unit = "元" if target.kind == "cost" else target.unit
    value = actual.value
    if goal_unit == "%" and not actual.unit and 0 < value <= 1 and (target.value or 0) > 1:
        return Score(None, weight, "比率写成了小数", problem="selfeval-actual-fraction")
    got = convert(value, actual.unit, goal_unit) if actual.unit or goal_unit else value
    if got is None and not actual.unit:
        got = value  # a bare number is read in the target's unit
    if got is None:
        return Score(None, weight, f"实际完成值单位 {actual.unit} 与指标单位 {goal_unit} 不能换算",
                     problem="selfeval-unit-mismatch")
    goal = target.value
    if target.kind == "range":
        low, high = target.value, target.high
        if low <= got <= high:
            return Score(weight, weight, "在指标区间内，得满分")
        nearer = low if got < low else high
        ratio = got / nearer if got < low else (nearer / got if got else 1.0)
        return Score(_capped(ratio, weight), weight, "超出指标区间，按与最近端点之比计分")
    if target.op in {"≤", "<"}:
        if got <= goal + MET_TOLERANCE:
            return Score(weight, weight, "指标÷实际×分值（达到，得满分）")
        return Score(_capped(goal / got, weight), weight, "指标÷实际×分值")
    if target.op in {"≥", ">"}:
        if not goal:
            return Score(weight, weight, "实际÷指标×分值（指标为 0，得满分）")
        return Score(_capped(got / goal, weight), weight, "实际÷指标×分值")
    if abs(got - goal) <= MET_TOLERANCE * max(1.0, abs(goal)):
        return Score(weight, weight, "等于指标值，得满分")
    if not goal:
        return Score(0.0, weight, "未达到指标值")
    return Score(_capped(got / goal, weight), weight, "未等于指标值，按实际÷指标×分值")


def execution_score(budget: float | None, spent: float | None, weight: float) -> Score:
    """预算执行率: 分值 × B ÷ A, at most 分值."""
    if not budget or spent is None:
        return Score(None, weight, "全年预算数或全年执行数未填", problem="selfeval-execution-missing")
    return Score(_capped(spent / budget, weight), weight, "分值×执行数÷预算数")


def grade(total: float) -> str:
    return next(g for floor, g in GRADES if total >= floor - MET_TOLERANCE)


def spread(total: float, rows: int) -> list[float]:
    """A group's points spread evenly over its rows, in hundredths, the remainder on the first rows so the
    row points add up to the group's exactly."""
    if rows <= 0:
        return []
    cents = round(total * 100)
    base, extra = divmod(cents, rows)
    return [(base + (1 if i < extra else 0)) / 100 for i in range(rows)]

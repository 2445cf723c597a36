"""Year-end scoring, one row per rule and edge case, each expected score computed by hand."""

from __future__ import annotations

import pytest

from perfxl.scoring import convert, execution_score, grade, indicator_score, spread
from perfxl.values import parse_target

# (case, 年度指标值, 实际完成值, 分值, tier, typed score, expected points, problem, warning)
CASES = [
    # ≥ / ＞: 实际 ÷ 指标 × 分值, never above 分值
    ("≥ met exactly", "≥95%", "95%", 10, None, None, 10.0, None, None),
    ("≥ exceeded is capped", "≥95%", "99%", 10, None, None, 10.0, None, None),
    ("≥ missed", "≥95%", "90%", 10, None, None, 10 * 90 / 95, None, None),
    ("≥ in words 不少于", "不少于200人次", "150人次", 6, None, None, 6 * 150 / 200, None, None),
    ("＞ strict", ">100户", "80户", 5, None, None, 5 * 80 / 100, None, None),
    ("≥ target 0", "≥0次", "0次", 4, None, None, 4.0, None, None),
    # ≤ / ＜: 指标 ÷ 实际 × 分值
    ("≤ met", "≤12小时", "10小时", 5, None, None, 5.0, None, None),
    ("≤ missed", "≤12小时", "16小时", 5, None, None, 5 * 12 / 16, None, None),
    ("≤ actual 0", "≤3次", "0次", 5, None, None, 5.0, None, None),
    ("≤ money", "≤50万元", "60万元", 10, None, None, 10 * 50 / 60, None, None),
    # ＝: full when met, else 实际 ÷ 指标
    ("= met", "=1套", "1套", 8, None, None, 8.0, None, None),
    ("= short", "=4套", "3套", 8, None, None, 8 * 3 / 4, None, None),
    ("no sign met", "100%", "100%", 8, None, None, 8.0, None, None),
    ("no sign over is capped", "200人", "250人", 8, None, None, 8.0, None, None),
    # units converted to the target's
    ("万元 vs 元", "≤50万元", "480000元", 10, None, None, 10.0, None, None),
    ("元 vs 万元 missed", "≥100000元", "8万元", 10, None, None, 10 * 80000 / 100000, None, None),
    ("天 vs 小时", "≤2天", "60小时", 6, None, None, 6 * 48 / 60, None, None),
    ("万人 vs 人", "≥1.2万人", "9000人", 6, None, None, 6 * 9000 / 12000, None, None),
    ("bare number in target unit", "≥95%", "90", 10, None, None, 10 * 90 / 95, None, None),
    ("‰ vs %", "≤1%", "5‰", 4, None, None, 4.0, None, None),
    ("units that do not compare", "≥100人", "3天", 5, None, None, None, "selfeval-unit-mismatch", None),
    ("rate as a fraction", "≥95%", "0.9", 10, None, None, None, "selfeval-actual-fraction", None),
    # colloquial actuals
    ("百分之九十", "≥95%", "百分之九十", 10, None, None, 10 * 90 / 95, None, None),
    ("九成", "≥95%", "九成", 10, None, None, 10 * 90 / 95, None, None),
    ("两千人次", "≥2500人次", "两千人次", 5, None, None, 5 * 2000 / 2500, None, None),
    ("三个工作日", "≤5个工作日", "三个工作日", 5, None, None, 5.0, None, None),
    # ranges
    ("range inside", "90-100分", "95分", 5, None, None, 5.0, None, None),
    ("range below", "90-100分", "72分", 5, None, None, 5 * 72 / 90, None, None),
    # qualitative: the tier's band
    ("tier with score", "明显改善", "已改善", 10, "达成年度指标", 9.0, 9.0, None, None),
    ("tier top of band", "明显改善", "", 10, "达成年度指标", 10.0, 10.0, None, None),
    ("tier no score: lower bound", "明显改善", "", 10, "部分达成", None, 6.0, None, "selfeval-tier-score-missing"),
    ("tier score out of band", "明显改善", "", 10, "部分达成", 9.0, None, "selfeval-tier-score-out-of-band", None),
    ("未达成 band", "明显改善", "", 10, "未达成", 5.5, 5.5, None, None),
    ("qualitative without tier", "明显改善", "有所改善", 10, None, None, None, "selfeval-tier-missing", None),
    ("deadline met by a date", "2024年12月31日前", "2024年11月30日前", 5, None, None, 5.0, None, None),
    ("deadline in words needs a tier", "2024年12月31日前", "按期完成", 5, "达成年度指标", None, 4.0, None,
     "selfeval-tier-score-missing"),
    # what cannot be scored
    ("actual missing", "≥95%", "", 10, None, None, None, "selfeval-actual-missing", None),
    ("no number but a tier", "≥95%", "", 10, "部分达成", 7.0, 7.0, None, None),
    ("actual words against a number", "≥95%", "较好", 10, None, None, None, "selfeval-actual-unreadable", None),
    ("actual words, tier chosen", "≥95%", "较好", 10, "部分达成", 7.0, 7.0, None, None),
    ("target unreadable", "》95", "95%", 10, None, None, None, "selfeval-target-unreadable", None),
    ("zero weight", "≥95%", "90%", 0, None, None, 0.0, None, None),
    ("cost tuple met by money", "数量：2.00,单位：套,单价：100.00,金额：200.00", "200元", 5, None, None, 5.0, None, None),
    ("cost tuple in 万元", "数量：1.00,单位：套,单价：20000.00,金额：20000.00", "1.5万元", 5, None, None, 5 * 15000 / 20000,
     None, None),
]


@pytest.mark.parametrize("case, target, actual, weight, tier, typed, points, problem, warning", CASES,
                         ids=[c[0] for c in CASES])
def test_indicator_scores(case, target, actual, weight, tier, typed, points, problem, warning):
    score = indicator_score(parse_target(target), parse_target(actual), weight, tier, typed)
    assert score.problem == problem
    assert score.warning == warning
    if points is None:
        assert score.points is None
    else:
        assert score.points == pytest.approx(points, abs=1e-3)
        assert score.points <= weight, "no score is ever above its 分值"


@pytest.mark.parametrize("budget, spent, weight, points", [
    (100.0, 80.0, 10, 8.0), (100.0, 100.0, 10, 10.0), (100.0, 120.0, 10, 10.0), (50.0, 0.0, 10, 0.0)])
def test_budget_execution(budget, spent, weight, points):
    assert execution_score(budget, spent, weight).points == pytest.approx(points)


def test_budget_execution_needs_both_figures():
    assert execution_score(None, 10.0, 10).problem == "selfeval-execution-missing"
    assert execution_score(0.0, 10.0, 10).problem == "selfeval-execution-missing"


@pytest.mark.parametrize("total, expected", [(100, "优"), (90, "优"), (89.99, "良"), (80, "良"), (79.9, "中"),
                                             (60, "中"), (59.99, "差"), (0, "差")])
def test_grades(total, expected):
    assert grade(total) == expected


@pytest.mark.parametrize("total, rows, expected", [(50, 4, [12.5] * 4), (30, 7, [4.29] * 4 + [4.28] * 3),
                                                   (10, 3, [3.34, 3.33, 3.33]), (50, 0, [])])
def test_points_spread_evenly_and_add_up(total, rows, expected):
    got = spread(total, rows)
    assert sum(got) == pytest.approx(total if rows else 0)
    assert got == expected


def test_convert_refuses_what_does_not_compare():
    assert convert(1, "万元", "元") == 10000
    assert convert(1, "人", "元") is None


def test_department_rollup_adds_money_and_weights_scores_by_budget():
    from perfxl.summary.selfeval import department_rollup

    projects = [
        {"region": "市本级", "department": "甲部门", "budget": 100.0, "spent": 90.0, "total": 90.0, "grade": "优"},
        {"region": "市本级", "department": "甲部门", "budget": 300.0, "spent": 150.0, "total": 70.0, "grade": "中"},
        {"region": "市本级", "department": "乙部门", "budget": None, "spent": None, "total": 85.0, "grade": "良"},
    ]
    rows = {r["department"]: r for r in department_rollup(projects)}
    first, second = rows["甲部门"], rows["乙部门"]
    assert (first["department"], first["budget"], first["spent"]) == ("甲部门", 400.0, 240.0)
    assert first["rate"] == pytest.approx(240 / 400)
    assert first["score"] == pytest.approx((90 * 100 + 70 * 300) / 400)  # 75.0, not the plain mean 80
    assert (first["优"], first["中"]) == (1, 1)
    assert second["score"] == 85.0 and second["rate"] is None

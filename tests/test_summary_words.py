"""What the summaries and the 退回通知 say (#23): the words of what is wrong, never of the check that passed;
the weakest declarations first; reasons in Chinese; a roll-up's files named with the export they came from."""

from __future__ import annotations

from collections import Counter

import openpyxl
import pytest

from perfxl.summary.review import Review, ReviewLine, review


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from perfxl.demo import run_demo

    return run_demo(tmp_path_factory.mktemp("words") / "demo", echo=lambda *a: None)


def _rows(path, sheet) -> list[dict]:
    wb = openpyxl.load_workbook(path, read_only=True)
    try:
        rows = list(wb[sheet].iter_rows(values_only=True))
    finally:
        wb.close()
    return [dict(zip(rows[0], r)) for r in rows[1:]]


@pytest.mark.parametrize("codes, errors, dimension, said", [
    ({"required": 1}, 1, "完整性", "必填项未填写（1 处，−5）"),
    ({"indicator-deadline-before-year": 1}, 0, "可行性", "完成时间早于预算年度（1 处，−3）"),
    ({"indicator-unparseable": 1}, 1, "可行性", "指标值无法识别（1 处，−5）；有 1 个错误（−5）"),
    ({"indicator-category-missing": 2}, 0, "完整性", "缺少一类一级指标（2 处，−20）"),
    ({"indicator-direction": 1, "indicator-rate-as-fraction": 1}, 0, "适当性",
     "指标方向写反（成本、时效应为 ≤）（1 处，−3）；比率写法有误（1 处，−3）"),
    ({}, 5, "可行性", "有 5 个错误（−20，最多扣 20 分）"),
])
def test_a_lost_point_is_said_in_the_words_of_the_failure_with_the_points(codes, errors, dimension, said):
    _, findings, *_ = review(Counter(codes), errors, 1.0, 1.0)
    assert findings[dimension] == said


def test_the_share_and_the_coverage_say_what_is_short_and_what_it_cost():
    points, findings, *_ = review(Counter(), 0, 0.3, 0.5)
    assert findings["适当性"] == "定量指标只占 30%，不足一半（−4）" and points["适当性"] == 21
    assert findings["相关性"] == "成本指标只覆盖预算的 50%（−5）"
    assert review(Counter(), 0, 1.0, 1.5)[1]["相关性"] == "成本指标合计为预算的 150%，超出预算（−5）"


def test_no_check_that_passed_is_given_as_a_reason_on_the_demos_review_and_notices(demo):
    lines = _rows(demo["summary"], "目标审核")
    said = {(r["单位名称"], r["项目名称"]): r for r in lines}
    empty_overview = said[("绵阳市建设工程质量安全监督站", "住房公积金管理业务会议费")]
    assert empty_overview["完整性扣分原因"] == "必填项未填写（1 处，−5）"
    assert empty_overview["可行性扣分原因"] == "完成时间早于预算年度（1 处，−3）；有 1 个错误（−5）"
    unreadable = said[("游仙区文化广播电视和旅游局", "住房公积金管理业务会议费")]
    assert unreadable["可行性扣分原因"].startswith("指标值无法识别（1 处，−5）")
    passed = ("必填项已填写", "完成时间在预算年度内", "指标值可识别", "成本指标与预算一致（", "项目名称前后一致")
    for r in lines:
        for title, value in r.items():
            if title.endswith("扣分原因") and value:
                assert not any(words in value for words in passed), (title, value)
    notice = next(demo["returns"].glob("510701003_*_退回通知.xlsx"))
    texts = [v for row in openpyxl.load_workbook(notice)["退回通知"].iter_rows(values_only=True) for v in row if v]
    assert "退回修改后复审。完整性：必填项未填写（1 处，−5）。可行性：完成时间早于预算年度（1 处，−3）；有 1 个错误（−5）。" \
        in texts


def _line(grade: str, total: float, unit: str) -> ReviewLine:
    return ReviewLine("", "", "", unit, "项目", 5, 5, 1.0, 1.0, {}, {}, total, grade, "", 0, "", "", "")


def test_the_review_lists_a_declaration_with_errors_at_95_before_a_clean_one_at_94():
    sheet = Review(ctx=None)
    sheet.lines = [_line("优", 94, "甲"), _line("中", 95, "乙"), _line("良", 80, "丙"), _line("差", 59, "丁"),
                   _line("中", 62, "戊"), _line("优", 100, "己")]
    sheet.table()
    assert [(line.grade, line.total) for line in sheet.lines] == [
        ("差", 59), ("中", 62), ("中", 95), ("良", 80), ("优", 94), ("优", 100)]


def test_the_demos_review_goes_from_the_weakest_grade_to_the_strongest(demo):
    order = {"差": 0, "中": 1, "良": 2, "优": 3}
    lines = [(order[r["等级"]], r["得分"]) for r in _rows(demo["summary"], "目标审核")]
    assert lines == sorted(lines) and lines[0][0] == 1 and lines[-1][0] == 3

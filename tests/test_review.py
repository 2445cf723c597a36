"""The review round (绩效目标审核): four dimensions, grades with their consequences, and the return package."""

from __future__ import annotations

from collections import Counter

import openpyxl
import pytest
from click.testing import CliRunner

from perfxl.cli import cli
from perfxl.summary.review import review


@pytest.mark.parametrize("codes, errors, share, coverage, points, grade, consequence", [
    ({}, 0, 1.0, 1.0, {"完整性": 25, "相关性": 25, "适当性": 25, "可行性": 25}, "优", "进入预算"),
    ({"indicator-direction": 2}, 0, 1.0, None, {"完整性": 25, "相关性": 25, "适当性": 19, "可行性": 25}, "优", "进入预算"),
    ({"indicator-category-missing": 1, "required": 2}, 3, 0.8, None,
     {"完整性": 5, "相关性": 25, "适当性": 25, "可行性": 10}, "中", "退回修改后复审"),  # 65
    ({"indicator-category-missing": 2, "required": 4, "indicator-unparseable": 3}, 4, 0.2, 0.5,
     {"完整性": 0, "相关性": 20, "适当性": 19, "可行性": 0}, "差", "不得进入预算"),  # 39
    ({}, 0, 0.25, 0.5, {"完整性": 25, "相关性": 20, "适当性": 20, "可行性": 25}, "优", "进入预算"),
    ({"indicator-unparseable": 1}, 1, 1.0, None, {"完整性": 25, "相关性": 25, "适当性": 25, "可行性": 15}, "中",
     "退回修改后复审"),  # 90 points, but a declaration with errors goes back
    ({"indicator-placeholder": 2, "indicator-money-as-output": 1, "indicator-deadline-before-year": 1}, 0, 0.6, None,
     {"完整性": 15, "相关性": 20, "适当性": 25, "可行性": 22}, "良", "协商修改后进入预算"),  # 82
    ({"indicator-placeholder": 1, "indicator-rate-without-number": 1}, 0, 1.0, None,
     {"完整性": 20, "相关性": 25, "适当性": 22, "可行性": 25}, "优", "进入预算"),  # 92
])
def test_review_dimensions_grades_and_consequences(codes, errors, share, coverage, points, grade, consequence):
    got, findings, total, got_grade, got_consequence = review(Counter(codes), errors, share, coverage)
    assert got == points
    assert total == sum(points.values())
    assert (got_grade, got_consequence) == (grade, consequence)
    assert all(findings[d] for d, p in points.items() if p < 25), "every lost point says why"


def test_return_package_for_units_to_revise(tmp_path):
    from perfxl.demo import run_demo

    demo = run_demo(tmp_path / "demo", echo=lambda *a: None)
    folder = tmp_path / "demo"
    r = CliRunner().invoke(cli, ["merge", str(folder / "2-收件箱"), "-o", str(tmp_path / "审核.xlsx"), "--roster",
                                 str(folder / "名单.csv"), "--returns", str(tmp_path / "退回"), "--return-by",
                                 "2021-03-15"])
    assert r.exit_code == 0, r.output
    notices = sorted((tmp_path / "退回").glob("*_退回通知.xlsx"))
    annotated = sorted((tmp_path / "退回").glob("*_校验.xlsx"))
    wb = openpyxl.load_workbook(tmp_path / "审核.xlsx", read_only=True)
    rows = list(wb["目标审核"].iter_rows(values_only=True))
    wb.close()
    header = rows[0]
    sent_back = {row[header.index("单位名称")] for row in rows[1:] if row[header.index("等级")] in {"中", "差"}}
    assert sent_back and len(notices) == len(sent_back) == len(annotated)
    notice = openpyxl.load_workbook(notices[0])["退回通知"]
    texts = [c for row in notice.iter_rows(values_only=True) for c in row if c]
    assert "2021-03-15" in texts and any("!" in str(t) for t in texts), "the deadline and every error's cell"
    assert demo["summary"].exists()


def test_demo_runs_the_whole_year(tmp_path):
    """declare → merge and review → monitor → self-evaluate → merge, with the cases the demo promises."""
    from perfxl.demo import run_demo

    demo = run_demo(tmp_path / "demo", echo=lambda *a: None)

    def problems(summary):
        wb = openpyxl.load_workbook(summary, read_only=True)
        rows = list(wb["校验问题"].iter_rows(values_only=True))
        names = wb.sheetnames
        wb.close()
        header = rows[0]
        found = Counter((r[header.index("单位名称")], r[header.index("规则")]) for r in rows[1:])
        return found, names

    monitor, sheets = problems(demo["monitor"])
    assert "监控预警" in sheets and "项目清单" not in sheets and "目标审核" not in sheets
    assert {unit for unit, code in monitor if code == "monitor-cause-missing"} == {"绵阳市城市管理综合执法支队"}
    selfeval, sheets = problems(demo["selfeval"])
    assert {"自评得分", "指标得分"} <= set(sheets)
    assert {unit for unit, code in selfeval if code == "selfeval-reason-missing"} == {"绵阳市人才服务中心"}
    assert {unit for unit, code in selfeval if code == "selfeval-target-changed"} == {"绵阳市房产交易中心"}
    assert not any(unit == "绵阳市建设工程质量安全监督站" for unit, _ in selfeval), "missed, but said why"
    assert sorted(demo["returns"].glob("*_退回通知.xlsx"))

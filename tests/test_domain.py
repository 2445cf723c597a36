"""Domain constants have one home (perfxl/domain.py); these tests reproduce what disagreeing copies did."""

from __future__ import annotations

import pytest

from perfxl import generator as generate
from perfxl.merging import MergeOptions, run_merge
from perfxl.spec import load_spec

UNIT = {"code": "620001", "name": "成本单位", "department": "测试部门"}


def _form(cost_target: str) -> bytes:
    spec = load_spec("national/project", 2022, unit=UNIT)
    values = {"fields": {"unit_name": UNIT["name"], "project_name": "设备购置", "department": "测试部门",
                         "implementing_unit": UNIT["name"], "project_attr": "新增项目", "project_period": "2022年",
                         "long_term_goal": "长期目标", "annual_goal": "年度目标", "preparer": "张三",
                         "phone": "88150231", "funds_total_annual": 5, "funds_fiscal_annual": 5,
                         "funds_total_mid": 5, "funds_fiscal_mid": 5},
              "tables": {"indicators": [["产出指标", "数量指标", "设备数量", "≥10台"],
                                        ["产出指标", "成本指标", "设备购置成本", cost_target],
                                        ["效益指标", "社会效益指标", "服务覆盖率", "≥90%"],
                                        ["满意度指标", "服务对象满意度指标", "满意度", "≥95%"]]}}
    return generate.build_workbook(spec, UNIT, values=[values])


@pytest.mark.parametrize("target", ["≤5万元", "≤50千元", "≤50000元"])
def test_cost_in_qianyuan_covers_the_budget_like_wanyuan(tmp_path, target):
    """spec.py's money units lacked 千元 while values.py had it: ≤50千元 was not costed, ≤5万元 was."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "form.xlsx").write_bytes(_form(target))
    result = run_merge([inbox], None, MergeOptions(jobs=1))
    quality = next(t for t in result.tables if t.name == "目标审核")
    titles = [title for title, _ in quality.columns]
    row = next(iter(quality.rows))
    assert row[titles.index("成本指标覆盖预算")] == pytest.approx(1.0)


def test_year_defaults_to_next_year_everywhere():
    import datetime

    from perfxl.domain import default_year

    assert default_year() == datetime.date.today().year + 1
    assert load_spec("national/project").year == default_year()

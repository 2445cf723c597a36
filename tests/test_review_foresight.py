"""目标审核 foresees the self-evaluation (#20, item 4): a 一级 whose scoring group carries 自评 points but of
which a project declared nothing costs points under 完整性, with the points at stake in the reason. On the 绵阳
form 效益指标 is only recommended: a project without one was graded 优 97, then scored 66.69 at year end with
every target met, because the 30 points of 效益 could not be earned."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import openpyxl
import pytest

from perfxl.summary.review import UNSCORABLE_POINTS, review, scored_groups

SHIPPED = Path(__file__).resolve().parent.parent / "templates"


def _form(folder: Path, code: str, name: str, drop: set[str]) -> Path:
    """A filled 绵阳 form of one unit: the seed's second project, without the indicator rows of `drop`."""
    from perfxl.demo import SAMPLES, _scaled_project
    from perfxl.fill import fill_workbook, load_sample
    from perfxl.generator import generate_forms
    from perfxl.roster import Unit
    from perfxl.spec import load_spec

    blank = folder.parent / f"空白-{code}"
    generate_forms("mianyang/project", 2021, [Unit(code, name, "涪城区财政局")], blank)
    project = _scaled_project(load_sample(SAMPLES / "seed-002-mianyang-project.yaml")["workbooks"][0]["projects"][1],
                              1.0, name)
    project["tables"]["indicators"] = [r for r in project["tables"]["indicators"] if r[0] not in drop]
    folder.mkdir(parents=True, exist_ok=True)
    return fill_workbook(load_spec("mianyang/project", 2021), next(blank.glob(f"{code}_*.xlsx")),
                         folder / f"{code}.xlsx", [project])


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory):
    """目标审核 of three 绵阳 projects, clean but for what each leaves out: {unit name: its line}."""
    from perfxl.merging import MergeOptions, run_merge

    root = tmp_path_factory.mktemp("foresight")
    inbox = root / "收件箱"
    _form(inbox, "519001", "齐全单位", set())
    _form(inbox, "519002", "缺效益单位", {"效益指标"})
    _form(inbox, "519003", "缺效益和满意度单位", {"效益指标", "满意度指标"})
    result = run_merge([inbox], root / "汇总.xlsx", MergeOptions(jobs=1), materialize=True)
    return {line.unit_name: line for line in result.table("目标审核").records}


def test_a_mianyang_project_without_benefit_indicators_loses_completeness_points_and_says_why(reviewed):
    line = reviewed["缺效益单位"]
    assert line.findings["完整性"] == "未设效益指标，自评时 30 分无法得分（−10）；自评最高只能得 70 分，审核等级至多为中"
    assert line.dimensions["完整性"] == 25 - UNSCORABLE_POINTS == 15
    # 90 points, but never better than the year end can give with every target met: 70, 中 (it was 优 97
    # here and 66.69 at year end)
    assert (line.total, line.grade, line.consequence) == (90, "中", "退回修改后复审")
    assert line.errors == 0, "a recommended 一级 left out is no error: the unit is not sent back for it alone"


def test_a_mianyang_project_with_every_scored_level_loses_nothing(reviewed):
    line = reviewed["齐全单位"]
    assert line.findings["完整性"] == "" and line.dimensions["完整性"] == 25
    assert (line.total, line.grade) == (100, "优")


def test_each_scoring_group_left_out_costs_its_own_points_and_the_grade_follows(reviewed):
    line = reviewed["缺效益和满意度单位"]
    assert line.findings["完整性"] == ("未设效益指标，自评时 30 分无法得分（−10）；"
                                     "未设满意度指标，自评时 10 分无法得分（−10）；自评最高只能得 60 分，审核等级至多为中")
    assert (line.dimensions["完整性"], line.total, line.grade, line.consequence) == (5, 80, "中", "退回修改后复审")


def test_a_required_level_left_out_is_not_charged_twice():
    """Where every 一级 is required (the national form), a missing one is already an error and 缺少一类一级指标:
    nothing is foreseen. On the 绵阳 form 产出指标 is required; only 效益 and 满意度 are foreseen."""
    from perfxl.spec import load_spec

    assert scored_groups(load_spec("national/project", 2021), None)[1] == ()
    foreseen = scored_groups(load_spec("mianyang/project", 2021), None)[1]
    assert [(g.group, g.points, g.missing) for g in foreseen] == [("效益", 30, "效益指标"), ("满意度", 10, "满意度指标")]


def test_the_points_at_stake_come_from_the_groups_file_a_bureau_may_change(tmp_path):
    from perfxl.spec import load_spec

    (tmp_path / "hierarchies").mkdir()
    text = (SHIPPED / "hierarchies" / "selfeval-groups.yaml").read_text(encoding="utf-8")
    changed = text.replace("  产出: 50\n  效益: 30\n  满意度: 10\n", "  产出: 60\n  效益: 30\n  满意度: 0\n")
    assert changed != text
    (tmp_path / "hierarchies" / "selfeval-groups.yaml").write_text(changed, encoding="utf-8")
    foreseen = scored_groups(load_spec("mianyang/project", 2021, templates_dir=tmp_path), tmp_path)[1]
    assert [(g.group, g.points) for g in foreseen] == [("效益", 30)], "a group of 0 points costs nothing"


def test_the_reason_names_the_points_it_was_given():
    points, findings, total, grade, _ = review(Counter({"required": 1}), 0, 1.0, 1.0, [("效益指标", 25.5)])
    assert findings["完整性"] == ("必填项未填写（1 处，−5）；未设效益指标，自评时 25.5 分无法得分（−10）；"
                                "自评最高只能得 74.5 分，审核等级至多为中")
    assert points["完整性"] == 10 and total == 85 and grade == "中"
    _, findings, _, grade, _ = review(Counter(), 0, 1.0, 1.0, [("满意度指标", 5)])
    assert grade == "优" and "至多" not in findings["完整性"], "95 reachable: 优 stays possible, nothing capped"


def test_the_demos_review_and_its_notice_say_what_the_self_evaluation_cannot_score(tmp_path):
    from perfxl.demo import run_demo

    demo = run_demo(tmp_path / "demo", echo=lambda *a: None)
    wb = openpyxl.load_workbook(demo["summary"], read_only=True)
    rows = list(wb["目标审核"].iter_rows(values_only=True))
    wb.close()
    lines = {(r["单位名称"], r["项目名称"]): r for r in (dict(zip(rows[0], row)) for row in rows[1:])}
    training = lines[("绵阳市建设工程质量安全监督站", "住房公积金管理系统业务培训费")]  # declared no 效益指标
    assert training["完整性扣分原因"] == "未设效益指标，自评时 30 分无法得分（−10）；自评最高只能得 70 分，审核等级至多为中"
    assert (training["得分"], training["等级"]) == (87, "中")  # was 优 97; its self-evaluation scores 66.69
    office = lines[("绵阳市社会保险事业管理局", "公积金管委会日常办公业务费")]  # no 满意度指标, and an error
    assert office["完整性扣分原因"] == "未设满意度指标，自评时 10 分无法得分（−10）"
    notice = next(demo["returns"].glob("510702002_*_退回通知.xlsx"))
    texts = [v for row in openpyxl.load_workbook(notice)["退回通知"].iter_rows(values_only=True) for v in row if v]
    assert "退回修改后复审。完整性：未设满意度指标，自评时 10 分无法得分（−10）。可行性：有 1 个错误（−5）。" in texts
    # Before: 优 20, 中 4. The three clean projects without 效益指标 move from 优 97 to 中 87: at most 70 at year end.
    assert Counter(r["等级"] for r in lines.values()) == Counter({"优": 17, "中": 7})


def test_the_review_names_the_points_the_self_evaluation_form_is_prefilled_with():
    """One source: the 分值 followup spreads over a group's rows add up to the points the review names."""
    from perfxl.followup import group_map
    from perfxl.rounds import ROUNDS
    from perfxl.spec import load_spec

    points, _ = group_map(None, ROUNDS["selfeval"].groups_file)
    foreseen = scored_groups(load_spec("mianyang/project", 2021), None)[1]
    assert {g.group: g.points for g in foreseen} == {group: points[group] for group in ("效益", "满意度")}

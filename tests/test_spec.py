import json
from pathlib import Path

import pytest

from perfxl.errors import SpecError, UnknownTemplate
from perfxl.spec import describe, layout, list_templates, load_spec

SEVEN = ["mianyang/project", "national/project", "national/project-2021", "shanghai/project-2018",
         "shanghai/project-2020", "yancheng/department", "yancheng/project"]


FOLLOW_UPS = ["national/adjust", "national/department-adjust", "national/department-monitor", "national/department-selfeval", "national/monitor",
              "national/selfeval"]  # generated from a declaration ledger (tests/test_selfeval.py, test_department_rounds.py)


def test_the_shipped_templates_are_listed():
    assert list_templates() == sorted(SEVEN + FOLLOW_UPS)


@pytest.mark.parametrize("name", SEVEN)
def test_every_template_renders_and_lays_out(name):
    spec = load_spec(name, 2023, unit={"code": "001", "name": "某单位", "department": "某部门"})
    lay = layout(spec)
    assert set(lay.fields) == set(spec.fields), "every field has a cell"
    assert set(lay.tables) == set(spec.tables)
    cells = [(p.row, p.col) for p in lay.placements]
    assert len(cells) == len(set(cells)), "no two things on one cell"
    assert spec.indicator_table() is not None


def test_labels_follow_the_seeds():
    labels = {f.label for f in load_spec("mianyang/project", 2021).fields.values()}
    assert {"项目属性：", "功能科目编码：", "项目起止时间：", "项目概况"} <= labels
    spec = load_spec("yancheng/project", 2022)
    assert [c.label for c in spec.tables["indicators"].columns] == ["一级指标", "二级指标", "三级指标",
                                                                     "半年（程）指标值", "全年（程）指标值"]
    assert spec.money_unit == "万元" and load_spec("shanghai/project-2020", 2020).money_unit == "元"
    prefilled = load_spec("yancheng/project", 2022).tables["indicators"].prefill
    assert {row[0] for row in prefilled} == {"决策", "过程"} and len(prefilled) == 11


def test_national_2021_profile_makes_cost_a_level_one():
    h = load_spec("national/project-2021", 2022).indicator_table().indicator.hierarchy
    assert h.levels["成本指标"] == ("经济成本指标", "社会成本指标", "生态环境成本指标")
    assert h.levels["产出指标"] == ("数量指标", "质量指标", "时效指标")


def test_region_parameter_reaches_the_title():
    assert load_spec("national/project", 2022, region="南京市").title == "南京市项目支出绩效目标申报表"
    assert load_spec("national/project", 2022).title == "项目支出绩效目标申报表"


def test_describe_has_the_documented_shape():
    info = json.loads(json.dumps(describe(load_spec("shanghai/project-2018", 2018))))
    assert {"template", "version", "title", "money_unit", "multi_project", "fields", "tables"} <= set(info)
    assert info["multi_project"] is True
    for f in info["fields"]:
        assert {"id", "label", "type", "required", "name", "choices"} <= set(f)
        assert f["name"] == "f_" + f["id"]
    for t in info["tables"]:
        assert {"id", "label", "name", "columns"} <= set(t) and t["name"] == "t_" + t["id"]
        assert all({"id", "label", "type"} <= set(c) for c in t["columns"])


def test_unknown_template_lists_the_known_ones():
    with pytest.raises(UnknownTemplate, match="yancheng/project"):
        load_spec("nowhere/form")
    with pytest.raises(UnknownTemplate):
        load_spec("../../etc/passwd")


def test_jinja_error_names_file_and_line(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "form.yaml").write_text("template: bad/form\n\nversion: {{ year \n", encoding="utf-8")
    with pytest.raises(SpecError, match=r"form.yaml:3"):
        load_spec("bad/form", templates_dir=tmp_path)


def test_missing_parameter_fails_loudly(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "form.yaml").write_text("template: {{ nosuchparam }}\n", encoding="utf-8")
    with pytest.raises(SpecError, match="nosuchparam"):
        load_spec("bad/form", templates_dir=tmp_path)


def test_hostile_unit_name_cannot_break_the_yaml():
    name = 'x"\n  evil: [1, 2]\n# }}{% raw %}'
    spec = load_spec("yancheng/project", 2022, unit={"code": "1", "name": name, "department": "d"})
    assert spec.fields["implementing_unit"].default == name


def test_own_templates_folder_overrides(tmp_path):
    (tmp_path / "mine").mkdir()
    text = Path(load_spec("national/project").source).read_text(encoding="utf-8")
    (tmp_path / "mine" / "form.yaml").write_text(text, "utf-8")
    assert "mine/form" in list_templates(tmp_path)
    assert load_spec("mine/form", templates_dir=tmp_path).title.endswith("项目支出绩效目标申报表")

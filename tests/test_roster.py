"""The roster as a bureau writes it: what perfxl says when a column is missing, in the roster's own words."""

from __future__ import annotations

from click.testing import CliRunner

from perfxl.cli import cli


def _generate(tmp_path, roster_text: str, name: str = "名单.csv"):
    roster = tmp_path / name
    roster.write_text(roster_text, encoding="utf-8")
    return CliRunner().invoke(cli, ["generate", "national/project", "--year", "2025", "--roster", str(roster),
                                    "-o", str(tmp_path / "空白表")])


def test_a_chinese_roster_missing_a_column_is_told_the_header_it_uses(tmp_path):
    """A roster headed 单位编码,单位名称,地区 was told "missing department"."""
    result = _generate(tmp_path, "单位编码,单位名称,地区\n001,甲单位,某区\n")
    assert result.exit_code == 2
    said = result.output.split("(roster")[0]  # the Chinese part, before the English
    assert "名单缺少「主管部门」列" in said and "department" not in said.split("可写作")[0]
    assert "「主管部门」可写作 主管部门、部门 或 department" in said
    assert "第一行是：单位编码、单位名称、地区" in said
    assert not (tmp_path / "空白表").exists()


def test_an_english_roster_missing_columns_is_told_them_in_english_with_the_chinese_headers_accepted(tmp_path):
    result = _generate(tmp_path, "name,region\n甲单位,某区\n")
    assert result.exit_code == 2
    assert "名单缺少「code」「department」列" in result.output
    assert "「code」可写作 code、单位编码、单位代码 或 编码" in result.output
    assert "「department」可写作 department、主管部门 或 部门" in result.output


def test_a_chinese_roster_with_a_bad_project_count_names_its_column(tmp_path):
    result = _generate(tmp_path, "单位编码,单位名称,主管部门,项目数\n001,甲单位,某部门,三\n")
    assert result.exit_code == 2
    assert "名单第 2 行 项目数 不是整数：'三'" in result.output


def test_a_folder_given_as_the_roster_is_said_to_be_a_folder(tmp_path):
    (tmp_path / "名单").mkdir()
    result = CliRunner().invoke(cli, ["generate", "national/project", "--year", "2025", "--roster",
                                      str(tmp_path / "名单"), "-o", str(tmp_path / "空白表")])
    assert result.exit_code == 2
    assert "是文件夹" in result.output and str(tmp_path / "名单") in result.output


def test_a_roster_name_too_long_for_any_form_is_told_which_row_before_anything_is_written(tmp_path):
    """A 32,760-character name made a 填表说明 line past a cell's 32,767: the round stopped at that unit
    with xlsxwriter's -2 (or, patched, handed out forms over the limit); one of 3,000 a row 960 pt tall."""
    name = "某" * 3000
    result = _generate(tmp_path, f"单位编码,单位名称,主管部门\n001,甲单位,某部门\n002,{name},某部门\n")
    assert result.exit_code == 2
    assert "名单第 3 行「单位名称」过长：3,000 字，上限 200 字" in result.output
    assert not (tmp_path / "空白表").exists()
    fine = _generate(tmp_path, f"单位编码,单位名称,主管部门\n001,{'某' * 200},{'部' * 200}\n")
    assert fine.exit_code == 0, fine.output

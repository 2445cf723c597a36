"""The battery of mistakes clerks make, each in its own copy of a filled seed form."""

import shutil

import openpyxl
import pytest
from click.testing import CliRunner

from perfxl.cli import cli
from perfxl.fill import names_by_sheet
from perfxl.read import read_workbook
from perfxl.validator import check_form

from .conftest import sha256


def edit(src, dst, changes):
    """changes: (sheet, defined name or None, cell offset or A1, value) applied with openpyxl."""
    wb = openpyxl.load_workbook(src)
    names = names_by_sheet(wb)
    for sheet, name, where, value in changes:
        ws = wb[sheet]
        if name:
            first = names[sheet][name].split(":")[0]
            cell = ws[first].offset(*where) if isinstance(where, tuple) else ws[first]
        else:
            cell = ws[where]
        cell.value = value
        if isinstance(value, str) and value.startswith("="):
            cell.data_type = "s"
    wb.save(dst)
    return dst


def problems(path, **kw):
    checked = check_form(read_workbook(path), **kw)
    return [(p.code, p.sheet, p.cell, p.severity) for p in checked.problems]


def cell_of(path, sheet, name):
    return names_by_sheet(openpyxl.load_workbook(path))[sheet][name].split(":")[0]


@pytest.mark.parametrize("case", ["required", "text-in-number", "funding", "subproject", "cost-tuple", "level2",
                                  "missing-satisfaction", "unparseable", "out-of-year-date"])
def test_each_mistake_is_caught_at_its_cell(seeds, tmp_path, case):
    yc, mi, sh18 = seeds["000-0"], seeds["002-0"], seeds["004-0"]
    dst = tmp_path / f"{case}.xlsx"
    if case == "required":
        edit(yc.filled, dst, [("项目绩效目标表", "f_necessity", None, None)])
        expected = ("required", "项目绩效目标表", cell_of(yc.filled, "项目绩效目标表", "f_necessity"))
    elif case == "text-in-number":
        edit(yc.filled, dst, [("项目绩效目标表", "f_funding_carryover_budget", None, "约五万")])
        expected = ("type-number", "项目绩效目标表", cell_of(yc.filled, "项目绩效目标表", "f_funding_carryover_budget"))
    elif case == "funding":  # one source breaks the subtotal by 0.01 万元
        edit(yc.filled, dst, [("项目绩效目标表", "f_funding_general_budget", None, 1224.13)])
        expected = ("sum-mismatch", "项目绩效目标表", cell_of(yc.filled, "项目绩效目标表", "f_funding_subtotal_budget"))
    elif case == "subproject":  # a sub-project off by 1 元
        edit(sh18.filled, dst, [("项目1", "t_subprojects", (0, 3), 1256857)])
        expected = ("sum-mismatch", "项目1", cell_of(sh18.filled, "项目1", "f_current_budget"))
    elif case == "cost-tuple":
        edit(mi.filled, dst, [("项目1", "t_indicators", (0, 4), "数量：2.00,单位：套,单价：300000.00,金额：300000.00")])
        first = cell_of(mi.filled, "项目1", "t_indicators")
        expected = ("cost-tuple-mismatch", "项目1", "E" + first[1:])
    elif case == "level2":
        edit(yc.filled, dst, [("项目绩效目标表", "t_indicators", (20, 1), "满意度指标")])  # a 数量指标 row
        first = cell_of(yc.filled, "项目绩效目标表", "t_indicators")
        expected = ("indicator-level2-mismatch", "项目绩效目标表", f"B{int(first[1:]) + 20}")
    elif case == "missing-satisfaction":
        edit(yc.filled, dst, [("项目绩效目标表", "t_indicators", (r, c), None) for r in (56, 57) for c in (0, 1, 2, 4, 5)])
        expected = ("indicator-category-missing", "项目绩效目标表", "")
    elif case == "unparseable":
        edit(yc.filled, dst, [("项目绩效目标表", "t_indicators", (13, 5), "》 万元")])
        first = cell_of(yc.filled, "项目绩效目标表", "t_indicators")
        expected = ("indicator-unparseable", "项目绩效目标表", f"F{int(first[1:]) + 13}")
    elif case == "out-of-year-date":
        edit(sh18.filled, dst, [("项目1", "f_start_date", None, "2017-01-01")])
        expected = ("date-out-of-year", "项目1", cell_of(sh18.filled, "项目1", "f_start_date"))
    found = problems(dst)
    assert (*expected, "error") in found, found
    assert sum(1 for p in found if p[3] == "error") == 1, found


def test_values_written_other_ways_are_read_the_same(seeds, tmp_path):
    yc = seeds["000-0"]
    dst = edit(yc.filled, tmp_path / "ways.xlsx", [
        ("项目绩效目标表", "f_funding_total_budget", None, "1,224.14"),
        ("项目绩效目标表", "f_funding_subtotal_budget", None, "１２２４.１４"),
        ("项目绩效目标表", "f_funding_general_budget", None, "1224.14万元"),
        ("项目绩效目标表", "t_indicators", (22, 5), ">=90%"),
        ("项目绩效目标表", "t_indicators", (23, 5), "≧85％"),
        ("项目绩效目标表", "t_indicators", (24, 5), "=100%"),
    ])
    checked = check_form(read_workbook(dst))
    assert checked.errors == 0, checked.problems
    row = checked.projects[0].indicators[22]
    assert (row.targets["full"].op, row.targets["full"].value) == ("≥", 90.0)


def test_wrong_year_and_other_version(seeds, tmp_path):
    sh = seeds["003-0"]
    assert ("stamp-year", "", "", "error") in problems(sh.filled, expect_year=2021)
    dst = edit(sh.filled, tmp_path / "v.xlsx", [("_perfxl", None, "B3", "2019.1")])
    assert ("stamp-version", "", "", "error") in problems(dst)


def test_roster_mismatch(seeds):
    from perfxl.roster import Unit

    roster = {"999": Unit("999", "别的单位", "部门")}
    assert ("stamp-unit-unknown", "", "", "error") in problems(seeds["003-0"].filled, roster=roster)


def test_stamp_lost_recognised_by_title_and_labels(seeds, tmp_path):
    wb = openpyxl.load_workbook(seeds["002-0"].filled)
    del wb["_perfxl"]
    wb.custom_doc_props.props.clear()
    wb.save(tmp_path / "nostamp.xlsx")
    form = read_workbook(tmp_path / "nostamp.xlsx")
    assert (form.template, form.year, form.stamp_source) == ("mianyang/project", 2021, "labels")
    assert (form.unit_code, form.unit_name) == (None, "绵阳市住房公积金服务中心")
    found = problems(tmp_path / "nostamp.xlsx")
    assert ("stamp-missing", "", "", "warning") in found
    assert not [p for p in found if p[3] == "error"]
    from perfxl.merging import MergeOptions, run_merge

    from .conftest import write_roster

    roster = write_roster(tmp_path / "r.csv", [("510700201", "绵阳市住房公积金服务中心", "住建局"), ("2", "别的单位", "x")])
    (tmp_path / "in").mkdir()
    (tmp_path / "nostamp.xlsx").rename(tmp_path / "in" / "nostamp.xlsx")
    result = run_merge([tmp_path / "in"], None, MergeOptions(jobs=1, roster=roster))
    assert [u.code for u in result.missing_units] == ["2"]


def test_cli_json_annotate_and_exit_codes(seeds, tmp_path):
    bad = edit(seeds["000-0"].filled, tmp_path / "坏表.xlsx", [("项目绩效目标表", "f_necessity", None, None)])
    before = sha256(bad)
    r = CliRunner().invoke(cli, ["validate", str(bad), str(seeds["003-0"].filled), "--json", "--annotate", str(tmp_path / "ann")])
    assert r.exit_code == 1
    import json

    report = json.loads(r.output)
    first = report["files"][0]
    assert {"path", "template", "year", "unit", "projects", "problems"} <= set(first)
    assert first["problems"][0] == {"severity": "error", "code": "required", "sheet": "项目绩效目标表",
                                    "cell": cell_of(bad, "项目绩效目标表", "f_necessity"), "field": "necessity",
                                    "label": "立项必要性", "params": {"label": "立项必要性"},
                                    "message": "「立项必要性」为必填项，尚未填写"}
    assert sha256(bad) == before, "inputs are never modified"
    annotated = openpyxl.load_workbook(tmp_path / "ann" / "坏表_校验.xlsx")
    assert annotated.sheetnames[0] == "校验结果"
    cell = annotated["项目绩效目标表"][first["problems"][0]["cell"]]
    assert cell.comment is not None and "立项必要性" in cell.comment.text
    listing = annotated["校验结果"]
    assert [c.value for c in listing[2]][:2] == ["严重程度", "说明"], "the clerk reads the words first"
    assert (listing["B3"].value, listing["E3"].value) == ("「立项必要性」为必填项，尚未填写", "立项必要性")
    assert listing["D3"].hyperlink is not None
    ok = CliRunner().invoke(cli, ["validate", str(seeds["003-0"].filled)])
    assert ok.exit_code == 0
    r = CliRunner().invoke(cli, ["validate", str(tmp_path / "nothing-here.xlsx")])
    assert r.exit_code == 2


def test_english_messages(seeds, tmp_path):
    bad = edit(seeds["000-0"].filled, tmp_path / "b.xlsx", [("项目绩效目标表", "f_necessity", None, None)])
    checked = check_form(read_workbook(bad))
    assert checked.problems[0].text("en") == "'立项必要性' is required but empty"
    assert checked.problems[0].message == "「立项必要性」为必填项，尚未填写"


def test_copy_is_not_confused_with_original(seeds, tmp_path):
    shutil.copy(seeds["000-0"].filled, tmp_path / "copy.xlsx")
    assert problems(tmp_path / "copy.xlsx") == problems(seeds["000-0"].filled)

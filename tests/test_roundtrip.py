"""Generate → fill through the defined names with the seeds' values → read → validate → compare."""

import pytest

from perfxl.read import read_workbook
from perfxl.validator import check_form
from perfxl.values import to_date

SEED_KEYS = ["000-0", "001-0", "002-0", "003-0", "004-0", "004-1", "004-2"]


def _same(expected, got, ftype):
    if expected in (None, ""):
        return got in (None, "")
    if ftype in {"money", "number", "integer"}:
        return float(got) == float(expected)
    if ftype == "date" and not isinstance(expected, (int, float)):
        return to_date(got)[0] == to_date(expected)[0]
    return str(got) == str(expected)


@pytest.mark.parametrize("key", SEED_KEYS)
def test_every_seed_value_comes_back_with_its_cell(seeds, key):
    seed = seeds[key]
    form = read_workbook(seed.filled)
    assert form.template == seed.template and form.year == seed.year and form.unit_code == seed.unit["code"]
    assert form.stamp_source == "sheet"
    assert len(form.sheets) == len(seed.projects)
    for sheet, project in zip(form.sheets, seed.projects):
        for fid, value in project["fields"].items():
            cell = sheet.fields[fid]
            assert _same(value, cell.value, seed.spec.fields[fid].type), (fid, value, cell)
            assert cell.address
        for tid, rows in project["tables"].items():
            got = sheet.tables[tid]
            assert len(got) == len(rows)
            columns = [c.id for c in seed.spec.tables[tid].columns]
            for row, expected in zip(got, rows):
                for cid, value in zip(columns, expected):
                    assert _same(value, row[cid].value, seed.spec.tables[tid].column(cid).type), (tid, cid, value, row[cid])


@pytest.mark.parametrize("key", SEED_KEYS)
def test_seeds_validate_without_errors(seeds, key):
    checked = check_form(read_workbook(seeds[key].filled))
    assert checked.errors == 0, [(p.code, p.sheet, p.cell, p.message) for p in checked.problems if p.severity == "error"]


def test_the_seeds_real_inconsistencies_are_warnings(seeds):
    mianyang = check_form(read_workbook(seeds["002-0"].filled))
    codes = [(p.code, p.sheet) for p in mianyang.problems]
    assert ("name-mismatch", "项目9") in codes
    assert sum(1 for c, _ in codes if c == "indicator-deadline-before-year") == 3
    assert all(p.severity == "warning" for p in mianyang.problems)
    shanghai = check_form(read_workbook(seeds["004-0"].filled))
    assert [p.code for p in shanghai.problems if p.code == "indicator-rate-as-fraction"] == ["indicator-rate-as-fraction"]
    department = check_form(read_workbook(seeds["001-0"].filled))
    assert [(p.code, p.severity) for p in department.problems if p.code != "indicator-rate-without-number"] == [
        ("indicator-empty-value", "warning")]
    # 盐城 wrote 制度知晓率 and 职工满意度 as "提高" for each of four periods: rates that no year-end score can
    # measure; 上海 wrote 工作效率 so on two projects.
    rates = [(p.params["level3"], p.params["value"]) for p in department.problems
             if p.code == "indicator-rate-without-number"]
    assert rates == [("制度知晓率", "提高")] * 4 + [("职工满意度", "提高")] * 4
    assert [p.params["level3"] for p in shanghai.problems if p.code == "indicator-rate-without-number"] == ["工作效率"] * 2


def test_seed_numbers(seeds):
    """The seeds' own totals, recomputed from what was read back."""
    mianyang = check_form(read_workbook(seeds["002-0"].filled))
    assert sum(p.values["budget"] for p in mianyang.projects) == 8_496_600
    for project in mianyang.projects:  # cost indicators' 金额 add up to the project budget
        amounts = [r.targets["value"].amount for r in project.indicators if r.targets["value"].kind == "cost"]
        assert sum(amounts) == project.values["budget"]
    yancheng = check_form(read_workbook(seeds["000-0"].filled)).projects[0]
    assert yancheng.values["funding_total_budget"] == 1224.14
    assert sum(r["full"] for r in yancheng.tables["expenses"]) == pytest.approx(1224.14)
    assert len(yancheng.indicators) == 58
    dept = check_form(read_workbook(seeds["001-0"].filled)).projects[0]
    assert (dept.values["spending_total_full"], dept.values["spending_total_h1"], dept.values["spending_total_q3"]) == (5218.16, 2165.0, 3647.5)
    totals = {}
    for key in ("004-0", "004-1", "004-2"):
        checked = check_form(read_workbook(seeds[key].filled))
        totals[checked.unit_name] = sum(p.values["current_budget"] for p in checked.projects)
        for p in checked.projects:
            assert sum(r["amount"] for r in p.tables["subprojects"]) == p.values["current_budget"]
    assert totals == {"上海市公积金管理中心": 6_621_259, "上海市城乡建设和交通发展研究院": 7_246_485, "上海市房地产学校": 1_069_600}
    shanghai2020 = check_form(read_workbook(seeds["003-0"].filled))
    assert sum(p.values["current_budget"] for p in shanghai2020.projects) == 34_548_079


def test_reading_never_modifies_the_input(seeds):
    from .conftest import sha256

    before = {k: sha256(s.filled) for k, s in seeds.items()}
    for s in seeds.values():
        check_form(read_workbook(s.filled))
    assert before == {k: sha256(s.filled) for k, s in seeds.items()}

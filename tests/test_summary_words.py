"""What the summaries and the 退回通知 say (#23): the words of what is wrong, never of the check that passed;
the weakest declarations first; reasons in Chinese; a roll-up's files named with the export they came from."""

from __future__ import annotations

import re
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


def _about_inputs(path) -> list[dict]:
    """说明's table of inputs (below its lines about the run)."""
    wb = openpyxl.load_workbook(path, read_only=True)
    try:
        rows = list(wb["说明"].iter_rows(values_only=True))
    finally:
        wb.close()
    start = next(i for i, r in enumerate(rows) if r[0] == "输入文件")
    return [dict(zip(rows[start], r)) for r in rows[start + 1:]]


def test_every_reason_in_the_about_sheet_is_in_words_with_its_code_last(demo):
    inputs = {r["输入文件"].rsplit("/", 1)[-1]: r for r in _about_inputs(demo["summary"])}
    broken, twice = inputs["损坏的文件.xlsx"], inputs["重复-510703001_涪城区财政国库支付中心_2021_项目支出绩效目标申报表.xlsx"]
    assert broken["原因"].startswith("文件已损坏，无法读取（") and broken["代码"] == "file-corrupt"
    assert twice["原因"] == "与 510703001_涪城区财政国库支付中心_2021_项目支出绩效目标申报表.xlsx 内容完全相同，只计一次"
    assert twice["代码"] == "same-content"
    older = inputs["510704001_游仙区教育和体育局_2021_项目支出绩效目标申报表.xlsx"]
    assert older["原因"] == "已被同一单位较新的版本 510704001_游仙区教育和体育局_2021_项目支出绩效目标申报表（更正版）.xlsx 取代"
    assert older["代码"] == "newer-version"
    for r in inputs.values():  # no code among the words: a code has its own column
        assert not re.search(r"[a-z]+(-[a-z0-9]+)+", r["原因"] or ""), r["原因"]
    wb = openpyxl.load_workbook(demo["summary"], read_only=True)
    first = [c.value for c in next(wb["说明"].iter_rows(max_row=1))]
    wb.close()
    assert first == ["项目", "内容", "原因", "sha256", "代码"]


def _county_form(folder, code: str, name: str, seed_index: int, factor: float):
    """A filled 绵阳 form of a unit the demo's roster does not have."""
    from perfxl.demo import SAMPLES, _scaled_project
    from perfxl.fill import fill_workbook, load_sample
    from perfxl.generator import generate_forms
    from perfxl.roster import Unit
    from perfxl.spec import load_spec

    blank = folder.parent / f"空白-{code}"
    generate_forms("mianyang/project", 2021, [Unit(code, name, "游仙区人民政府")], blank)
    seed = load_sample(SAMPLES / "seed-002-mianyang-project.yaml")["workbooks"][0]["projects"]
    folder.mkdir(parents=True, exist_ok=True)
    return fill_workbook(load_spec("mianyang/project", 2021), next(blank.glob(f"{code}_*.xlsx")),
                         folder / f"{code}.xlsx", [_scaled_project(seed[seed_index], factor, name)])


@pytest.fixture(scope="module")
def counties(demo, tmp_path_factory):
    """Two county exports, each holding a 619999.xlsx of one unit (with other data), and 甲县's holding a
    form of a unit no roster names; the city's roster places every unit in its 区县 under 绵阳市."""
    import shutil

    from perfxl.ledger import export_merged
    from perfxl.merging import MergeOptions, run_merge

    root = tmp_path_factory.mktemp("counties")
    exports = {}
    for i, (county, department) in enumerate((("甲县", "涪城区财政局"), ("乙县", "游仙区人民政府"))):
        inbox = root / county
        shutil.copytree(demo["inbox"] / department, inbox / department)
        _county_form(inbox, "619999", "游仙区农业农村局", i, 1.0 + i / 3)
        if county == "甲县":
            _county_form(inbox, "619998", "某开发区管委会", 3, 1.2)
        db = root / f"{county}_报送台账.sqlite"
        run_merge([inbox], root / f"{county}.xlsx", MergeOptions(jobs=1, db=db))
        exports[county] = export_merged(db, root / f"{county}.perfxl") and root / f"{county}.perfxl"
    roster = root / "全市名单.csv"
    lines = demo["roster"].read_text(encoding="utf-8").splitlines()
    roster.write_text("code,name,department,region,parent\n" + "".join(
        ",".join(line.split(",")[:4]) + ",绵阳市\n" for line in lines[1:]), encoding="utf-8")
    return root, exports, roster


def test_a_rolled_up_file_is_named_with_the_export_it_came_from(counties):
    from perfxl.merging import MergeOptions, run_merge

    root, exports, _ = counties
    out = root / "市_无名单.xlsx"
    run_merge([exports["甲县"], exports["乙县"]], out, MergeOptions(jobs=1, db=root / "市_无名单.sqlite"))
    inputs = {r["输入文件"]: r for r in _about_inputs(out)}
    one = next(r for path, r in inputs.items() if path.startswith("甲县.perfxl#") and path.endswith("/619999.xlsx"))
    assert one["代码"] == "rollup-unit-conflict"
    assert one["原因"].startswith("此单位在 乙县.perfxl#619999.xlsx 中也有上报，数据不同")
    conflict = [r for r in _rows(out, "变更记录") if r["原文件"] and "619999" in r["原文件"]]
    assert [{r["原文件"], r["新文件"]} for r in conflict] == [{"甲县.perfxl#619999.xlsx", "乙县.perfxl#619999.xlsx"}]

    later = root / "市本级收件"  # the unit now hands in to the city itself: its newer file supersedes 甲县's
    _county_form(later, "619999", "游仙区农业农村局", 5, 0.9)
    out = root / "市_含本级.xlsx"
    run_merge([exports["甲县"], later], out, MergeOptions(jobs=1, db=root / "市_含本级.sqlite"))
    older = next(r for path, r in {r["输入文件"]: r for r in _about_inputs(out)}.items()
                 if path.startswith("甲县.perfxl#") and path.endswith("/619999.xlsx"))
    assert (older["原因"], older["代码"]) == ("已被同一单位较新的版本 619999.xlsx 取代", "newer-version")
    changed = {(r["原文件"], r["新文件"]) for r in _rows(out, "变更记录")}
    assert changed == {("甲县.perfxl#619999.xlsx", "619999.xlsx")}
    status = {r["单位编码"]: r for r in _rows(root / "市_无名单.xlsx", "报送情况")}
    assert status["510703001"]["文件"] == "甲县.perfxl#510703001_涪城区财政国库支付中心_2021_项目支出绩效目标申报表.xlsx"


def test_a_unit_no_roster_names_is_totalled_under_its_own_line_not_a_made_up_county(counties):
    from perfxl.merging import MergeOptions, run_merge

    root, exports, roster = counties
    city = run_merge([exports["甲县"], exports["乙县"]], root / "市.xlsx",
                     MergeOptions(jobs=1, db=root / "市.sqlite", roster=roster), materialize=True)
    levels = city.table("汇总").cover.tables[0]
    rows = [dict(zip([t for t, _ in levels.columns], r)) for r in levels.iter_rows()]
    assert [(r["层级"], r["地区"], r["上级地区"]) for r in rows] == [
        ("市", "绵阳市", ""), ("区县", "市本级", "绵阳市"), ("区县", "涪城区", "绵阳市"), ("区县", "游仙区", "绵阳市"),
        ("名单外", "（名单外）", ""), ("合计", "", "")]
    outside = rows[-2]
    assert (outside["已报单位数"], outside["项目数"]) == (1, 1)
    whole = rows[-1]
    assert whole["已报单位数"] == rows[0]["已报单位数"] + outside["已报单位数"]
    projects = {r["单位名称"]: r for r in _rows(root / "市.xlsx", "项目清单")}
    assert projects["某开发区管委会"]["地区"] == "（名单外）"


def test_the_totals_per_level_have_a_csv_and_a_parquet_file_of_their_own(counties):
    import csv

    from perfxl.merging import MergeOptions, run_merge

    root, exports, roster = counties
    city = run_merge([exports["甲县"], exports["乙县"]], root / "市2.xlsx",
                     MergeOptions(jobs=1, db=root / "市2.sqlite", roster=roster, csv_dir=root / "csv",
                                  parquet_dir=root / "parquet"), materialize=True)
    levels = city.table("汇总").cover.tables[0]
    with open(root / "csv" / "分级合计.csv", encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == [title for title, _ in levels.columns] and rows[0][0] == "层级"
    assert [r[:2] for r in rows[1:]] == [[str(v) for v in r[:2]] for r in levels.iter_rows()]
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(root / "parquet" / "分级合计.parquet").to_pylist()
    assert [r["层级"] for r in table] == [r[0] for r in levels.iter_rows()]
    assert table[-1]["应报单位数"] == int(rows[-1][3])
    # Known as perfxl's own file by its header, so the next merge writes over it (another file it refuses).
    run_merge([exports["甲县"], exports["乙县"]], root / "市2.xlsx",
              MergeOptions(jobs=1, db=root / "市2.sqlite", roster=roster, csv_dir=root / "csv"))

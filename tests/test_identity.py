"""Things are identified by what they are, not by a name (#19): a county by its whole path, a renamed
single-project form by what it kept, a past merge by the roster it ran with, a portal store's file by the
unit that handed it in."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3

from perfxl.api import open_ledger
from perfxl.merging import MergeOptions, run_merge

from .conftest import write_roster
from .test_deadline_day import _form  # a national/project form of one unit, filled through its names


def _levels(result) -> dict[tuple[str, str, str], dict]:
    levels = result.table("汇总").cover.tables[0]
    titles = [t for t, _ in levels.columns]
    return {(r[0], r[1], r[2]): dict(zip(titles, r)) for r in levels.iter_rows()}


def test_two_counties_of_one_name_in_two_cities_stay_apart(tmp_path):
    units = [("700101", "甲市高新区一局", "一部门", "高新区", "甲市", 100.0),
             ("700102", "甲市高新区二局", "一部门", "高新区", "甲市", 200.0),
             ("700103", "甲市北区局", "一部门", "北区", "甲市", 400.0),
             ("700201", "丙市高新区局", "一部门", "高新区", "丙市", 800.0)]
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for code, name, _, _, _, budget in units:
        (inbox / f"{code}.xlsx").write_bytes(_form(code, name, budget))
    roster = write_roster(tmp_path / "名单.csv", [u[:5] for u in units],
                          header=("code", "name", "department", "region", "parent"))
    result = run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, roster=roster), materialize=True)
    levels = _levels(result)
    assert levels[("区县", "高新区", "甲市")]["已报单位数"] == 2
    assert levels[("区县", "高新区", "丙市")]["已报单位数"] == 1
    city = levels[("市", "甲市", "")]
    assert city["已报单位数"] == 3 and city["预算金额合计（万元）"] == 700.0
    departments = list(result.table("汇总").iter_rows())
    assert {r[0] for r in departments if r[0] != "合计"} == {"甲市高新区", "甲市北区", "丙市高新区"}


def test_a_corrected_resend_that_renames_the_project_replaces_the_old_file(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    old = inbox / "旧.xlsx"
    old.write_bytes(_form("710001", "改名单位", 100.0, project="信息网络维护建设费用"))
    other = inbox / "另一个项目.xlsx"  # the unit's second project: other budget and rows, stays
    other.write_bytes(_form("710001", "改名单位", 50.0, project="档案数字化",
                            rows=[["产出指标", "数量指标", "数字化卷数", "≥1000卷"],
                                  ["效益指标", "社会效益指标", "查档时间", "≤10分钟"],
                                  ["满意度指标", "服务对象满意度指标", "满意度", "≥95%"]]))
    import os
    import time

    os.utime(old, (time.time() - 3600, time.time() - 3600))
    os.utime(other, (time.time() - 3600, time.time() - 3600))
    (inbox / "更正.xlsx").write_bytes(_form("710001", "改名单位", 100.0, project="信息网络维护费用"))
    result = run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1), materialize=True)
    outcomes = {s.path.rsplit("/", 1)[-1]: s.outcome for s in result.files}
    assert outcomes == {"旧.xlsx": "superseded", "更正.xlsx": "merged", "另一个项目.xlsx": "merged"}
    assert result.counts["projects"] == 2
    changes = list(result.table("变更记录").iter_rows())
    assert any("信息网络维护建设费用" in str(r) and "信息网络维护费用" in str(r) for r in changes)


def test_a_past_merge_is_read_back_with_the_roster_it_ran_with(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.xlsx").write_bytes(_form("720001", "原单位", 100.0))
    roster = write_roster(tmp_path / "名单.csv", [("720001", "原单位", "原部门")])
    result = run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, roster=roster), materialize=True)
    before = [r[2] for r in result.table("项目清单").iter_rows() if r[0] != "合计"]
    write_roster(roster, [("720001", "原单位", "后来改的部门")])  # the roster edited after the merge
    with open_ledger(tmp_path / "汇总_报送台账.sqlite") as ledger:
        assert list(ledger.projects()["主管部门"]) == before == ["原部门"]


def test_a_portal_stores_file_is_the_unit_that_handed_it_in_even_without_a_stamp(tmp_path):
    """Unit B's form with its stamp removed, put in unit A's store folder by the portal: `perfxl merge` of
    the store credits it to A (who handed it in), never to B by the unit name in it."""
    from perfxl.ledger import Ledger
    from tests.hostile.conftest import rezip

    store = tmp_path / "报送库"
    stampless = rezip(_form("730002", "乙单位", 300.0), {"docProps/custom.xml": None})
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(stampless)) as zf:  # the stamp sheet emptied of its mark
        names = zf.namelist()
    data = _strip_stamp(stampless, names)
    sha = hashlib.sha256(data).hexdigest()
    target = store / "files" / "730001" / f"{sha}.xlsx"  # where the portal keeps what 730001 handed in
    target.parent.mkdir(parents=True)
    target.write_bytes(data)
    ledger = Ledger(store / "报送台账.sqlite")
    sid = ledger.add_submission("730001", "b.xlsx", sha, len(data), f"files/730001/{sha}.xlsx")
    ledger.finish_submission(sid, "valid", 0, 1, [])
    ledger.close()
    roster = write_roster(tmp_path / "名单.csv", [("730001", "甲单位", "部门"), ("730002", "乙单位", "部门")])
    result = run_merge([store / "files"], tmp_path / "汇总.xlsx",
                       MergeOptions(jobs=1, roster=roster, db=store / "报送台账.sqlite"), materialize=True)
    merged = [s for s in result.files if s.outcome == "merged"]
    assert [s.unit_code for s in merged] == ["730001"]
    with sqlite3.connect(store / "报送台账.sqlite") as con:
        assert con.execute("SELECT COUNT(*) FROM submissions").fetchone()[0] == 1
    shutil.rmtree(store)


def test_a_ledger_planted_beside_an_inbox_cannot_say_who_handed_in_its_files(tmp_path):
    """Rows of `submissions` name a unit for a file only where the portal keeps files (files/<unit>/<sha>):
    a ledger planted at the default path, naming the inbox's files, changes nobody's unit."""
    from perfxl.ledger import Ledger

    inbox = tmp_path / "收件箱"
    inbox.mkdir()
    data = _form("740001", "甲单位", 100.0)
    (inbox / "a.xlsx").write_bytes(data)
    planted = Ledger(tmp_path / "汇总_报送台账.sqlite")
    sid = planted.add_submission("740002", "a.xlsx", hashlib.sha256(data).hexdigest(), len(data), "收件箱/a.xlsx")
    planted.finish_submission(sid, "valid", 0, 0, [])
    planted.close()
    result = run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1))
    assert [s.unit_code for s in result.files if s.outcome == "merged"] == ["740001"]


def _strip_stamp(data: bytes, names: list[str]) -> bytes:
    """The workbook without its hidden stamp: the stamp sheet's cells cleared (A1 no longer the mark)."""
    import re

    from tests.hostile.conftest import member, rezip

    workbook = member(data, "xl/workbook.xml").decode()
    rels = member(data, "xl/_rels/workbook.xml.rels").decode()
    rid = re.search(r'<sheet [^>]*name="_perfxl"[^>]*r:id="([^"]+)"', workbook).group(1)
    part = "xl/" + re.search(rf'Id="{rid}"[^>]*Target="([^"]+)"', rels).group(1).lstrip("/").removeprefix("xl/")
    sheet = member(data, part).decode()
    sheet = re.sub(r"<sheetData>.*</sheetData>", "<sheetData/>", sheet, flags=re.S)
    return rezip(data, {part: sheet.encode()})

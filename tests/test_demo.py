"""`perfxl demo` as a newcomer runs it: what it leaves behind, and what it never touches."""

from __future__ import annotations

import sqlite3
import time

import pytest
from click.testing import CliRunner

import perfxl
from perfxl.cli import cli
from perfxl.ledger import Ledger

JOURNALS = ("-wal", "-shm", "-journal")


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo") / "demo"
    result = CliRunner().invoke(cli, ["demo", str(folder)])
    assert result.exit_code == 0, result.output
    return folder


def _journals(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name.endswith(JOURNALS))


def test_the_demo_leaves_each_ledger_as_one_file(demo_folder):
    """The demo once left the declaration ledger's -wal and -shm beside it (a later read-only open of a
    WAL ledger makes them), though a ledger sent without its journal loses data."""
    ledgers = sorted(demo_folder.rglob("*.sqlite"))
    assert len(ledgers) == 6, ledgers  # four merges' ledgers (the next year's too), two records of what was issued
    assert _journals(demo_folder) == []
    for path in ledgers:
        with open(path, "rb") as fh:
            header = fh.read(20)
        assert header[18:20] == b"\x01\x01", f"{path.name} is left in WAL mode"


def test_reading_a_ledger_back_leaves_no_journal_beside_it(demo_folder):
    ledger = next((demo_folder / "3-汇总").glob("*_报送台账.sqlite"))
    with perfxl.open_ledger(ledger) as view:
        assert len(view.indicators()) > 0
    assert _journals(demo_folder) == []


def test_a_ledger_still_open_elsewhere_stays_in_wal_and_its_close_does_not_wait(tmp_path):
    """Closing gives way at once to another connection (the portal, a worker): no 30 s busy wait, no loss."""
    path = tmp_path / "台账.sqlite"
    writer = Ledger(path)
    run = writer.start_run()
    other = sqlite3.connect(path)
    try:
        assert other.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
        started = time.monotonic()
        writer.close()
        assert time.monotonic() - started < 5
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("SELECT id FROM runs").fetchone()[0] == run
    finally:
        other.close()
    again = Ledger(path)
    again.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["台账.sqlite"]


def test_the_demo_never_clears_a_folder_it_did_not_write(tmp_path):
    mine = tmp_path / "我的文件"
    mine.mkdir()
    (mine / "预算.xlsx").write_bytes(b"a clerk's own work")
    result = CliRunner().invoke(cli, ["demo", str(mine)])
    assert result.exit_code == 2
    assert "演示不会清空它" in result.output and "预算.xlsx" in result.output
    assert (mine / "预算.xlsx").read_bytes() == b"a clerk's own work"


def test_the_demo_replaces_an_earlier_demo(demo_folder):
    """Run twice, the demo starts afresh in its own folder (what README's quick start does)."""
    (demo_folder / "2-收件箱" / "多余.xlsx").write_bytes(b"left over")
    result = CliRunner().invoke(cli, ["demo", str(demo_folder)])
    assert result.exit_code == 0, result.output
    assert not (demo_folder / "2-收件箱" / "多余.xlsx").exists()
    assert _journals(demo_folder) == []


def test_each_round_of_the_demo_hands_out_a_slip_with_the_portal_and_the_deadline(demo_folder):
    """The demo's 分发清单 once said 尚未确定 for both: a consolidator reading the demo saw no complete slip."""
    import openpyxl

    slips = {"1-空白表": "2021年3月1日", "4-运行监控/空白表": "2021年8月10日", "5-绩效自评/空白表": "2022年1月31日"}
    for folder, deadline in slips.items():
        sheet = openpyxl.load_workbook(demo_folder / folder / "分发清单.xlsx").active
        text = [str(v) for row in sheet.iter_rows(values_only=True, max_row=6) for v in row if v is not None]
        assert "报送网址：http://192.168.1.10:8000/" in text, text
        assert any(t.startswith(f"截止日期：{deadline}") for t in text), text


def test_the_monitoring_cover_counts_indicators_by_light_not_a_review_that_never_happened(demo_folder):
    """The mid-year summary's cover once showed 目标审核等级 优 0 良 0 中 0 差 0 and a chart of four zeros: a
    monitoring round reviews nothing, and a leader reading it would think every project had failed review."""
    import zipfile

    import openpyxl

    from perfxl.summary.monitor import ORDER

    summary = next((demo_folder / "4-运行监控").glob("*汇总表.xlsx"))
    wb = openpyxl.load_workbook(summary)
    cover = [[v for v in row] for row in wb["汇总"].iter_rows(values_only=True, max_row=30)]
    words = {str(v) for row in cover for v in row if v is not None}
    assert not any("目标审核" in w or "等级" in w for w in words), sorted(words)
    where = next(r for r, row in enumerate(cover) if row[0] == "监控预警")
    kinds, counted = cover[where + 1], cover[where + 2]
    assert (kinds[0], counted[0]) == ("预警", "指标数")
    tally = dict(zip(kinds[1:5], counted[1:5]))
    assert list(tally) == ["红灯", "黄灯", "蓝灯", "无预警"] == [f"{k}灯" if k else "无预警" for k in ORDER]
    lights = [row[15] for row in wb["监控预警"].iter_rows(min_row=2, values_only=True) if row[2]]
    assert wb["监控预警"].cell(1, 16).value == "预警"
    assert tally == {"红灯": lights.count("红"), "黄灯": lights.count("黄"), "蓝灯": lights.count("蓝"),
                     "无预警": sum(1 for light in lights if not light)}
    assert tally["红灯"] >= 1  # the demo's unit that forecasts a miss
    with zipfile.ZipFile(summary) as book:
        charts = [book.read(n).decode("utf-8") for n in book.namelist() if n.startswith("xl/charts/chart")]
    assert len(charts) == 2 and sum("监控预警分布（指标数）" in c for c in charts) == 1
    assert not any("目标审核" in c or "等级" in c for c in charts)


def test_every_round_of_the_demo_names_its_region_one_way_and_its_summary_as_the_seeds_do(demo_folder):
    """The declaration's cover once said 绵阳市…项目基本信息表汇总 and the next rounds' 市本级、涪城区、游仙区…; the
    follow-up forms were titled 市本级项目支出绩效运行监控表 for every unit of the 绵阳 form."""
    import openpyxl

    titles = {}
    for folder in ("3-汇总", "4-运行监控", "5-绩效自评"):
        (summary,) = (demo_folder / folder).glob("*汇总表.xlsx")
        wb = openpyxl.load_workbook(summary, read_only=True)
        titles[summary.stem] = next(wb["汇总"].iter_rows(values_only=True))[0]
        wb.close()
    assert titles == {"2021年项目支出绩效目标申报汇总表": "绵阳市2021年项目支出绩效目标申报汇总表",
                      "2021年项目支出绩效运行监控汇总表": "绵阳市2021年项目支出绩效运行监控汇总表",
                      "2021年项目支出绩效自评汇总表": "绵阳市2021年项目支出绩效自评汇总表"}
    assert all(p.name.endswith("_2021_项目支出绩效目标申报表.xlsx") for p in (demo_folder / "1-空白表").glob("5*.xlsx"))
    assert all(p.name.endswith("_2021_绵阳市项目支出绩效运行监控表.xlsx")
               for p in (demo_folder / "4-运行监控" / "空白表").glob("5*.xlsx"))


def test_the_self_evaluation_cover_states_its_execution_rate_and_mean_score_from_its_own_sheet(demo_folder):
    """A self-evaluation's cover once had only the declaration's figures (项目数, 预算金额合计): the leader's
    questions at year end are how much was spent and how well the targets were met."""
    import openpyxl

    (summary,) = (demo_folder / "5-绩效自评").glob("*汇总表.xlsx")
    wb = openpyxl.load_workbook(summary, read_only=True)
    cover = list(wb["汇总"].iter_rows(values_only=True, max_row=8))
    rows = list(wb["自评得分"].iter_rows(values_only=True))
    wb.close()
    at = next(i for i, row in enumerate(cover) if row[0] == "应报单位")
    figures = dict(zip(cover[at], cover[at + 1]))
    head = rows[0]
    projects = [dict(zip(head, r)) for r in rows[1:] if r[head.index("单位编码")]]
    budget = sum(p["全年预算数（A）（万元）"] or 0 for p in projects)
    spent = sum(p["全年执行数（B）（万元）"] or 0 for p in projects)
    totals = [p["总分"] for p in projects if p["总分"] is not None]
    assert figures["预算执行率"] == pytest.approx(spent / budget, abs=1e-6)
    assert figures["平均总分"] == pytest.approx(sum(totals) / len(totals), abs=1e-6)
    assert figures["全年执行数合计（万元）"] == pytest.approx(spent, abs=0.01)


def test_next_years_forms_name_next_year_not_the_one_they_were_copied_from(demo_folder):
    """The demo's next-year units declared their projects with last year's dates (2021-01-01至2021-12-31 on a
    2022 form): every form of the step had errors, and the summary a newcomer opens said 有错误 12, 通过 0.
    The step's story is history, not mistakes: its forms carry only the seeds' own 提醒."""
    from python_calamine import CalamineWorkbook

    summary = next((demo_folder / "6-次年申报").glob("*汇总表.xlsx"))
    rows = CalamineWorkbook.from_path(str(summary)).get_sheet_by_name("校验问题").to_python()
    errors = [r for r in rows[1:] if r[rows[0].index("严重程度")] == "错误"]
    assert errors == []

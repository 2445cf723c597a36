"""Re-merges render only what changed (#11): rows kept in the ledger as compressed segments, assembled
into sheets without row numbers. The summary must be the very one a fresh merge writes."""

import io
import os
import shutil
import sqlite3
import zipfile
import zlib

import openpyxl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfxl import sheetxml
from perfxl.merger import MergeOptions, run_merge

from .conftest import write_roster

# The cells that differ between two merges of the same inbox: the time, and (in 说明 and the counts) how
# many files were read rather than taken from the ledger.
_CLOCK = ("汇总时间", "生成时间", "本次读取")


def _counts(result) -> dict:
    return {k: v for k, v in result.counts.items() if k not in {"read", "from_ledger"}}


def _workbook(path) -> dict[str, list[tuple]]:
    wb = openpyxl.load_workbook(path, read_only=True)
    try:
        return {name: [row for row in wb[name].iter_rows(values_only=True)
                       if not any(isinstance(v, str) and v.startswith(_CLOCK) for v in row)]
                for name in wb.sheetnames}
    finally:
        wb.close()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=3000), min_size=1, max_size=8))
def test_segments_concatenate_into_one_member_zip_readers_verify(pieces):
    buffer = io.BytesIO()
    package = sheetxml.XlsxZip(buffer)
    package.write("a.xml", b"<a/>")
    package.write_segments("b.xml", [sheetxml.segment(p) for p in pieces])
    package.close()
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as z:
        assert z.testzip() is None  # every member's CRC-32 checked
        assert z.read("b.xml") == b"".join(pieces)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=5000), st.binary(max_size=5000))
def test_crc_combine_equals_the_crc_of_the_whole(a, b):
    combined = sheetxml.crc_combine(zlib.crc32(a), zlib.crc32(b), len(b), sheetxml.segment(b).zeros)
    assert combined == zlib.crc32(a + b)


def test_a_kept_segment_survives_packing():
    layout = sheetxml.Layout(("text", "money", "text"), (0, 3, 0), (0, 0, 0))
    seg = sheetxml.rows_segment([["a", 1.5, None], [None, 2, "b"]], layout)
    assert sheetxml.unpack_segment(sheetxml.pack_segment(seg)) == seg
    assert seg.rows == 2 and seg.sums == (0.0, 3.5, 0.0)
    assert sheetxml.unpack_segment(b"something else") is None


@pytest.fixture()
def inbox(seeds, tmp_path):
    folder = tmp_path / "inbox"
    (folder / "一处").mkdir(parents=True)
    for key in ("000-0", "002-0", "003-0"):
        shutil.copy(seeds[key].filled, folder / "一处" / f"{key}.xlsx")
    return folder


def test_a_remerge_after_new_and_changed_files_writes_what_a_fresh_merge_writes(seeds, inbox, tmp_path):
    """The deadline-day loop: merge, two files arrive (one new, one replacing a unit's form), merge again.
    The re-merge reads only those two; its workbook equals a fresh merge's, sheet by sheet, cell by cell."""
    units = {seeds[k].unit["code"]: (seeds[k].unit["code"], seeds[k].unit["name"], seeds[k].unit["department"])
             for k in ("000-0", "002-0", "003-0")}  # 004-0's unit is 003-0's: a second version of its form
    roster = write_roster(tmp_path / "名单.csv", list(units.values()))
    options = MergeOptions(jobs=1, roster=roster, db=tmp_path / "台账.sqlite")
    run_merge([inbox], tmp_path / "汇总.xlsx", options)
    shutil.copy(seeds["004-0"].filled, inbox / "004-0.xlsx")  # a new unit
    shutil.copy(seeds["001-0"].filled, inbox / "一处" / "002-0.xlsx")  # a file replaced by another form
    again = run_merge([inbox], tmp_path / "汇总.xlsx", options)
    assert again.counts["read"] == 2 and again.counts["from_ledger"] == 2
    fresh = run_merge([inbox], tmp_path / "新.xlsx", MergeOptions(jobs=1, roster=roster, db=tmp_path / "新.sqlite"))
    assert _counts(again) == _counts(fresh)
    assert _workbook(tmp_path / "汇总.xlsx") == _workbook(tmp_path / "新.xlsx")


def test_a_roster_change_is_seen_by_a_remerge_of_an_unchanged_inbox(seeds, inbox, tmp_path, monkeypatch):
    """Kept rows name the roster entry they were made with: a unit moved to another 主管部门 moves in the
    sheets, and only that unit's form is checked again."""
    from perfxl import merger

    units = [[seeds[k].unit["code"], seeds[k].unit["name"], seeds[k].unit["department"]] for k in ("000-0", "002-0")]
    roster = write_roster(tmp_path / "名单.csv", units)
    options = MergeOptions(jobs=1, roster=roster, db=tmp_path / "台账.sqlite")
    run_merge([inbox], tmp_path / "汇总.xlsx", options)
    units[0][2] = "新设部门"
    write_roster(roster, units)
    checked = []
    real = merger._process
    monkeypatch.setattr(merger, "_process", lambda task: checked.append(task[0]) or real(task))
    again = run_merge([inbox], tmp_path / "汇总.xlsx", options, materialize=True)
    assert [os.path.basename(p) for p in checked] == ["000-0.xlsx"]
    departments = {row[2] for row in again.table("项目清单").iter_rows()}
    assert "新设部门" in departments
    fresh = run_merge([inbox], tmp_path / "新.xlsx", MergeOptions(jobs=1, roster=roster))
    assert _counts(again) == _counts(fresh)
    assert _workbook(tmp_path / "汇总.xlsx") == _workbook(tmp_path / "新.xlsx")


def test_an_unchanged_remerge_renders_no_form_again(inbox, tmp_path, monkeypatch):
    options = MergeOptions(jobs=1, db=tmp_path / "台账.sqlite")
    run_merge([inbox], tmp_path / "汇总.xlsx", options)
    loads = []
    from perfxl import merger

    real = merger._recheck
    monkeypatch.setattr(merger, "_recheck", lambda *a: loads.append(a[1].path) or real(*a))
    again = run_merge([inbox], tmp_path / "汇总.xlsx", options)
    assert again.counts["from_ledger"] == 3 and loads == []  # no form rebuilt: every row came from the ledger


def test_kept_values_nothing_uses_are_pruned_once_they_pile_up(seeds, tmp_path, monkeypatch):
    from perfxl import ledger

    folder = tmp_path / "inbox"
    folder.mkdir()
    db = tmp_path / "台账.sqlite"
    keys = ("000-0", "002-0", "003-0", "004-0")
    for round_no in range(6):  # every round a different set of files: yesterday's rows pile up
        for f in folder.iterdir():
            f.unlink()
        shutil.copy(seeds[keys[round_no % 4]].filled, folder / f"{round_no}.xlsx")
        run_merge([folder], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    with sqlite3.connect(db) as con:
        grown = con.execute("SELECT COUNT(*) FROM kept").fetchone()[0]
    assert grown > 0
    monkeypatch.setattr(ledger, "PRUNE_SLACK", 0)  # prune as soon as unused values outnumber used ones
    again = run_merge([folder], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    with sqlite3.connect(db) as con:
        left = con.execute("SELECT COUNT(*) FROM kept").fetchone()[0]
    assert 0 < left < grown
    assert again.counts["from_ledger"] == 1


@pytest.mark.libreoffice
def test_rows_without_numbers_land_in_their_cells_in_libreoffice(inbox, tmp_path, convert):
    """The summary's rows carry no row or cell numbers (`r` is optional in OOXML); an empty cell is an
    empty <c/>. LibreOffice, re-saving the summary, must put every value in the same cell as openpyxl."""
    run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1))
    ours = _workbook(tmp_path / "汇总.xlsx")
    theirs = _workbook(convert(tmp_path / "汇总.xlsx", "xlsx"))
    for name in ("项目清单", "指标明细", "报送情况", "目标审核", "校验问题"):
        assert len(ours[name]) > 1
        assert [_plain(r) for r in theirs[name]] == [_plain(r) for r in ours[name]], name


def _plain(row: tuple) -> tuple:
    """A row without trailing empty cells, whole numbers as ints, others to 12 digits (LibreOffice writes
    15): how two writers may differ and still agree."""
    values = [(int(v) if v.is_integer() else float(f"{v:.12g}")) if isinstance(v, float) else v for v in row]
    while values and values[-1] in (None, ""):
        values.pop()
    return tuple(values)


def test_rows_rendered_ahead_by_workers_make_the_same_workbook(inbox, tmp_path, monkeypatch):
    """A fresh merge renders what each form adds in a pool of workers: the workbook must be the one the
    main process alone writes."""
    from perfxl import merger

    monkeypatch.setattr(merger, "AHEAD_MIN_FORMS", 1)
    loads = []  # forms the main process loads from the spool: none, if the workers rendered them all
    real = merger._load
    monkeypatch.setattr(merger, "_load", lambda spool, offset: loads.append(offset) or real(spool, offset))
    run_merge([inbox], tmp_path / "池.xlsx", MergeOptions(jobs=2, db=tmp_path / "池.sqlite"))
    assert loads == []
    run_merge([inbox], tmp_path / "单.xlsx", MergeOptions(jobs=1, db=tmp_path / "单.sqlite"))
    assert loads
    assert _workbook(tmp_path / "池.xlsx") == _workbook(tmp_path / "单.xlsx")

"""Re-merges render only what changed (#11): rows kept in the ledger as compressed segments, each with
the row it starts at and the template it was filled from, assembled into sheets whose every row and cell
carries its number (#19). The summary must be the very one a fresh merge writes, and a form whose rows
moved is filled in again from its template, not rendered again."""

import copy
import dataclasses
import io
import os
import pickle
import re
import shutil
import sqlite3
import sys
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import openpyxl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfxl import fill, report, sheetxml, spec
from perfxl.merging import MergeOptions, run_merge

from .conftest import write_roster
from .numbering import assert_numbered

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
@given(st.binary(max_size=5000), st.binary(max_size=5000), st.booleans())
def test_crc_combine_equals_the_crc_of_the_whole(a, b, native):
    """With zlib's crc32_combine where it can be loaded, and with the pass over zero bytes (Windows)."""
    real = sheetxml._COMBINE
    sheetxml._COMBINE = real if native else None
    try:
        combined = sheetxml.crc_combine(zlib.crc32(a), zlib.crc32(b), len(b), sheetxml.segment(b).zeros)
    finally:
        sheetxml._COMBINE = real
    assert combined == zlib.crc32(a + b)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=3000), min_size=2, max_size=8))
def test_each_segment_inflates_alone_whatever_was_compressed_before_it(pieces):
    """One compressor serves every segment (a full flush after each): a segment kept from one merge is
    put after segments of another, so none may refer to data before it."""
    segments = [sheetxml.segment(p) for p in pieces]
    for piece, seg in zip(pieces, segments):
        assert zlib.decompressobj(-15).decompress(seg.data) == piece
    buffer = io.BytesIO()
    package = sheetxml.XlsxZip(buffer)
    package.write_segments("b.xml", segments[::-1])
    package.close()
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as z:
        assert z.testzip() is None and z.read("b.xml") == b"".join(pieces[::-1])


_LAYOUT = sheetxml.Layout(("text", "money", "text"), (0, 3, 0), (0, 0, 0))


def test_kept_rows_are_used_where_they_were_placed_and_filled_in_again_elsewhere():
    kept = sheetxml.kept_rows([["a 100%", 1.5, None], [None, 2, "b"]], _LAYOUT)
    placed = kept.at(5)
    assert zlib.decompressobj(-15).decompress(placed.filled.data) == (
        b'<row r="5" ht="15" customHeight="1"><c r="A5" t="inlineStr"><is><t>a 100%</t></is></c>'
        b'<c r="B5" s="3"><v>1.5</v></c></row>'
        b'<row r="6" ht="15" customHeight="1"><c r="B6" s="3"><v>2</v></c><c r="C6" t="inlineStr"><is><t>b</t></is></c>'
        b'</row>')
    again = sheetxml.unpack_rows(sheetxml.pack_rows(placed), 3)
    assert again == placed and again.at(5) is again  # where it was kept: used as it is
    moved = again.at(7)
    assert zlib.decompressobj(-15).decompress(moved.filled.data).startswith(b'<row r="7" ht="15" customHeight="1"><c r="A7" ')
    assert moved.rows == 2 and moved.sums == (0.0, 3.5, 0.0)
    assert sheetxml.unpack_rows(sheetxml.pack_rows(kept), 3).filled is None  # rendered ahead: not placed
    assert sheetxml.unpack_rows(sheetxml.pack_rows(placed), 4) is None  # another layout's


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.text(alphabet="甲乙丙ab1 \n", max_size=30) | st.booleans() | st.integers(-10**12, 10**12),
                          st.text(alphabet="甲乙ab ", max_size=12),
                          st.text(alphabet="甲乙丙a", max_size=40)), min_size=1, max_size=12),
       st.sampled_from([(4.0, 9.0), (6.0, 6.0), (9.0, 30.0)]))
def test_rows_kept_under_a_narrower_layout_render_as_the_widened_layout_renders_them(rows, widths):
    """A sheet whose columns only widened since its rows were kept (a longer reason on deadline day) takes a
    kept row only where its texts in the widened columns took one line before: every row then has the text
    and the height the widened layout gives it afresh."""
    narrow = sheetxml.Layout(("text", "text", "text"), (0, 0, 0), (*widths, 0.0))
    wide = sheetxml.Layout(("text", "text", "text"), (0, 0, 0), (widths[0] + 20, widths[1], 0.0))
    rows = [list(r) for r in rows]
    memo: dict = {}
    sheetxml.render_rows(rows, narrow, [0.0] * 3, {}, memo)
    columns = wide.widened_from(narrow)
    assert columns == (0,)
    used: dict = {}
    again, count = sheetxml.render_rows(rows, wide, [0.0] * 3, memo, used, sheetxml.Widened(narrow, columns))
    assert (again, count) == sheetxml.render_rows(rows, wide, [0.0] * 3)
    assert wide.widened_from(sheetxml.Layout(("text", "text", "text"), (0, 0, 0), (widths[0] + 30, *widths[1:], 0.0))) is None
    assert sheetxml.Layout.from_json(wide.to_json()) == wide


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.text(alphabet="甲乙丙ab1 \n&<", max_size=30), st.text(alphabet="甲乙ab ", max_size=12)),
                min_size=1, max_size=12))
def test_texts_escaped_and_measured_once_per_process_render_each_layouts_own_cells(rows):
    """Each distinct text of a column is escaped and measured once in a process, per layout: rows rendered
    after other layouts' rows (another width, another style), with the texts seen before or afresh, and with
    a bound so small the texts are forgotten mid-sheet, are the same bytes."""
    rows = [list(r) for r in rows]
    narrow = sheetxml.Layout(("text", "text"), (0, 0), (5.0, 0.0))
    wide = sheetxml.Layout(("text", "text"), (3, 4), (40.0, 0.0))
    kept = sheetxml._SEEN_TEXTS
    try:
        sheetxml._SEEN.clear()
        first = sheetxml.render_rows(rows, narrow, [0.0, 0.0])
        assert sheetxml.render_rows(rows, wide, [0.0, 0.0]) != first or not any(r[0] or r[1] for r in rows)
        assert sheetxml.render_rows(rows, narrow, [0.0, 0.0]) == first
        sheetxml._SEEN_TEXTS = 2
        assert sheetxml.render_rows(rows, narrow, [0.0, 0.0]) == first
        assert sheetxml.render_rows(rows, narrow, [0.0, 0.0]) == first
        assert sum(map(len, sheetxml._cells_seen(narrow))) <= 2 + 2 * len(rows)
        assert sheetxml.render_rows(rows, wide, [0.0, 0.0]) == sheetxml.render_rows(rows, wide, [0.0, 0.0])
        sheetxml.render_rows(rows, narrow, [0.0, 0.0])
        # one bound for all layouts together (a long-lived process renders many summaries)
        assert sum(len(texts) for columns in sheetxml._SEEN.values() for texts in columns) <= 2 + 2 * len(rows)
    finally:
        sheetxml._SEEN_TEXTS = kept
        sheetxml._SEEN.clear()


def _mutations(blob: bytes):
    yield blob[: len(blob) // 2]
    yield blob[:-1]
    yield blob + b"x"
    for at in range(0, len(blob), max(1, len(blob) // 40)):
        yield blob[:at] + bytes([blob[at] ^ 0xFF]) + blob[at + 1:]


def test_a_damaged_or_foreign_kept_value_is_not_used_and_raises_nothing():
    """A ledger is untrusted: whatever a kept value holds, it is used, or not used (None, or ValueError
    from a template that does not inflate to its rows, on which the rows are rendered again)."""
    placed = sheetxml.kept_rows([["x", 1, "y"]] * 30, _LAYOUT).at(2)
    memo: dict = {}
    sheetxml.render_rows([["x", 1, "y"], ["z", 2, None]], _LAYOUT, [0.0] * 3, {}, memo)
    seg, digest = sheetxml.memo_segment([["x", 1, "y"]], _LAYOUT, 2, {}, {}, None)
    foreign = [b"", b"PXR1", b"PXM1", b"PXC1", pickle.dumps({"a": 1}), zlib.compress(pickle.dumps({"a": 1})),
               zlib.compress(b'{"k": "<row r=\\"\\u0000\\"></row>"}'), "text", 12345]
    for blob in [*_mutations(sheetxml.pack_rows(placed)), *foreign]:
        kept = sheetxml.unpack_rows(blob, 3)
        if kept is not None:
            try:
                kept.at(2 + len(blob) % 3)
            except ValueError:
                pass
    for blob in [*_mutations(sheetxml.pack_memo(memo)), *foreign]:
        found = sheetxml.unpack_memo(blob)
        assert found is None or all(v.count(b"</row>") == 1 for v in found.values())
    for blob in [*_mutations(sheetxml.pack_chunks([(digest, seg)])), *foreign]:
        sheetxml.unpack_chunks(blob)
    assert sheetxml.unpack_memo(sheetxml.pack_memo(memo)) == memo
    assert sheetxml.unpack_chunks(sheetxml.pack_chunks([(digest, seg)]))[0][0] == digest


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
    assert assert_numbered(tmp_path / "汇总.xlsx") == assert_numbered(tmp_path / "新.xlsx")


def test_a_template_that_now_comes_first_reorders_the_columns_kept_rows_are_not_reused_under(seeds, tmp_path):
    """指标明细's value columns are the union of the merged templates' in the order the templates first come
    (by path). A form renamed to an earlier path reorders them: the other form, unchanged and kept under the
    old order, must be rendered again, not placed under headers that now name other columns (their widths
    are alike, so only its key can tell)."""
    folder = tmp_path / "inbox" / "一处"
    folder.mkdir(parents=True)
    shutil.copy(seeds["000-0"].filled, folder / "b.xlsx")
    shutil.copy(seeds["002-0"].filled, folder / "c.xlsx")
    db = tmp_path / "台账.sqlite"
    run_merge([tmp_path / "inbox"], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    before = _workbook(tmp_path / "汇总.xlsx")["指标明细"][0]
    (folder / "c.xlsx").rename(folder / "a.xlsx")  # the same two templates; 002-0's now comes first
    run_merge([tmp_path / "inbox"], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    fresh = tmp_path / "新.xlsx"
    run_merge([tmp_path / "inbox"], fresh, MergeOptions(jobs=1, db=tmp_path / "新.sqlite"))
    again = _workbook(tmp_path / "汇总.xlsx")
    assert again["指标明细"][0] != before  # the columns did move
    assert again == _workbook(fresh)


def test_a_roster_change_is_seen_by_a_remerge_of_an_unchanged_inbox(seeds, inbox, tmp_path, monkeypatch):
    """Kept rows name the roster entry they were made with: a unit moved to another 主管部门 moves in the
    sheets, and only that unit's form is checked again."""
    from perfxl.merging import worker

    units = [[seeds[k].unit["code"], seeds[k].unit["name"], seeds[k].unit["department"]] for k in ("000-0", "002-0")]
    roster = write_roster(tmp_path / "名单.csv", units)
    options = MergeOptions(jobs=1, roster=roster, db=tmp_path / "台账.sqlite")
    run_merge([inbox], tmp_path / "汇总.xlsx", options)
    units[0][2] = "新设部门"
    write_roster(roster, units)
    checked = []
    real = worker.process
    monkeypatch.setattr(worker, "process", lambda task: checked.append(task[0]) or real(task))
    again = run_merge([inbox], tmp_path / "汇总.xlsx", options, materialize=True)
    assert [os.path.basename(p) for p in checked] == ["000-0.xlsx"]
    departments = {row[2] for row in again.table("项目清单").iter_rows()}
    assert "新设部门" in departments
    fresh = run_merge([inbox], tmp_path / "新.xlsx", MergeOptions(jobs=1, roster=roster))
    assert _counts(again) == _counts(fresh)
    assert _workbook(tmp_path / "汇总.xlsx") == _workbook(tmp_path / "新.xlsx")
    assert assert_numbered(tmp_path / "汇总.xlsx") == assert_numbered(tmp_path / "新.xlsx")


def test_an_unchanged_remerge_renders_no_form_again(inbox, tmp_path, monkeypatch):
    options = MergeOptions(jobs=1, db=tmp_path / "台账.sqlite")
    run_merge([inbox], tmp_path / "汇总.xlsx", options)
    loads = []
    from perfxl.merging import run

    real = run.recheck
    monkeypatch.setattr(run, "recheck", lambda *a: loads.append(a[1].path) or real(*a))
    again = run_merge([inbox], tmp_path / "汇总.xlsx", options)
    assert again.counts["from_ledger"] == 3 and loads == []  # no form rebuilt: every row came from the ledger


def test_a_remerge_of_the_inbox_named_another_way_checks_no_file_again(seeds, inbox, tmp_path, monkeypatch):
    """The ledger knew a file by its path as given and its stat: the same inbox named relatively from its
    parent, then absolutely, or renamed whole, was read and checked again file by file (12 s against 2.7 s
    at 10,000 forms). A file seen with this very stat under another name is that file: its kept check is
    taken, and the workbook is a fresh merge's under the new name."""
    from perfxl.merging import worker

    monkeypatch.chdir(tmp_path)
    name = os.fsdecode("单位表".encode("gbk") + b".xlsx")  # a GBK name, as unzip leaves one
    shutil.copy(seeds["004-0"].filled, inbox / name)
    options = MergeOptions(jobs=1, db=tmp_path / "台账.sqlite")
    run_merge([Path("inbox")], tmp_path / "汇总.xlsx", options)
    checked = []
    real = worker.process
    monkeypatch.setattr(worker, "process", lambda task: checked.append(task[0]) or real(task))
    again = run_merge([inbox], tmp_path / "汇总.xlsx", options)  # absolutely
    assert again.counts["from_ledger"] == 4 and checked == []
    _fresh(inbox, tmp_path)
    assert _workbook(tmp_path / "汇总.xlsx") == _workbook(tmp_path / "新" / "汇总.xlsx")
    inbox.rename(tmp_path / "截止日收件箱")  # renamed whole: every file keeps its stat
    checked.clear()  # the fresh merge's
    moved = run_merge([tmp_path / "截止日收件箱"], tmp_path / "汇总.xlsx", options)
    assert moved.counts["from_ledger"] == 4 and checked == []
    _fresh(tmp_path / "截止日收件箱", tmp_path)
    assert _workbook(tmp_path / "汇总.xlsx") == _workbook(tmp_path / "新" / "汇总.xlsx")


def test_a_form_given_another_forms_stat_under_another_name_is_read_not_taken_for_it(seeds, tmp_path, monkeypatch):
    """On an exFAT stick mounted through FUSE the change time is the mtime, which anyone sets, and inodes are
    numbered afresh at each mount: one unit's form, padded to another's size and given its mtime, had that
    form's very stat under another name, and was merged as that unit's form, never read (helper-45). Here
    the ledger is made to hold such a sighting: the file is hashed before its stat is believed."""
    from perfxl.inbox import FileStat
    from perfxl.ledger import Ledger

    first, second = tmp_path / "一" / "甲.xlsx", tmp_path / "二" / "乙.xlsx"
    for path, key in ((first, "000-0"), (second, "002-0")):
        path.parent.mkdir()
        shutil.copy(seeds[key].filled, path)
    options = MergeOptions(jobs=1, db=tmp_path / "台账.sqlite")
    run_merge([first.parent], tmp_path / "汇总.xlsx", options)
    real = Ledger.sightings

    def colliding(self):  # the first form's content seen, elsewhere, with the second file's stat
        seen = real(self)
        sha = next(iter(seen.values()))
        stat = os.stat(second)
        return seen | {("别处/甲.xlsx", FileStat.of(stat)): sha}

    monkeypatch.setattr(Ledger, "sightings", colliding)
    again = run_merge([second.parent], tmp_path / "汇总.xlsx", options, materialize=True)
    assert again.counts["read"] == 1
    assert [s.unit_code for s in again.files] == [seeds["002-0"].unit["code"]]


def test_a_file_written_again_under_another_name_is_read_again(seeds, inbox, tmp_path, monkeypatch):
    """Only the very stat says a file is one the ledger saw under another name: a file copied there (another
    inode) or written since (another change time) is read."""
    from perfxl.merging import worker

    options = MergeOptions(jobs=1, db=tmp_path / "台账.sqlite")
    run_merge([inbox], tmp_path / "汇总.xlsx", options)
    other = tmp_path / "另一个收件箱"
    shutil.copytree(inbox, other)  # copies: same content, other inodes
    checked = []
    real = worker.process
    monkeypatch.setattr(worker, "process", lambda task: checked.append(task[1]) or real(task))
    run_merge([other], tmp_path / "汇总.xlsx", options)
    assert checked == [None, None, None]  # read as files the ledger does not know by their stat


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


def _merged_with_stale(seeds, tmp_path, prefix: str, count: int):
    """A form merged into a new ledger, and `count` kept values no merge uses put beside what it kept:
    the inbox, the ledger and how many values the merge kept."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    shutil.copy(seeds["000-0"].filled, folder / "a.xlsx")
    db = tmp_path / "台账.sqlite"
    run_merge([folder], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    with sqlite3.connect(db) as con:
        used = con.execute("SELECT COUNT(*) FROM kept").fetchone()[0]
        con.executemany("INSERT INTO kept (key, value, run, mac) VALUES (?,?,?,?)",
                        [(f"{prefix}|{i}", b"x", 0, b"") for i in range(count)])
    return folder, db, used


def test_a_ledger_holding_a_key_that_is_not_utf8_is_still_pruned(seeds, tmp_path, monkeypatch):
    """The prune asked SQLite for every key as text: one key that is not UTF-8 (a damaged ledger, another
    tool's rows) failed the whole DELETE, and every later merge on that ledger with it (exit 2). Keys stored
    as a blob or NULL were left by the prune in batches (c37bbf4) at every merge, found by a review."""
    from perfxl import ledger

    folder, db, used = _merged_with_stale(seeds, tmp_path, "junk", 50)
    with sqlite3.connect(db) as con:
        con.execute("INSERT INTO kept (key, value, run, mac) VALUES (CAST(x'6a756e6bff' AS TEXT), x'00', 0, x'')")
        # keys stored as a blob and as NULL (a text primary key lets SQLite keep both): pruned too
        con.execute("INSERT INTO kept (key, value, run, mac) VALUES (x'6a756e6b626c6f62', x'00', 0, x'')")
        con.execute("INSERT INTO kept (key, value, run, mac) VALUES (NULL, x'00', 0, x'')")
    monkeypatch.setattr(ledger, "PRUNE_SLACK", 0)
    again = run_merge([folder], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    assert again.counts["from_ledger"] == 1
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM kept").fetchone()[0] == used
        assert con.execute("SELECT COUNT(*) FROM kept WHERE key LIKE 'junk%'").fetchone()[0] == 0
        assert con.execute("SELECT COUNT(*) FROM kept WHERE key IS NULL OR typeof(key) <> 'text'").fetchone()[0] == 0


def test_a_prune_holds_the_ledgers_write_lock_for_a_batch_at_a_time(seeds, tmp_path, monkeypatch):
    """The prune deleted every stale value in one transaction: 200,000 of a province's values held the
    write lock 7 s, and the portal's uploads into the same ledger give up after 30 (a slower machine, a
    colder cache). Now no transaction deletes more than PRUNE_BATCH values (forced down to 7 here), and
    what the run used stays."""
    from perfxl import ledger

    folder, db, used = _merged_with_stale(seeds, tmp_path, "stale", 40)
    monkeypatch.setattr(ledger, "PRUNE_SLACK", 0)
    monkeypatch.setattr(ledger, "PRUNE_BATCH", 7)
    statements: list[str] = []
    real = ledger.Kept.close

    def close(self):
        self.db.set_trace_callback(statements.append)
        try:
            real(self)
        finally:
            self.db.set_trace_callback(None)

    monkeypatch.setattr(ledger.Kept, "close", close)
    run_merge([folder], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    per_transaction, deletes = [], 0
    for sql in statements:
        if sql.startswith("DELETE FROM kept"):
            deletes += 1
        elif sql.strip().upper() == "COMMIT":
            per_transaction.append(deletes)
            deletes = 0
    assert sum(per_transaction) + deletes == 40 and deletes == 0
    assert max(per_transaction) == 7 and len([n for n in per_transaction if n]) == 6
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM kept").fetchone()[0] == used


@pytest.mark.libreoffice
def test_numbered_rows_land_in_their_cells_in_libreoffice(inbox, tmp_path, convert):
    """LibreOffice, re-saving the summary, must put every value in the same cell as openpyxl."""
    run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1))
    assert_numbered(tmp_path / "汇总.xlsx")
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
    from perfxl.merging import render_ahead, run

    monkeypatch.setattr(render_ahead, "AHEAD_MIN_FORMS", 1)
    loads = []  # forms the main process loads from the spool: none, if the workers rendered them all
    real = run.load_spooled
    monkeypatch.setattr(run, "load_spooled", lambda spool, offset: loads.append(offset) or real(spool, offset))
    run_merge([inbox], tmp_path / "池.xlsx", MergeOptions(jobs=2, db=tmp_path / "池.sqlite"))
    assert loads == []
    run_merge([inbox], tmp_path / "单.xlsx", MergeOptions(jobs=1, db=tmp_path / "单.sqlite"))
    assert loads
    assert _workbook(tmp_path / "池.xlsx") == _workbook(tmp_path / "单.xlsx")


def test_forms_taken_from_the_ledger_whose_parts_are_not_kept_are_rendered_by_the_workers(seeds, inbox, tmp_path,
                                                                                          monkeypatch):
    """A first re-merge after perfxl's sheet code changed finds every form's check kept and none of its parts:
    the forms were checked again and rendered one by one in the main process while a second core idled
    (211-238 s at 100,000 forms, against a fresh merge's 186 s). The workers rendering ahead check them again
    from the ledger themselves, and the workbook is a fresh merge's."""
    from perfxl.merging import render_ahead, run
    from perfxl.summary import base

    monkeypatch.setattr(render_ahead, "AHEAD_MIN_FORMS", 1)
    units = [[seeds[k].unit["code"], seeds[k].unit["name"], seeds[k].unit["department"]] for k in ("000-0", "002-0")]
    units[1][1] = "名单上的另一个名字"  # the roster names a unit otherwise than its form: the workers need the roster
    roster = write_roster(tmp_path / "名单.csv", units)
    options = MergeOptions(jobs=2, roster=roster, db=tmp_path / "台账.sqlite")
    run_merge([inbox], tmp_path / "汇总.xlsx", options)
    for module in (base, report):  # the parts' keys and the big sheets' segments' keys
        monkeypatch.setattr(module, "RENDER_VERSION", sheetxml.RENDER_VERSION + "-changed")
    rechecked = []  # forms the main process checks again from the ledger
    real = run.recheck
    monkeypatch.setattr(run, "recheck", lambda *a: rechecked.append(a[1].path) or real(*a))
    in_workers = _worker_rechecks(monkeypatch, tmp_path / "rechecks.log")
    again = run_merge([inbox], tmp_path / "汇总.xlsx", options)
    assert again.counts["from_ledger"] == 3 and rechecked == []
    assert sorted(in_workers()) == sorted(str(p) for p in inbox.rglob("*.xlsx"))  # each form once, for all sheets
    _fresh(inbox, tmp_path, roster=roster)
    assert _workbook(tmp_path / "汇总.xlsx") == _workbook(tmp_path / "新" / "汇总.xlsx")
    assert assert_numbered(tmp_path / "汇总.xlsx") == assert_numbered(tmp_path / "新" / "汇总.xlsx")


def _worker_rechecks(monkeypatch, log) -> Callable[[], list[str]]:
    """The forms the workers rendering ahead check again from the ledger, by path (written to `log`: they are
    other processes); patched before the pool forks."""
    from perfxl.merging import render_ahead

    real = render_ahead.recheck

    def logged(*args):
        with open(log, "a", encoding="utf-8") as out:
            out.write(args[1].path + "\n")
        return real(*args)

    monkeypatch.setattr(render_ahead, "recheck", logged)
    return lambda: log.read_text(encoding="utf-8").splitlines() if log.exists() else []


def test_an_unchanged_remerge_with_workers_to_render_ahead_checks_no_form_again(inbox, tmp_path, monkeypatch):
    """The workers rendering ahead took every form taken from the ledger for one whose part was not kept (the
    run had not looked the parts up yet), and checked and rendered all of them again: an unchanged re-merge
    of 5,000 forms took 6.7 s instead of 1.8 s, and wrote every part and segment again."""
    from perfxl.merging import render_ahead

    monkeypatch.setattr(render_ahead, "AHEAD_MIN_FORMS", 1)
    options = MergeOptions(jobs=2, db=tmp_path / "台账.sqlite")
    run_merge([inbox], tmp_path / "汇总.xlsx", options)
    in_workers = _worker_rechecks(monkeypatch, tmp_path / "rechecks.log")
    again = run_merge([inbox], tmp_path / "汇总.xlsx", options)
    assert again.counts["from_ledger"] == 3 and in_workers() == []


def _placings(monkeypatch) -> list[bool]:
    """Each time the main process places a form's kept rows of a big sheet: whether they were there already
    (placed ahead by a worker), not filled in and compressed again."""
    placed = []
    real = sheetxml.KeptRows.at

    def at(self, start):
        made = real(self, start)
        placed.append(made is self)
        return made

    monkeypatch.setattr(sheetxml.KeptRows, "at", at)
    return placed


def test_indicator_rows_placed_by_the_workers_rendering_ahead_are_not_filled_in_again_by_the_writer(
        inbox, tmp_path, monkeypatch):
    """The workers rendering ahead know the row each form's 指标明细 rows start at, from the rows each form
    was read with, and place them there: the writer, alone with the workers idle, fills in and compresses
    none of them again, and the workbook is the one the main process alone writes."""
    from perfxl.merging import render_ahead

    monkeypatch.setattr(render_ahead, "AHEAD_MIN_FORMS", 1)
    placed = _placings(monkeypatch)  # patched before the pool forks: the workers' placings stay theirs
    run_merge([inbox], tmp_path / "池.xlsx", MergeOptions(jobs=2, db=tmp_path / "池.sqlite"))
    assert len(placed) == 3 and all(placed)
    run_merge([inbox], tmp_path / "单.xlsx", MergeOptions(jobs=1, db=tmp_path / "单.sqlite"))
    assert _workbook(tmp_path / "池.xlsx") == _workbook(tmp_path / "单.xlsx")
    assert assert_numbered(tmp_path / "池.xlsx") == assert_numbered(tmp_path / "单.xlsx")


def test_a_form_whose_rows_are_not_the_count_it_was_read_with_is_placed_again_by_the_writer(
        inbox, tmp_path, monkeypatch):
    """A count that proves wrong (here the first form's, one too many) costs only the placing: the forms
    after it start a row later than the workers guessed, and the writer fills those in where they belong."""
    from perfxl.merging import render_ahead
    from perfxl.summary import indicators

    monkeypatch.setattr(render_ahead, "AHEAD_MIN_FORMS", 1)
    real = indicators.build

    def miscounted(ctx):
        table = real(ctx)
        blocks = table.blocks
        table.blocks = lambda: (dataclasses.replace(b, expected=b.expected + (i == 0))
                                for i, b in enumerate(blocks()))
        return table

    monkeypatch.setattr(indicators, "build", miscounted)
    placed = _placings(monkeypatch)
    run_merge([inbox], tmp_path / "池.xlsx", MergeOptions(jobs=2, db=tmp_path / "池.sqlite"))
    assert placed == [True, False, False]
    monkeypatch.undo()
    run_merge([inbox], tmp_path / "单.xlsx", MergeOptions(jobs=1, db=tmp_path / "单.sqlite"))
    assert _workbook(tmp_path / "池.xlsx") == _workbook(tmp_path / "单.xlsx")
    assert assert_numbered(tmp_path / "池.xlsx") == assert_numbered(tmp_path / "单.xlsx")


def test_block_starts_follow_a_sheet_continued_on_the_next(monkeypatch):
    """Where the sheet limit is reached, a block that does not fit is split (and so not placed ahead), and
    the next block starts under the next sheet's header, as the writer places it."""
    from perfxl.summary.base import RowBlock, Table

    monkeypatch.setattr(report, "EXCEL_ROWS", 12)  # 10 rows a sheet under the header
    sizes = [4, 5, 3, 6, 0, 10, 2]
    blocks = [RowBlock(f"k{i}", list, n) for i, n in enumerate(sizes)] + [RowBlock("after", list, None),
                                                                          RowBlock("unknown", list, 1)]
    table = Table("指标明细", [("a", "text")], None, blocks=lambda: iter(blocks))
    assert report.block_starts([table]) == {"指标明细": {"k0": 2, "k1": 6, "k3": 4, "k6": 10}}


def test_each_forms_part_is_made_by_the_worker_that_read_it_and_no_form_is_loaded_back(seeds, tmp_path, monkeypatch):
    """With no pool to render ahead (a system without fork), the workers that read the forms make what each
    adds to the sheets from the form they hold: the main process loads none back from the spool, and the
    workbook is the one it writes when it makes them all itself."""
    from perfxl.merging import render_ahead, run

    folder = tmp_path / "inbox"
    folder.mkdir()
    for key in ("004-0", "004-1", "004-2"):  # one template: the workers' guess of the templates in play holds
        shutil.copy(seeds[key].filled, folder / f"{key}.xlsx")
    monkeypatch.setattr(render_ahead, "AHEAD_MIN_FORMS", 10**9)
    loads = []
    real = run.load_spooled
    monkeypatch.setattr(run, "load_spooled", lambda spool, s: loads.append(s.path) or real(spool, s))
    run_merge([folder], tmp_path / "读时.xlsx", MergeOptions(jobs=2, db=tmp_path / "读时.sqlite"))
    assert loads == []
    monkeypatch.setattr(render_ahead.PartsWhereRead, "items", lambda *a: ())
    run_merge([folder], tmp_path / "主进程.xlsx", MergeOptions(jobs=2, db=tmp_path / "主进程.sqlite"))
    assert len(set(loads)) == 3  # made in the main process: every form loaded back
    assert _workbook(tmp_path / "读时.xlsx") == _workbook(tmp_path / "主进程.xlsx")


def test_spawned_workers_as_on_windows_make_each_forms_part_where_they_read_it(seeds, tmp_path, monkeypatch):
    """Windows has no fork: its workers are spawned, and are sent what makes the parts (with the shared
    templates seen) pickled. They make every form's part, and the workbook is the one the main process
    writes alone."""
    import multiprocessing

    from perfxl.merging import render_ahead, run, worker

    folder = tmp_path / "inbox"
    folder.mkdir()
    for key in ("004-0", "004-1", "004-2"):
        shutil.copy(seeds[key].filled, folder / f"{key}.xlsx")
    spawn = multiprocessing.get_context("spawn")
    for module in (worker, render_ahead):
        monkeypatch.setattr(module, "pool_context", lambda: spawn)
    loads = []
    real = run.load_spooled
    monkeypatch.setattr(run, "load_spooled", lambda spool, s: loads.append(s.path) or real(spool, s))
    run_merge([folder], tmp_path / "读时.xlsx", MergeOptions(jobs=2, db=tmp_path / "读时.sqlite"))
    assert loads == []
    monkeypatch.undo()
    run_merge([folder], tmp_path / "主进程.xlsx", MergeOptions(jobs=1, db=tmp_path / "主进程.sqlite"))
    assert _workbook(tmp_path / "读时.xlsx") == _workbook(tmp_path / "主进程.xlsx")


# ----------------------------------------------------------------------------------------------------
# Rows that move: a form that gains or loses rows moves every later form's rows (#19)
# ----------------------------------------------------------------------------------------------------

def _fewer_indicators(seed, path, drop: int):
    """The seed's form with its first project's last `drop` indicator rows left empty."""
    projects = copy.deepcopy(seed.projects)
    projects[0]["tables"]["indicators"] = projects[0]["tables"]["indicators"][:-drop]
    fill.fill_workbook(seed.spec, seed.blank, path, projects)
    return path


def _spy(monkeypatch) -> dict[str, list]:
    """What the summary writer does with each form's rows: render them from the form, or fill in a kept
    template at another row than where it was kept (`moved`), or use the kept segment as it is."""
    seen: dict[str, list] = {"rendered": [], "moved": [], "as_kept": []}
    real_render, real_at = report.kept_rows, sheetxml.KeptRows.at

    def render(rows, layout):
        seen["rendered"].append(len(rows))
        return real_render(rows, layout)

    def at(self, start):
        placed = real_at(self, start)
        if self.filled is not None:
            seen["as_kept" if placed is self else "moved"].append((self.start, start))
        return placed

    monkeypatch.setattr(report, "kept_rows", render)
    monkeypatch.setattr(sheetxml.KeptRows, "at", at)
    return seen


def test_a_form_that_loses_or_gains_rows_moves_the_later_forms_rows_which_are_filled_in_not_rendered(
        seeds, inbox, tmp_path, monkeypatch):
    """一处/000-0.xlsx is the first form of 指标明细: replaced by a copy with fewer indicator rows, every
    later form's rows move up; then by the whole form again, they move down. Each time the re-merge
    renders only the replaced form, fills in the others' kept templates at their new rows, and writes
    what a fresh merge writes, every row and cell numbered. A re-merge after that uses every kept
    segment as it is."""
    db = tmp_path / "台账.sqlite"
    run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    first = assert_numbered(tmp_path / "汇总.xlsx")
    indicator_sheet = "xl/worksheets/sheet3.xml"  # 汇总, 项目清单, 指标明细, …
    for step, (make, shift) in enumerate([(lambda p: _fewer_indicators(seeds["000-0"], p, 3), -3),
                                          (lambda p: shutil.copy(seeds["000-0"].filled, p), 3)]):
        target = inbox / "一处" / "000-0.xlsx"
        target.unlink()
        make(target)
        os.utime(target, ns=(10**18 + step, 10**18 + step))  # a new time whatever the clock's resolution
        seen = _spy(monkeypatch)
        again = run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
        monkeypatch.undo()
        assert again.counts["merged"] == 3
        numbered = assert_numbered(tmp_path / "汇总.xlsx")
        assert numbered[indicator_sheet] == first[indicator_sheet] - (3 if step == 0 else 0)
        assert len(seen["rendered"]) == 1  # the replaced form's rows only: the others were kept
        assert len(seen["moved"]) == 2 and all(now - before == shift for before, now in seen["moved"])
        fresh = tmp_path / f"新{step}.xlsx"
        run_merge([inbox], fresh, MergeOptions(jobs=1, db=tmp_path / f"新{step}.sqlite"))
        assert _workbook(tmp_path / "汇总.xlsx") == _workbook(fresh)
        assert numbered == assert_numbered(fresh)
    seen = _spy(monkeypatch)
    run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    assert seen["rendered"] == [] and seen["moved"] == [] and len(seen["as_kept"]) == 3


def test_a_form_superseded_on_deadline_day_widens_about_sheet_whose_kept_rows_are_used_not_rendered_again(
        seeds, inbox, tmp_path, monkeypatch):
    """A second version of a unit's form arrives: the first is superseded, and its reason widens a column of
    说明. The re-merge takes 说明's kept rows (kept under the narrower layout) for every row that did not
    change, and writes what a fresh merge writes, row heights included."""
    db = tmp_path / "台账.sqlite"
    run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    later = inbox / "二处"
    later.mkdir()
    _fewer_indicators(seeds["003-0"], later / "003-0.xlsx", 1)  # the unit's corrected form, sent later
    taken: list[bool] = []
    real = sheetxml.render_rows

    def render_rows(rows, layout, sums, memo=None, used=None, widened=None):
        rows = list(rows)
        if widened is not None:
            taken.extend(repr(r).encode() in memo and widened.same(r) for r in rows)
        return real(rows, layout, sums, memo, used, widened)

    monkeypatch.setattr(sheetxml, "render_rows", render_rows)
    again = run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    monkeypatch.undo()
    assert again.counts["superseded"] == 1
    # rendered again: the counts above the file list (the time the reading took among them) and the two
    # files' rows; taken: every other row
    assert sum(taken) >= 10 and len(taken) - sum(taken) <= 8, (len(taken), sum(taken))
    run_merge([inbox], tmp_path / "新.xlsx", MergeOptions(jobs=1, db=tmp_path / "新.sqlite"))
    assert _workbook(tmp_path / "汇总.xlsx") == _workbook(tmp_path / "新.xlsx")
    assert _heights(tmp_path / "汇总.xlsx", "说明") == _heights(tmp_path / "新.xlsx", "说明")


def _heights(path, sheet: str) -> list[tuple]:
    wb = openpyxl.load_workbook(path)
    try:
        ws = wb[sheet]
        return [(r, ws.row_dimensions[r].height) for r in range(1, ws.max_row + 1)]
    finally:
        wb.close()


@pytest.mark.parametrize("sheet_rows", [report.EXCEL_ROWS, 12])
def test_sorted_sheets_too_long_to_keep_their_rows_templates_are_not_rendered_again_when_unchanged(
        seeds, inbox, tmp_path, monkeypatch, sheet_rows):
    """A province's sorted sheets (项目清单, 目标审核, 校验问题: 100,000 rows and more) keep no row templates
    (MEMO_ROWS, forced down here to 1): their segments are kept by their rows' values instead. An unchanged
    re-merge renders none of their rows again; after a form is replaced it writes what a fresh merge
    writes, also where a sheet continues on the next."""
    monkeypatch.setattr(report, "MEMO_ROWS", 1)
    monkeypatch.setattr(report, "EXCEL_ROWS", sheet_rows)
    rendered = []
    real = sheetxml.render_rows

    def render_rows(rows, layout, sums, memo=None, *args, **kwargs):
        if memo is None:  # which sheet's rows: the table _table_parts is laying out
            frame = sys._getframe(1)
            while frame is not None and frame.f_code.co_name != "_table_parts":
                frame = frame.f_back
            rendered.append(frame.f_locals["table"].name if frame is not None else "?")
        return real(rows, layout, sums, memo, *args, **kwargs)

    monkeypatch.setattr(sheetxml, "render_rows", render_rows)
    db = tmp_path / "台账.sqlite"
    run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    assert {"项目清单", "目标审核", "校验问题"} <= set(rendered)
    first = _workbook(tmp_path / "汇总.xlsx")
    rendered.clear()
    run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    # 说明 says when the summary was made, new every time; 指标明细 is made form by form, and a form's rows
    # split where a sheet ends are rendered again (not a sorted sheet)
    assert set(rendered) <= {report.ABOUT_SHEET, "指标明细"}
    assert _workbook(tmp_path / "汇总.xlsx") == first
    target = inbox / "一处" / "002-0.xlsx"  # the second form: the first's rows stay where they were
    target.unlink()
    shutil.copy(seeds["001-0"].filled, target)
    os.utime(target, ns=(10**18, 10**18))
    rendered.clear()
    run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    assert "项目清单" in rendered
    run_merge([inbox], tmp_path / "新.xlsx", MergeOptions(jobs=1, db=tmp_path / "新.sqlite"))
    assert _workbook(tmp_path / "汇总.xlsx") == _workbook(tmp_path / "新.xlsx") != first
    assert assert_numbered(tmp_path / "汇总.xlsx") == assert_numbered(tmp_path / "新.xlsx")


def test_a_remerge_over_continued_sheets_numbers_each_from_its_header(seeds, inbox, tmp_path, monkeypatch):
    """With the sheet limit forced down to 12 rows, 指标明细 continues on 指标明细(2), (3), …: each numbered
    from row 2 under its own header, a form's rows split where a sheet ends, and a re-merge after the
    first form lost rows writes what a fresh merge writes."""
    monkeypatch.setattr(report, "EXCEL_ROWS", 12)
    db = tmp_path / "台账.sqlite"
    run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    target = inbox / "一处" / "000-0.xlsx"
    target.unlink()
    _fewer_indicators(seeds["000-0"], target, 3)
    run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    run_merge([inbox], tmp_path / "新.xlsx", MergeOptions(jobs=1, db=tmp_path / "新.sqlite"))
    numbered = assert_numbered(tmp_path / "汇总.xlsx")
    assert len(numbered) > 10  # the cover (sheet1) is not streamed, so not cut at 12 rows
    assert all(rows <= 12 for part, rows in numbered.items() if part != "xl/worksheets/sheet1.xml")
    assert numbered == assert_numbered(tmp_path / "新.xlsx")
    assert _workbook(tmp_path / "汇总.xlsx") == _workbook(tmp_path / "新.xlsx")


def test_texts_of_the_kept_states_a_remerge_holds_until_the_sheets_are_written_are_held_once(inbox, tmp_path):
    """A re-merge holds every form's states (decoded from the ledger) until the sheets are written: a text
    found in many of them, a file's name in each sheet's line or the same key in every line, is one string,
    not one a line; and the states are what they were."""
    from perfxl.summary import _part_from_kept

    db = tmp_path / "台账.sqlite"
    run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    with sqlite3.connect(db) as con:
        blobs = [v for (v,) in con.execute("SELECT value FROM kept WHERE key LIKE 'part|%' ORDER BY key")]
    assert len(blobs) == 3
    parts = [_part_from_kept(b) for b in blobs] + [_part_from_kept(bytes(b)) for b in blobs]
    (_, states, who), (_, again, who_again) = parts[0], parts[3]
    assert states == again and who == who_again
    projects, review = states[0]["lines"][0], states[1]["lines"][0]
    assert projects.unit_code == review.unit_code and projects.unit_code is review.unit_code  # both sheets'
    assert projects.file is again[0]["lines"][0].file and who.unit_name is who_again.unit_name  # decoded twice
    first, second = (list(p[1][0]["lines"][0].keys) for p in (parts[0], parts[3]))  # keys: one string each
    assert first and first == second and all(a is b for a, b in zip(first, second))


class _Plant:
    """Unpickling this creates `marker`: the proof that a pickle from the ledger was loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_pickle_planted_under_the_kept_rows_of_a_sorted_sheet_is_neither_run_nor_fatal(inbox, tmp_path):
    """`rows|…` keys depend only on a table's name and columns, so anyone can predict them: a ledger
    planted beside the summary with a pickle under them must not run it, and the merge renders those rows
    afresh (the same goes for every other value the summary writer keeps)."""
    out = tmp_path / "共享" / "汇总.xlsx"
    run_merge([inbox], out, MergeOptions(jobs=1))
    db = out.with_name("汇总_报送台账.sqlite")
    marker = tmp_path / "ran.txt"
    plant = pickle.dumps(_Plant(marker))
    with sqlite3.connect(db) as con:
        keys = [k for (k,) in con.execute("SELECT key FROM kept WHERE key NOT LIKE 'check|%' AND key NOT LIKE 'part|%'")]
        assert any(k.startswith("rows|项目清单|") for k in keys) and any("|指标明细|" in k for k in keys)
        for key in keys:
            con.execute("UPDATE kept SET value=? WHERE key=?",
                        (zlib.compress(plant) if key.startswith("rows|") else plant, key))
    again = run_merge([inbox], out, MergeOptions(jobs=1))
    assert not marker.exists(), "a pickle planted in the ledger was loaded"
    assert again.counts["merged"] == 3
    run_merge([inbox], tmp_path / "新.xlsx", MergeOptions(jobs=1, db=tmp_path / "新.sqlite"))
    assert _workbook(out) == _workbook(tmp_path / "新.xlsx")
    assert_numbered(out)


# ----------------------------------------------------------------------------------------------------
# Sorted sheets rendered by the helper process beside this one (perfxl.report._Apart), their kept rows
# reached through the helper's own view of the ledger and taken back
# ----------------------------------------------------------------------------------------------------

def _forks() -> bool:
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods()


_TIMES = re.compile(rb"20\d\d-\d\d-\d\d[ T]\d\d:\d\d(:\d\d)?Z?")


def _members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:  # the merge's time, said on 说明 and in the properties, left out
        return {name: _TIMES.sub(b"", z.read(name)) for name in z.namelist()}


def _kept_keys(db, prefix: str) -> set[str]:
    with sqlite3.connect(db) as con:
        return {k for (k,) in con.execute("SELECT key FROM kept WHERE key LIKE ?", (prefix + "%",))}


def _merged(inbox, tmp_path):
    return run_merge([inbox], None, MergeOptions(jobs=1, db=tmp_path / "台账.sqlite"), materialize=True)


def _write_with_ledger(result, db, path, apart: bool) -> set[int]:
    """The summary written with the ledger's kept values; the keys this run found or put (their hashes)."""
    from perfxl.ledger import Ledger

    ledger = Ledger(db)
    kept = ledger.kept(ledger.start_run())
    try:
        report.write_summary(result, path, cache=kept, apart=apart)
        return set(kept.touched)
    finally:
        kept.close()
        ledger.close()


def _takes_nothing():
    return None  # the helper's turn at an offered table: it leaves every one to the merging process


_RENDER_OFFERED = report._render_offered


def _renders_and_says_so():
    with open(os.environ["PERFXL_TEST_RENDERED"], "a") as fh:
        fh.write(f"{os.getpid()}\n")
    return _RENDER_OFFERED()


def _dies_holding_the_counters():
    report._APART["lock"].acquire()
    os._exit(3)  # stopped as the system would kill it, the lock still held


@pytest.mark.skipif(not _forks(), reason="no fork on this system")
@pytest.mark.parametrize("helper", ["shares", "takes-nothing", "takes-all", "dies-holding-the-lock"])
def test_sorted_sheets_the_helper_renders_are_the_workbook_one_process_writes(inbox, tmp_path, monkeypatch, helper):
    """The helper renders the biggest sorted sheets while this process renders the others and then takes
    back those the helper has not started. Whoever renders which, the workbook is the one a single process
    writes; and the helper's kept rows, put through this process, are found again by the next merge's."""
    monkeypatch.setattr(report, "APART_MIN_CELLS", 0)  # the seeds' sheets are small: every sorted one offered
    monkeypatch.setattr(report, "_HELPER_LOCK_SECONDS", 1.0)
    result = _merged(inbox, tmp_path)
    db = tmp_path / "台账.sqlite"
    report.write_summary(result, tmp_path / "here.xlsx")
    if helper == "takes-nothing":
        monkeypatch.setattr(report, "_render_offered", _takes_nothing)
    elif helper == "takes-all":
        monkeypatch.setattr(report._Apart, "left", lambda self: iter(()))
        monkeypatch.setattr(report, "_render_offered", _renders_and_says_so)
        monkeypatch.setenv("PERFXL_TEST_RENDERED", str(tmp_path / "rendered.txt"))
    elif helper == "dies-holding-the-lock":
        monkeypatch.setattr(report, "_render_offered", _dies_holding_the_counters)
    first = _write_with_ledger(result, db, tmp_path / "apart.xlsx", apart=True)
    assert _members(tmp_path / "apart.xlsx") == _members(tmp_path / "here.xlsx")
    if helper == "takes-all":  # rendered in another process, not here
        pids = set((tmp_path / "rendered.txt").read_text().split())
        assert pids and str(os.getpid()) not in pids
    rows = _kept_keys(db, "rows|项目清单|")
    assert rows and set(map(hash, rows)) <= first  # kept, whoever rendered the sheet
    again = _write_with_ledger(result, db, tmp_path / "again.xlsx", apart=True)
    assert set(map(hash, rows)) <= again  # found again (a key no merge finds is pruned)
    assert _members(tmp_path / "again.xlsx") == _members(tmp_path / "here.xlsx")


def _connect_and_say_so(*args, **kwargs):
    with open(os.environ["PERFXL_TEST_CONNECTED"], "a") as fh:
        fh.write(f"{os.getpid()}\n")
    raise sqlite3.OperationalError("a helper may not open the ledger")


@pytest.mark.skipif(not _forks(), reason="no fork on this system")
def test_the_helper_reads_what_was_kept_without_opening_the_ledger(inbox, tmp_path, monkeypatch):
    """A helper that opened the ledger itself hung for ever where a fork had copied SQLite's lock from
    another thread of the merging process (two merges in two threads): the values it may need are read
    before the fork, and it finds the kept rows among them."""
    from perfxl.ledger import Ledger

    monkeypatch.setattr(report, "APART_MIN_CELLS", 0)
    result = _merged(inbox, tmp_path)
    db = tmp_path / "台账.sqlite"
    _write_with_ledger(result, db, tmp_path / "first.xlsx", apart=True)
    monkeypatch.setattr(report._Apart, "left", lambda self: iter(()))  # the helper renders every offered sheet
    ledger = Ledger(db)
    kept = ledger.kept(ledger.start_run())
    monkeypatch.setenv("PERFXL_TEST_CONNECTED", str(tmp_path / "connected.txt"))
    monkeypatch.setattr(sqlite3, "connect", _connect_and_say_so)
    try:
        report.write_summary(result, tmp_path / "again.xlsx", cache=kept, apart=True)
        found = set(kept.touched)
    finally:
        monkeypatch.undo()
        kept.close()
        ledger.close()
    assert not (tmp_path / "connected.txt").exists()
    rows = _kept_keys(db, "rows|项目清单|")
    assert rows and set(map(hash, rows)) <= found  # found by the helper among what was read for it, and taken back
    assert _members(tmp_path / "again.xlsx") == _members(tmp_path / "first.xlsx")


def test_a_merge_run_from_a_thread_starts_its_workers_without_copying_other_threads_locks(inbox, tmp_path):
    """A fork copies the locks other threads hold (SQLite's among them) into the child, which then waits
    for ever: two merges in two threads of one process hung so. With other threads running, workers start
    from a clean server process and no helper is forked; the summary is the one a lone thread writes."""
    import threading

    from perfxl.merging import worker

    done = {}

    def merge(name: str) -> None:
        done[name] = worker.pool_context().get_start_method()
        run_merge([inbox], tmp_path / f"{name}.xlsx", MergeOptions(jobs=2, db=tmp_path / f"{name}.sqlite"))

    threads = [threading.Thread(target=merge, args=(name,)) for name in ("甲", "乙")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not any(t.is_alive() for t in threads), "a merge in a thread did not finish"
    assert set(done.values()) <= {"forkserver", "spawn"}
    run_merge([inbox], tmp_path / "alone.xlsx", MergeOptions(jobs=2, db=tmp_path / "alone.sqlite"))
    assert _members(tmp_path / "甲.xlsx") == _members(tmp_path / "alone.xlsx") == _members(tmp_path / "乙.xlsx")


def _fresh(inbox, tmp_path, **options):
    """The summary a fresh merge of `inbox` writes with these options (a ledger of its own)."""
    out = tmp_path / "新" / "汇总.xlsx"
    shutil.rmtree(out.parent, ignore_errors=True)
    result = run_merge([inbox], out, MergeOptions(jobs=1, db=out.parent / "台账.sqlite", **options))
    return result, _workbook(out)


@pytest.mark.parametrize("first, then", [("yancheng/project", None), (None, "yancheng/project")])
def test_form_data_read_under_one_template_option_is_read_again_under_another(inbox, tmp_path, first, then):
    """The reader notes a stamp of another template than --template asks for (stamp-template). Form data read
    with --template and kept by content made a re-merge without it report two forms 有错误 that a fresh merge
    passes; the other way round, the notice was lost."""
    db = tmp_path / "台账.sqlite"
    run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db, template=first))
    again = run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db, template=then))
    fresh, expected = _fresh(inbox, tmp_path, template=then)
    assert again.counts["read"] == 3  # read again: none of it was read under these settings
    assert _counts(again) == _counts(fresh)
    assert _workbook(tmp_path / "汇总.xlsx") == expected


def _stampless(source, target):
    """A form that lost its stamp and its title: only --template says what it is."""
    wb = openpyxl.load_workbook(source)
    for name in [n for n in wb.sheetnames if n.startswith("_")]:
        del wb[name]
    wb.custom_doc_props.props.clear()
    for ws in wb:
        for row in ws.iter_rows(max_row=8):
            for cell in row:
                if isinstance(cell.value, str) and "绩效目标" in cell.value and len(cell.value) < 30:
                    cell.value = "某某表"
    wb.save(target)


def _stampless_inbox(seed, tmp_path):
    """An inbox holding one form of `seed` that lost its stamp and title, and where its ledger goes."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _stampless(seed.filled, inbox / "无标识.xlsx")
    return inbox, tmp_path / "台账.sqlite"


def test_a_form_rejected_without_template_option_is_read_again_with_it(seeds, tmp_path):
    """A form that lost its stamp is not-a-form without --template; the rejection kept by content made a
    re-merge with --template reject it again, where a fresh merge reads it as that template and merges it."""
    inbox, db = _stampless_inbox(seeds["000-0"], tmp_path)
    first = run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    assert first.counts["rejected"] == 1
    options = {"template": seeds["000-0"].template, "year": seeds["000-0"].year}
    again = run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db, **options))
    fresh, expected = _fresh(inbox, tmp_path, **options)
    assert fresh.counts["merged"] == 1
    assert _counts(again) == _counts(fresh)
    assert _workbook(tmp_path / "汇总.xlsx") == expected


def test_a_form_that_timed_out_once_is_read_again_by_the_next_merge(inbox, tmp_path):
    """A busy deadline-day machine: every form over its time limit once (1 ms here). The rejection was kept
    by content, and no later merge read those files again: the units' forms were gone from every summary."""
    db = tmp_path / "台账.sqlite"
    timed_out = run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db, file_timeout=0.001))
    assert timed_out.counts["rejected"] == 3
    again = run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    fresh, expected = _fresh(inbox, tmp_path)
    assert again.counts["merged"] == fresh.counts["merged"] == 3
    assert _workbook(tmp_path / "汇总.xlsx") == expected


def test_a_form_whose_time_ran_out_while_its_template_loaded_is_read_again(inbox, tmp_path, monkeypatch):
    """The file's time limit ran out while the template it names was loading: the template code's catch-all
    (except Exception) took the alarm for a template error, and the forms were rejected unknown-template, a
    rejection kept by content that no later merge read again. The slow step stands in for a busy machine."""
    db = tmp_path / "台账.sqlite"
    real = spec._region_default
    monkeypatch.setattr(spec, "_region_default", lambda path: time.sleep(0.5) or real(path))
    spec._load.cache_clear()
    slow = run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db, file_timeout=0.2))
    assert {s.read_error for s in slow.files} == {"file-timeout"}
    monkeypatch.setattr(spec, "_region_default", real)
    spec._load.cache_clear()
    again = run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    fresh, expected = _fresh(inbox, tmp_path)
    assert again.counts["merged"] == fresh.counts["merged"] == 3
    assert _workbook(tmp_path / "汇总.xlsx") == expected


def test_an_xls_form_whose_time_ran_out_while_xlrd_parsed_it_is_read_again(seeds, tmp_path, monkeypatch, convert):
    """The alarm fired inside xlrd, whose every error the reader calls file-corrupt (except Exception): the
    .xls form was rejected as corrupt for good, where its time had run out."""
    import xlrd

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(convert(seeds["000-0"].filled, "xls"), inbox / "表.xls")
    db = tmp_path / "台账.sqlite"
    real = xlrd.open_workbook
    monkeypatch.setattr(xlrd, "open_workbook", lambda *a, **k: time.sleep(0.5) or real(*a, **k))
    slow = run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db, file_timeout=0.2))
    assert [s.read_error for s in slow.files] == ["file-timeout"]
    monkeypatch.setattr(xlrd, "open_workbook", real)
    again = run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    fresh, expected = _fresh(inbox, tmp_path)
    assert again.counts["merged"] == fresh.counts["merged"] == 1
    assert _workbook(tmp_path / "汇总.xlsx") == expected


def test_a_form_renamed_to_another_extension_gets_the_notice_its_name_calls_for(inbox, tmp_path):
    """The same bytes renamed from .xlsx to .xls: the form data kept by content had no extension-mismatch
    notice, and the re-merge said 通过 where a fresh merge says 通过（有提醒）. Then the same content under both
    names, merged twice: each keeps its own check."""
    db = tmp_path / "台账.sqlite"
    run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    form = next(inbox.rglob("000-0.xlsx"))
    form.rename(form.with_suffix(".xls"))
    again = run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    fresh, expected = _fresh(inbox, tmp_path)
    assert again.counts["warnings"] == fresh.counts["warnings"]
    assert _workbook(tmp_path / "汇总.xlsx") == expected
    shutil.copy(form.with_suffix(".xls"), form)  # and the .xlsx back beside it: both merged, one a duplicate
    for _ in range(2):
        again = run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
        fresh, expected = _fresh(inbox, tmp_path)
        assert _counts(again) == _counts(fresh)
        assert _workbook(tmp_path / "汇总.xlsx") == expected


def test_bytes_of_unknown_format_under_two_extensions_are_each_rejected_naming_their_own(inbox, tmp_path):
    """A file of unknown format is rejected naming its extension (未知格式的文件（扩展名 .xlsx）). The ledger
    keeps one rejection per content: the same bytes as a.xlsx and b.doc, merged twice, had a.xlsx named
    .doc; renamed between merges, the file kept its old name's extension."""
    (inbox / "a.xlsx").write_bytes(b"\x00\x01 not a workbook at all \xff\xfe")
    shutil.copy(inbox / "a.xlsx", inbox / "b.doc")
    db = tmp_path / "台账.sqlite"
    for _ in range(2):
        run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
        _, expected = _fresh(inbox, tmp_path)
        assert "未知格式的文件（扩展名 .xlsx）" in str(expected["校验问题"])
        assert _workbook(tmp_path / "汇总.xlsx") == expected
    (inbox / "b.doc").unlink()
    (inbox / "a.xlsx").rename(inbox / "a.doc")
    run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    _, expected = _fresh(inbox, tmp_path)
    assert _workbook(tmp_path / "汇总.xlsx") == expected


def test_sorted_sheets_rows_kept_by_earlier_rendering_code_are_not_used(inbox, tmp_path, monkeypatch):
    """Rendering code changed (a development install, the same version number): RENDER_VERSION changes with
    it, but the sorted sheets' row templates were kept under their sheet and layout alone, and a re-merge
    wrote the earlier code's row heights."""
    db = tmp_path / "台账.sqlite"
    run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    monkeypatch.setattr(sheetxml, "_ONE_LINE", sheetxml._ONE_LINE.replace(f'ht="{sheetxml.LINE_HEIGHT:g}"', 'ht="21"'))
    taller = sheetxml.row_height
    monkeypatch.setattr(sheetxml, "row_height", lambda lines: taller(lines) + 1)
    monkeypatch.setattr(report, "RENDER_VERSION", sheetxml.RENDER_VERSION + "-changed", raising=False)
    run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    _fresh(inbox, tmp_path)
    for sheet in ("项目清单", "报送情况", "校验问题"):
        heights = _heights(tmp_path / "新" / "汇总.xlsx", sheet)
        assert {h for _, h in heights[1:]} - {21, taller(1) + 1}, "no row whose height the change made taller"
        assert _heights(tmp_path / "汇总.xlsx", sheet) == heights, sheet


def test_a_corrupt_file_keeps_its_reason_when_template_option_goes_and_comes_back(inbox, tmp_path):
    """With --template, without, with again: the third merge took the corrupt file's kept check, found no
    rejection kept under these settings (the merge without had recorded its own), read the file again and
    called it file-unreadable (台账中缺少此表的数据) where a fresh merge says file-corrupt."""
    (inbox / "坏文件.xlsx").write_bytes(b"PK\x03\x04broken")
    db = tmp_path / "台账.sqlite"
    for template in ("yancheng/project", None, "yancheng/project"):
        run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db, template=template))
    _, expected = _fresh(inbox, tmp_path, template="yancheng/project")
    assert _workbook(tmp_path / "汇总.xlsx") == expected


def test_a_form_read_with_template_option_then_rejected_without_it_stays_rejected_without_it(seeds, tmp_path):
    """With --template a stampless form merges; without, it is not-a-form. That rejection was recorded over
    the form data read with --template, which the row kept (the rejection carried none) under the new read
    settings: a third merge without --template found that form data as read under its own settings and merged
    the form a fresh merge rejects."""
    inbox, db = _stampless_inbox(seeds["000-0"], tmp_path)
    options = {"template": seeds["000-0"].template, "year": seeds["000-0"].year}
    counts = [run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db, **o)).counts["rejected"]
              for o in (options, {}, {})]
    fresh, expected = _fresh(inbox, tmp_path)
    assert fresh.counts["rejected"] == 1
    assert counts == [0, 1, 1]
    assert _workbook(tmp_path / "汇总.xlsx") == expected
    again = run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db, **options))
    assert again.counts["merged"] == 1  # and with --template again it merges, read once more


def test_a_later_merge_rejecting_the_same_bytes_keeps_the_form_an_earlier_merge_merged(seeds, tmp_path):
    """A stampless form merged with --template; the same bytes, in another folder merged into the same ledger
    without it, are not-a-form. The rejection dropped the form data the first merge had merged, and the
    follow-up round, prefilled from the newest merge that merged the declarations, found none for the unit."""
    from perfxl.followup import declarations

    seed = seeds["000-0"]
    db = tmp_path / "台账.sqlite"
    declared = tmp_path / "申报"
    declared.mkdir()
    _stampless(seed.filled, declared / "无标识.xlsx")
    first = run_merge([declared], tmp_path / "申报汇总.xlsx",
                      MergeOptions(jobs=1, db=db, template=seed.template, year=seed.year))
    assert first.counts["merged"] == 1 and sum(map(len, declarations(db).values())) == 1
    other = tmp_path / "其他"
    other.mkdir()
    (other / "误放.xlsx").write_bytes((declared / "无标识.xlsx").read_bytes())
    second = run_merge([other], tmp_path / "其他汇总.xlsx", MergeOptions(jobs=1, db=db))
    assert second.counts["rejected"] == 1 and second.counts["merged"] == 0
    assert sum(map(len, declarations(db).values())) == 1


def test_an_unchanged_remerge_reads_no_file_that_is_not_a_workbook_again(inbox, tmp_path, monkeypatch):
    """Units send scanned PDFs. A rejection of not-a-workbook was, for a while, never taken from the ledger
    (its words may name the extension): every re-merge read each such file whole, twice."""
    from perfxl.merging import worker

    (inbox / "盖章扫描件.pdf").write_bytes(b"%PDF-1.4\n" + os.urandom(1 << 20))
    (inbox / "说明.xlsx").write_bytes(b"\x00\x01 not a workbook \xff")
    db = tmp_path / "台账.sqlite"
    run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    read = []
    real = worker.read_regular_file
    monkeypatch.setattr(worker, "read_regular_file",
                        lambda p, *a, **k: read.append(os.path.basename(p)) or real(p, *a, **k))
    run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    assert read == []
    _, expected = _fresh(inbox, tmp_path)
    assert _workbook(tmp_path / "汇总.xlsx") == expected


def test_the_ledgers_view_names_each_files_own_extension(inbox, tmp_path):
    """The same bytes of unknown format as a.xlsx and b.doc: the public API rebuilt each file's rejection
    from the one its content was recorded with, and named a.xlsx （扩展名 .doc）."""
    import perfxl

    (inbox / "a.xlsx").write_bytes(b"\x00\x01 not a workbook at all \xff\xfe")
    shutil.copy(inbox / "a.xlsx", inbox / "b.doc")
    db = tmp_path / "台账.sqlite"
    result = run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db), materialize=True)
    table = result.table("校验问题")
    titles = [t for t, _ in table.columns]
    merged = sorted((r[0], r[titles.index("说明")]) for r in table.iter_rows()
                    if r[titles.index("规则")] == "not-a-workbook")
    assert len(merged) == 2
    with perfxl.open_ledger(db) as view:
        frame = view.problems()
        api = sorted(x for x in zip(frame["文件"], frame["说明"]) if "未知格式" in x[1])
    assert api == merged


def test_the_ledgers_view_shows_a_file_rejected_under_other_settings_rejected(seeds, tmp_path):
    """Read with --template, then rejected without it: the ledger keeps the form data of the first read
    beside the rejection, and the public API checked that data again and showed the second run's file with
    the first read's warnings instead of not-a-form."""
    import perfxl

    seed = seeds["000-0"]
    inbox, db = _stampless_inbox(seed, tmp_path)
    run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db, template=seed.template, year=seed.year))
    result = run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db), materialize=True)
    assert result.counts["rejected"] == 1
    merged = [(r[0], r[6], r[7]) for r in result.table("校验问题").iter_rows()]
    with perfxl.open_ledger(db) as view:
        api = [(r[0], r[6], r[7]) for r in view.problems().itertuples(index=False)]
    assert api == merged and len(merged) == 1


def test_form_data_relabelled_to_other_read_settings_in_the_ledger_is_not_used(seeds, tmp_path):
    """Both rows this user's own, sealed: the form data of a stampless form read with --template, relabelled
    in the ledger (files.form_reader) as read without it, was taken by a merge without --template, which
    merged a form a fresh merge rejects. The seal covers the read settings."""
    from perfxl.cachekeys import READER_VERSION

    seed = seeds["000-0"]
    inbox, db = _stampless_inbox(seed, tmp_path)
    run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db, template=seed.template, year=seed.year))
    with sqlite3.connect(db) as con:
        assert con.execute("UPDATE files SET form_reader=?, reader=?", (READER_VERSION, READER_VERSION)).rowcount == 1
        con.execute("DELETE FROM kept")
    con.close()
    again = run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    fresh, expected = _fresh(inbox, tmp_path)
    assert again.counts["rejected"] == fresh.counts["rejected"] == 1
    assert _workbook(tmp_path / "汇总.xlsx") == expected

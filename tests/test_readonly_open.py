"""Ledgers and records perfxl only reads (a county's ledger, a record of what was issued, history, the
portal's pages) are opened read-only by a file: URI with mode=ro, from the path as given, not resolved. A
path no URI can name (a Windows share) is refused, saying what to do: opened by its name, SQLite would write
into it (a checkpoint as it closes) or create it."""

from __future__ import annotations

import sqlite3
from pathlib import PurePosixPath, PureWindowsPath

import pytest

from perfxl import ledger
from perfxl.ledger import open_readonly, readonly_uri


def test_a_mapped_drive_is_opened_by_uri_and_a_share_by_none():
    """resolve() made Z:\\ a share's \\\\server\\share on Windows, and SQLite refuses a URI naming a host
    ("invalid uri authority"): a county's ledger on the bureau's mapped drive could not be read."""
    assert readonly_uri(PureWindowsPath(r"Z:\台账\县.sqlite")) == "file:///Z:/%E5%8F%B0%E8%B4%A6/%E5%8E%BF.sqlite?mode=ro"
    assert readonly_uri(PureWindowsPath(r"\\fs01\财政\县.sqlite")) is None
    assert readonly_uri(PureWindowsPath(r"Z:县.sqlite")) is None  # drive-relative: never a URI
    assert readonly_uri(PurePosixPath("/srv/汇总 #1?/台账.sqlite")) == (
        "file:///srv/%E6%B1%87%E6%80%BB%20%231%3F/%E5%8F%B0%E8%B4%A6.sqlite?mode=ro")


def test_a_ledger_no_uri_can_name_is_refused_in_chinese_and_left_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "县.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (x)")
    db.close()
    before = sorted((p.name, p.read_bytes()) for p in tmp_path.iterdir())
    monkeypatch.setattr(ledger, "readonly_uri", lambda absolute: None)  # as a share's path is
    with pytest.raises(sqlite3.OperationalError, match="复制到本机"):
        open_readonly(path)
    assert sorted((p.name, p.read_bytes()) for p in tmp_path.iterdir()) == before

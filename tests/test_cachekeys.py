"""Every cache key and version in one module (perfxl.cachekeys): what a sheet keeps is part of its key."""

from __future__ import annotations

import shutil
from pathlib import Path

import perfxl
from perfxl import cachekeys
from perfxl.records import Seen
from perfxl.summary import base

PACKAGE = Path(perfxl.__file__).resolve().parent


def _copy_of_the_render_code(tmp_path: Path) -> Path:
    copy = tmp_path / "perfxl"
    for source in cachekeys.RENDER_SOURCES:
        if (PACKAGE / source).is_dir():
            shutil.copytree(PACKAGE / source, copy / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (copy / source).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(PACKAGE / source, copy / source)
    return copy


def _form_key(render_version: str, monkeypatch) -> str:
    monkeypatch.setattr(base, "RENDER_VERSION", render_version)
    s = Seen(path="甲.xlsx", size=1, mtime_ns=1, sha="a" * 64, source="read", offset=0, template=None, year=None,
             unit_code="001", unit_name="甲单位", status="valid", errors=0, warnings=0, read_error=None,
             project_names=(), indicator_rows=0)
    ctx = base.Context(files=[s], load=lambda _: None, units=None, fingerprint="f", cache={})
    return ctx.form_key(s)


def test_the_render_version_is_the_digest_of_the_code_that_decides_what_a_sheet_keeps():
    assert cachekeys.RENDER_VERSION.endswith(cachekeys.code_digest(PACKAGE))


def test_changing_a_sheets_columns_gives_new_part_and_segment_keys(tmp_path, monkeypatch):
    copy = _copy_of_the_render_code(tmp_path)
    assert cachekeys.code_digest(copy) == cachekeys.code_digest(PACKAGE)
    before = _form_key(f"r4-{cachekeys.code_digest(copy)}", monkeypatch)
    sheet = copy / "summary" / "changes.py"
    text = sheet.read_text(encoding="utf-8")
    assert 'Column("原值", "text", "old")' in text
    sheet.write_text(text.replace('Column("原值", "text", "old")', 'Column("原值", "money", "old")'), encoding="utf-8")
    kind_changed = cachekeys.code_digest(copy)
    sheet.write_text(text.replace('Column("原值", "text", "old"), ', ""), encoding="utf-8")
    column_dropped = cachekeys.code_digest(copy)
    assert len({cachekeys.code_digest(PACKAGE), kind_changed, column_dropped}) == 3
    # Every part (part|form key) and every segment (block key|sheet|layout) is kept under the form's key.
    assert _form_key(f"r4-{kind_changed}", monkeypatch) != before
    assert _form_key(f"r4-{column_dropped}", monkeypatch) != before


def test_line_endings_do_not_change_the_render_version(tmp_path):
    copy = _copy_of_the_render_code(tmp_path)
    report = copy / "report.py"
    report.write_bytes(report.read_bytes().replace(b"\n", b"\r\n"))
    assert cachekeys.code_digest(copy) == cachekeys.code_digest(PACKAGE)

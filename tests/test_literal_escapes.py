"""Texts holding a literal _xHHHH_ (how OOXML writes a character XML cannot hold) read back as typed, from
every writer perfxl has: xlsxwriter's workbooks (forms, covers), forms patched from a master, and the summary's
rows. Two such literals may share an underscore (_x005F_x0041_): xlsxwriter's own escape found them one after
another and left the second unescaped, so the text came back as _x005FA."""

from __future__ import annotations

import io
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from perfxl.contract import PROPERTY_PREFIX
from perfxl.reader.book import load_raw
from perfxl.reader.xml import unescape_control
from perfxl.sheetxml import text_cell
from perfxl.xlsxsafe import SafeWorkbook, shared_text

# Pieces that make literal escapes, overlapping ones and their near misses
LITERAL = st.lists(st.sampled_from(["_", "x", "005F", "005f", "0041", "_x0041_", "_x005F", "_x005F_", "a", "名", "\x01"]),
                   max_size=14).map("".join)
SHARED = "_x005F_x0041_"


def _written(text: str) -> dict:
    """A workbook SafeWorkbook writes with `text` in a cell and a document property, read by perfxl's reader."""
    buffer = io.BytesIO()
    wb = SafeWorkbook(buffer, {"in_memory": True})
    wb.add_worksheet("表").write_string(0, 0, text)
    wb.set_custom_property(PROPERTY_PREFIX + "text", text)
    wb.close()
    book, _, _ = load_raw(Path("x.xlsx"), buffer.getvalue())
    return {"cell": book.cells["表"].get((0, 0), (None,))[0], "property": book.load_properties().get("text")}


def test_two_literal_escapes_sharing_an_underscore_read_back_from_a_workbook():
    assert _written(SHARED) == {"cell": SHARED, "property": SHARED}


@settings(max_examples=200, deadline=None)
@given(LITERAL.filter(bool))
def test_any_literal_escapes_read_back_from_a_workbook(text):
    assert _written(text) == {"cell": text, "property": text}


@settings(max_examples=300, deadline=None)
@given(LITERAL.filter(bool))
def test_any_literal_escapes_read_back_from_the_summary_s_cells_and_a_patched_form_s_strings(text):
    inline = re.search(r"<t[^>]*>(.*?)</t>", text_cell(text), re.S).group(1)
    assert unescape_control(inline.replace("&amp;", "&")) == text
    assert unescape_control(shared_text(text)) == text


def test_a_unit_named_with_literal_escapes_is_named_so_in_its_form_and_the_summary(tmp_path):
    """Built and patched forms alike (two units of one shape share a master), and the summary's rows."""
    from click.testing import CliRunner

    from perfxl.cli import cli
    from perfxl.read import read_workbook

    from .conftest import write_roster

    names = ["甲" + SHARED, SHARED + "乙_x0041_x0042_"]
    roster = write_roster(tmp_path / "roster.csv", [("001", names[0], "部门" + SHARED), ("002", names[1], "部门")])
    runner = CliRunner()
    made = runner.invoke(cli, ["generate", "national/project", "--year", "2023", "--roster", str(roster),
                               "-o", str(tmp_path / "forms")])
    assert made.exit_code == 0, made.output
    forms = sorted(p for p in (tmp_path / "forms").rglob("*.xlsx") if p.name != "分发清单.xlsx")
    assert sorted(read_workbook(p).unit_name for p in forms) == sorted(names)
    merged = runner.invoke(cli, ["merge", str(tmp_path / "forms"), "-o", str(tmp_path / "summary.xlsx"),
                                 "--roster", str(roster)])
    assert merged.exit_code in (0, 1), merged.output
    book, _, _ = load_raw(tmp_path / "summary.xlsx")
    texts = {v for cells in book.cells.values() for v, _ in cells.values() if isinstance(v, str)}
    assert set(names) <= texts and "部门" + SHARED in texts


def test_a_summary_cell_of_characters_beyond_the_bmp_is_cut_as_excel_counts():
    """text_cell cut a text at 32,767 characters; Excel counts a character beyond the BMP (a 生僻字 such as 𠮷)
    as two, so 20,000 of them made a cell Excel cannot hold."""
    from perfxl.contract import utf16_length

    for text in ("𠮷" * 20_000, "a" + "𠮷" * 16_383 + "b", "名" * 40_000):
        inline = unescape_control(re.search(r"<t[^>]*>(.*?)</t>", text_cell(text), re.S).group(1))
        assert utf16_length(inline) <= 32_767 and inline.endswith("…") and text.startswith(inline[:-1])
    assert unescape_control(re.search(r"<t[^>]*>(.*?)</t>", text_cell("𠮷" * 16_383), re.S).group(1)) == "𠮷" * 16_383

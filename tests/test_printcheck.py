"""The print check itself (tests/printcheck.py): each rule fails on a small workbook made to break it, and a
workbook laid out as it should be passes. All sheets are in one workbook, so LibreOffice renders once."""

from __future__ import annotations

import pytest
import xlsxwriter

from . import printcheck
from .conftest import IN_CI

pytestmark = pytest.mark.libreoffice

LONG = "绵阳市城市管理综合执法支队关于市政设施维护的专项资金"  # 26 CJK characters, 286 pt at 11 pt


@pytest.fixture(scope="module")
def print_tools(soffice):
    try:
        printcheck.missing_tools()
    except printcheck.RenderError as e:
        if IN_CI:
            pytest.fail(str(e))
        pytest.skip(str(e))


def _sheet(wb, name, paper=9, footer=True):
    ws = wb.add_worksheet(name)
    ws.set_paper(paper)
    if footer:
        ws.set_footer("&C第 &P 页，共 &N 页")
    return ws


def _broken_workbook(path):
    wb = xlsxwriter.Workbook(str(path))
    wrap = wb.add_format({"text_wrap": True, "valign": "top"})
    money = wb.add_format({"num_format": "#,##0.00"})
    unlocked = wb.add_format({"locked": False})

    ws = _sheet(wb, "正常")  # laid out as it should be: nothing to find
    ws.set_column(0, 0, 56)
    ws.set_column(1, 1, 14)
    ws.write(0, 0, LONG)
    ws.write(0, 1, "右邻有字")
    ws.write(1, 0, LONG * 3, wrap)
    ws.set_row(1, 80)
    ws.write(2, 0, "短文字可以延伸到空白的右邻，这不算问题，因为右边是空的")  # B3 is empty
    ws.write_number(3, 1, 12920600, money)

    ws = _sheet(wb, "列太窄")  # A1 cannot hold its text and B1 holds something: cut or drawn over B1
    ws.set_column(0, 1, 12)
    ws.write(0, 0, LONG)
    ws.write(0, 1, "右邻")

    ws = _sheet(wb, "填写格")  # the label runs on into the (empty) cell the unit is to fill in
    ws.protect()
    ws.set_column(0, 2, 12)
    ws.write(0, 0, LONG)
    ws.write_blank(0, 1, None, unlocked)

    ws = _sheet(wb, "打印区域")  # the text would run on past the print area's right edge
    ws.set_column(0, 1, 12)
    ws.write(0, 1, LONG)
    ws.print_area(0, 0, 5, 1)

    ws = _sheet(wb, "行太矮")  # a wrapped text of four lines in a 15 pt row
    ws.set_column(0, 0, 20)
    ws.write(0, 0, "第一行")
    ws.write(1, 0, LONG * 2, wrap)
    ws.set_row(1, 15)
    ws.write(2, 0, "下一行")

    ws = _sheet(wb, "缩小")  # 20 columns fit to one A4 page wide: about 30%
    ws.set_column(0, 19, 15)
    for c in range(20):
        ws.write(0, c, f"第{c + 1}列")
    ws.fit_to_pages(1, 0)

    ws = _sheet(wb, "信纸", paper=1)  # US Letter
    ws.write(0, 0, "信纸")

    ws = _sheet(wb, "A3", paper=8)  # declared A3: allowed
    ws.write(0, 0, "A3")

    ws = _sheet(wb, "无页脚", footer=False)  # no page number
    ws.write(0, 0, "无页脚")

    ws = _sheet(wb, "井号")  # a number too wide for its column prints as ###
    ws.set_column(0, 0, 4)
    ws.write_number(0, 0, 12920600.5, money)
    wb.close()
    return path


@pytest.fixture(scope="module")
def findings(print_tools, tmp_path_factory):
    folder = tmp_path_factory.mktemp("printcheck")
    path = _broken_workbook(folder / "坏样.xlsx")
    found = printcheck.check_workbook(path, workdir=folder / "rendered")
    by_sheet: dict[str, list] = {}
    for f in found:
        by_sheet.setdefault(f.sheet, []).append(f)
    return by_sheet


def _whats(findings, sheet):
    return sorted({(f.where, f.what) for f in findings.get(sheet, [])})


def test_a_sheet_laid_out_as_it_should_be_has_no_findings(findings):
    assert findings.get("正常", []) == []
    assert findings.get("A3", []) == []  # A3 where the sheet declares it


def test_a_text_wider_than_its_column_with_a_neighbour_is_found(findings):
    assert _whats(findings, "列太窄") == [("A1", "too-wide")]
    (found,) = findings["列太窄"]
    assert "B1" in found.measured or "shows" in found.measured


def test_a_text_running_into_an_empty_input_cell_is_found(findings):
    assert ("A1", "too-wide") in _whats(findings, "填写格")
    assert any("B1" in f.measured for f in findings["填写格"])


def test_a_text_cut_at_the_print_areas_edge_is_found(findings):
    assert _whats(findings, "打印区域") == [("B1", "too-wide")]


def test_a_wrapped_text_taller_than_its_row_is_found(findings):
    # LibreOffice draws the second line over row 3 and drops the rest: taller, and cut
    assert ("A2", "taller") in _whats(findings, "行太矮")
    assert {where for where, _ in _whats(findings, "行太矮")} == {"A2"}
    taller = next(f for f in findings["行太矮"] if f.what == "taller")
    assert "the row gives 15.0 pt" in taller.measured


def test_a_sheet_fit_to_one_page_wide_at_30_percent_is_found(findings):
    assert _whats(findings, "缩小") == [("整表", "scale")]
    percent = int(findings["缩小"][0].measured.split("%")[0].split()[-1])
    assert 25 <= percent <= 35


def test_letter_paper_is_found(findings):
    assert _whats(findings, "信纸") == [("第 7 页", "paper")]
    assert "US Letter" in findings["信纸"][0].measured


def test_a_page_without_a_page_number_is_found(findings):
    assert _whats(findings, "无页脚") == [("第 9 页", "page-number")]


def test_a_number_too_wide_for_its_column_is_found(findings):
    assert _whats(findings, "井号") == [("A1", "hashes")]

"""A summary written as Excel writes it (#19): every row and cell of every sheet carries its number, in
order, and openpyxl and calamine read every value the merge made in its cell (LibreOffice: see
test_incremental.py's re-save). Readers that stream a sheet place a cell by its `r` alone."""

from __future__ import annotations

import shutil

import openpyxl
import pytest

from perfxl.merging import MergeOptions, run_merge

from .numbering import assert_numbered


def _expected(table) -> list[list]:
    """A table's rows as the summary shows them: numbers in number columns, everything else as text,
    empty cells None; the header first."""
    numeric = [kind != "text" for _, kind in table.columns]
    rows = [[title for title, _ in table.columns]]
    for row in table.iter_rows():
        shown = []
        for value, number in zip(row, numeric):
            if value is None or value == "":
                shown.append(None)
            elif number and type(value) in (int, float):
                shown.append(value)
            elif type(value) is bool:
                shown.append("是" if value else "否")
            else:
                shown.append(value if type(value) is str else str(value))
        rows.append(shown)
    return rows


def _trimmed(row) -> list:
    values = [None if v == "" else v for v in row]
    while values and values[-1] is None:
        values.pop()
    return values


def _compare(name: str, read: list, expected: list[list], totals: bool) -> None:
    """The data rows equal; the totals row (summed form by form, so in another order) to 6 decimals."""
    assert len(read) == len(expected) + totals, name
    for i, (got, want) in enumerate(zip(read, expected)):
        assert _trimmed(got) == _trimmed(want), f"{name} row {i + 1}"
    if totals:
        last = _trimmed(read[-1])
        assert last[0] == "合计"
        for c, value in enumerate(last[1:], start=1):
            if value is not None:
                assert value == pytest.approx(sum(r[c] or 0 for r in expected[1:]), abs=1e-6), f"{name} 合计 {c}"


@pytest.fixture()
def summary(seeds, tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "一处").mkdir(parents=True)
    for key, seed in seeds.items():
        shutil.copy(seed.filled, inbox / ("一处" if key < "003" else "") / f"{key}.xlsx")
    out = tmp_path / "汇总.xlsx"
    result = run_merge([inbox], out, MergeOptions(jobs=1, db=tmp_path / "台账.sqlite"), materialize=True)
    return out, result


def test_every_sheet_of_a_summary_numbers_every_row_and_cell_in_order(summary):
    out, result = summary
    counts = assert_numbered(out)
    assert len(counts) == len(result.tables)  # the cover too, and every sheet streamed
    assert max(counts.values()) > 100


def test_openpyxl_reads_every_value_the_merge_made_in_its_cell(summary):
    out, result = summary
    wb = openpyxl.load_workbook(out, read_only=True)
    try:
        for table in result.tables:
            if table.cover is None:
                read = [list(r) for r in wb[table.name].iter_rows(values_only=True)]
                _compare(table.name, read, _expected(table), table.totals and len(read) > 1)
    finally:
        wb.close()


def test_calamine_reads_every_value_the_merge_made_in_its_cell(summary):
    calamine = pytest.importorskip("python_calamine")
    out, result = summary
    wb = calamine.CalamineWorkbook.from_path(str(out))
    for table in result.tables:
        if table.cover is None:
            read = wb.get_sheet_by_name(table.name).to_python()
            _compare(table.name, read, _expected(table), table.totals and len(read) > 1)

"""Every row and cell of every sheet numbered as Excel numbers them (#19): `r` on each <row> and <c>, rows
strictly increasing, cells strictly increasing within their row and on that row. Readers that stream a
sheet (POI's, exceljs, Spout, fastexcel) place a cell only by its `r`."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from xml.etree import ElementTree

MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_REF = re.compile(r"([A-Z]{1,3})([0-9]+)")


def column_number(letters: str) -> int:
    number = 0
    for letter in letters:
        number = number * 26 + ord(letter) - 64
    return number


def assert_numbered(path: Path) -> dict[str, int]:
    """Check every worksheet of the workbook at `path`; returns each sheet part's number of rows."""
    counts = {}
    with zipfile.ZipFile(path) as package:
        parts = [n for n in package.namelist() if re.fullmatch(r"xl/worksheets/sheet\d+\.xml", n)]
        assert parts, f"{path}: no worksheets"
        for part in parts:
            last_row, rows = 0, 0
            with package.open(part) as fh:
                for _, element in ElementTree.iterparse(fh):
                    if element.tag != MAIN + "row":
                        continue
                    where = f"{path.name}:{part} after row {last_row}"
                    assert element.get("r") is not None, f"{where}: a row without r"
                    number = int(element.get("r"))
                    assert number > last_row, f"{where}: row {number} is not after row {last_row}"
                    last_column = 0
                    for cell in element.iter(MAIN + "c"):
                        ref = cell.get("r")
                        assert ref is not None, f"{where}: a cell of row {number} without r"
                        match = _REF.fullmatch(ref)
                        assert match, f"{where}: cell reference {ref!r}"
                        assert int(match.group(2)) == number, f"{where}: cell {ref} in row {number}"
                        column = column_number(match.group(1))
                        assert column > last_column, f"{where}: cell {ref} is not right of column {last_column}"
                        last_column = column
                    last_row, rows = number, rows + 1
                    element.clear()
            counts[part] = rows
    return counts

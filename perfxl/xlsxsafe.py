"""xlsxwriter, with every text written as text.

xlsxwriter writes a string that starts with ``<r>`` and ends with ``</r>`` into sharedStrings.xml as it
is, unescaped: it takes it for a rich string of its own making. A unit's declared text of that shape (a
project name, an indicator the library took from the ledgers and puts on every unit's form) would go into
the workbook as XML: a form Excel refuses to open, or content the unit chose. `SafeWorkbook` writes such a
text as one plain run, escaped, so the cell shows exactly the text."""

from __future__ import annotations

from xml.sax.saxutils import escape

import xlsxwriter
import xlsxwriter.worksheet
from xlsxwriter.utility import _utf16_len, _utf16_truncate

RUN_START, RUN_END = '<r><t xml:space="preserve">', "</t></r>"


def looks_rich(text: str) -> bool:
    """Whether xlsxwriter would write the text into sharedStrings.xml unescaped."""
    return text.startswith("<r>") and text.endswith("</r>")


class SafeWorksheet(xlsxwriter.worksheet.Worksheet):
    """A worksheet whose strings are written as text whatever they look like (merged ranges included: they
    are written through the same call)."""

    def _write_string(self, row, col, string, cell_format=None):
        if not isinstance(string, str) or not looks_rich(string):
            return super()._write_string(row, col, string, cell_format)
        error = 0
        if _utf16_len(string) > self.xls_strmax:
            string, error = _utf16_truncate(string, self.xls_strmax), -2
        wrapped = RUN_START + escape(string) + RUN_END
        while _utf16_len(wrapped) > self.xls_strmax:  # escaping made it longer than a cell takes: cut the text
            string, error = string[:-max(1, (_utf16_len(wrapped) - self.xls_strmax) // 5)], -2
            wrapped = RUN_START + escape(string) + RUN_END
        code = super()._write_string(row, col, wrapped, cell_format)
        return code or error


class SafeWorkbook(xlsxwriter.Workbook):
    """xlsxwriter's workbook whose sheets are `SafeWorksheet`s unless a subclass of it is asked for."""

    worksheet_class = SafeWorksheet

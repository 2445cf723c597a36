"""xlsxwriter, with every text written as text.

xlsxwriter writes a string that starts with ``<r>`` and ends with ``</r>`` into sharedStrings.xml as it
is, unescaped: it takes it for a rich string of its own making. A unit's declared text of that shape (a
project name, an indicator the library took from the ledgers and puts on every unit's form) would go into
the workbook as XML: a form Excel refuses to open, or content the unit chose. `SafeWorkbook` writes such a
text as one plain run, escaped, so the cell shows exactly the text. `shared_text` and `xml_attribute` escape a
text as xlsxwriter would, for the forms patched from a master (perfxl.generator, perfxl.prefilled)."""

from __future__ import annotations

import re
from xml.sax.saxutils import escape

import xlsxwriter
import xlsxwriter.worksheet
from xlsxwriter.utility import _utf16_len, _utf16_truncate

RUN_START, RUN_END = '<r><t xml:space="preserve">', "</t></r>"
_ESCAPED = re.compile(r"(_x[0-9a-fA-F]{4}_)")
_CONTROL = re.compile(r"([\x00-\x08\x0b-\x1f])")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def control_escaped(text: str) -> str:
    """A text with control characters and U+FFFE/U+FFFF as _xHHHH_ (a literal _xHHHH_ kept literal), as
    xlsxwriter writes a shared string."""
    text = _CONTROL.sub(lambda m: f"_x{ord(m.group(1)):04X}_", _ESCAPED.sub(r"_x005F\1", text))
    return text.replace("\ufffe", "_xFFFE_").replace("\uffff", "_xFFFF_")


def shared_text(text: str) -> str:
    """A text as xlsxwriter puts it inside a shared string's <t>: `control_escaped`, then escaped for XML."""
    return escape(control_escaped(text))


def xml_attribute(text: str) -> str:
    """A text as an attribute's value, escaped as xlsxwriter escapes one, what XML cannot hold left out."""
    return escape(_NOT_XML.sub("", text), {'"': "&quot;", "\n": "&#xA;"})


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
        if _utf16_len(string) > self.xls_strmax:  # the cell's limit is on the text it shows
            string, error = _utf16_truncate(string, self.xls_strmax), -2
        # xlsxwriter would measure the escaped run against that limit, and cut it inside its markup
        limit, self.xls_strmax = self.xls_strmax, 1 << 62
        try:
            code = super()._write_string(row, col, RUN_START + escape(string) + RUN_END, cell_format)
        finally:
            self.xls_strmax = limit
        return code or error


class SafeWorkbook(xlsxwriter.Workbook):
    """xlsxwriter's workbook whose sheets are `SafeWorksheet`s unless a subclass of it is asked for."""

    worksheet_class = SafeWorksheet

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
import xlsxwriter.core
import xlsxwriter.custom
import xlsxwriter.packager
import xlsxwriter.sharedstrings
import xlsxwriter.worksheet
from xlsxwriter.utility import _utf16_len, _utf16_truncate

from .xmltext import control_escaped

RUN_START, RUN_END = '<r><t xml:space="preserve">', "</t></r>"
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


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


class _EscapedAsText:
    """A part writer of xlsxwriter's that escapes text with `control_escaped`."""

    @staticmethod
    def _escape_control_characters(data):
        return control_escaped(data) if isinstance(data, str) else data


class _SharedStrings(_EscapedAsText, xlsxwriter.sharedstrings.SharedStrings):
    pass


class _Core(_EscapedAsText, xlsxwriter.core.Core):
    pass


class _Custom(_EscapedAsText, xlsxwriter.custom.Custom):
    pass


class _Packager(xlsxwriter.packager.Packager):
    """xlsxwriter's packager, whose parts that hold the workbook's texts (cells, document properties) escape
    them with `control_escaped`: the bodies are xlsxwriter's own (3.x), with those writers."""

    def _write_shared_strings_file(self) -> None:
        sst = _SharedStrings()
        sst.string_table = self.workbook.str_table
        if not self.workbook.str_table.count:
            return
        sst._set_xml_writer(self._filename("xl/sharedStrings.xml"))
        sst._assemble_xml_file()

    def _write_core_file(self) -> None:
        core = _Core()
        core._set_properties(self.workbook.doc_properties)
        core._set_xml_writer(self._filename("docProps/core.xml"))
        core._assemble_xml_file()

    def _write_custom_file(self) -> None:
        properties = self.workbook.custom_properties
        if not properties:
            return
        custom = _Custom()
        custom._set_properties(properties)
        custom._set_xml_writer(self._filename("docProps/custom.xml"))
        custom._assemble_xml_file()


class SafeWorkbook(xlsxwriter.Workbook):
    """xlsxwriter's workbook whose sheets are `SafeWorksheet`s unless a subclass of it is asked for, and whose
    texts are escaped with `control_escaped`."""

    worksheet_class = SafeWorksheet

    def _get_packager(self):
        return _Packager()

"""Prefilled forms patched from a master (generate stage).

A round's follow-up forms differ from unit to unit in little: the unit's name and code, what each project
sheet is prefilled with (its fields and indicator rows), the heights of the rows that text needs, and the
hidden declared sheet. xlsxwriter built each of them whole, 20 ms a form.

`PrefilledMaster` builds one workbook per (template, region, projects, rows) with xlsxwriter, a token in
every cell a unit's values fill, and takes it apart once. A unit's copy renders only those cells, the
project sheets' row tags, its own shared strings and its declared sheet; every other member is copied
compressed as it is. `copy_for` gives the workbook `build_workbook` gives for the same unit and values
(tests/test_prefilled.py opens both and compares them cell by cell), or None where the values do not fit
the master: the caller then builds that form.
"""

from __future__ import annotations

import io
import math
import re
import zipfile
from dataclasses import dataclass
from xml.sax.saxutils import escape, unescape

from .contract import DECLARED_SHEET, STAMP_SHEET, declared_cells, declared_sheet_rows, utf16_length
from .generator import (
    GUIDE_SHEET,
    MASTER_LEVEL,
    build_workbook,
    cell_content,
    filled,
    master_pieces,
    measured_as,
    placement_texts,
    raised_heights,
    room_needed,
    shown_value,
    split_at_tokens,
    unit_segments,
    unit_xml,
)
from .sheetxml import XlsxZip, segment
from .spec import Spec, layout
from .xlsxsafe import RUN_END, RUN_START, looks_rich, shared_text
from .xmltext import control_escaped

_VALUE_TOKEN = re.compile(rb"PXLVAL[0-9]+X[0-9]+PXL")
# A cell holding a shared string, a row's start tag: what a unit's copy renders again
_PIECE = re.compile(rb'<c r="([A-Z]+[0-9]+)"((?: s="[0-9]+")?) t="s"><v>([0-9]+)</v></c>|<row r="([0-9]+)"([^>]*?)(/?)>')
_ROW_ATTRS = re.compile(rb'( spans="[0-9]+:[0-9]+")?(?: ht="[^"]*")?(?: customHeight="1")?')
_SI = re.compile(rb"<si>.*?</si>", re.S)
_LEADING_SPACE, _TRAILING_SPACE = re.compile(r"^\s"), re.compile(r"\s$")
ROOMS_KEPT = 50_000  # texts measured, per master: then forgotten
MAX_CELL_TEXT = 32767  # UTF-16 units: a longer text is one xlsxwriter cuts, and the builder refuses


class CannotPatch(Exception):
    """The master is not shaped as this module expects (another xlsxwriter): build every form instead."""


@dataclass(frozen=True, slots=True)
class _Slot:
    """A cell a unit's values fill: a field of project sheet `sheet`, or a table cell (row index, column)."""

    sheet: int
    field: str | None
    row: int
    column: int
    ftype: str


@dataclass(frozen=True, slots=True)
class _Cell:
    slot: _Slot
    start: bytes  # <c r="…" s="…"


@dataclass(frozen=True, slots=True)
class _Row:
    row: int  # 0-based
    spans: bytes
    closed: bool  # a row without cells: <row …/>


@dataclass(frozen=True, slots=True)
class _Need:
    """A placement whose room depends on the unit: its text holds a unit token, or it is a slot's cell."""

    placement: object
    text: str | None  # with unit tokens; None for a slot's cell
    slot: _Slot | None
    size: float
    bold: bool


def shared_string_xml(text: str) -> bytes:
    """The <si> element xlsxwriter (through perfxl.xlsxsafe) writes for a text: control characters as
    _xHHHH_, whitespace kept, a text shaped like a rich string as one escaped run."""
    if looks_rich(text):
        return f"<si>{RUN_START}{shared_text(text)}{RUN_END}</si>".encode()
    text = control_escaped(text)  # whitespace is looked for after: a leading \x1f is _x001F_ by then
    space = ' xml:space="preserve"' if _LEADING_SPACE.search(text) or _TRAILING_SPACE.search(text) else ""
    return f"<si><t{space}>{escape(text)}</t></si>".encode()


def _shared_string_seen(text: str) -> bytes:
    """`shared_string_xml`, each short text escaped once in a process (a bounded memo)."""
    xml = _SEEN.get(text)
    if xml is None:
        xml = shared_string_xml(text)
        if len(text) <= 256:
            if len(_SEEN) >= SEEN_KEPT:
                _SEEN.clear()
            _SEEN[text] = xml
    return xml


_SEEN: dict[str, bytes] = {}
SEEN_KEPT = 30_000


def row_tag(row: _Row, height: float | None) -> bytes:
    """A row's start tag as xlsxwriter writes it for a row of this height in points (None: the default)."""
    pixels = 20 if height is None else int(height * 4.0 / 3.0 + 0.5)
    ht = b"" if pixels == 20 else f' ht="{pixels * 0.75:.16g}" customHeight="1"'.encode()
    return b'<row r="%d"%s%s%s>' % (row.row + 1, row.spans, ht, b"/" if row.closed else b"")


def _number(value) -> bytes:
    return f"{value:.16G}".encode()


class PrefilledMaster:
    """The forms of one (spec, projects, rows) patched from one built workbook.

    `spec` is loaded with `unit` (perfxl.generator.TOKENS, and the round) and the table's rows; `fields`
    are the fields every unit's sheets are prefilled with, `columns` the table's prefilled columns;
    `measure_as` a unit whose 填表说明 line takes as many lines as those of the units this master serves."""

    def __init__(self, spec: Spec, unit: dict, projects: int, fields: tuple[str, ...], table: str,
                 columns: frozenset[str], password: str | None, measure_as: dict):
        self.spec, self.projects, self.fields, self.table = spec, projects, tuple(fields), table
        lay = layout(spec)
        pos = lay.tables[table]
        self.rows = pos.last_row - pos.first_row + 1
        self.columns = [c.id for c in spec.tables[table].columns]
        self.prefilled_columns = frozenset(columns)
        self._other_columns = [j for j, c in enumerate(self.columns) if c not in self.prefilled_columns]
        slots: dict[bytes, _Slot] = {}
        values = []
        for s in range(projects):
            given = {}
            for fid in self.fields:
                if fid not in spec.fields:  # the builder writes only the template's fields: no slot
                    given[fid] = ""
                    continue
                token = f"PXLVAL{s}X{len(slots)}PXL"
                slots[token.encode()] = _Slot(s, fid, 0, 0, spec.fields[fid].type)
                given[fid] = token
            rows = []
            for i in range(self.rows):
                row = []
                for j, column in enumerate(spec.tables[table].columns):
                    if column.id in self.prefilled_columns:
                        token = f"PXLVAL{s}X{len(slots)}PXL"
                        slots[token.encode()] = _Slot(s, None, i, j, column.type)
                        row.append(token)
                    else:
                        row.append("")
                rows.append(row)
            values.append({"fields": given, "tables": {table: rows}})
        data = build_workbook(spec, unit, projects, password, values=values, declared=[[] for _ in range(projects)],
                              measure_as=measure_as)
        self._static_needs, self._unit_needs = self._needs(spec, values[0], slots)
        self._rooms: dict[tuple[int, str], tuple] = {}  # (need, text) → its room: 一级, 二级 and units repeat
        self._tags: dict[tuple[_Row, float | None], bytes] = {}
        self._take_apart(data, slots)

    # -- taking the master apart, once -------------------------------------------------------------

    def _needs(self, spec: Spec, first: dict, slots: dict[bytes, _Slot]):
        """The room every unit's sheets need alike, and the placements whose room depends on the unit.
        The same for every project sheet: they differ only in which slots' tokens they hold."""
        static, per_unit = [], []
        for p, text, size, bold in placement_texts(spec, first):
            slot = slots.get(text.encode()) if text.startswith("PXLVAL") else None
            if slot is not None:
                per_unit.append(_Need(p, None, slot, size, bold))
            elif _VALUE_TOKEN.search(text.encode()):
                raise CannotPatch("a value token inside a text")
            elif "PXLTOKEN" in text:
                per_unit.append(_Need(p, text, None, size, bold))
            else:
                static.append(room_needed(spec, p, text, size, bold))
        return static, per_unit

    def _take_apart(self, data: bytes, slots: dict[bytes, _Slot]) -> None:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = [(info.filename, zf.read(info)) for info in zf.infolist()]
        by_name = dict(members)
        titles = [GUIDE_SHEET, *(self.spec.sheet_title(i) for i in range(1, self.projects + 1)), STAMP_SHEET,
                  DECLARED_SHEET]
        names = [unescape(n.decode(), {"&quot;": '"'})
                 for n in re.findall(rb'<sheet name="([^"]*)"', by_name.get("xl/workbook.xml", b""))]
        if names != titles:
            raise CannotPatch(f"sheets {names}")
        sheet_of = {f"xl/worksheets/sheet{i}.xml": title for i, title in enumerate(titles, start=1)}
        # Shared strings: the master's own, tokens taken out, renumbered; a unit's are added after them
        sst = by_name.get("xl/sharedStrings.xml")
        if sst is None:
            raise CannotPatch("no shared strings")
        start = sst.index(b">", sst.index(b"<sst ")) + 1
        end = sst.rindex(b"</sst>")
        counts = re.search(rb' count="([0-9]+)" uniqueCount="([0-9]+)"', sst[:start])
        entries = _SI.findall(sst, start, end)
        if counts is None or sum(map(len, entries)) != end - start:
            raise CannotPatch("shared strings")
        renumbered: dict[int, int] = {}
        token_at: dict[int, _Slot] = {}
        kept = []
        for i, entry in enumerate(entries):
            slot = slots.get(entry[7:-9]) if entry.startswith(b"<si><t>") else None
            if slot is not None:
                token_at[i] = slot
            else:
                renumbered[i] = len(kept)
                kept.append(entry)
        self._data: dict[int, list] = {}
        self._sst_head = sst[:counts.start()]
        self._sst_count = int(counts.group(1)) - len(token_at)
        self._strings = len(kept)
        self._sst_body = master_pieces(b"".join(kept))
        self._sst_tail = sst[end:]
        # Each member as (name, what, parts): "static" pieces; "sst"; "project" (head, tail, its sheet; the
        # data's pieces in self._data); "declared" (head, middle, tail around the dimension and the rows)
        self.members: list[tuple[str, str, tuple]] = []
        for name, raw in members:
            title = sheet_of.get(name)
            if name == "xl/sharedStrings.xml":
                self.members.append((name, "sst", ()))
            elif title == DECLARED_SHEET:
                self.members.append((name, "declared", self._declared_parts(_renumber(raw, renumbered))))
            elif title in titles[1:1 + self.projects]:
                sheet = titles.index(title) - 1
                self.members.append((name, "project", (*self._project_sheet(sheet, raw, renumbered, token_at),
                                                       sheet)))
            else:
                if title is not None:
                    raw = _renumber(raw, renumbered)
                if _VALUE_TOKEN.search(raw):
                    raise CannotPatch(f"a value token in {name}")
                self.members.append((name, "static", (master_pieces(raw) if name.endswith(".xml")
                                                      else [segment(raw, level=MASTER_LEVEL)],)))

    def _project_sheet(self, sheet: int, raw: bytes, renumbered: dict[int, int], token_at: dict[int, _Slot]):
        """(head, the pieces of <sheetData>, tail): the head and tail compressed once, the data rendered for
        each unit from its static bytes, row tags and slots' cells."""
        start, end = raw.index(b"<sheetData"), raw.index(b"</sheetData>")
        pieces: list = []
        at = start
        for m in _PIECE.finditer(raw, start, end):
            pieces.append(raw[at:m.start()])
            at = m.end()
            if m.group(4) is not None:
                if _ROW_ATTRS.fullmatch(m.group(5)) is None:
                    raise CannotPatch(f"row attributes {m.group(5)!r}")
                spans = _ROW_ATTRS.fullmatch(m.group(5)).group(1) or b""
                pieces.append(_Row(int(m.group(4)) - 1, spans, m.group(6) == b"/"))
                continue
            index = int(m.group(3))
            slot = token_at.get(index)
            if slot is None:
                pieces.append(b'<c r="%s"%s t="s"><v>%d</v></c>' % (m.group(1), m.group(2), renumbered[index]))
            elif slot.sheet != sheet:
                raise CannotPatch("a slot on another sheet")
            else:
                pieces.append(_Cell(slot, b'<c r="%s"%s' % (m.group(1), m.group(2))))
        pieces.append(raw[at:end])
        data: list = []
        for piece in pieces:  # static bytes run together, unit tokens split out
            if isinstance(piece, bytes):
                if _VALUE_TOKEN.search(piece):
                    raise CannotPatch("a value token outside a cell")
                for part in split_at_tokens(piece):
                    if type(part) is bytes and data and type(data[-1]) is bytes:
                        data[-1] += part
                    else:
                        data.append(part)
            else:
                data.append(piece)
        head, tail = raw[:start], raw[end:]
        if _VALUE_TOKEN.search(head) or _VALUE_TOKEN.search(tail):
            raise CannotPatch("a value token outside the cells")
        self._data[sheet] = data
        return master_pieces(head), master_pieces(tail)

    def _declared_parts(self, raw: bytes):
        """The declared sheet around its rows: the mark and the header are the master's (rows 1 and 2)."""
        dimension = b'<dimension ref="A1:D2"/>'
        end = raw.find(b"</sheetData>")
        if raw.count(dimension) != 1 or end < 0:
            raise CannotPatch("declared sheet")
        at = raw.index(dimension)
        return master_pieces(raw[:at]), master_pieces(raw[at + len(dimension):end]), master_pieces(raw[end:])

    # -- a unit's copy -------------------------------------------------------------------------------

    def copy_for(self, unit: dict, values: list[dict], declared: list[list[dict]]) -> bytes | None:
        """`build_workbook(spec for the unit, unit, values=values, declared=declared)` patched from the
        master; None when the values do not fit it (another count of sheets or rows, other fields, a value
        in a column it does not prefill, a text longer than a cell takes)."""
        if len(values) != self.projects or len(declared) != self.projects:
            return None
        strings: dict[str, int] = {}
        refs = [0]

        def string(text: str) -> int:
            if len(text) > MAX_CELL_TEXT // 2 and utf16_length(text) > MAX_CELL_TEXT:
                raise _DoesNotFit  # longer than a cell shows: the builder cuts it (and says so, or not)
            refs[0] += 1
            index = strings.get(text)
            if index is None:
                index = strings[text] = self._strings + len(strings)
            return index

        shown = measured_as(unit)
        in_sheets = unit_xml(unit)
        values_of = unit_segments(unit)
        try:
            sheets = [self._sheet_data_for(s, v, string, shown, in_sheets) for s, v in enumerate(values)]
            declared_rows = self._declared_rows_for(declared, string)
        except _DoesNotFit:
            return None
        out = io.BytesIO()
        package = XlsxZip(out)
        for name, what, parts in self.members:
            if what == "sst":
                head = self._sst_head + b' count="%d" uniqueCount="%d">' % (self._sst_count + refs[0],
                                                                            self._strings + len(strings))
                own = b"".join(map(_shared_string_seen, strings))
                package.write_segments(name, [segment(head), *filled(self._sst_body, values_of),
                                              segment(own + self._sst_tail)])
            elif what == "project":
                head, tail, sheet = parts
                package.write_segments(name, [*filled(head, values_of), segment(sheets[sheet]),
                                              *filled(tail, values_of)])
            elif what == "declared":
                head, middle, tail = parts
                rows, last = declared_rows
                package.write_segments(name, [*filled(head, values_of), segment(b'<dimension ref="A1:D%d"/>' % last),
                                              *filled(middle, values_of), segment(rows), *filled(tail, values_of)])
            else:
                package.write_segments(name, filled(parts[0], values_of))
        package.close()
        return out.getvalue()

    def _sheet_data_for(self, sheet: int, values: dict, string, shown, unit_xml: dict) -> bytes:
        """A project sheet's <sheetData> for the unit: its cells, and its rows as tall as their text needs."""
        given = values.get("fields") or {}
        if set(given) != set(self.fields) or set(values.get("tables") or {}) - {self.table}:
            raise _DoesNotFit
        rows = (values.get("tables") or {}).get(self.table) or []
        if len(rows) > self.rows:
            raise _DoesNotFit
        width, others = len(self.columns), self._other_columns
        for row in rows:
            if len(row) > width or any(j < len(row) and row[j] not in ("", None) for j in others):
                raise _DoesNotFit

        count = len(rows)

        def value_of(slot: _Slot):
            if slot.field is not None:
                return given[slot.field]
            row = rows[slot.row] if slot.row < count else ()
            return row[slot.column] if slot.column < len(row) else ""

        needs = list(self._static_needs)
        rooms = self._rooms
        if len(rooms) > ROOMS_KEPT:
            rooms.clear()
        for i, need in enumerate(self._unit_needs):
            text = shown(need.text) if need.slot is None else shown_value(value_of(need.slot), need.slot.ftype)
            if text:  # a slot's need is the same on every sheet: the placement is the same cell
                room = rooms.get((i, text))
                if room is None:
                    room = rooms[i, text] = room_needed(self.spec, need.placement, text, need.size, need.bold)
                needs.append(room)
        heights = raised_heights(self.spec, needs)
        tags = self._tags
        out = []
        put = out.append
        for piece in self._data[sheet]:
            kind = type(piece)
            if kind is bytes:
                put(piece)
            elif kind is _Cell:
                slot = piece.slot
                what, content = cell_content(value_of(slot), slot.ftype)
                if what == "string":
                    put(piece.start + b' t="s"><v>%d</v></c>' % string(content))
                elif what == "blank":
                    put(piece.start + b"/>")
                else:
                    put(piece.start + b"><v>%s</v></c>" % _number(content))
            elif kind is _Row:
                height = heights.get(piece.row)
                tag = tags.get((piece, height))
                if tag is None:
                    tag = tags[piece, height] = row_tag(piece, height)
                put(tag)
            else:
                put(unit_xml[piece])
        return b"".join(out)

    def _declared_rows_for(self, declared: list[list[dict]], string) -> tuple[bytes, int]:
        out = []
        r = 2
        for title_index, rows in enumerate(declared, start=1):
            for sheet, level1, points, text in declared_sheet_rows(self.spec.sheet_title(title_index), rows):
                if not math.isfinite(points):
                    raise _DoesNotFit  # xlsxwriter refuses it: the builder says so
                if len(declared_cells(text)) > 1:
                    raise _DoesNotFit  # continued in the cells to its right: the builder writes them
                r += 1
                out.append(b'<row r="%d" spans="1:4"><c r="A%d" t="s"><v>%d</v></c><c r="B%d" t="s"><v>%d</v></c>'
                           b'<c r="C%d"><v>%s</v></c><c r="D%d" t="s"><v>%d</v></c></row>'
                           % (r, r, string(sheet), r, string(level1), r, _number(points), r, string(text)))
        return b"".join(out), r


class _DoesNotFit(Exception):
    pass


def _renumber(raw: bytes, renumbered: dict[int, int]) -> bytes:
    def repl(m):
        if m.group(4) is not None:
            return m.group(0)
        return b'<c r="%s"%s t="s"><v>%d</v></c>' % (m.group(1), m.group(2), renumbered[int(m.group(3))])
    try:
        return _PIECE.sub(repl, raw)
    except KeyError:
        raise CannotPatch("a value token's string in a sheet that holds none") from None

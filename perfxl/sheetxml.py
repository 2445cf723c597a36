"""Sheet XML for the report stage: rows rendered once, compressed once, and assembled into a workbook.

A summary sheet of 350,000 rows is 250 MB of XML. Rendering and compressing it is most of a merge's wall
time, so the big sheets are made of *segments*: one form's rows compressed as a raw deflate stream that
ends byte-aligned and refers to nothing before it (a full flush). Such segments concatenate into one valid
deflate stream, and their CRC-32s combine without the data, so a re-merge writes a sheet from segments
kept in the ledger, rendering only the forms that changed.

Every row and cell carries its number (`r`), as Excel writes them. ECMA-376 makes `r` optional, but POI's
streaming reader (how Java systems import workbooks), exceljs and others misread rows without it. So a
row is rendered once as a *template*, its XML with a NUL (which escaped XML never holds) wherever its
number goes, and filled in at the row where it lands (`fill`). A form's segment is kept with the row it
starts at and the template it was filled from (`KeptRows`): it is used as it is while the form stays at
that row, and a form that moved (an earlier one gained or lost rows) costs an inflate, a fill and a
deflate, not a render.

`XlsxZip` writes the package: small members compressed here, big members from segments as they are.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
import struct
import threading
import time
import unicodedata
import zlib
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from .cachekeys import RENDER_VERSION
from .contract import utf16_length, utf16_prefix
from .spec import cell_name
from .xmltext import ENCODED, control_escaped

MAX_CELL = 32_767  # characters a cell holds
LEVEL = 1  # zlib level: summary sheets are repetitive; level 1 compresses them ~10x at a third of level 6's time

_XML_ESCAPES = {ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;"}
_NEEDS_ESCAPE = re.compile(f"[&<>{ENCODED}]|_x")


def col_letters(n: int) -> list[str]:
    return [cell_name(0, c)[:-1] for c in range(n)]


def text_cell(text: str, attrs: str = "") -> str:
    """A cell holding `text` as an inline string: never a formula, whatever it starts with."""
    if len(text) > MAX_CELL // 2 and utf16_length(text) > MAX_CELL:  # Excel counts a character beyond the BMP
        text = utf16_prefix(text, MAX_CELL - 1) + "…"  # twice
    if _NEEDS_ESCAPE.search(text):
        text = control_escaped(text).translate(_XML_ESCAPES)
    if text[0].isspace() or text[-1].isspace():
        return f'<c{attrs} t="inlineStr"><is><t xml:space="preserve">{text}</t></is></c>'
    return f'<c{attrs} t="inlineStr"><is><t>{text}</t></is></c>'


# How wide text prints, in Excel's column units (the width of a digit of Calibri 11, the summary's font, whose
# metric twin Carlito LibreOffice uses): each character's width as LibreOffice drew it, rounded up by a tenth,
# and a CJK character as Excel draws it (14.7 px at 11 pt against the digit's 7 px; LibreOffice: 1.98). Rounded
# up, an estimate wraps a text onto a line more than a program does, never onto fewer.
CJK_WIDTH = 2.1
BOLD = 1.1  # a bold text (the header, the totals) is about a tenth wider
_ASCII_WIDTHS = {**{chr(c): 1.1 for c in range(32, 127)},
                 **dict.fromkeys("'ijl,.I:;|`", 0.55), **dict.fromkeys("ft()-[]{}J!r ", 0.75),
                 **dict.fromkeys("/\\sz\"cxLkvy", 0.95), **dict.fromkeys("ABCDEGHKNOPQRUVXYZ", 1.45),
                 **dict.fromkeys("mwMW@%&", 1.85)}


class _CharWidths(dict):
    def __missing__(self, ch: str) -> float:
        wide = unicodedata.east_asian_width(ch) in "WF"
        self[ch] = width = CJK_WIDTH if wide else 1.85  # another script's letter or a symbol (−, ≤, —)
        return width


CHAR_WIDTHS = _CharWidths(_ASCII_WIDTHS)
_CLOSING = set("，。、；：！？）」』】〕》〉”’,.;:!?)]}%％")  # never starts a line: stays with what is before it
_OPENING = set("（「『【〔《〈“‘([{")  # never ends a line: stays with what follows it


def text_width(text: str) -> float:
    """How wide `text` prints on one line, in column units (see CHAR_WIDTHS)."""
    return sum(map(CHAR_WIDTHS.__getitem__, text))


def _breaks_before(prev: str, ch: str) -> bool:
    """Whether a line may break between `prev` and `ch`: around a CJK character, after a space or a hyphen;
    never before closing or after opening punctuation, nor inside a run of Latin letters and digits (a file
    name or a code breaks only where it must: where it is wider than the line)."""
    if ch in _CLOSING or ch == " " or prev in _OPENING:
        return False
    return prev in " -" or CHAR_WIDTHS[prev] == CJK_WIDTH or CHAR_WIDTHS[ch] == CJK_WIDTH


# A sheet repeats its texts: a project's name on each of its rows, one indicator in thousands of forms, one
# finding's words for many rows (a tenth of 历史对比's wrapped cells at 10,000 forms are distinct).
@lru_cache(maxsize=16384)
def wrapped_lines(text: str, width: float, bold: bool = False) -> int:
    """How many lines `text` takes wrapped in a column `width` units wide: laid out line by line as a
    spreadsheet does, a word that does not fit going to the next line and a word wider than the line broken
    where it reaches the edge. (Words are where `_breaks_before` allows a break; each character's width is
    looked up once and words are measured by running sums: a summary computes this for 300,000 cells.)"""
    scale = BOLD if bold else 1.0
    room = max(1.0, width - 0.6) / scale  # the cell's padding
    widths = CHAR_WIDTHS
    total = 0
    for paragraph in text.split("\n"):
        total += 1
        if not paragraph:
            continue
        ws = [widths[ch] for ch in paragraph]
        if sum(ws) < room - 1e-9:  # the whole paragraph on one line (clear of how the sums below round)
            continue
        starts = [0]
        previous = paragraph[0]
        for i in range(1, len(paragraph)):
            ch = paragraph[i]
            if not (ch in _CLOSING or ch == " " or previous in _OPENING) and (
                    previous in " -" or ws[i - 1] == CJK_WIDTH or ws[i] == CJK_WIDTH):
                starts.append(i)
            previous = ch
        starts.append(len(paragraph))
        used = 0.0
        for a, b in zip(starts, starts[1:]):
            full = sum(ws[a:b])
            end = b
            while end > a and paragraph[end - 1] == " ":
                end -= 1
            size = full if end == b else sum(ws[a:end])
            if used + size <= room:
                used += full
                continue
            if used:
                total += 1
                used = 0.0
            if size <= room:
                used = full
                continue
            for w in ws[a:b]:  # wider than a line: broken where it reaches the edge
                if used + w > room and used:
                    total += 1
                    used = 0.0
                used += w
    return total


LINE_HEIGHT = 15.0  # pt a wrapped line takes (Excel's row for Calibri 11; LibreOffice draws CJK lines 13.9 apart)
MAX_ROW_HEIGHT = 409.0  # the tallest row Excel allows


def row_height(lines: int) -> float:
    """The height of a row whose text takes `lines` lines: its lines and the cell's padding."""
    return LINE_HEIGHT if lines <= 1 else min(MAX_ROW_HEIGHT, LINE_HEIGHT * lines + 3.0)



@dataclass(frozen=True)
class Layout:
    """How a sheet's rows are rendered: each column's kind, its cell style (an xf index of the workbook)
    and, for wrapped text, its width. `key` names it, so a segment rendered for another layout is not
    reused."""

    kinds: tuple[str, ...]
    styles: tuple[int, ...]
    wrapped: tuple[float, ...]  # a wrapped text column's width (units), 0 for a column that does not wrap

    @property
    def key(self) -> str:
        return repr((self.kinds, self.styles, self.wrapped))

    @property
    def summed(self) -> tuple[bool, ...]:
        return tuple(k in {"money", "count"} for k in self.kinds)

    def widened_from(self, other: Layout) -> tuple[int, ...] | None:
        """The wrapped columns this layout has wider than `other`, where it differs from `other` in nothing
        else (the same kinds and styles, no column narrower, none wrapped that did not wrap); else None. A
        row renders as the same bytes under both when each of its texts in those columns took one line
        under `other` (`Widened`): its other columns are as they were, and its height their lines."""
        if (self.kinds != other.kinds or self.styles != other.styles or len(self.wrapped) != len(other.wrapped)
                or not all((new == 0) == (old == 0) and new >= old for new, old in zip(self.wrapped, other.wrapped))):
            return None
        return tuple(c for c, (new, old) in enumerate(zip(self.wrapped, other.wrapped)) if new > old)

    def to_json(self) -> str:
        return json.dumps([list(self.kinds), list(self.styles), list(self.wrapped)])

    @staticmethod
    def from_json(blob) -> Layout | None:
        """A layout `to_json` kept, or None for a value of any other shape."""
        try:
            kinds, styles, wrapped = json.loads(blob)
            layout = Layout(tuple(kinds), tuple(styles), tuple(wrapped))
        except (ValueError, TypeError, RecursionError):
            return None
        if (not all(type(k) is str for k in kinds) or not all(type(s) is int for s in styles)
                or not all(type(w) in (int, float) for w in wrapped)):
            return None
        return layout


ROW = "\x00"  # where a row template's row number goes: escaped text never holds a NUL (it becomes _x0000_)
# A row of one line has its height too: a program that sizes rows without one (LibreOffice) may size them
# after it has laid out the pages, and then prints a row on another page than it counted it on.
_ONE_LINE = f'<row r="{ROW}" ht="{LINE_HEIGHT:g}" customHeight="1">'


@dataclass(frozen=True)
class Widened:
    """Row templates kept under a sheet's earlier layout (`before`), used under one that only widened
    `columns` (Layout.widened_from): a row's template is used only where each of its texts in those columns
    took one line under `before`, so that its height is what its other columns make it."""

    before: Layout
    columns: tuple[int, ...]

    def same(self, row: list) -> bool:
        numeric = self.before.kinds
        for c in self.columns:
            value = row[c] if c < len(row) else None
            if value is None or value == "" or (numeric[c] != "text" and type(value) in (int, float)):
                continue
            if not fits_one_line(shown_text(value), self.before.wrapped[c]):
                return False
        return True


def shown_text(value) -> str:
    """A value of a text cell as `render_rows` writes it (a boolean as 是 or 否)."""
    return value if type(value) is str else ("是" if value is True else "否" if value is False else str(value))


def fits_one_line(text: str, wrap: float) -> bool:
    """Whether `text` takes one line in a column `wrap` units wide (0: a column that does not wrap). Text of
    at most (wrap - 0.6) / CJK_WIDTH characters fits whatever they are (the widest is a CJK character)."""
    if not wrap or len(text) <= (wrap - 0.6) / CJK_WIDTH:
        return True
    return text_width(text) <= wrap - 0.6 and "\n" not in text


# A sheet repeats its texts (a unit's name on each of its rows, one rule's code on thousands, the same
# 一级指标 and 二级指标 in every form): each distinct text of a column is escaped and measured once in a
# process, per layout. Bounded: all are forgotten past this many texts, whatever their layouts (~10 MB).
_SEEN_TEXTS = 30_000
_SEEN: dict[str, list[dict[str, tuple[str, int]]]] = {}
_SEEN_LOCK = threading.Lock()


def _cells_seen(layout: Layout) -> list[dict[str, tuple[str, int]]]:
    """The texts of each column seen under this layout (cell XML and lines), shared by the renders of a
    process: the XML of a text depends only on its column's letter, style and width, which the layout fixes."""
    key = layout.key
    with _SEEN_LOCK:
        # One bound for every layout together: a long-lived process (the portal) renders many summaries
        if sum(len(texts) for columns in _SEEN.values() for texts in columns) > _SEEN_TEXTS:
            _SEEN.clear()
        seen = _SEEN.get(key)
        if seen is None:
            seen = _SEEN[key] = [{} for _ in layout.kinds]
        return seen


def _seen_text(seen: dict, text: str, attrs: str, wrap: float) -> tuple[str, int]:
    """A text cell's XML and the lines it takes, made once and remembered in `seen` (its column's)."""
    taken = 1 if fits_one_line(text, wrap) else wrapped_lines(text, wrap)
    known = seen[text] = (text_cell(text, attrs), taken)
    return known


def render_rows(rows: Iterable[list], layout: Layout, sums: list[float], memo: dict | None = None,
                used: dict | None = None, widened: Widened | None = None) -> tuple[bytes, int]:
    """Rows as a template of <row> XML in UTF-8 (see `fill`), as Excel writes them: every row and cell
    with `r`, the cells in column order, an empty one left out. Text is always text ("=cmd|…" or "+1"
    stays a string). A row whose text wraps onto more lines than one gets the height of its lines (`row_height`
    of `wrapped_lines`): wrapped text in a row too short for it prints over the next row, and a program that
    does measure rows again on opening (LibreOffice) then finds it right already. Summed columns are added
    into `sums`. With `memo` (the templates of rows rendered before, by their repr in UTF-8), a row found
    there is not rendered again (with `widened`, only where `Widened.same` says so); every row's template
    goes into `used`. Returns the template and the rows."""
    numeric = [k != "text" for k in layout.kinds]
    attrs = [f' r="{letter}{ROW}"' + (f' s="{s}"' if s else "")
             for letter, s in zip(col_letters(len(layout.kinds)), layout.styles)]
    summed = layout.summed
    summed_columns = [c for c, on in enumerate(summed) if on]
    wrap = layout.wrapped
    seen = _cells_seen(layout)
    out = []
    count = 0
    for row in rows:
        count += 1
        if memo is not None:
            key = repr(row).encode("utf-8")
            xml = memo.get(key)
            if xml is not None and (widened is None or widened.same(row)):
                used[key] = xml
                out.append(xml)
                for c in summed_columns:
                    if type(row[c]) in (int, float):
                        sums[c] += row[c]
                continue
        cells = []
        lines = 1
        for c, value in enumerate(row):
            kind = type(value)
            if kind is str:  # the commonest cell: a text seen before (a unit's name, an 一级指标)
                if not value:
                    continue
                known = seen[c].get(value)
                if known is None:
                    known = _seen_text(seen[c], value, attrs[c], wrap[c])
            elif value is None:
                continue
            elif numeric[c] and (kind is int or kind is float):
                cells.append(f"<c{attrs[c]}><v>{value!r}</v></c>")
                if summed[c]:
                    sums[c] += value
                continue
            elif value == "":
                continue
            else:
                text = shown_text(value)
                known = seen[c].get(text)
                if known is None:
                    known = _seen_text(seen[c], text, attrs[c], wrap[c])
            cells.append(known[0])
            if known[1] > lines:
                lines = known[1]
        head = f'<row r="{ROW}" ht="{row_height(lines):g}" customHeight="1">' if lines > 1 else _ONE_LINE
        xml = head + "".join(cells) + "</row>"
        if memo is not None:
            xml = used[key] = xml.encode("utf-8")
        out.append(xml)
    if memo is not None:
        return b"".join(out), count
    return "".join(out).encode("utf-8"), count


_ROW = ROW.encode()


def fill(template: bytes, start: int, rows: int | None = None) -> bytes:
    """A template's rows numbered from `start`: each row's marks replaced by its number (the text between
    two rows' ends is one row, so this is a split, a replace per row and a join, all in C). With `rows`,
    ValueError for a template that does not hold that many whole rows."""
    pieces = template.split(b"</row>")
    if rows is not None and (len(pieces) != rows + 1 or pieces[-1]):
        raise ValueError("a template of another row count")
    return b"</row>".join([piece.replace(_ROW, b"%d" % n) for n, piece in enumerate(pieces, start)])


def rows_segment(rows: list[list], layout: Layout, start: int) -> Segment:
    """Rows as a segment whose first row is row `start` of its sheet."""
    sums = [0.0] * len(layout.kinds)
    xml, count = render_rows(rows, layout, sums)
    return segment(fill(xml, start), count, sums)


def memo_segment(rows: list[list], layout: Layout, start: int, memo: dict, used: dict,
                 kept: tuple[bytes, Segment] | None, widened: Widened | None = None) -> tuple[Segment, bytes]:
    """Rows of a sheet sorted across forms as a segment whose first row is row `start`, rendered with
    `memo` (see `render_rows`), and the digest of what it holds. `kept` (a digest and the segment it was
    made from) is used as it is when the digest is this one's: rows that neither changed nor moved are
    not filled in and compressed again."""
    sums = [0.0] * len(layout.kinds)
    xml, count = render_rows(rows, layout, sums, memo, used, widened)
    digest = hashlib.sha256(b"%d|" % start)
    digest.update(xml)
    digest = digest.digest()
    if kept is not None and kept[0] == digest:
        seg = kept[1]
        return Segment(seg.data, seg.crc, seg.length, seg.zeros, count, tuple(sums)), digest
    return segment(fill(xml, start), count, sums), digest


def values_segment(rows: list[list], layout: Layout, start: int,
                   kept: tuple[bytes, Segment] | None) -> tuple[Segment, bytes]:
    """Rows of a sheet sorted across forms too long for its rows' templates to be kept (report.MEMO_ROWS)
    as a segment whose first row is row `start`, and the digest of what it is made from: the rows' values
    (their repr), where they start, the layout and the code that renders them (RENDER_VERSION). `kept` (a
    digest and its segment) is used as it is when its digest is this one's: the rows are then neither
    rendered nor compressed again, which a province's sorted sheets, 100,000 rows and more each, were at
    every re-merge."""
    digest = hashlib.sha256(f"values|{RENDER_VERSION}|{start}|{layout.key}|".encode())
    digest.update(repr(rows).encode("utf-8"))
    digest = digest.digest()
    sums = [0.0] * len(layout.kinds)
    if kept is not None and kept[0] == digest:
        summed = [c for c, on in enumerate(layout.summed) if on]
        for row in rows:  # as render_rows adds them, in the same order: the same float sums
            for c in summed:
                if c < len(row) and type(row[c]) in (int, float):
                    sums[c] += row[c]
        seg = kept[1]
        return Segment(seg.data, seg.crc, seg.length, seg.zeros, len(rows), tuple(sums)), digest
    xml, count = render_rows(rows, layout, sums)
    return segment(fill(xml, start), count, sums), digest


# ----------------------------------------------------------------------------------------------------
# Segments: compressed pieces of a member that concatenate
# ----------------------------------------------------------------------------------------------------

_ZEROS = memoryview(bytes(1 << 20))


def _crc_of_zeros(length: int, crc: int = 0) -> int:
    """The CRC-32 of `length` zero bytes following data whose CRC-32 is `crc`."""
    while length > 0:
        step = min(length, len(_ZEROS))
        crc = zlib.crc32(_ZEROS[:step], crc)
        length -= step
    return crc


def _zlib_crc32_combine():
    """zlib's own crc32_combine64, from the zlib library that Python's zlib module is linked against,
    where it can be loaded by name (Linux, macOS): a microsecond where a pass over a segment's length of
    zero bytes takes ten, and a re-merge combines 10,000 segments. None where it cannot be loaded (Windows
    builds zlib into Python) or does not agree with the pass over zeros."""
    try:
        import ctypes
    except ImportError:
        return None
    for name in ("libz.so.1", "libz.dylib"):
        try:
            combine = ctypes.CDLL(name).crc32_combine64
        except (OSError, AttributeError):
            continue
        combine.argtypes = (ctypes.c_ulong, ctypes.c_ulong, ctypes.c_int64)
        combine.restype = ctypes.c_ulong
        a, b = b"perfxl", bytes(range(256)) * 41
        if combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b):
            return combine
    return None


_COMBINE = _zlib_crc32_combine()


def crc_combine(crc1: int, crc2: int, length2: int, zeros2: int) -> int:
    """The CRC-32 of A+B from those of A and B, B's length and the CRC-32 of as many zero bytes.

    A CRC is affine in its start value and its data: crc(B, start=c) = crc(zeros, start=c) ^ crc(B) ^
    crc(zeros). zlib's crc32_combine is not in Python's zlib: it is called in the zlib library where it
    can be (`_COMBINE`), else zero bytes cost one fast pass."""
    if _COMBINE is not None:
        return _COMBINE(crc1, crc2, length2)
    return _crc_of_zeros(length2, crc1) ^ zeros2 ^ crc2


@dataclass(slots=True)  # not frozen: tens of thousands are made in a re-merge, and a frozen one costs 5× as much
class Segment:
    """Part of a member: raw deflate data ending on a byte boundary (never final), with the CRC-32,
    length and the CRC-32 of as many zero bytes (to combine CRCs); for sheet rows also how many rows and
    their column sums."""

    data: bytes
    crc: int
    length: int
    zeros: int
    rows: int = 0
    sums: tuple[float, ...] = ()


_PACKERS = threading.local()  # one compressor per thread, reused: setting one up costs more than a form's rows


def deflate(raw: bytes) -> bytes:
    """`raw` as raw deflate data that ends on a byte boundary and refers to nothing before it: a full
    flush resets the compressor, so what one compressor writes for one piece stands alone, wherever it
    is put later (zlib: "decompression can restart from this point")."""
    packer = getattr(_PACKERS, "packer", None)
    if packer is None:
        packer = _PACKERS.packer = zlib.compressobj(LEVEL, zlib.DEFLATED, -15)
    try:
        return packer.compress(raw) + packer.flush(zlib.Z_FULL_FLUSH)
    except BaseException:
        _PACKERS.packer = None  # a half-fed compressor would put this input into the next piece
        raise


def segment(raw: bytes, rows: int = 0, sums: Iterable[float] = (), level: int | None = None) -> Segment:
    """`raw` as a segment. With `level`, compressed at that level by a compressor of its own: for a piece
    compressed once and copied many times (a blank form's master), where every copy's size counts more
    than the time."""
    if level is None:
        data = deflate(raw)
    else:
        packer = zlib.compressobj(level, zlib.DEFLATED, -15)
        data = packer.compress(raw) + packer.flush(zlib.Z_FULL_FLUSH)
    return Segment(data, zlib.crc32(raw), len(raw), _crc_of_zeros(len(raw)), rows, tuple(sums))


# ----------------------------------------------------------------------------------------------------
# What the ledger keeps: a form's rows (template and segment) and a sorted sheet's row templates
# ----------------------------------------------------------------------------------------------------

MAX_TEMPLATE = 64 << 20  # a form's rows larger than this (inflated, ~60,000 rows) are not kept
MEMO_BYTES = 192 << 20  # a sorted sheet's kept row templates larger than this (inflated) are not kept
_FORMULA = b"<f"  # a cell's formula element: perfxl never writes one (text is escaped: it never holds a "<")


@dataclass(slots=True)
class KeptRows:
    """One form's rows of a big sheet as the ledger keeps them: the template (raw deflate, `length` bytes
    inflated), and the segment filled from it at row `start` (0 and None: not placed yet)."""

    template: bytes
    length: int
    rows: int
    sums: tuple[float, ...]
    start: int = 0
    filled: Segment | None = None
    raw: bytes | None = dataclasses.field(default=None, compare=False)  # the template inflated, while at hand

    def at(self, start: int) -> KeptRows:
        """These rows placed at row `start`: itself when they are there already. ValueError for a template
        that does not inflate to as many rows as it claims (a damaged or foreign ledger)."""
        if start == self.start and self.filled is not None:
            return self
        raw = self.raw if self.raw is not None else _inflate(self.template, self.length)
        if _FORMULA in raw:
            raise ValueError("a kept template with a formula")
        return KeptRows(self.template, self.length, self.rows, self.sums, start,
                        segment(fill(raw, start, self.rows), self.rows, self.sums), raw)


def kept_rows(rows: list[list], layout: Layout) -> KeptRows:
    """A form's rows rendered as a template (not placed yet)."""
    sums = [0.0] * len(layout.kinds)
    raw, count = render_rows(rows, layout, sums)
    return KeptRows(deflate(raw), len(raw), count, tuple(sums), raw=raw)


_KEPT = struct.Struct("<4sIIHIQIIQ")  # mark, start, rows, sums, crc, length, zeros, segment bytes, template length
_KEPT_MARK = b"PXR1"


def pack_rows(kept: KeptRows) -> bytes | None:
    """A form's rows as bytes to keep (a fixed header, the sums, the segment, the template); None when
    they are too big to be worth keeping."""
    if kept.length > MAX_TEMPLATE:
        return None
    seg = kept.filled or Segment(b"", 0, 0, 0)
    return (_KEPT.pack(_KEPT_MARK, kept.start if kept.filled else 0, kept.rows, len(kept.sums), seg.crc, seg.length,
                       seg.zeros, len(seg.data), kept.length)
            + struct.pack(f"<{len(kept.sums)}d", *kept.sums) + seg.data + kept.template)


def unpack_rows(blob, columns: int) -> KeptRows | None:
    """The rows `pack_rows` kept for a sheet of `columns` columns, or None for a value of any other shape
    (another version's, a damaged or a planted one): those rows are then rendered afresh."""
    if type(blob) is not bytes or len(blob) < _KEPT.size or blob[:4] != _KEPT_MARK:
        return None
    _, start, rows, n, crc, length, zeros, size, template_length = _KEPT.unpack_from(blob)
    body = _KEPT.size + 8 * n
    if n != columns or not rows or body + size > len(blob) or template_length > MAX_TEMPLATE:
        return None
    sums = struct.unpack_from(f"<{n}d", blob, _KEPT.size)
    seg = Segment(blob[body:body + size], crc, length, zeros, rows, sums) if start else None
    return KeptRows(blob[body + size:], template_length, rows, sums, start if seg else 0, seg)


def _inflate(data: bytes, length: int) -> bytes:
    """Raw deflate data that must inflate to exactly `length` bytes (never more is inflated)."""
    inflater = zlib.decompressobj(-15)
    try:
        raw = inflater.decompress(data, length + 1)
    except zlib.error:
        raise ValueError("kept data that does not inflate") from None
    if len(raw) != length or inflater.unconsumed_tail:
        raise ValueError("kept data of another length")
    return raw


_MEMO = struct.Struct("<4sI")  # mark, rows; then every key's and every template's length, the keys, the templates
_MEMO_MARK = b"PXM1"
_ROW_START = f'<row r="{ROW}"'.encode()


def pack_memo(memo: dict[bytes, bytes]) -> bytes | None:
    """A sorted sheet's row templates by their row's repr, as bytes to keep: lengths, then the keys, then
    the templates, compressed. None when too big."""
    lengths = array("I", map(len, memo))
    lengths.extend(map(len, memo.values()))
    raw = b"".join([_MEMO.pack(_MEMO_MARK, len(memo)), lengths.tobytes(), *memo, *memo.values()])
    return zlib.compress(raw, LEVEL) if len(raw) <= MEMO_BYTES else None


def unpack_memo(blob) -> dict[bytes, bytes] | None:
    """The row templates `pack_memo` kept, or None for a value of any other shape (another version's, a
    damaged or a planted one): the sheet's rows are then rendered afresh. Data only, sliced apart as it
    was joined (an unpickled ledger would run whatever someone planted in it)."""
    if type(blob) is not bytes:
        return None
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(blob, MEMO_BYTES + 1)
    except zlib.error:
        return None
    if not inflater.eof or len(raw) < _MEMO.size:
        return None
    mark, n = _MEMO.unpack_from(raw)
    lengths = array("I")
    body = _MEMO.size + 2 * n * lengths.itemsize
    if mark != _MEMO_MARK or body > len(raw):
        return None
    lengths.frombytes(raw[_MEMO.size:body])
    offsets = list(itertools.accumulate(lengths, initial=body))
    if offsets[-1] != len(raw):
        return None
    pieces = list(map(raw.__getitem__, map(slice, offsets[:-1], offsets[1:])))
    keys, xml = pieces[:n], pieces[n:]
    # Each template one row, or the sheet would have rows its count does not know: every one starts and
    # ends as a row does, and there are as many ends as templates. And no formula: perfxl writes values
    # only, and escaped text never holds a "<" (the ledger's seal is what keeps a planted template out;
    # this is what is left should one ever get past it).
    if not (all(map(bytes.startswith, xml, itertools.repeat(_ROW_START)))
            and all(map(bytes.endswith, xml, itertools.repeat(b"</row>")))
            and raw.count(b"</row>", offsets[n]) == n
            and raw.find(_FORMULA, offsets[n]) < 0):
        return None
    return dict(zip(keys, xml))


_CHUNK = struct.Struct("<32sIQII")  # digest, crc, length, zeros, bytes of deflate data (which follow)
_CHUNKS_MARK = b"PXC1"


def pack_chunks(chunks: list[tuple[bytes, Segment]]) -> bytes:
    """A sorted sheet's segments with their digests (see `memo_segment`), as bytes to keep."""
    return b"".join([_CHUNKS_MARK, *(_CHUNK.pack(digest, seg.crc, seg.length, seg.zeros, len(seg.data)) + seg.data
                                     for digest, seg in chunks)])


def unpack_chunks(blob) -> list[tuple[bytes, Segment]] | None:
    """The segments `pack_chunks` kept, or None for a value of any other shape: each one's deflate data
    ends with the full flush `deflate` ends it with (else the member's stream would not go on from it),
    and its size is one deflate can make of its length."""
    if type(blob) is not bytes or blob[:4] != _CHUNKS_MARK:
        return None
    chunks, at = [], 4
    while at < len(blob):
        if at + _CHUNK.size > len(blob):
            return None
        digest, crc, length, zeros, size = _CHUNK.unpack_from(blob, at)
        at += _CHUNK.size + size
        if at > len(blob) or not _deflated_size(size, length) or not blob.endswith(_FULL_FLUSH, 0, at):
            return None
        chunks.append((digest, Segment(blob[at - size:at], crc, length, zeros)))
    return chunks


_FULL_FLUSH = b"\x00\x00\xff\xff"  # the empty stored block a full flush ends with


def _deflated_size(size: int, length: int) -> bool:
    """Whether `size` bytes of deflate data can hold `length` bytes: deflate packs at most ~1032 to one,
    and stores what it cannot pack with 5 bytes a block of up to 65,535 (level 1 never does worse)."""
    return 0 < length and 4 < size <= length + 5 * (length // 16_383 + 2) + 8 and length <= 1032 * size


_FINAL = b"\x03\x00"  # an empty final fixed-Huffman block: ends the deflate stream


# ----------------------------------------------------------------------------------------------------
# The package
# ----------------------------------------------------------------------------------------------------

_ZIP32 = 0xFFFF_FFFF


class XlsxZip:
    """A ZIP writer for a workbook package: members from bytes, or from segments concatenated as they are
    (zipfile cannot take precompressed data). Sizes and CRC are patched into each local header afterwards,
    as zipfile does on a seekable file."""

    def __init__(self, fh):
        self.fh = fh
        self.entries: list[tuple[bytes, int, int, int, int]] = []  # name, crc, compressed, size, offset
        t = time.localtime()
        self.dos_time = (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2)
        self.dos_date = ((t.tm_year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday

    def write(self, name: str, data: bytes) -> None:
        self.write_segments(name, [segment(data)])

    def write_segments(self, name: str, segments: Iterable[Segment]) -> None:
        encoded = name.encode("utf-8")
        offset = self.fh.tell()
        self.fh.write(self._local(encoded, 0, 0, 0))
        crc, compressed, size = 0, 0, 0
        for seg in segments:
            self.fh.write(seg.data)
            crc = crc_combine(crc, seg.crc, seg.length, seg.zeros)
            compressed += len(seg.data)
            size += seg.length
        self.fh.write(_FINAL)
        compressed += len(_FINAL)
        end = self.fh.tell()
        if max(compressed, size, end) >= _ZIP32:
            raise OverflowError(f"{name}: a member or the package passes 4 GiB, which this writer does not support")
        self.fh.seek(offset)
        self.fh.write(self._local(encoded, crc, compressed, size))
        self.fh.seek(end)
        self.entries.append((encoded, crc, compressed, size, offset))

    def _local(self, name: bytes, crc: int, compressed: int, size: int) -> bytes:
        return struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0x0800, 8, self.dos_time, self.dos_date,
                           crc, compressed, size, len(name), 0) + name

    def close(self) -> None:
        start = self.fh.tell()
        for name, crc, compressed, size, offset in self.entries:
            self.fh.write(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0x0800, 8, self.dos_time, self.dos_date,
                                      crc, compressed, size, len(name), 0, 0, 0, 0, 0, offset) + name)
        end = self.fh.tell()
        if end >= _ZIP32 or len(self.entries) >= 0xFFFF:
            raise OverflowError("the package passes 4 GiB or 65,535 members, which this writer does not support")
        self.fh.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(self.entries), len(self.entries),
                                  end - start, start, 0))


def chunks(rows: Iterator[list], size: int) -> Iterator[list[list]]:
    """Rows in lists of at most `size`."""
    batch: list[list] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch

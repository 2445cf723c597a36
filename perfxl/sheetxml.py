"""Sheet XML for the report stage: rows rendered once, compressed once, and assembled into a workbook.

A summary sheet of 350,000 rows is 240 MB of XML. Rendering and compressing it is most of a merge's wall
time, so the big sheets are made of *segments*: one form's rows, rendered without row numbers (`r` is
optional on <row> and <c> in ECMA-376 §18.3.1.73 and §18.3.1.4; LibreOffice, openpyxl and calamine number
such rows and cells in order, as tested here, and Excel does by the reports of readers that met such files
from Microsoft's own exporters) and compressed as a raw deflate stream that ends byte-aligned.
Such segments concatenate into one valid deflate stream, and their CRC-32s combine without the data, so a
re-merge writes a sheet from segments kept in the ledger, rendering only the forms that changed.

`XlsxZip` writes the package: small members compressed here, big members from segments as they are.
"""

from __future__ import annotations

import re
import struct
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .spec import cell_name

MAX_CELL = 32_767  # characters a cell holds
LEVEL = 1  # zlib level: summary sheets are repetitive; level 1 compresses them ~10x at a third of level 6's time

_XML_ESCAPES = {ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;",
                **{c: f"_x{c:04X}_" for c in range(32) if c not in (9, 10, 13)}, 0xFFFE: "", 0xFFFF: ""}
_NEEDS_ESCAPE = re.compile("[&<>\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def col_letters(n: int) -> list[str]:
    return [cell_name(0, c)[:-1] for c in range(n)]


def text_cell(text: str, attrs: str = "") -> str:
    """A cell holding `text` as an inline string: never a formula, whatever it starts with."""
    if len(text) > MAX_CELL:
        text = text[: MAX_CELL - 1] + "…"
    if _NEEDS_ESCAPE.search(text):
        text = text.translate(_XML_ESCAPES)
    if text[0].isspace() or text[-1].isspace():
        return f'<c{attrs} t="inlineStr"><is><t xml:space="preserve">{text}</t></is></c>'
    return f'<c{attrs} t="inlineStr"><is><t>{text}</t></is></c>'


def wrapped_lines(text: str, width: float) -> int:
    """How many lines `text` takes in a column `width` characters wide (CJK characters count two)."""
    total = 0
    for paragraph in text.split("\n"):
        shown = len(paragraph.encode("gb18030", "replace"))  # two bytes for a CJK character, as it is shown
        total += max(1, -(-shown // max(1, int(width) - 1)))
    return total


@dataclass(frozen=True)
class Layout:
    """How a sheet's rows are rendered: each column's kind, its cell style (an xf index of the workbook)
    and, for wrapped text, its width. `key` names it, so a segment rendered for another layout is not
    reused."""

    kinds: tuple[str, ...]
    styles: tuple[int, ...]
    wrapped: tuple[float, ...]  # a wrapped text column's width, 0 for none

    @property
    def key(self) -> str:
        return repr((self.kinds, self.styles, self.wrapped))

    @property
    def summed(self) -> tuple[bool, ...]:
        return tuple(k in {"money", "count"} for k in self.kinds)


def render_rows(rows: Iterable[list], layout: Layout, sums: list[float], memo: dict | None = None,
                used: dict | None = None) -> tuple[str, int]:
    """Rows as <row> XML without row numbers: each cell in column order, an empty one as <c/> (trailing
    empties left out). Text is always text ("=cmd|…" or "+1" stays a string). A row whose text wraps gets
    the height of its lines: spreadsheet programs do not re-measure rows on opening, and wrapped text would
    otherwise print over the next row. Summed columns are added into `sums`. With `memo` (the XML of rows
    rendered before, by their repr), a row found there is not rendered again; every row's XML goes into
    `used`. Returns the XML and the rows."""
    numeric = [k != "text" for k in layout.kinds]
    attrs = [f' s="{s}"' if s else "" for s in layout.styles]
    summed = layout.summed
    summed_columns = [c for c, on in enumerate(summed) if on]
    wrap = layout.wrapped
    wrap_at = [w / 2 if w else 1e9 for w in wrap]  # text shorter than this (in characters) fits on one line
    wrap_columns = [c for c, w in enumerate(wrap) if w]
    out = []
    count = 0
    for row in rows:
        count += 1
        if memo is not None:
            key = repr(row)
            xml = memo.get(key)
            if xml is not None:
                used[key] = xml
                out.append(xml)
                for c in summed_columns:
                    if type(row[c]) in (int, float):
                        sums[c] += row[c]
                continue
        cells = []
        gap = 0
        for c, value in enumerate(row):
            if value is None or value == "":
                gap += 1
                continue
            if gap:
                cells.append("<c/>" * gap)
                gap = 0
            if numeric[c] and type(value) in (int, float):
                cells.append(f"<c{attrs[c]}><v>{value!r}</v></c>")
                if summed[c]:
                    sums[c] += value
            else:
                text = value if type(value) is str else ("是" if value is True else "否" if value is False else str(value))
                cells.append(text_cell(text, attrs[c]))
        lines = 1
        for c in wrap_columns:  # only the few wrapped columns are measured, and only long text
            value = row[c]
            if type(value) is str and len(value) > wrap_at[c]:
                lines = max(lines, wrapped_lines(value, wrap[c]))
        xml = (f'<row ht="{min(lines, 8) * 15}" customHeight="1">' if lines > 1 else "<row>") + "".join(cells) + "</row>"
        if used is not None:
            used[key] = xml
        out.append(xml)
    return "".join(out), count


def rows_segment(rows: list[list], layout: Layout, memo: dict | None = None, used: dict | None = None) -> Segment:
    sums = [0.0] * len(layout.kinds)
    xml, count = render_rows(rows, layout, sums, memo, used)
    return segment(xml.encode("utf-8"), count, sums)


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


def crc_combine(crc1: int, crc2: int, length2: int, zeros2: int) -> int:
    """The CRC-32 of A+B from those of A and B, B's length and the CRC-32 of as many zero bytes.

    A CRC is affine in its start value and its data: crc(B, start=c) = crc(zeros, start=c) ^ crc(B) ^
    crc(zeros). zlib's crc32_combine is not in Python's zlib; zero bytes cost one fast pass instead."""
    return _crc_of_zeros(length2, crc1) ^ zeros2 ^ crc2


@dataclass(frozen=True)
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


_HEAD = struct.Struct("<4sIQIQH")  # mark, crc, length, zeros, rows, number of sums (then the sums, the data)
_MARK = b"PXS1"


def pack_segment(seg: Segment) -> bytes:
    """A segment as bytes to keep (pickle would cost 20 µs a segment, 10,000 of them a merge)."""
    return _HEAD.pack(_MARK, seg.crc, seg.length, seg.zeros, seg.rows, len(seg.sums)) + struct.pack(
        f"<{len(seg.sums)}d", *seg.sums) + seg.data


def unpack_segment(blob: bytes) -> Segment | None:
    """The segment `pack_segment` kept, or None for bytes of another shape."""
    if blob[:4] != _MARK:
        return None
    _, crc, length, zeros, rows, n = _HEAD.unpack_from(blob)
    start = _HEAD.size + 8 * n
    return Segment(blob[start:], crc, length, zeros, rows, struct.unpack_from(f"<{n}d", blob, _HEAD.size))


def segment(raw: bytes, rows: int = 0, sums: Iterable[float] = ()) -> Segment:
    packer = zlib.compressobj(LEVEL, zlib.DEFLATED, -15)
    data = packer.compress(raw) + packer.flush(zlib.Z_SYNC_FLUSH)
    return Segment(data, zlib.crc32(raw), len(raw), _crc_of_zeros(len(raw)), rows, tuple(sums))


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

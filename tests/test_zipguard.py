"""A form's members inflated straight from its bytes (zipguard.Package._inflated) are exactly what zipfile
reads, and a member that is not exactly what its headers say is left to zipfile, errors and all."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perfxl.errors import ReadError
from perfxl.reader import zipguard
from perfxl.reader.zipguard import Package
from tests.hostile.conftest import good_form

GOOD = good_form()


def _outcome(package: Package, name: str):
    try:
        return package.read(name)
    except ReadError as exc:
        return ("error", exc.code)


def _by_zipfile(data: bytes) -> Package:
    """A package that never takes the direct path: what zipfile alone makes of the bytes."""
    package = Package(data)
    package._inflated = lambda info, cap: None
    return package


def test_every_member_of_a_generated_form_is_inflated_directly_and_as_zipfile_reads_it():
    package = Package(GOOD)
    with zipfile.ZipFile(io.BytesIO(GOOD)) as zf:
        for info in zf.infolist():
            direct = package._inflated(package.by_name[zipguard.part_key(info.filename)], zipguard.MAX_MEMBER_BYTES)
            assert direct is not None, info.filename
            assert direct == zf.read(info)


def test_a_stored_member_is_read_directly():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("xl/workbook.xml", b"<workbook/>" * 50)
    package = Package(out.getvalue())
    assert package._inflated(package.by_name["xl/workbook.xml"], 1 << 20) == b"<workbook/>" * 50


def _central_entry(data: bytes, name: bytes) -> int:
    """The offset of `name`'s central directory entry."""
    at = data.index(b"PK\x01\x02")
    while True:
        name_length = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46:at + 46 + name_length] == name:
            return at
        at = data.index(b"PK\x01\x02", at + 46)


def _with(data: bytes, offset: int, fmt: str, value) -> bytes:
    changed = bytearray(data)
    struct.pack_into(fmt, changed, offset, value)
    return bytes(changed)


@pytest.mark.parametrize("field, fmt, change", [
    (16, "<I", lambda v: v ^ 1),  # the CRC-32 the directory gives
    (24, "<I", lambda v: v - 1),  # the size inflated: one byte less
    (24, "<I", lambda v: v + 1),  # one byte more
    (20, "<I", lambda v: v - 5),  # the size compressed: the stream cut short
    (10, "<H", lambda v: 12),  # a compression perfxl does not know (shrunk)
    (8, "<H", lambda v: v | 0x20),  # compressed patched data
])
def test_a_member_whose_directory_lies_is_left_to_zipfile(field, fmt, change):
    name = b"xl/workbook.xml"
    at = _central_entry(GOOD, name) + field
    data = _with(GOOD, at, fmt, change(struct.unpack_from(fmt, GOOD, at)[0]))
    package = Package(data)
    assert package._inflated(package.by_name[name.decode()], zipguard.MAX_MEMBER_BYTES) is None
    assert _outcome(Package(data), name.decode()) == _outcome(_by_zipfile(data), name.decode())


def test_a_local_header_under_another_name_is_file_corrupt_as_zipfile_says():
    name = b"xl/workbook.xml"
    local = struct.unpack_from("<I", GOOD, _central_entry(GOOD, name) + 42)[0]
    data = bytearray(GOOD)
    data[local + 30:local + 30 + len(name)] = b"xl/workbooc.xml"
    data = bytes(data)
    assert _outcome(Package(data), name.decode()) == ("error", "file-corrupt") == _outcome(_by_zipfile(data), name.decode())


def test_a_member_that_inflates_past_its_claimed_size_is_not_read_past_it():
    body = b"<sst>" + b"a" * 100_000 + b"</sst>"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("xl/sharedStrings.xml", body)
    data = out.getvalue()
    at = _central_entry(data, b"xl/sharedStrings.xml") + 24
    data = _with(data, at, "<I", 10)  # claims 10 bytes inflated
    package = Package(data)
    assert package._inflated(package.by_name["xl/sharedstrings.xml"], zipguard.MAX_MEMBER_BYTES) is None
    assert _outcome(package, "xl/sharedStrings.xml") == ("error", "file-corrupt")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=3))
def test_a_damaged_form_reads_the_same_directly_as_through_zipfile(flips):
    data = bytearray(GOOD)
    for at, value in flips:
        data[at] = value
    data = bytes(data)
    try:
        direct, plain = Package(data), _by_zipfile(data)
    except ReadError:
        return  # the directory itself is unreadable: no member is read either way
    for name in direct.names():
        assert _outcome(direct, name) == _outcome(plain, name), name


def test_the_direct_path_checks_the_crc_of_what_it_inflated():
    """The CRC is what catches a flipped bit inside the compressed data that still inflates."""
    raw = b"<worksheet>" + b"<row/>" * 200 + b"</worksheet>"
    packed = zlib.compress(raw)[2:-4]
    assert zlib.decompressobj(-15).decompress(packed) == raw
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.xml", raw)
    data = out.getvalue()
    at = _central_entry(data, b"a.xml") + 16
    data = _with(data, at, "<I", zlib.crc32(raw) ^ 0x80)
    package = Package(data)
    assert package._inflated(package.by_name["a.xml"], 1 << 20) is None
    assert _outcome(package, "a.xml") == ("error", "file-corrupt")


def _one_member(name: str, body: bytes, method=zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as zf:
        zf.writestr(name, body)
    return out.getvalue()


def test_a_name_whose_two_headers_disagree_on_utf8_is_file_corrupt_as_zipfile_says():
    """Found by the hostile review of the direct path: it compared the local name's bytes and ignored the
    local header's own UTF-8 flag, by which zipfile decodes that name; such a member was read."""
    name = "xl/worksheets/表1.xml"
    data = bytearray(_one_member(name, b"<worksheet/>"))
    struct.pack_into("<H", data, 6, struct.unpack_from("<H", data, 6)[0] & ~0x800)  # the local header's flags
    data = bytes(data)
    package = Package(data)
    assert package._inflated(package.by_name[name], 1 << 20) is None
    assert _outcome(Package(data), name) == _outcome(_by_zipfile(data), name) == ("error", "file-corrupt")


def test_a_zip64_header_offset_past_any_file_is_file_corrupt_not_an_overflow():
    """Found by the hostile review: an offset of 2**63 or more, which a ZIP64 extra field can give, raised
    OverflowError from struct, which no caller expects (a merge said internal-error, inspect a traceback)."""
    data = _one_member("xl/workbook.xml", b"<workbook/>")
    directory, end = data.index(b"PK\x01\x02"), data.index(b"PK\x05\x06")
    entry = bytearray(data[directory:end])
    struct.pack_into("<I", entry, 42, 0xFFFFFFFF)  # the offset is in the ZIP64 extra field
    struct.pack_into("<H", entry, 30, 12)
    entry += struct.pack("<HHQ", 1, 8, 2**64 - 1)
    tail = bytearray(data[end:])
    struct.pack_into("<I", tail, 12, len(entry))
    hostile = data[:directory] + bytes(entry) + bytes(tail)
    assert _outcome(Package(hostile), "xl/workbook.xml") == ("error", "file-corrupt")
    assert _outcome(_by_zipfile(hostile), "xl/workbook.xml") == ("error", "file-corrupt")


def test_a_compressed_size_no_writer_gives_is_left_to_zipfile():
    """Found by the hostile review: a member claiming a compressed size far past what its size needs (up to
    the end of a 60 MB file) had the direct path copy all of it on every read; zipfile reads a megabyte."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("xl/sharedStrings.xml", b"<sst/>")
        zf.writestr("xl/media/image1.bin", bytes(range(256)) * 800, zipfile.ZIP_STORED)
    data = out.getvalue()
    at = _central_entry(data, b"xl/sharedStrings.xml") + 20
    data = _with(data, at, "<I", 150_000)  # compressed size: runs on through the next member
    package = Package(data)
    assert package._inflated(package.by_name["xl/sharedstrings.xml"], zipguard.MAX_MEMBER_BYTES) is None
    assert _outcome(package, "xl/sharedStrings.xml") == _outcome(_by_zipfile(data), "xl/sharedStrings.xml")

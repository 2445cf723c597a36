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

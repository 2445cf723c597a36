"""The zip of an OOXML package, guarded: a member count cap, a byte cap per member and in total (header
sizes may lie), encrypted members refused, part names case-insensitive and with backslashes allowed."""

from __future__ import annotations

import io
import posixpath
import struct
import zipfile
import zlib

from perfxl.errors import ReadError

MAX_ENTRIES = 2_000
MAX_MEMBER_BYTES = 48 * 1024 * 1024
MAX_TOTAL_BYTES = 160 * 1024 * 1024


class Package:
    """The members of a zip, inflated one by one under a byte cap (header sizes may lie)."""

    def __init__(self, data: bytes):
        self.data = data
        try:
            self.zf = zipfile.ZipFile(io.BytesIO(data))
            infos = self.zf.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
            raise ReadError("file-corrupt", detail=f"corrupt zip: {exc}") from None
        if len(infos) > MAX_ENTRIES:
            raise ReadError("zip-bomb", detail=f"{len(infos)} members")
        # Part names are case-insensitive, and some writers store them with backslashes.
        self.by_name = {}
        for info in infos:
            self.by_name.setdefault(part_key(info.filename), info)
        self.total = 0
        self.rels: dict[str, list[tuple[str, str, str]]] = {}

    def has(self, name: str) -> bool:
        return part_key(name) in self.by_name

    def names(self) -> list[str]:
        return list(self.by_name)

    def read(self, name: str, cap: int = MAX_MEMBER_BYTES) -> bytes:
        info = self.by_name[part_key(name)]
        if info.flag_bits & 0x1:
            raise ReadError("file-encrypted")
        if info.file_size <= cap and self.total + info.file_size <= MAX_TOTAL_BYTES:
            out = self._inflated(info, cap)
            if out is not None:
                self.total += len(out)
                return out
        out = bytearray()
        try:
            with self.zf.open(info) as fh:
                while True:
                    chunk = fh.read(1 << 20)
                    if not chunk:
                        break
                    out += chunk
                    self.total += len(chunk)
                    if len(out) > cap or self.total > MAX_TOTAL_BYTES:
                        raise ReadError("zip-bomb", detail=f"{name} > {cap // (1 << 20)} MB")
        except ReadError:
            raise
        except Exception as exc:  # BadZipFile, zlib.error, NotImplementedError (compression), EOFError ...
            raise ReadError("file-corrupt", detail=f"{name}: {type(exc).__name__}: {exc}") from None
        return bytes(out)

    def _inflated(self, info: zipfile.ZipInfo, cap: int) -> bytes | None:
        """A plain member inflated straight from the package's bytes in one call: zipfile's reader costs
        more than the inflating itself for the small parts of a form (a third of reading a member). Only a
        member that is exactly what its headers say comes back: its local header where the directory puts
        it, under the same name and name encoding, stored or deflated, its compressed size one an honest
        writer gives for its size, ending within it at the size and CRC the directory gives. Anything else
        is None, and zipfile reads it as before, with its own errors."""
        data, offset, size = self.data, info.header_offset, info.file_size
        if (not 0 <= offset <= len(data) - _LOCAL_HEADER.size  # a ZIP64 offset may be any 64-bit number
                or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
                or info.flag_bits & ~_PLAIN_FLAGS):
            return None
        # Stored: exactly its size. Deflated: at most zlib's deflateBound and a little (stored blocks cost 5
        # bytes in 64 KB): a larger claim would have zlib keep a copy of the rest as its unconsumed tail
        if info.compress_size > (size if info.compress_type == zipfile.ZIP_STORED else
                                 size + (size >> 12) + (size >> 14) + (size >> 25) + 64):
            return None
        signature, local_flags, name_length, extra_length = _LOCAL_HEADER.unpack_from(data, offset)
        start = offset + _LOCAL_HEADER.size + name_length + extra_length
        end = start + info.compress_size
        # zipfile decodes the local name by the local header's own UTF-8 flag, and refuses a name that then
        # differs from the directory's: the same bytes under the same flag are the same name
        name = info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437", "surrogateescape")
        if (signature != _LOCAL_SIGNATURE or (local_flags ^ info.flag_bits) & 0x800 or end > len(data)
                or data[offset + _LOCAL_HEADER.size:offset + _LOCAL_HEADER.size + name_length] != name):
            return None
        # Where this Python's zipfile refuses members that overlap the next (a zip bomb's trick), so does this
        bound = getattr(info, "_end_offset", None)
        if bound is not None and end > bound:
            return None
        raw = memoryview(data)[start:end]
        if info.compress_type == zipfile.ZIP_STORED:
            out = bytes(raw)
        else:
            inflater = zlib.decompressobj(-15)
            try:
                out = inflater.decompress(raw, size + 1)
            except zlib.error:
                return None
            if not inflater.eof:
                return None
        if len(out) != size or zlib.crc32(out) != info.CRC:
            return None
        return out


# A local file header: its signature at 0, its flags at 6, the lengths of its name and extra field at 26 and 28
_LOCAL_HEADER = struct.Struct("<4s2xH18xHH")
_LOCAL_SIGNATURE = b"PK\x03\x04"
# Flags a plain member may carry: deflate's level hints (1, 2), sizes in a data descriptor (3), UTF-8 names (11)
_PLAIN_FLAGS = 0x2 | 0x4 | 0x8 | 0x800


def part_key(name: str) -> str:
    return name.replace("\\", "/").lstrip("/").lower()


def resolve(source_part: str, target: str) -> str:
    """A relationship target, relative to the part that holds the relationship, as a part name."""
    target = target.replace("\\", "/")
    if target.startswith("/"):
        return posixpath.normpath(target).lstrip("/")
    base = posixpath.dirname(source_part)
    return posixpath.normpath(posixpath.join(base, target)).lstrip("/")


def rels_part(part: str) -> str:
    folder, name = posixpath.split(part)
    return posixpath.join(folder, "_rels", name + ".rels")

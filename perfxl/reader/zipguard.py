"""The zip of an OOXML package, guarded: a member count cap, a byte cap per member and in total (header
sizes may lie), encrypted members refused, part names case-insensitive and with backslashes allowed."""

from __future__ import annotations

import io
import posixpath
import zipfile

from perfxl.errors import ReadError

MAX_ENTRIES = 2_000
MAX_MEMBER_BYTES = 48 * 1024 * 1024
MAX_TOTAL_BYTES = 160 * 1024 * 1024


class Package:
    """The members of a zip, inflated one by one under a byte cap (header sizes may lie)."""

    def __init__(self, data: bytes):
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

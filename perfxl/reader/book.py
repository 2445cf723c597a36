"""A file → a raw workbook: its bytes read once under a size cap, its format known by its content (not
its extension), and the right reader chosen."""

from __future__ import annotations

from pathlib import Path

from perfxl.errors import ReadError
from perfxl.inbox import NotRegularFile, TooLarge, read_regular_file
from perfxl.problems import L
from perfxl.reader.parts import read_xlsx
from perfxl.reader.rawbook import RawBook
from perfxl.reader.xls import read_xls

MAX_FILE_BYTES = 64 * 1024 * 1024
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def sniff(data: bytes, suffix: str) -> str:
    """xlsx | xls, or raise ReadError with the reason this is not a workbook."""
    if not data:
        raise ReadError("file-empty")
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        return "xlsx"
    if data[:8] == OLE_MAGIC:
        if b"E\x00n\x00c\x00r\x00y\x00p\x00t\x00e\x00d\x00P\x00a\x00c\x00k\x00a\x00g\x00e" in data[:1 << 20] or \
                b"EncryptedPackage" in data[:1 << 20]:
            raise ReadError("file-encrypted")
        return "xls"
    head = data[:2048].lstrip().lower()
    if head.startswith((b"<html", b"<!doctype html", b"<table", b"<?xml")) or b"<html" in head:
        raise ReadError("not-a-workbook", what=L("网页 (HTML) 文件", "a web page (HTML)"))
    if data[:4] == b"%PDF":
        raise ReadError("not-a-workbook", what=L("PDF 文件", "a PDF file"))
    try:
        text = data[:4096].decode("utf-8")
        if "," in text or "\t" in text:
            raise ReadError("not-a-workbook", what=L("文本 (CSV) 文件", "a text (CSV) file"))
    except UnicodeDecodeError:
        pass
    raise ReadError("not-a-workbook", what=unknown_format(suffix))


_UNKNOWN_FORMAT = L("未知格式的文件", "a file of unknown format")


def unknown_format(suffix: str) -> L:
    """What a file of no format the reader knows is, in words that name its extension."""
    return L(f"{_UNKNOWN_FORMAT.zh}{'（扩展名 ' + suffix + '）' if suffix else ''}",
             f"{_UNKNOWN_FORMAT.en}{' (extension ' + suffix + ')' if suffix else ''}")


def is_unknown_format(what) -> bool:
    """Whether a not-a-workbook problem's `what` is `unknown_format`'s, of whatever extension."""
    return isinstance(what, L) and what.zh.startswith(_UNKNOWN_FORMAT.zh)


def too_large(size: int) -> dict:
    """The parameters of a `file-too-large` problem."""
    return {"size_mb": size // (1 << 20), "limit_mb": MAX_FILE_BYTES >> 20}


def load_raw(path: Path, data: bytes | None = None) -> tuple[RawBook, bytes, str]:
    path = Path(path)
    if data is None:
        try:
            data, _ = read_regular_file(path, MAX_FILE_BYTES)
        except NotRegularFile:
            raise ReadError("not-a-file") from None
        except TooLarge as exc:
            raise ReadError("file-too-large", **too_large(exc.size)) from None
        except OSError as exc:
            raise ReadError("file-unreadable", detail=str(exc.strerror or exc)) from None
    elif len(data) > MAX_FILE_BYTES:
        raise ReadError("file-too-large", **too_large(len(data)))
    kind = sniff(data, path.suffix.lower())
    book = read_xlsx(data) if kind == "xlsx" else read_xls(data)
    return book, data, kind

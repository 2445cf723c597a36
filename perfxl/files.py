"""Filesystem helpers shared by every stage that writes: safe file names and atomic replacement."""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError

_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]+')


def safe_filename(text: str, max_chars: int = 120) -> str:
    """A file name that is valid on Windows, macOS and Linux and cannot climb out of its folder."""
    text = unicodedata.normalize("NFC", str(text))
    text = _UNSAFE.sub("_", text)
    text = re.sub(r"\s+", " ", text).strip(" .")
    text = re.sub(r"\.{2,}", "_", text)
    if not text:
        text = "_"
    stem = text.split(".")[0].upper()
    if stem in _WINDOWS_RESERVED:
        text = "_" + text
    return text[:max_chars].rstrip(" .") or "_"


def ensure_writable_dir(path: Path) -> Path:
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"无法创建输出目录 (cannot create output folder) {path}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK):
        raise OutputError(f"输出目录不可写 (output folder is not writable): {path}")
    return path


@contextmanager
def atomic_output(path: Path, suffix: str = ""):
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename, else it is removed.

    A reader (or a killed run) therefore sees either the previous file or the complete new one.
    """
    path = Path(path)
    ensure_writable_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem[:40]}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)

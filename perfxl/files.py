"""Filesystem helpers shared by every stage that writes: safe file names and atomic replacement."""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
import unicodedata
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError

_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]+')


def home() -> Path:
    """perfxl's folder for what it remembers on this machine, per user: `PERFXL_HOME`, else
    %LOCALAPPDATA%\\perfxl or ~/.local/share/perfxl (the rounds it issued, the key that seals its caches).
    Worked out again only when the variables it comes from change: a follow-up merge asks for it twice a form
    (this machine's index of rounds may have changed), and building the path cost 25 µs each time."""
    global _HOME
    environ = os.environ
    variables = (environ.get("PERFXL_HOME"), environ.get("LOCALAPPDATA"), environ.get("XDG_DATA_HOME"),
                 environ.get("HOME"), environ.get("USERPROFILE"))
    if _HOME is None or _HOME[0] != variables:
        _HOME = (variables, _home())
    return _HOME[1]


_HOME: tuple[tuple, Path] | None = None


def _home() -> Path:
    if os.environ.get("PERFXL_HOME"):
        return Path(os.environ["PERFXL_HOME"])
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "perfxl"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "perfxl"


# Linux and macOS cap a name at 255 bytes, Windows at 255 UTF-16 units; a Chinese character is 3 bytes in
# UTF-8. Names are cut at this many bytes, which leaves room for a suffix such as "_校验.xlsx".
MAX_NAME_BYTES = 180


def safe_filename(text: str, max_bytes: int = MAX_NAME_BYTES) -> str:
    """A file name that is valid on Windows, macOS and Linux, fits every file system's limit on a name's
    length in bytes, and cannot climb out of its folder."""
    text = unicodedata.normalize("NFC", str(text))
    text = _UNSAFE.sub("_", text)
    text = re.sub(r"\s+", " ", text).strip(" .")
    text = re.sub(r"\.{2,}", "_", text)
    if not text:
        text = "_"
    stem = text.split(".")[0].upper()
    if stem in _WINDOWS_RESERVED:
        text = "_" + text
    return cut_to_bytes(text, max_bytes).rstrip(" .") or "_"


def cut_to_bytes(text: str, max_bytes: int) -> str:
    """The longest prefix of `text` whose file-system encoding fits in max_bytes, never half a character."""
    encoded = text.encode("utf-8", "surrogateescape")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", "ignore")


def unique_name(outdir: Path, stem: str, suffix: str, taken: set[str], avoid=()) -> Path:
    """`outdir / (stem + suffix)` for a file a run writes beside others: the stem made safe and cut so that
    the whole name fits MAX_NAME_BYTES with `suffix` (such as "_退回通知.xlsx") always kept; numbered
    "(2)", "(3)", … before the suffix when the name is already written in this run (`taken`, which this
    adds to) or is one of the `avoid` paths (the run's inputs). Names are compared without case, so the
    files stay apart when the folder is copied to Windows or a Mac."""
    outdir = Path(outdir)
    inputs = {os.path.realpath(str(a)).casefold() for a in avoid}
    number = 1
    while True:
        mark = f"({number})" if number > 1 else ""
        room = MAX_NAME_BYTES - len((mark + suffix).encode("utf-8"))
        name = safe_filename(stem, room) + mark + suffix
        if name.casefold() not in taken and os.path.realpath(outdir / name).casefold() not in inputs:
            taken.add(name.casefold())
            return outdir / name
        number += 1


def display_path(path: str | Path) -> str:
    """A path as people and UTF-8 outputs (SQLite, XML, JSON, the console) can take it.

    A name that is not UTF-8 (unzip leaves GBK names so) arrives with surrogate escapes; its bytes that are
    not UTF-8 are shown as \\x escapes. Unique for every real path (`shown_name` is what a person reads)."""
    text = str(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # not a name the file system gave (a lower level's record of one): as escapes
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


_NOT_UTF8 = re.compile(r"(?:\\x[89a-f][0-9a-f])+")  # display_path's escapes: bytes of 0x80 and above


def shown_name(text: str) -> str:
    """A name as `display_path` gave it, as a person reads it: one whose bytes were not UTF-8 read whole as
    GB18030 where that reads (the summary's file columns showed \\xb5\\xa5λ\\xcb… for a GBK name). For the eye
    only: `display_path` stays the file's identity, and two names may be shown alike."""
    if "\\x" not in text:
        return text
    raw = bytearray()
    at = 0
    for escaped in _NOT_UTF8.finditer(text):
        raw += text[at:escaped.start()].encode("utf-8") + bytes.fromhex(escaped.group().replace("\\x", ""))
        at = escaped.end()
    raw += text[at:].encode("utf-8")
    try:
        return raw.decode("gb18030")
    except UnicodeDecodeError:
        return text


def readable_name(path: str | Path) -> str:
    """The file name a person recognises: a GBK-encoded name decoded as GB18030 where it reads."""
    name = Path(str(path)).name
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        raw = name.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("gb18030")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace")


def _default_mode() -> int:
    """What a newly created file gets under this process's umask (mkstemp always gives 0600)."""
    try:
        mask = os.umask(0)
        os.umask(mask)
    except (AttributeError, OSError):  # pragma: no cover - every platform has umask
        mask = 0o022
    return 0o666 & ~mask


FILE_MODE = _default_mode()


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
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=suffix or path.suffix, dir=path.parent)
    except OSError as exc:
        raise OutputError(f"无法在 {path.parent} 中写入文件 (cannot write there): {exc.strerror or exc}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        try:
            os.chmod(tmp_path, FILE_MODE)  # as any other new file: colleagues on a shared server can read it
        except OSError:
            pass
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


# Temporary files carry the writer's pid, so a later run can tell an abandoned one (its writer was killed)
# from one that a run going on right now is writing.
TEMP_PREFIX = ".perfxl-tmp-"


def remove_debris(folder: Path) -> list[Path]:
    """Delete temporary files left in `folder` by perfxl runs that were killed. Returns what it removed."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(TEMP_PREFIX):
            continue
        pid_text = entry.name[len(TEMP_PREFIX):].split("-", 1)[0]
        if pid_text.isdigit() and _alive(int(pid_text), entry):
            continue
        try:
            entry.unlink()
            removed.append(entry)
        except OSError:
            pass
    return removed


def _alive(pid: int, entry: Path) -> bool:
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill(pid, 0) would end the process there: judge by age instead
        try:
            return time.time() - entry.stat().st_mtime < 12 * 3600
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to someone else
        return True
    return True


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)

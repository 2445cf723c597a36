"""The inbox: what is under the inputs, walked once, every file accounted for.

A merge counts every file it finds, whatever its extension: a unit that sent a .ods, a .xlsb or a PDF has
handed in something, and the reader says what. Only three kinds are passed over, and each skip is said:
Office lock files (`~$…`) and hidden files (`.…`, among them perfxl's own temporary files), things that
are not regular files (pipes, devices, sockets: reading them would hang), and perfxl's own outputs when
they are written inside an input folder.

Files named directly are always taken, whatever they are: the reader refuses what it cannot read, with a
reason. A file or folder that disappears while the walk runs is simply not there.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

SKIP_REASONS = {
    "lock-file": ("Office 锁定文件 (~$…)，不是报送文件", "Office lock file"),
    "hidden": ("隐藏文件", "hidden file"),
    "not-a-file": ("不是普通文件（管道、设备或套接字）", "not a regular file"),
    "perfxl-output": ("perfxl 自己的输出文件", "perfxl's own output"),
    "unreadable-folder": ("无法列出的文件夹", "folder that cannot be listed"),
}


class FileStat(NamedTuple):
    """What the file system says of a file without reading it. A file replaced by another of the same size
    with its mtime put back (`touch -r`, a sync client, unzip) still differs in its change time, which no
    program can set back, or in its inode; the ledger knows a content by all four."""

    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStat:
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


# On Windows st_ctime is the creation time, which a file rewritten in place keeps, and some network
# shares report no file index: there the stat alone cannot tell such a rewrite, so a file the ledger knows
# by its stat is hashed before its stored data is used.
STAT_IDENTIFIES_CONTENT = os.name != "nt"


@dataclass(frozen=True)
class InboxFile:
    path: str
    size: int
    mtime_ns: int
    ctime_ns: int = 0
    ino: int = 0

    @property
    def stat(self) -> FileStat:
        return FileStat(self.size, self.mtime_ns, self.ctime_ns, self.ino)

    @classmethod
    def of(cls, path: str, st: os.stat_result) -> InboxFile:
        return cls(path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


@dataclass
class Inbox:
    files: list[InboxFile] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason key of SKIP_REASONS)

    def paths(self) -> list[str]:
        return [f.path for f in self.files]


def _skip_name(name: str) -> str | None:
    if name.startswith("~$"):
        return "lock-file"
    if name.startswith("."):
        return "hidden"
    return None


def scan(paths: list[Path], exclude: set[Path] | None = None) -> Inbox:
    """Walk the inputs once. Raises FileNotFoundError (with its errno and path) for an input that does not
    exist or cannot be looked at: perfxl.errors.missing_input says it in Chinese."""
    inbox = Inbox()
    excluded = {_key(p) for p in (exclude or ())}
    excluded_names = {Path(p).name for p in (exclude or ())}
    for path in map(Path, paths):
        try:
            st = path.stat()
        except FileNotFoundError:
            raise
        except OSError as exc:  # a path too long, a permission: said with its own errno
            raise FileNotFoundError(exc.errno, exc.strerror, str(path)) from None
        if stat.S_ISDIR(st.st_mode):
            found = Inbox()
            _walk(path, found, excluded, excluded_names)
            inbox.files += sorted(found.files, key=lambda f: f.path)
            inbox.skipped += sorted(found.skipped)
        else:  # named directly: taken whatever it is, in the order given; the reader refuses what it cannot read
            inbox.files.append(InboxFile.of(str(path), st))
    return inbox


def _key(path: Path) -> str:
    try:
        return os.path.normcase(os.path.realpath(path))
    except (OSError, ValueError):
        return os.path.normcase(os.path.abspath(path))


def _walk(root: Path, inbox: Inbox, excluded: set[str], excluded_names: set[str]) -> None:
    todo = [str(root)]
    while todo:
        folder = todo.pop()
        try:
            with os.scandir(folder) as entries:
                listing = list(entries)
        except FileNotFoundError:  # moved away while we walk
            continue
        except OSError:
            inbox.skipped.append((folder, "unreadable-folder"))
            continue
        for entry in listing:
            reason = _skip_name(entry.name)
            if reason:
                inbox.skipped.append((entry.path, reason))
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    todo.append(entry.path)
                    continue
                st = entry.stat()  # follows a symlink to a file
            except OSError:  # vanished, or a dangling link
                continue
            # realpath costs a system call per path component: only for a name that may be an output
            if entry.name in excluded_names and _key(Path(entry.path)) in excluded:
                inbox.skipped.append((entry.path, "perfxl-output"))
            elif not stat.S_ISREG(st.st_mode):
                inbox.skipped.append((entry.path, "not-a-file"))
            else:
                inbox.files.append(InboxFile.of(entry.path, st))


def read_regular_file(path: str | Path, max_bytes: int) -> tuple[bytes, os.stat_result]:
    """The bytes of a regular file and the stat they belong to, never blocking on a pipe or device.

    The stat is taken from the open file before and after reading; a file replaced or rewritten while it
    is read again, so the bytes and the recorded size and time belong together. Raises `NotRegularFile`,
    `TooLarge`, or the OSError of opening it.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(5):
        fd = os.open(path, flags)
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                raise NotRegularFile(str(path))
            if before.st_size > max_bytes:
                raise TooLarge(before.st_size)
            chunks = []
            remaining = max_bytes + 1
            # The first read asks for the size the stat gave and one byte more, then 64 KB at a time (a file
            # that grew is read on): os.read allocates what it is asked for and shrinks it after, and a
            # megabyte asked for each 15 KB form cost more than reading it
            step = min(before.st_size + 1, remaining)
            while remaining > 0:
                chunk = os.read(fd, step)
                step = min(1 << 16, remaining - len(chunk))
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
            data = b"".join(chunks)
            if len(data) > max_bytes:
                raise TooLarge(len(data))
            after = os.fstat(fd)
        finally:
            os.close(fd)
        unchanged = before.st_size == after.st_size == len(data) and before.st_mtime_ns == after.st_mtime_ns
        if unchanged:
            try:  # the name may now point at a replacement written beside and renamed over it
                current = os.stat(path)
            except OSError:
                return data, after
            if (current.st_ino, current.st_dev) == (after.st_ino, after.st_dev) or current.st_ino == 0:
                return data, after
    return data, after


class NotRegularFile(OSError):
    """A pipe, a device, a socket or a folder where a file was expected."""


class TooLarge(OSError):
    """A file over the reader's size limit."""

    def __init__(self, size: int):
        super().__init__(size)
        self.size = size

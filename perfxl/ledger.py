"""The submission ledger: an SQLite file that records every workbook ever seen by a merge.

- `files`: one row per distinct content (sha256): what it is, its status, and the form data read from it
  (zlib-compressed JSON), so a later merge over the same inbox re-reads nothing that did not change; each
  with the read settings it came from (`reader`, `form_reader`: cachekeys.read_key), as they may differ;
- `sightings`: where and when each content was seen (path, size, mtime, ctime, inode), so an unchanged
  file is known by a stat() without even hashing it, and a replacement with its mtime put back is not;
- `runs`: one row per merge, with its counts.

What a merge keeps for its own later use (a sighting, a content's form data or rejection, the `kept`
values) carries an HMAC-SHA256 under a key only this user has (`cache_key`, in perfxl's folder for the
user): a ledger planted beside the summary, or edited since, is a cache miss, never trusted. What a
lower level's ledger or export hands up is evidence, checked again (merging.rollup.rolled_up), not a cache.

Every SQLite file perfxl opens that it did not create in this run must hold only perfxl's schema (no
view, trigger, virtual table, table of another name, computed column or expression index: things that
run when read or written), and read-only connections abort a statement that runs past a time bound.

Writes happen in transactions; a merge killed half-way leaves every committed batch intact and nothing
half-written (SQLite's journal), so the next run simply carries on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import itertools
import json
import os
import re
import secrets
import sqlite3
import stat
import zlib
from datetime import datetime
from pathlib import Path, PurePath
from time import monotonic

from . import datajson
from .cachekeys import READER_VERSION
from .errors import OutputError
from .files import atomic_output, home
from .inbox import FileStat
from .limits import ran_out

SCHEMA = """
-- `mac` (of a row's status and problems, of a sighting, of a kept value) and `form_mac` (of the form data):
-- see Sealer. A row without a valid one is not reused.
CREATE TABLE IF NOT EXISTS files (
    sha256      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    first_seen  TEXT NOT NULL,
    template    TEXT,
    version     TEXT,
    year        INTEGER,
    unit_code   TEXT,
    unit_name   TEXT,
    status      TEXT,
    errors      INTEGER,
    warnings    INTEGER,
    problems    TEXT,
    reader      TEXT NOT NULL,
    form        BLOB,
    mac         BLOB,
    form_mac    BLOB,
    form_reader TEXT
);
CREATE TABLE IF NOT EXISTS sightings (
    path        TEXT NOT NULL,
    sha256      TEXT NOT NULL REFERENCES files(sha256),
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    seen_at     TEXT NOT NULL,
    ctime_ns    INTEGER,
    ino         INTEGER,
    mac         BLOB,
    PRIMARY KEY (path, sha256)
);
CREATE INDEX IF NOT EXISTS sightings_by_path ON sightings(path, size, mtime_ns);
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    started     TEXT NOT NULL,
    finished    TEXT,
    output      TEXT,
    files_in    INTEGER,
    files_read  INTEGER,
    from_ledger INTEGER,
    merged      INTEGER,
    rejected    INTEGER,
    duplicate   INTEGER,
    superseded  INTEGER
);
CREATE TABLE IF NOT EXISTS outcomes (
    run         INTEGER NOT NULL REFERENCES runs(id),
    path        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    seen        TEXT NOT NULL,
    PRIMARY KEY (run, path)
);
-- What a merge worked out and may reuse: a form's check under the merge's settings ("check|…"), what it
-- adds to the summary sheets ("part|…") and its rendered rows (sheet XML segments). Keys name content and
-- settings, so a kept value is never stale, only unused; unused ones are pruned when they pile up.
CREATE TABLE IF NOT EXISTS kept (
    key         TEXT PRIMARY KEY,
    value       BLOB NOT NULL,
    run         INTEGER NOT NULL,
    mac         BLOB
);
CREATE TABLE IF NOT EXISTS run_settings (
    run         INTEGER PRIMARY KEY REFERENCES runs(id),
    settings    TEXT NOT NULL
);
-- Each roster a merge ran with, as it read it (JSON of its units), by the digest of the roster file: a
-- past merge is rebuilt with its own roster, whatever the file says now.
CREATE TABLE IF NOT EXISTS rosters (
    digest      TEXT PRIMARY KEY,
    units       TEXT NOT NULL,
    mac         BLOB
);
-- What a round of follow-up forms issued to each unit (perfxl.issued): the record returned forms are
-- checked against. Kept in 下发记录.sqlite beside the forms; an export carries it up.
CREATE TABLE IF NOT EXISTS issued (
    round       TEXT NOT NULL,
    unit_code   TEXT NOT NULL,
    template    TEXT NOT NULL,
    year        INTEGER NOT NULL,
    issued_at   TEXT NOT NULL,
    projects    TEXT NOT NULL,
    digest      TEXT NOT NULL,
    PRIMARY KEY (round, unit_code)
);
-- What the submission portal (perfxl serve) received: every upload, never deleted; the newest readable
-- one of a unit is its current version. The file itself is kept content-addressed beside the ledger.
CREATE TABLE IF NOT EXISTS submissions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    unit_code   TEXT NOT NULL,
    file_name   TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    stored      TEXT NOT NULL,
    received    TEXT NOT NULL,
    status      TEXT NOT NULL,
    errors      INTEGER NOT NULL DEFAULT 0,
    warnings    INTEGER NOT NULL DEFAULT 0,
    problems    TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS submissions_by_unit ON submissions(unit_code, id);
CREATE TABLE IF NOT EXISTS returns (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    unit_code   TEXT NOT NULL,
    submission  INTEGER REFERENCES submissions(id),
    comment     TEXT NOT NULL,
    returned    TEXT NOT NULL
);
-- Versions of a project's targets (perfxl.versions): every adjustment the bureau decided, approved or
-- rejected, with what it changed; never updated, never deleted. The newest approved one of a project is
-- what later monitoring and self-evaluation forms are prefilled with and scored against.
CREATE TABLE IF NOT EXISTS target_versions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    unit_code   TEXT NOT NULL,
    project     TEXT NOT NULL,
    status      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    batch       TEXT NOT NULL,
    decided_at  TEXT NOT NULL,
    decided_by  TEXT NOT NULL,
    comment     TEXT NOT NULL,
    source      TEXT NOT NULL,
    content     TEXT NOT NULL,
    digest      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS target_versions_by_project ON target_versions(unit_code, project, id);
-- Portal sessions revoked at logout, kept until they would have expired anyway (then pruned).
CREATE TABLE IF NOT EXISTS portal_revoked (
    nonce       TEXT PRIMARY KEY,
    expires     REAL NOT NULL
);
"""

SQLITE_MAGIC = b"SQLite format 3\x00"
APPLICATION_ID = 0x7078_6C67  # "pxlg" in the SQLite header: this file is a perfxl ledger
OWN_TABLES = {"files", "sightings", "runs", "outcomes", "run_settings", "submissions", "returns", "portal_revoked",
              "sqlite_sequence", "kept", "issued", "rosters", "target_versions"}
BUSY_SECONDS = 30  # how long a writer waits for another's write lock before it gives up ("database is locked")
PRUNE_SLACK = 1000  # kept values no run touched are pruned once they pass twice the touched ones and this
# Kept values pruned in one transaction at most: each holds the ledger's write lock, which the portal's uploads
# wait on (30 s at most). One DELETE of 200,000 of a province's 300,000 values held it 6.9-7.1 s on this
# project's machine, its pages cached; 2,000 at a time, 0.07 s at most, the whole prune 9.1-8.9 s against
# 9.3-10.6 s (bench/prune.py).
PRUNE_BATCH = 2000
# A merge's kept values are written this many (or this many bytes) at a time, each lot in one transaction.
FLUSH_VALUES = 500
FLUSH_BYTES = 16 << 20
OUTCOMES_BATCH = 5000  # a run's outcomes are written, and an old run's deleted, this many a transaction
KEEP_RUNS = 10  # the outcomes of this many recent runs are kept; older ones are derived data, pruned



def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def pack(data: dict) -> bytes:
    # surrogatepass: a path that is not UTF-8 (a GBK name left by unzip) survives the round trip
    return zlib.compress(datajson.dumps(data), 3)


# Stored form data inflates to at most this: a real form's data is tens of kilobytes, and a ledger or an
# export handed in by someone else may hold a bomb, as a workbook may (reader.zipguard caps those alike).
MAX_FORM_DATA_BYTES = 32 * 1024 * 1024


class StoredDataError(ValueError):
    """Form data kept in a ledger that cannot be used: not zlib, too large inflated, not JSON, not a form."""


def inflate(blob) -> bytes:
    """The JSON text of stored form data, inflated under MAX_FORM_DATA_BYTES."""
    if not isinstance(blob, bytes):
        raise StoredDataError(f"不是压缩数据（{type(blob).__name__}）")
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(blob, MAX_FORM_DATA_BYTES + 1)
    except zlib.error as exc:
        raise StoredDataError(f"无法解压（{exc}）") from None
    if len(text) > MAX_FORM_DATA_BYTES or inflater.unconsumed_tail:
        raise StoredDataError(f"解压后超过 {MAX_FORM_DATA_BYTES >> 20} MB，疑似压缩炸弹")
    return text


def unpack(blob) -> dict:
    """Stored form data back as a dict; StoredDataError for anything else (never any other exception)."""
    return parse_form_text(inflate(blob))


def parse_form_text(text: bytes) -> dict:
    """Inflated form data (see `inflate`) as a dict; StoredDataError for anything else."""
    try:
        data = datajson.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise StoredDataError(f"不是有效的 JSON（{type(exc).__name__}）") from None
    except RecursionError:
        raise StoredDataError("JSON 嵌套过深") from None
    if not isinstance(data, dict):
        raise StoredDataError("不是表单数据")
    return data


def _refuse(path: Path, why: str) -> OutputError:
    return OutputError(f"{path} {why}；perfxl 不会改动它，请用 --db 指定另一个台账文件 "
                       f"(refusing to use {path} as the ledger)")


# ----------------------------------------------------------------------------------------------------
# What this user's merges keep for themselves is sealed with this user's key
# ----------------------------------------------------------------------------------------------------

CACHE_KEY_FILE = "cache.key"
CACHE_KEY_BYTES = 32
_CACHE_KEYS: dict[str, bytes] = {}  # by perfxl's folder: read (or made) once per process


def cache_key() -> bytes:
    """This user's secret for sealing what a merge keeps in its ledger for its own later use: 32 random
    bytes in perfxl's folder for the user (`perfxl.files.home()`), made the first time, readable by this
    user only. A key that cannot be kept (a read-only home) is this process's own: nothing is reused
    across runs then, which is slower and as correct."""
    folder = home()
    key = _CACHE_KEYS.get(str(folder))
    if key is None:
        key = _CACHE_KEYS[str(folder)] = _load_or_make_key(folder / CACHE_KEY_FILE)
    return key


def _read_key(path: Path) -> bytes | None:
    """The key in `path` if it is one this user alone can read: the right size and, where the system has
    owners and modes, this user's and not readable by others. None otherwise (it is then replaced)."""
    try:
        with open(path, "rb") as fh:
            if hasattr(os, "getuid"):
                st = os.fstat(fh.fileno())
                if st.st_uid != os.getuid() or st.st_mode & 0o077:
                    return None
            key = fh.read(CACHE_KEY_BYTES + 1)
    except OSError:
        return None
    return key if len(key) == CACHE_KEY_BYTES else None


def _load_or_make_key(path: Path) -> bytes:
    key = _read_key(path)
    if key is not None:
        return key
    fresh = secrets.token_bytes(CACHE_KEY_BYTES)
    temp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under another name (0600 from the start), then put in place: a merge's workers or
        # the portal starting at the same moment never read half a key.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(fresh)
            fh.flush()
            os.fsync(fh.fileno())
        if os.path.lexists(path):  # one that is not a key (or not this user's alone): replaced
            os.replace(temp, path)
        else:
            try:  # a link fails where another process put its key first: that one is used
                os.link(temp, path)
            except FileExistsError:
                pass
            except OSError:  # no hard links here (FAT): a rename, which fails alike where one exists
                try:
                    os.rename(temp, path)
                except FileExistsError:
                    pass
    except OSError:
        return fresh
    finally:
        try:
            os.unlink(temp)
        except OSError:
            pass
    return _read_key(path) or fresh


class Sealer:
    """HMAC-SHA256 (RFC 2104) under this user's key of what a ledger row says: what kind of row it is, the
    reader version, every field that names the row (its key, or its content's sha256 and path) and its
    value, each framed by its length, so a value cannot be moved under another key or content, into
    another kind of row or to another perfxl version. `valid` is False for a MAC that is not this one's,
    and for a field of a type perfxl never stores there.

    A re-merge of 10,000 forms checks ~40,000 seals over ~80 MB, so the key's pads and each kind's prefix
    are hashed once, and each seal costs two state copies, the hashing of its bytes and one small format."""

    def __init__(self, key: bytes):
        block = key.ljust(64, b"\0")  # SHA-256's block: a 32-byte key is padded, never hashed
        inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        self._kinds = {}
        for kind in ("kept", "form", "status", "sighting", "roster"):
            state = inner.copy()
            state.update(f"perfxl-{kind}|{len(READER_VERSION)}:{READER_VERSION}|".encode())
            self._kinds[kind] = state

    def _mac(self, kind: str, head: str, value: bytes | None = None) -> bytes:
        inner = self._kinds[kind].copy()
        inner.update(head.encode("utf-8", "surrogatepass"))
        if value is not None:
            inner.update(value)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def kept(self, key: str, value: bytes) -> bytes:
        """A kept value under its key."""
        return self._mac("kept", f"{len(key)}:{key}|{len(value)}:", value)

    def form(self, sha: str, reader: str, form: bytes) -> bytes:
        """A content's form data (as stored: compressed), and the read settings it was read under
        (cachekeys.read_key): reused only under those, so a row's label cannot be moved to others."""
        return self._mac("form", f"{len(sha)}:{sha}|{len(reader)}:{reader}|{len(form)}:", form)

    def status(self, sha: str, reader: str, status: str, problems: str | None) -> bytes:
        """A content's status and problems under these read settings (a rejection is reused by these)."""
        return self._mac("status", f"{len(sha)}:{sha}|{len(reader)}:{reader}|{len(status)}:{status}|"
                                   + ("-" if problems is None else f"{len(problems)}:{problems}"))

    def roster(self, digest: str, units: str) -> bytes:
        """The units of the roster kept under this digest (as JSON)."""
        return self._mac("roster", f"{len(digest)}:{digest}|{len(units)}:{units}")

    def sighting(self, path: str, sha: str, size: int, mtime_ns: int, ctime_ns: int, ino: int) -> bytes:
        """That the file at `path`, with this stat, held this content."""
        return self._mac("sighting", f"{len(path)}:{path}|{len(sha)}:{sha}|{size:d};{mtime_ns:d};{ctime_ns:d};{ino:d}")

    @staticmethod
    def valid(mac, seal, *fields) -> bool:
        """Whether `mac` is what `seal` (one of the methods above) makes of `fields`."""
        if type(mac) is not bytes:
            return False
        try:
            return hmac.compare_digest(mac, seal(*fields))
        except (TypeError, ValueError, UnicodeError):  # a field of another type than perfxl stores there
            return False


# ----------------------------------------------------------------------------------------------------
# SQLite files perfxl did not create in this run: only its own schema, and a bound on a statement's time
# ----------------------------------------------------------------------------------------------------

class ForeignSchema(OutputError):
    """An SQLite file whose schema holds something perfxl never writes (`why`, in Chinese)."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


# Stripped before a CREATE statement's words are looked at: string literals, quoted names and comments.
_SQL_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`|\[[^\]]*\]|--[^\n]*|/\*.*?(?:\*/|$)", re.S)
# What a perfxl table's definition never holds: a constraint or a computed column runs on every write or read.
_SQL_RUNS = re.compile(r"\b(?:CHECK|AS|GENERATED)\b", re.I)
# A column default perfxl writes: none, or a literal.
_LITERAL = re.compile(r"NULL|[-+]?\d+(?:\.\d+)?|'(?:[^']|'')*'|X'[0-9A-Fa-f]*'", re.I)


def _schema_problem(db: sqlite3.Connection) -> str | None:
    """What, in this database's schema, perfxl never writes (in Chinese), or None: a view or a trigger
    (either can run a query without end when a table is read or written), a virtual table, a table not
    among OWN_TABLES, a computed column, a constraint or a default that is not a literal, an index on an
    expression or with a condition."""
    for kind, name, table, sql in db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall():
        if kind == "view":
            return f"含有视图 {name}（perfxl 从不写入视图）"
        if kind == "trigger":
            return f"含有触发器 {name}（perfxl 从不写入触发器）"
        if kind == "table":
            if name not in OWN_TABLES:
                return f"含有 perfxl 从不写入的表 {name}"
            if not isinstance(sql, str):
                return f"表 {name} 没有定义"
            if sql.lstrip()[:20].upper().replace(" ", "").startswith("CREATEVIRTUAL"):
                return f"含有虚拟表 {name}"
            if _SQL_RUNS.search(_SQL_QUOTED.sub(" ", sql)):
                return f"表 {name} 含有 perfxl 从不写入的约束或计算列"
            for _, column, _, _, default, _, hidden in db.execute(f'PRAGMA table_xinfo("{name}")').fetchall():
                if hidden:
                    return f"表 {name} 含有计算列 {column}"
                if default is not None and not _LITERAL.fullmatch(default):
                    return f"表 {name} 的列 {column} 含有 perfxl 从不写入的默认值"
        elif kind == "index":
            if table not in OWN_TABLES:
                return f"含有 perfxl 从不写入的索引 {name}"
            if isinstance(sql, str) and re.search(r"\bWHERE\b", _SQL_QUOTED.sub(" ", sql), re.I):
                return f"含有带条件的索引 {name}"
            if any(column[1] == -2 for column in db.execute(f'PRAGMA index_xinfo("{name}")').fetchall()):
                return f"含有基于表达式的索引 {name}"
        else:
            return f"含有 perfxl 从不写入的对象 {name}（{kind}）"
    return None


# A statement on a file perfxl did not create is stopped once SQLite has spent this long on it: far more
# than any of perfxl's statements takes on a real ledger (a sort of 100,000 outcomes: about a second), so
# it only ends what would never end. Not longer: a sort without end fills SQLite's temporary folder at
# ~180 MB/s until it is stopped (its files are deleted then).
STATEMENT_SECONDS = 30.0
_PROGRESS_STEPS = 100_000  # SQLite's virtual machine steps between two looks at the clock (~a millisecond)


class _Clock:
    """The time SQLite has spent on the statement of the cursor it is working for: only the time inside
    SQLite counts, not the caller's between two rows, so a roll-up that checks a form per outcome row is
    never stopped, and a query without end always is."""

    __slots__ = ("cursor", "overran")

    def __init__(self):
        self.cursor: _TimedCursor | None = None
        self.overran = False

    def too_long(self) -> int:
        cursor = self.cursor
        if cursor is not None and cursor.spent + (monotonic() - cursor.entered) > STATEMENT_SECONDS:
            self.overran = True
            return 1  # SQLite stops the statement: sqlite3.OperationalError
        return 0


class _TimedCursor(sqlite3.Cursor):
    spent = 0.0
    entered = 0.0

    def _inside(self, call, *args):
        clock = self.connection.clock
        clock.cursor, self.entered = self, monotonic()
        try:
            return call(*args)
        except sqlite3.OperationalError:
            if clock.overran:
                clock.overran = False
                raise sqlite3.OperationalError(
                    f"查询超过 {STATEMENT_SECONDS:g} 秒仍未结束，已中止 (a statement ran past "
                    f"{STATEMENT_SECONDS:g} seconds and was stopped)") from None
            timeout = ran_out()  # a file's time ran out inside the statement: that, not an SQLite error
            if timeout is not None:
                raise timeout from None
            raise
        finally:
            self.spent += monotonic() - self.entered
            clock.cursor = None

    def execute(self, sql, parameters=()):
        self.spent = 0.0
        return self._inside(super().execute, sql, parameters)

    def executemany(self, sql, parameters):
        self.spent = 0.0
        return self._inside(super().executemany, sql, parameters)

    def fetchone(self):
        return self._inside(super().fetchone)

    def fetchmany(self, size=None):
        return self._inside(super().fetchmany, size if size is not None else self.arraysize)

    def fetchall(self):
        return self._inside(super().fetchall)

    def __next__(self):
        return self._inside(super().__next__)


class _BoundedConnection(sqlite3.Connection):
    """A connection whose statements are stopped past STATEMENT_SECONDS inside SQLite (see _Clock)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.clock = _Clock()
        self.set_progress_handler(self.clock.too_long, _PROGRESS_STEPS)

    def cursor(self, factory=_TimedCursor):
        return super().cursor(factory)

    def execute(self, sql, parameters=()):
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql, parameters):
        return self.cursor().executemany(sql, parameters)


def readonly_uri(absolute: PurePath) -> str | None:
    """The file: URI (mode=ro) by which SQLite opens this absolute path read-only; None where no URI can name
    it: a path on a Windows share (\\\\server\\share), whose host SQLite refuses, or a device path. Not
    resolved: on Windows, resolve() made a mapped drive's path (Z:\\台账) the share's."""
    try:
        uri = absolute.as_uri()
    except ValueError:  # not absolute after all (a drive-relative path)
        return None
    return f"{uri}?mode=ro" if uri.startswith("file:///") else None


def open_readonly(path: Path, threads: bool = False) -> sqlite3.Connection:
    """A read-only connection to an SQLite file in the ledger's format that perfxl did not create in this
    run (a lower level's ledger or export, a record of what was issued, a ledger to read back): its
    schema checked (ForeignSchema for anything perfxl never writes), schema code not trusted, and every
    statement bounded in time. sqlite3.Error when it cannot be opened as a database. `threads`: it may be
    closed from another thread than the one that opened it."""
    uri = readonly_uri(Path(os.path.abspath(path)))
    if uri is None:  # opened by name, SQLite would write into it (a checkpoint as it closes), or create it
        raise sqlite3.OperationalError(f"{path} 无法以只读方式打开（网络共享路径，或不完整的路径）；请先复制到本机再使用 "
                                       "(a path on a network share, or not a whole path, cannot be opened read-only: "
                                       "copy the file here first)")
    db = sqlite3.connect(uri, uri=True, timeout=30, factory=_BoundedConnection, check_same_thread=not threads)
    try:
        db.execute("PRAGMA trusted_schema=OFF")
        why = _schema_problem(db)
    except BaseException:
        db.close()
        raise
    if why is not None:
        db.close()
        raise ForeignSchema(why)
    return db


def check_ledger_file(path: Path) -> None:
    """Refuse, before anything is written, a --db that is not empty and not a perfxl ledger: not SQLite,
    another program's (by its application id or, for a ledger of perfxl 0.1 that has none, its tables),
    or holding anything perfxl never writes (see _schema_problem)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(f"无法访问报送台账 {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(path, "不是普通文件")
    if st.st_size == 0:
        return
    try:
        with open(path, "rb") as fh:
            head = fh.read(100)
    except OSError as exc:
        raise OutputError(f"无法读取报送台账 {path}: {exc.strerror or exc}") from None
    if not head.startswith(SQLITE_MAGIC):
        raise _refuse(path, "不是 SQLite 数据库（不是 perfxl 报送台账）")
    app_id = int.from_bytes(head[68:72], "big") if len(head) >= 72 else 0
    if app_id not in (APPLICATION_ID, 0):
        raise _refuse(path, "是其他程序的数据库")
    try:
        db = open_readonly(path)
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            db.close()
    except ForeignSchema as exc:  # without perfxl's application id, most likely another program's
        raise _refuse(path, f"是其他程序的数据库（{exc.why}）" if app_id == 0 else f"不是 perfxl 写出的台账：{exc.why}") from None
    except sqlite3.Error as exc:
        raise _refuse(path, f"无法作为数据库打开 ({exc})") from None
    if app_id == 0 and tables and "files" not in tables:  # perfxl 0.1 wrote no application id: its tables say
        raise _refuse(path, "是其他程序的数据库（没有 perfxl 的表）")


def _add_columns(db: sqlite3.Connection, table: str, columns: dict[str, str]) -> None:
    """Columns a newer perfxl added to a table, added to a ledger an older one made."""
    have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    for name, kind in columns.items():
        if name not in have:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def is_ledger(path: Path) -> bool:
    """A file that is a perfxl ledger (a lower level's merge result): SQLite, perfxl's by its application
    id or, as check_ledger_file also accepts, by its tables, and holding nothing perfxl never writes."""
    try:
        with open(path, "rb") as fh:
            if not fh.read(16).startswith(SQLITE_MAGIC):
                return False
        check_ledger_file(Path(path))
    except (OSError, OutputError):
        return False
    return True


def claims_ledger(path: Path) -> bool:
    """A file that says it is a perfxl ledger (SQLite with perfxl's application id), or is one (is_ledger),
    whatever else it holds: a merge takes it as a lower level's and refuses it there, saying why, if it
    cannot be used."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(72)
    except OSError:
        return False
    if head.startswith(SQLITE_MAGIC) and len(head) == 72 and int.from_bytes(head[68:72], "big") == APPLICATION_ID:
        return True
    return is_ledger(path)


# A file's content and status, and where it was seen with what stat. Its form data stays when a check carries
# none (one taken from this row, or a rejection), with the read settings it was read under (`form_reader`;
# `reader` is the status's): a rejection under other settings neither drops it (the merges that merged the
# form prefill follow-up forms from it) nor makes it pass for a read under those settings.
_RECORD_FILE = (
    "INSERT INTO files (sha256, size, first_seen, template, version, year, unit_code, unit_name, status, "
    "errors, warnings, problems, reader, form, mac, form_mac, form_reader) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT(sha256) DO UPDATE SET template=excluded.template, version=excluded.version, "
    "year=excluded.year, unit_code=excluded.unit_code, unit_name=excluded.unit_name, status=excluded.status, "
    "errors=excluded.errors, warnings=excluded.warnings, problems=excluded.problems, mac=excluded.mac, "
    "form=COALESCE(excluded.form, files.form), "
    "form_mac=CASE WHEN excluded.form IS NULL THEN files.form_mac ELSE excluded.form_mac END, "
    "form_reader=CASE WHEN excluded.form IS NULL THEN COALESCE(files.form_reader, files.reader) "
    "ELSE excluded.reader END, reader=excluded.reader")
_RECORD_SIGHTING = ("INSERT OR REPLACE INTO sightings (path, sha256, size, mtime_ns, ctime_ns, ino, seen_at, mac) "
                    "VALUES (?,?,?,?,?,?,?,?)")


class Ledger:
    def __init__(self, path: Path, readonly: bool = False, threads: bool = False):
        """Open (creating it if need be) the ledger; `readonly` for the merge's workers, which only look up,
        and for a lower level's ledger or any other file read back (see open_readonly); `threads` when the
        caller shares it between threads under its own lock, or closes it from another thread (the portal)."""
        self.path = Path(path)
        self.readonly = readonly
        self._sealer: Sealer | None = None
        self._unwritten: list[tuple] = []  # rows record_later holds until flush
        if readonly:
            try:
                self.db = open_readonly(self.path, threads=threads)
            except ForeignSchema as exc:
                raise OutputError(f"{self.path} 不是 perfxl 写出的台账：{exc.why}；perfxl 不会读取它 "
                                  f"(refusing to read a file holding what perfxl never writes)") from None
            except sqlite3.Error as exc:
                raise OutputError(f"无法打开报送台账 (cannot open the ledger) {self.path}: {exc}") from None
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"无法创建台账所在目录 {self.path.parent}: {exc.strerror or exc}") from None
        check_ledger_file(self.path)
        try:
            self.db = sqlite3.connect(self.path, timeout=BUSY_SECONDS, check_same_thread=not threads)
            self.db.execute("PRAGMA trusted_schema=OFF")
            why = _schema_problem(self.db)  # again, on this very connection: the file may have changed since
            if why is not None:
                self.db.close()
                raise _refuse(self.path, f"不是 perfxl 写出的台账：{why}")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            _add_columns(self.db, "sightings", {"ctime_ns": "INTEGER", "ino": "INTEGER", "mac": "BLOB"})
            _add_columns(self.db, "files", {"mac": "BLOB", "form_mac": "BLOB", "form_reader": "TEXT"})
            _add_columns(self.db, "kept", {"mac": "BLOB"})
            _add_columns(self.db, "rosters", {"mac": "BLOB"})
            self.db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            self.db.commit()
        except sqlite3.Error as exc:
            raise OutputError(f"无法打开报送台账 (cannot open the ledger) {self.path}: {exc}") from None

    @property
    def sealer(self) -> Sealer:
        """Seals what this user's merges keep for themselves (made when first needed: a ledger only read
        back never needs the key)."""
        if self._sealer is None:
            self._sealer = Sealer(cache_key())
        return self._sealer

    def close(self) -> None:
        """Close; a ledger this process opened for writing is left as one file: its journal (-wal) is
        checkpointed into it and the journal mode set back to DELETE, so a ledger copied or sent once a
        command has ended loses nothing, and reading it later leaves no -wal/-shm beside it. While another
        connection still has it open (the portal, a merge's worker), it stays in WAL: the last to close ends it."""
        if not self.readonly:
            try:
                self.db.execute("PRAGMA busy_timeout=0")  # another connection: give way at once, not in 30 s
                self.db.execute("PRAGMA journal_mode=DELETE")
            except sqlite3.Error:
                pass
        self.db.close()

    # -- lookups ------------------------------------------------------------------------------------

    def sightings(self) -> dict[tuple[str, FileStat], str]:
        """Every (path, file stat) seen, with its content's sha256 (the newest sighting wins): one query for
        a whole inbox instead of one per file. A sighting of an older ledger, without ctime and inode,
        matches no file: such a file is read once more; so does one this user's merges did not seal."""
        valid, sighting = self.sealer.valid, self.sealer.sighting
        return {(path, FileStat(size, mtime, ctime, ino)): sha for path, size, mtime, ctime, ino, sha, mac in self.db.execute(
            "SELECT path, size, mtime_ns, ctime_ns, ino, sha256, mac FROM sightings WHERE ctime_ns IS NOT NULL "
            "ORDER BY seen_at") if valid(mac, sighting, path, sha, size, mtime, ctime, ino)}

    def holds_reads(self, reader: str) -> bool:
        """Whether any file was read into this ledger under `reader` (cachekeys.read_key: this reader version
        and the settings it read with); else no form of it is worth looking up."""
        return self.db.execute("SELECT EXISTS(SELECT 1 FROM files WHERE reader=? OR form_reader=?)",
                               (reader, reader)).fetchone()[0] == 1

    def cached_form(self, sha: str, reader: str) -> dict | None:
        """The form data stored for this content when it was read under `reader` (cachekeys.read_key), sealed
        by this user's merges; None if there is none or it cannot be used (the file is then read again)."""
        row = self.db.execute("SELECT form, form_mac FROM files WHERE sha256=? AND COALESCE(form_reader, reader)=? "
                              "AND form IS NOT NULL", (sha, reader)).fetchone()
        if row is None or not self.sealer.valid(row[1], self.sealer.form, sha, reader, row[0]):
            return None
        try:
            return unpack(row[0])
        except StoredDataError:
            return None

    def cached_rejection(self, sha: str, reader: str):
        """The problem that rejected this content when it was last read under `reader` (sealed by this user's
        merges), or None; None too for a rejection that may not happen again (problems.RETRIED_REJECTIONS).
        Its words are those of the name it was recorded at (read.rejection_at gives them another's)."""
        from .problems import RETRIED_REJECTIONS, Problem

        row = self.db.execute("SELECT status, problems, mac FROM files WHERE sha256=? AND reader=?",
                              (sha, reader)).fetchone()
        if row and not self.sealer.valid(row[2], self.sealer.status, sha, reader, row[0], row[1]):
            return None
        if row and isinstance(row[0], str) and row[0].startswith("rejected:") and (
                row[0].removeprefix("rejected:") not in RETRIED_REJECTIONS):
            try:
                return Problem.from_dict(json.loads(row[1])[0])
            except (TypeError, ValueError, KeyError, IndexError, AttributeError, RecursionError):
                return None  # not what this ledger would have written: read the file again
        return None

    # -- writes ------------------------------------------------------------------------------------

    def record(self, sha: str, stat: FileStat, path: str, summary: dict, form_blob: bytes | None, reader: str) -> None:
        """`summary`: template, version, year, unit_code, unit_name, status, errors, warnings, read_error
        and problems (JSON text) of the checked form; `reader`: what it was read under (cachekeys.read_key).
        Written now; the caller commits."""
        file_row, sighting_row = self._file_rows(sha, stat, path, summary, form_blob, reader)
        self.db.execute(_RECORD_FILE, file_row)
        self.db.execute(_RECORD_SIGHTING, sighting_row)

    def record_later(self, sha: str, stat: FileStat, path: str, summary: dict, form_blob: bytes | None,
                     reader: str) -> None:
        """As `record`, written by the next `flush`: a merge records its files as they come, and the portal
        records every upload in this ledger. Written as they came, each opened a transaction that held the
        ledger's write lock while the merge waited for its workers (4.2 s at a time, bench/ledger_hold.py)."""
        self._unwritten.append(self._file_rows(sha, stat, path, summary, form_blob, reader))

    def flush(self) -> None:
        """What `record_later` holds, written in one short transaction."""
        if self._unwritten:
            rows, self._unwritten = self._unwritten, []
            with self.db:
                self.db.executemany(_RECORD_FILE, [file_row for file_row, _ in rows])
                self.db.executemany(_RECORD_SIGHTING, [sighting_row for _, sighting_row in rows])

    def _file_rows(self, sha: str, stat: FileStat, path: str, summary: dict, form_blob: bytes | None,
                   reader: str) -> tuple:
        s = summary
        status = f"rejected:{s['read_error']}" if s["read_error"] else s["status"]
        sealer = self.sealer
        return ((sha, stat.size, _now(), s["template"], s["version"], s["year"], s["unit_code"], s["unit_name"],
                 status, s["errors"], s["warnings"], s["problems"], reader, form_blob,
                 sealer.status(sha, reader, status, s["problems"]),
                 sealer.form(sha, reader, form_blob) if form_blob is not None else None,
                 reader if form_blob is not None else None),
                (path, sha, *stat, _now(), sealer.sighting(path, sha, *stat)))

    def kept(self, run_id: int) -> Kept:
        """What this run may reuse from earlier ones, and keep for later ones."""
        return Kept(self, run_id)

    def start_run(self) -> int:
        with self.db:
            cur = self.db.execute("INSERT INTO runs (started) VALUES (?)", (_now(),))
        return cur.lastrowid

    def record_outcomes(self, run_id: int, files: list, settings: dict) -> None:
        """What this run decided for every file, and the settings it ran with: the public API rebuilds
        the summary tables from these without the inbox. Written OUTCOMES_BATCH files a transaction: at
        100,000 forms one transaction held the ledger's write lock 1.2-1.3 s, and the portal's uploads waited.
        A run is read back only once finished (finish_run): a merge stopped between two lots leaves outcomes
        nothing reads, which go with the old runs'."""
        names = [f.name for f in dataclasses.fields(files[0])] if files else []
        # not dataclasses.asdict: a Seen is flat, and asdict deep-copies 10,000 of them
        rows = ((run_id, s.path, s.sha, s.outcome, datajson.dumps(
                    {name: getattr(s, name) for name in names}).decode("utf-8", "surrogatepass")) for s in files)
        while lot := list(itertools.islice(rows, OUTCOMES_BATCH)):
            with self.db:
                self.db.executemany("INSERT OR REPLACE INTO outcomes (run, path, sha256, outcome, seen) "
                                    "VALUES (?,?,?,?,?)", lot)
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO run_settings (run, settings) VALUES (?,?)",
                            (run_id, json.dumps(settings, ensure_ascii=False, default=str)))
        # The outcomes of runs before the KEEP_RUNS latest, found by their key (run, path) and deleted a lot at
        # a time: "run NOT IN (…)" read every outcome kept (ten runs' worth) and deleted a run's in one go
        oldest = self.db.execute("SELECT min(id) FROM (SELECT id FROM runs ORDER BY id DESC LIMIT ?)",
                                 (KEEP_RUNS,)).fetchone()[0]
        while oldest is not None:
            with self.db:
                gone = self.db.execute("DELETE FROM outcomes WHERE rowid IN (SELECT rowid FROM outcomes WHERE run < ? "
                                       "LIMIT ?)", (oldest, OUTCOMES_BATCH)).rowcount
            if gone < OUTCOMES_BATCH:
                break

    def keep_roster(self, digest: str, units: list) -> None:
        """Keep a roster's units under the digest of its file (once: a re-merge with the same roster writes
        nothing)."""
        row = self.db.execute("SELECT units, mac FROM rosters WHERE digest=?", (digest,)).fetchone()
        if row is None or not self.sealer.valid(row[1], self.sealer.roster, digest, row[0]):
            text = json.dumps([u.to_dict() for u in units], ensure_ascii=False)
            with self.db:
                self.db.execute("INSERT OR REPLACE INTO rosters (digest, units, mac) VALUES (?,?,?)",
                                (digest, text, self.sealer.roster(digest, text)))

    def kept_roster(self, digest) -> list | None:
        """The units of a roster this user's merge kept by `keep_roster` (sealed), as dicts, or None."""
        row = self.db.execute("SELECT units, mac FROM rosters WHERE digest=?", (str(digest),)).fetchone()
        if row is None or not self.sealer.valid(row[1], self.sealer.roster, str(digest), row[0]):
            return None
        try:
            units = json.loads(row[0])
        except (TypeError, ValueError, RecursionError):
            return None
        return units if isinstance(units, list) else None

    def last_run(self) -> int | None:
        """The newest finished run that recorded its outcomes."""
        row = self.db.execute("SELECT r.id FROM runs r WHERE r.finished IS NOT NULL AND EXISTS "
                              "(SELECT 1 FROM run_settings s WHERE s.run = r.id) ORDER BY r.id DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def finished_runs(self) -> list[int]:
        """Every finished run that recorded its outcomes, newest first (the ledger keeps the last KEEP_RUNS)."""
        return [r for (r,) in self.db.execute(
            "SELECT r.id FROM runs r WHERE r.finished IS NOT NULL AND EXISTS "
            "(SELECT 1 FROM run_settings s WHERE s.run = r.id) ORDER BY r.id DESC").fetchall()]

    def outcome_rows(self, run_id: int):
        """The outcomes of a run as the JSON texts stored, one by one (a lower level's: checked by the caller)."""
        for (text,) in self.db.execute("SELECT seen FROM outcomes WHERE run=? ORDER BY path", (run_id,)):
            yield text

    def run_outcomes(self, run_id: int) -> tuple[list[dict], dict]:
        rows = self.db.execute("SELECT seen FROM outcomes WHERE run=? ORDER BY path", (run_id,)).fetchall()
        settings = self.db.execute("SELECT settings FROM run_settings WHERE run=?", (run_id,)).fetchone()
        return [json.loads(r[0]) for r in rows], json.loads(settings[0]) if settings else {}

    def stored_form(self, sha: str) -> dict | None:
        """The form data stored for this content by any reader version (the API re-validates it); None if
        there is none; StoredDataError if what is stored cannot be used."""
        blob = self.stored_blob(sha)
        return unpack(blob) if blob is not None else None

    def stored_blob(self, sha: str) -> bytes | None:
        row = self.db.execute("SELECT form FROM files WHERE sha256=? AND form IS NOT NULL", (sha,)).fetchone()
        return row[0] if row else None

    def stored_problems(self, sha: str) -> list[dict]:
        row = self.db.execute("SELECT problems FROM files WHERE sha256=?", (sha,)).fetchone()
        try:
            problems = json.loads(row[0]) if row and row[0] else []
        except (TypeError, ValueError, RecursionError):
            return []
        return problems if isinstance(problems, list) else []

    # -- the submission portal ---------------------------------------------------------------------

    def add_submission(self, unit_code: str, file_name: str, sha: str, size: int, stored: str) -> int:
        """An upload on disk, recorded before it is checked: the portal says 已收到 only after this commits."""
        with self.db:
            cur = self.db.execute("INSERT INTO submissions (unit_code, file_name, sha256, size, stored, received, status) "
                                  "VALUES (?,?,?,?,?,?,'checking')", (unit_code, file_name, sha, size, stored, _now()))
        return cur.lastrowid

    def finish_submission(self, sid: int, status: str, errors: int, warnings: int, problems: list[dict]) -> None:
        with self.db:
            self.db.execute("UPDATE submissions SET status=?, errors=?, warnings=?, problems=? WHERE id=?",
                            (status, errors, warnings, json.dumps(problems, ensure_ascii=False), sid))

    def submissions(self, unit_code: str | None = None, status: str | None = None) -> list[dict]:
        """Newest first; one unit's, or everyone's."""
        sql, args = "SELECT * FROM submissions", []
        where = []
        if unit_code is not None:
            where.append("unit_code=?")
            args.append(unit_code)
        if status is not None:
            where.append("status=?")
            args.append(status)
        if where:
            sql += " WHERE " + " AND ".join(where)
        cur = self.db.execute(sql + " ORDER BY id DESC", args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def submission(self, sid: int) -> dict | None:
        cur = self.db.execute("SELECT * FROM submissions WHERE id=?", (sid,))
        row = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], row)) if row else None

    def add_return(self, unit_code: str, submission: int | None, comment: str) -> None:
        with self.db:
            self.db.execute("INSERT INTO returns (unit_code, submission, comment, returned) VALUES (?,?,?,?)",
                            (unit_code, submission, comment, _now()))

    def store_units(self) -> dict[str, tuple[str, str]]:
        """The portal's record of who handed in each stored file: {real path: (unit code, content sha256)},
        for the files it accepted (status valid or errors), each where the portal keeps it,
        files/<unit>/<sha256>.xlsx under this ledger's folder. A row naming any other place (a ledger
        planted beside an inbox, naming the inbox's files) is no portal record and is passed over."""
        from .files import safe_filename

        folder = self.path.resolve().parent
        out = {}
        for unit, stored, sha in self.db.execute(
                "SELECT unit_code, stored, sha256 FROM submissions WHERE status IN ('valid', 'errors')"):
            if not (isinstance(stored, str) and isinstance(unit, str) and isinstance(sha, str)):
                continue
            parts = Path(stored.replace("\\", "/")).parts
            if len(parts) == 3 and parts[0] == "files" and parts[1] == safe_filename(unit) \
                    and parts[2] in (f"{sha}.xlsx", f"{sha}.xls"):
                out[os.path.normcase(os.path.realpath(folder / stored))] = (unit, sha)
        return out

    def returns(self, unit_code: str | None = None) -> list[dict]:
        sql = "SELECT * FROM returns" + (" WHERE unit_code=?" if unit_code is not None else "") + " ORDER BY id DESC"
        cur = self.db.execute(sql, (unit_code,) if unit_code is not None else ())
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def issued_kept(self) -> set[tuple[str, str]]:
        """The (round, unit code) of every issued row this ledger keeps (its key)."""
        return set(self.db.execute("SELECT round, unit_code FROM issued"))

    def keep_issued(self, rows: list[tuple]) -> None:
        """Rows of what follow-up forms were issued with (perfxl.issued), as the records this merge checked its
        forms against hold them: the ledger keeps what it accepted forms against, and an export carries it."""
        with self.db:
            self.db.executemany("INSERT OR IGNORE INTO issued (round, unit_code, template, year, issued_at, projects, "
                                "digest) VALUES (?,?,?,?,?,?,?)", rows)

    def finish_run(self, run_id: int, output: str, counts: dict) -> None:
        with self.db:
            self.db.execute("UPDATE runs SET finished=?, output=?, files_in=?, files_read=?, from_ledger=?, merged=?, "
                            "rejected=?, duplicate=?, superseded=? WHERE id=?",
                            (_now(), output, counts["files_in"], counts["read"], counts["from_ledger"], counts["merged"],
                             counts["rejected"], counts["duplicate"], counts["superseded"], run_id))


EXPORTED_FILE_COLUMNS = ("sha256, size, first_seen, template, version, year, unit_code, unit_name, status, errors, "
                         "warnings, problems, reader, form")


def export_merged(source: Path, target: Path) -> int:
    """What a higher level needs of this ledger's last merge (节点汇总), in a new file of the ledger's own
    format: the run, its outcomes and settings, and the stored data of every form it merged, each under
    the sha256 of its original file. Nothing of older runs, of what a re-merge reuses, or of the portal's
    uploads. The file is one SQLite file (no journal beside it), written whole or not at all. Returns how
    many merged forms it holds."""
    source, target = Path(source), Path(target)
    if not is_ledger(source):
        raise OutputError(f"{source} 不是 perfxl 报送台账，无法导出 (not a perfxl ledger)")
    if target.exists() and (target.resolve() == source.resolve() or not is_ledger(target)):
        raise OutputError(f"{target} 已存在且不是 perfxl 导出的台账；perfxl 不会覆盖它，请换一个文件名 "
                          f"(refusing to overwrite {target})")
    lower = Ledger(source, readonly=True)
    try:
        run = lower.last_run()
        if run is None:
            raise OutputError(f"{source} 中没有完成的汇总，无法导出 (a ledger with no finished merge)")
        runs = lower.db.execute("SELECT * FROM runs WHERE id=?", (run,)).fetchall()
        outcomes = lower.db.execute("SELECT * FROM outcomes WHERE run=?", (run,)).fetchall()
        settings = lower.db.execute("SELECT * FROM run_settings WHERE run=?", (run,)).fetchall()
        try:
            digest = json.loads(settings[0][1]).get("roster_digest") if settings else None
        except (ValueError, AttributeError):
            digest = None
        rosters = lower.db.execute("SELECT digest, units FROM rosters WHERE digest=?", (str(digest),)).fetchall()
        merged = sorted({row[2] for row in outcomes if row[3] == "merged"})
        with atomic_output(target) as tmp:
            out = Ledger(tmp)
            try:
                with out.db:
                    out.db.executemany(f"INSERT INTO runs VALUES ({','.join('?' * len(runs[0]))})", runs)
                    if outcomes:
                        out.db.executemany(f"INSERT INTO outcomes VALUES ({','.join('?' * len(outcomes[0]))})",
                                           outcomes)
                    out.db.executemany("INSERT INTO run_settings VALUES (?,?)", settings)
                    out.db.executemany("INSERT INTO rosters (digest, units) VALUES (?,?)", rosters)  # unsealed: evidence
                    # what its follow-up forms were checked against (perfxl.issued), so a level above, or a later
                    # year reading this as history, can check them as this level did
                    out.db.executemany("INSERT OR IGNORE INTO issued (round, unit_code, template, year, issued_at, "
                                       "projects, digest) VALUES (?,?,?,?,?,?,?)", lower.db.execute(
                                           "SELECT round, unit_code, template, year, issued_at, projects, digest "
                                           "FROM issued").fetchall())
                    # By name (a ledger an older perfxl made has fewer columns), and without the seals: they
                    # are this user's, and the level above checks what it is handed again.
                    for start in range(0, len(merged), 500):
                        batch = merged[start:start + 500]
                        rows = lower.db.execute(f"SELECT {EXPORTED_FILE_COLUMNS} FROM files WHERE sha256 IN "
                                                f"({','.join('?' * len(batch))})", batch).fetchall()
                        if rows:
                            out.db.executemany(f"INSERT INTO files ({EXPORTED_FILE_COLUMNS}) VALUES "
                                               f"({','.join('?' * len(rows[0]))})", rows)
                out.db.execute("PRAGMA journal_mode=DELETE")  # one file to send: no -wal beside it
            finally:
                out.close()
    except sqlite3.Error as exc:
        raise OutputError(f"无法导出台账 {source}: {exc}") from None
    finally:
        lower.close()
    return len(merged)


class Kept:
    """get(key) → bytes | None and put(key, bytes) on the ledger's `kept` table for one run; writes are
    committed in batches. Every value is sealed with its key and reader version (see Sealer): one this
    user's merges did not write, or that was moved under another key, is not returned (a cache miss, so
    it is worked out again and kept anew). What no later merge can use is pruned at `close`: once the
    values this run did not touch outnumber those it did, they go (touching costs nothing; marking each
    one used would cost a write per form on every re-merge)."""

    def __init__(self, ledger: Ledger, run_id: int):
        self.db = ledger.db
        self.sealer = ledger.sealer
        self.run_id = run_id
        # The keys this run found or put, by their hash() in this process: at 100,000 forms the keys
        # themselves, three a form of 70 to 180 characters, held about 80 MB until the merge ended
        self.touched: set[int] = set()
        # Values put and not yet written, with their seals: written a few hundred at a time in one short
        # transaction (`flush`). Put one by one in a transaction kept open until the 500th, they held the
        # ledger's write lock while the merge waited for its workers (4.2 s at a time, bench/ledger_hold.py),
        # and the portal, which records every upload in this ledger, waited as long.
        self.unwritten: dict[str, tuple[bytes, bytes]] = {}
        self.unwritten_bytes = 0
        self.ahead: dict[str, tuple[bytes, bytes]] = {}

    def prefetch(self, keys: list[str]) -> None:
        """Look up these keys together (one query per few hundred, not one each): `get` takes them from here."""
        for start in range(0, len(keys), 500):
            batch = keys[start:start + 500]
            self.ahead.update((key, (value, mac)) for key, value, mac in self.db.execute(
                f"SELECT key, value, mac FROM kept WHERE key IN ({','.join('?' * len(batch))})", batch))

    def get(self, key: str) -> bytes | None:
        found = self.unwritten.get(key) or self.ahead.pop(key, None)
        if found is None:
            found = self.db.execute("SELECT value, mac FROM kept WHERE key=?", (key,)).fetchone()
            if found is None:
                return None
        value, mac = found
        if not self.sealer.valid(mac, self.sealer.kept, key, value):
            return None
        self.touched.add(hash(key))
        return value

    def view(self, prefixes: list[str], keys: list[str]) -> KeptView:
        """The values kept under these key prefixes and keys, as a helper process forked from this one may
        use them (see KeptView)."""
        self.flush()
        values: dict[str, tuple[bytes, bytes]] = {}
        for key in keys:
            values.update((key, (value, mac)) for value, mac in self.db.execute(
                "SELECT value, mac FROM kept WHERE key=?", (key,)))
        for prefix in prefixes:
            # Every key that starts with the prefix, by the primary key's order: a prefix ends in "|", and
            # "}" is the character after it
            assert prefix.endswith("|")
            values.update((key, (value, mac)) for key, value, mac in self.db.execute(
                "SELECT key, value, mac FROM kept WHERE key >= ? AND key < ?", (prefix, prefix[:-1] + "}")))
        return KeptView(values, self.sealer)

    def take_back(self, found: list[str], puts: list[tuple[str, bytes]]) -> None:
        """What a helper's KeptView found valid (kept from pruning, as if found here) and put (written here)."""
        self.touched.update(map(hash, found))
        for key, value in puts:
            self.put(key, value)

    def holds(self, key: str) -> bool:
        """Whether this run has put a value under `key`, or found a valid one there."""
        return hash(key) in self.touched

    def present(self, keys: list[str]) -> set[str]:
        """Those of `keys` under which a value is kept or waits to be written, not looked up or checked
        against its seal (a few hundred a query): for choosing what to make ahead, where one that proves
        unusable when it is got is made then."""
        found = {key for key in keys if key in self.unwritten}
        for start in range(0, len(keys), 500):
            batch = keys[start:start + 500]
            found.update(key for (key,) in self.db.execute(
                f"SELECT key FROM kept WHERE key IN ({','.join('?' * len(batch))})", batch))
        return found

    def put(self, key: str, value: bytes) -> None:
        self.ahead.pop(key, None)  # looked up before it was put: what was kept then is not what is kept now
        before = self.unwritten.get(key)
        if before is not None:
            self.unwritten_bytes -= len(before[0])
        self.unwritten[key] = (value, self.sealer.kept(key, value))
        self.unwritten_bytes += len(value)
        self.touched.add(hash(key))
        if len(self.unwritten) >= FLUSH_VALUES or self.unwritten_bytes >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """The values put since the last flush, written in one transaction."""
        if self.unwritten:
            rows = [(key, value, self.run_id, mac) for key, (value, mac) in self.unwritten.items()]
            self.unwritten, self.unwritten_bytes = {}, 0
            with self.db:
                self.db.executemany("INSERT OR REPLACE INTO kept (key, value, run, mac) VALUES (?,?,?,?)", rows)

    def close(self) -> None:
        self.flush()
        self.db.commit()
        total = self.db.execute("SELECT COUNT(*) FROM kept").fetchone()[0]
        if total > 2 * len(self.touched) + PRUNE_SLACK:
            touched = self.touched

            def untouched(key) -> bool:
                # Taken as bytes: a key that is not UTF-8 (a damaged ledger, another tool's rows) would stop the
                # whole scan as text. It matches no hash this run made, and goes. A key whose hash another's
                # shares is kept one run longer; nothing this run used is pruned.
                if not isinstance(key, bytes):
                    return True
                return hash(key.decode("utf-8", "surrogateescape")) not in touched

            # Found by reading, which holds no lock against other writers; then deleted a batch a transaction,
            # by rowid, whatever the key is stored as (text, a blob, NULL: a damaged ledger, another tool's
            # rows). A value another process put meanwhile under a stale key (a later run) is left: `run` tells.
            try:
                stale = [(rowid, run) for rowid, key, run in self.db.execute(
                    "SELECT rowid, CAST(key AS BLOB), run FROM kept") if untouched(key)]
            except sqlite3.OperationalError:  # a table without rowids, which perfxl never makes: left as it is
                stale = []
            for start in range(0, len(stale), PRUNE_BATCH):
                with self.db:
                    self.db.executemany("DELETE FROM kept WHERE rowid = ? AND run IS ?", stale[start:start + PRUNE_BATCH])
        self.touched.clear()


class KeptView:
    """What a helper process forked from this one may use as the Kept (perfxl.report renders some sheets in
    one): the values under the key prefixes it was made for, read here before the fork, each checked against
    its seal when it is asked for, as Kept.get checks it. It never touches the ledger: an SQLite connection,
    or SQLite's own locks, copied by a fork from a process where another thread held one, left a helper
    waiting for ever. What it puts and the keys it found valid are collected, for the process that owns the
    ledger to take back (Kept.take_back)."""

    def __init__(self, values: dict[str, tuple[bytes, bytes]], sealer: Sealer):
        self.values, self.sealer = values, sealer
        self.puts: list[tuple[str, bytes]] = []
        self.found: list[str] = []

    def get(self, key: str) -> bytes | None:
        found = self.values.get(key)
        if found is None or not self.sealer.valid(found[1], self.sealer.kept, key, found[0]):
            return None
        self.found.append(key)
        return found[0]

    def prefetch(self, keys) -> None:
        pass

    def put(self, key: str, value: bytes) -> None:
        self.puts.append((key, value))

"""The submission ledger: an SQLite file that records every workbook ever seen by a merge.

- `files`: one row per distinct content (sha256): what it is, its status, and the form data read from it
  (zlib-compressed JSON), so a later merge over the same inbox re-reads nothing that did not change;
- `sightings`: where and when each content was seen (path, size, mtime, ctime, inode), so an unchanged
  file is known by a stat() without even hashing it, and a replacement with its mtime put back is not;
- `runs`: one row per merge, with its counts.

Writes happen in transactions; a merge killed half-way leaves every committed batch intact and nothing
half-written (SQLite's journal), so the next run simply carries on.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import stat
import zlib
from datetime import datetime
from pathlib import Path

from . import __version__
from .errors import OutputError
from .files import atomic_output
from .inbox import FileStat

SCHEMA = """
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
    form        BLOB
);
CREATE TABLE IF NOT EXISTS sightings (
    path        TEXT NOT NULL,
    sha256      TEXT NOT NULL REFERENCES files(sha256),
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    seen_at     TEXT NOT NULL,
    ctime_ns    INTEGER,
    ino         INTEGER,
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
    run         INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS run_settings (
    run         INTEGER PRIMARY KEY REFERENCES runs(id),
    settings    TEXT NOT NULL
);
-- Each roster a merge ran with, as it read it (JSON of its units), by the digest of the roster file: a
-- past merge is rebuilt with its own roster, whatever the file says now.
CREATE TABLE IF NOT EXISTS rosters (
    digest      TEXT PRIMARY KEY,
    units       TEXT NOT NULL
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
-- Portal sessions revoked at logout, kept until they would have expired anyway (then pruned).
CREATE TABLE IF NOT EXISTS portal_revoked (
    nonce       TEXT PRIMARY KEY,
    expires     REAL NOT NULL
);
"""

SQLITE_MAGIC = b"SQLite format 3\x00"
APPLICATION_ID = 0x7078_6C67  # "pxlg" in the SQLite header: this file is a perfxl ledger
OWN_TABLES = {"files", "sightings", "runs", "outcomes", "run_settings", "submissions", "returns", "portal_revoked",
              "sqlite_sequence", "kept", "issued", "rosters"}
PRUNE_SLACK = 1000  # kept values no run touched are pruned once they pass twice the touched ones and this
KEEP_RUNS = 10  # the outcomes of this many recent runs are kept; older ones are derived data, pruned

# Cached form data is only reused by the same reader: a new perfxl version reads files afresh.
# "-p2": problems carry parameters, not rendered text; "-p3": form data carries a follow-up form's declared
# rows; "-p4": those rows as lists, and the v2 declared sheet; "-p5": the stamp's round (perfxl.issued).
# Caches of an older shape are read afresh.
READER_VERSION = f"perfxl-{__version__}-p5"


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def pack(data: dict) -> bytes:
    # surrogatepass: a path that is not UTF-8 (a GBK name left by unzip) survives the round trip
    return zlib.compress(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass"), 3)


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
        data = json.loads(text.decode("utf-8", "surrogatepass"))
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


def check_ledger_file(path: Path) -> None:
    """Refuse, before anything is written, a --db that is not empty and not a perfxl ledger."""
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
    if app_id == APPLICATION_ID:
        return
    if app_id != 0:
        raise _refuse(path, "是其他程序的数据库")
    try:  # a ledger of perfxl 0.1 carries no application id: recognise it by its tables
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise _refuse(path, f"无法作为数据库打开 ({exc})") from None
    if tables and not (tables <= OWN_TABLES and "files" in tables):
        raise _refuse(path, f"是其他程序的数据库（含有表 {', '.join(sorted(tables - OWN_TABLES)[:5])}）")


def _add_columns(db: sqlite3.Connection, table: str, columns: dict[str, str]) -> None:
    """Columns a newer perfxl added to a table, added to a ledger an older one made."""
    have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    for name, kind in columns.items():
        if name not in have:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def is_ledger(path: Path) -> bool:
    """A file that is a perfxl ledger (a lower level's merge result): SQLite, and by its application id or,
    as check_ledger_file also accepts, by its tables."""
    try:
        with open(path, "rb") as fh:
            if not fh.read(16).startswith(SQLITE_MAGIC):
                return False
        check_ledger_file(Path(path))
    except (OSError, OutputError):
        return False
    return True


class Ledger:
    def __init__(self, path: Path, readonly: bool = False, threads: bool = False):
        """Open (creating it if need be) the ledger; `readonly` for the merge's workers, which only look up;
        `threads` when the caller shares it between threads under its own lock (the portal)."""
        self.path = Path(path)
        if readonly:
            try:
                self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
            except sqlite3.Error as exc:
                raise OutputError(f"无法打开报送台账 (cannot open the ledger) {self.path}: {exc}") from None
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"无法创建台账所在目录 {self.path.parent}: {exc.strerror or exc}") from None
        check_ledger_file(self.path)
        try:
            self.db = sqlite3.connect(self.path, timeout=30, check_same_thread=not threads)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            _add_columns(self.db, "sightings", {"ctime_ns": "INTEGER", "ino": "INTEGER"})
            self.db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            self.db.commit()
        except sqlite3.Error as exc:
            raise OutputError(f"无法打开报送台账 (cannot open the ledger) {self.path}: {exc}") from None

    def close(self) -> None:
        self.db.close()

    # -- lookups ------------------------------------------------------------------------------------

    def sightings(self) -> dict[tuple[str, FileStat], str]:
        """Every (path, file stat) seen, with its content's sha256 (the newest sighting wins): one query for
        a whole inbox instead of one per file. A sighting of an older ledger, without ctime and inode,
        matches no file: such a file is read once more."""
        return {(path, FileStat(size, mtime, ctime, ino)): sha for path, size, mtime, ctime, ino, sha in self.db.execute(
            "SELECT path, size, mtime_ns, ctime_ns, ino, sha256 FROM sightings WHERE ctime_ns IS NOT NULL "
            "ORDER BY seen_at")}

    def cached_form(self, sha: str) -> dict | None:
        """The form data this reader version stored for this content; None if there is none or it cannot
        be used (the file is then read again)."""
        row = self.db.execute("SELECT form FROM files WHERE sha256=? AND reader=? AND form IS NOT NULL",
                              (sha, READER_VERSION)).fetchone()
        try:
            return unpack(row[0]) if row else None
        except StoredDataError:
            return None

    def cached_rejection(self, sha: str):
        """The problem that rejected this content when this reader version last read it, or None."""
        from .problems import Problem

        row = self.db.execute("SELECT status, problems FROM files WHERE sha256=? AND reader=? AND form IS NULL",
                              (sha, READER_VERSION)).fetchone()
        if row and isinstance(row[0], str) and row[0].startswith("rejected:"):
            try:
                return Problem.from_dict(json.loads(row[1])[0])
            except (TypeError, ValueError, KeyError, IndexError, AttributeError, RecursionError):
                return None  # not what this ledger would have written: read the file again
        return None

    # -- writes: the caller commits in batches ------------------------------------------------------

    def record(self, sha: str, stat: FileStat, path: str, summary: dict, form_blob: bytes | None) -> None:
        """`summary`: template, version, year, unit_code, unit_name, status, errors, warnings, read_error
        and problems (JSON text) of the checked form."""
        s = summary
        status = f"rejected:{s['read_error']}" if s["read_error"] else s["status"]
        self.db.execute(
            "INSERT INTO files (sha256, size, first_seen, template, version, year, unit_code, unit_name, status, "
            "errors, warnings, problems, reader, form) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(sha256) DO UPDATE SET template=excluded.template, version=excluded.version, "
            "year=excluded.year, unit_code=excluded.unit_code, unit_name=excluded.unit_name, status=excluded.status, "
            "errors=excluded.errors, warnings=excluded.warnings, problems=excluded.problems, reader=excluded.reader, "
            "form=COALESCE(excluded.form, files.form)",
            (sha, stat.size, _now(), s["template"], s["version"], s["year"], s["unit_code"], s["unit_name"],
             status, s["errors"], s["warnings"], s["problems"], READER_VERSION, form_blob))
        self.db.execute("INSERT OR REPLACE INTO sightings (path, sha256, size, mtime_ns, ctime_ns, ino, seen_at) "
                        "VALUES (?,?,?,?,?,?,?)", (path, sha, *stat, _now()))

    def kept(self, run_id: int) -> Kept:
        """What this run may reuse from earlier ones, and keep for later ones."""
        return Kept(self, run_id)

    def start_run(self) -> int:
        with self.db:
            cur = self.db.execute("INSERT INTO runs (started) VALUES (?)", (_now(),))
        return cur.lastrowid

    def record_outcomes(self, run_id: int, files: list, settings: dict) -> None:
        """What this run decided for every file, and the settings it ran with: the public API rebuilds
        the summary tables from these without the inbox."""
        names = [f.name for f in dataclasses.fields(files[0])] if files else []
        with self.db:  # not dataclasses.asdict: a Seen is flat, and asdict deep-copies 10,000 of them
            self.db.executemany("INSERT OR REPLACE INTO outcomes (run, path, sha256, outcome, seen) VALUES (?,?,?,?,?)",
                                ((run_id, s.path, s.sha, s.outcome, json.dumps(
                                    {name: getattr(s, name) for name in names}, ensure_ascii=False)) for s in files))
            self.db.execute("INSERT OR REPLACE INTO run_settings (run, settings) VALUES (?,?)",
                            (run_id, json.dumps(settings, ensure_ascii=False, default=str)))
            self.db.execute("DELETE FROM outcomes WHERE run NOT IN (SELECT id FROM runs ORDER BY id DESC LIMIT ?)",
                            (KEEP_RUNS,))

    def keep_roster(self, digest: str, units: list) -> None:
        """Keep a roster's units under the digest of its file (once: a re-merge with the same roster writes
        nothing)."""
        if self.db.execute("SELECT 1 FROM rosters WHERE digest=?", (digest,)).fetchone() is None:
            with self.db:
                self.db.execute("INSERT INTO rosters (digest, units) VALUES (?,?)",
                                (digest, json.dumps([u.to_dict() for u in units], ensure_ascii=False)))

    def kept_roster(self, digest) -> list | None:
        """The units of a roster kept by `keep_roster` as dicts, or None."""
        row = self.db.execute("SELECT units FROM rosters WHERE digest=?", (str(digest),)).fetchone()
        try:
            units = json.loads(row[0]) if row else None
        except (TypeError, ValueError, RecursionError):
            return None
        return units if isinstance(units, list) else None

    def last_run(self) -> int | None:
        """The newest finished run that recorded its outcomes."""
        row = self.db.execute("SELECT r.id FROM runs r WHERE r.finished IS NOT NULL AND EXISTS "
                              "(SELECT 1 FROM run_settings s WHERE s.run = r.id) ORDER BY r.id DESC LIMIT 1").fetchone()
        return row[0] if row else None

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

    def store_units(self) -> dict[str, str]:
        """The portal's record of who handed in each stored file: {real path: unit code}, for the files it
        accepted (status valid or errors) under this ledger's folder."""
        folder = self.path.resolve().parent
        out = {}
        for unit, stored in self.db.execute("SELECT unit_code, stored FROM submissions WHERE status IN ('valid', 'errors')"):
            if isinstance(stored, str) and isinstance(unit, str):
                out[os.path.normcase(os.path.realpath(folder / stored))] = unit
        return out

    def returns(self, unit_code: str | None = None) -> list[dict]:
        sql = "SELECT * FROM returns" + (" WHERE unit_code=?" if unit_code is not None else "") + " ORDER BY id DESC"
        cur = self.db.execute(sql, (unit_code,) if unit_code is not None else ())
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def finish_run(self, run_id: int, output: str, counts: dict) -> None:
        with self.db:
            self.db.execute("UPDATE runs SET finished=?, output=?, files_in=?, files_read=?, from_ledger=?, merged=?, "
                            "rejected=?, duplicate=?, superseded=? WHERE id=?",
                            (_now(), output, counts["files_in"], counts["read"], counts["from_ledger"], counts["merged"],
                             counts["rejected"], counts["duplicate"], counts["superseded"], run_id))


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
        rosters = lower.db.execute("SELECT * FROM rosters WHERE digest=?", (str(digest),)).fetchall()
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
                    out.db.executemany("INSERT INTO rosters VALUES (?,?)", rosters)
                    for start in range(0, len(merged), 500):
                        batch = merged[start:start + 500]
                        rows = lower.db.execute(f"SELECT * FROM files WHERE sha256 IN ({','.join('?' * len(batch))})",
                                                batch).fetchall()
                        if rows:
                            out.db.executemany(f"INSERT INTO files VALUES ({','.join('?' * len(rows[0]))})", rows)
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
    committed in batches. What no later merge can use is pruned at `close`: once the values this run did
    not touch outnumber those it did, they go (touching costs nothing; marking each one used would cost
    a write per form on every re-merge)."""

    def __init__(self, ledger: Ledger, run_id: int):
        self.db = ledger.db
        self.run_id = run_id
        self.touched: set[str] = set()
        self.pending = 0
        self.ahead: dict[str, bytes] = {}

    def prefetch(self, keys: list[str]) -> None:
        """Look up these keys together (one query per few hundred, not one each): `get` takes them from here."""
        for start in range(0, len(keys), 500):
            batch = keys[start:start + 500]
            self.ahead.update(self.db.execute(
                f"SELECT key, value FROM kept WHERE key IN ({','.join('?' * len(batch))})", batch))

    def get(self, key: str) -> bytes | None:
        value = self.ahead.pop(key, None)
        if value is None:
            row = self.db.execute("SELECT value FROM kept WHERE key=?", (key,)).fetchone()
            value = row[0] if row else None
        if value is not None:
            self.touched.add(key)
        return value

    def put(self, key: str, value: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO kept (key, value, run) VALUES (?,?,?)", (key, value, self.run_id))
        self.touched.add(key)
        self.pending += 1
        if self.pending >= 500:
            self.db.commit()
            self.pending = 0

    def close(self) -> None:
        self.db.commit()
        total = self.db.execute("SELECT COUNT(*) FROM kept").fetchone()[0]
        if total > 2 * len(self.touched) + PRUNE_SLACK:
            with self.db:
                self.db.execute("CREATE TEMP TABLE IF NOT EXISTS touched (key TEXT PRIMARY KEY)")
                self.db.execute("DELETE FROM touched")
                self.db.executemany("INSERT OR IGNORE INTO touched VALUES (?)", ((k,) for k in self.touched))
                self.db.execute("DELETE FROM kept WHERE key NOT IN (SELECT key FROM touched)")
        self.touched.clear()

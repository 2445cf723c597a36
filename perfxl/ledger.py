"""The submission ledger: an SQLite file that records every workbook ever seen by a merge.

- `files`: one row per distinct content (sha256): what it is, its status, and the form data read from it
  (zlib-compressed JSON), so a later merge over the same inbox re-reads nothing that did not change;
- `sightings`: where and when each content was seen (path, size, mtime), so an unchanged file is known
  by a stat() without even hashing it;
- `runs`: one row per merge, with its counts.

Writes happen in transactions; a merge killed half-way leaves every committed batch intact and nothing
half-written (SQLite's journal), so the next run simply carries on.
"""

from __future__ import annotations

import json
import sqlite3
import zlib
from datetime import datetime
from pathlib import Path

from . import __version__

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
"""

# Cached form data is only reused by the same reader: a new perfxl version reads files afresh.
READER_VERSION = f"perfxl-{__version__}"


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def pack(data: dict) -> bytes:
    return zlib.compress(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8"), 3)


def unpack(blob: bytes) -> dict:
    return json.loads(zlib.decompress(blob).decode("utf-8"))


class Ledger:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.db.commit()

    def close(self) -> None:
        self.db.close()

    # -- lookups ------------------------------------------------------------------------------------

    def known_sha(self, path: str, size: int, mtime_ns: int) -> str | None:
        row = self.db.execute("SELECT sha256 FROM sightings WHERE path=? AND size=? AND mtime_ns=? "
                              "ORDER BY seen_at DESC LIMIT 1", (path, size, mtime_ns)).fetchone()
        return row[0] if row else None

    def cached_form(self, sha: str) -> dict | None:
        row = self.db.execute("SELECT form FROM files WHERE sha256=? AND reader=? AND form IS NOT NULL",
                              (sha, READER_VERSION)).fetchone()
        return unpack(row[0]) if row else None

    def cached_rejection(self, sha: str) -> tuple[str, str] | None:
        row = self.db.execute("SELECT status, problems FROM files WHERE sha256=? AND reader=? AND form IS NULL",
                              (sha, READER_VERSION)).fetchone()
        if row and row[0] and row[0].startswith("rejected:"):
            problem = json.loads(row[1])[0]
            return problem["code"], problem["message"]
        return None

    # -- writes: the caller commits in batches ------------------------------------------------------

    def record(self, sha: str, size: int, path: str, mtime_ns: int, summary: dict, form_blob: bytes | None) -> None:
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
            (sha, size, _now(), s["template"], s["version"], s["year"], s["unit_code"], s["unit_name"],
             status, s["errors"], s["warnings"], s["problems"], READER_VERSION, form_blob))
        self.db.execute("INSERT OR REPLACE INTO sightings (path, sha256, size, mtime_ns, seen_at) VALUES (?,?,?,?,?)",
                        (path, sha, size, mtime_ns, _now()))

    def start_run(self) -> int:
        with self.db:
            cur = self.db.execute("INSERT INTO runs (started) VALUES (?)", (_now(),))
        return cur.lastrowid

    def finish_run(self, run_id: int, output: str, counts: dict) -> None:
        with self.db:
            self.db.execute("UPDATE runs SET finished=?, output=?, files_in=?, files_read=?, from_ledger=?, merged=?, "
                            "rejected=?, duplicate=?, superseded=? WHERE id=?",
                            (_now(), output, counts["files_in"], counts["read"], counts["from_ledger"], counts["merged"],
                             counts["rejected"], counts["duplicate"], counts["superseded"], run_id))

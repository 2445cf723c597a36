"""What perfxl issued: the record a follow-up form is checked against, never the form's own copy.

When `perfxl generate … --from LEDGER` writes follow-up forms (self-evaluation, monitoring), every form of
that run belongs to one *round*, named by a random id in the form's stamp. What each unit was issued (per
project: the prefilled fields, and every indicator row with its target and 分值) is recorded in
`下发记录.sqlite` beside the forms, a file in the ledger's format (table `issued`). A returned form is then
checked against that record, row by row by each row's identity, whatever its hidden sheets say.

Where the record is found:
- on the machine that generated the forms, by the round the stamp names: generating registers the round
  in a small index in the user's data folder (`PERFXL_HOME`, else %LOCALAPPDATA%\\perfxl or
  ~/.local/share/perfxl), which maps it to the record file; no option is needed;
- elsewhere, `--issued FILE` names the record file (or a ledger or export holding the table).
A form whose stamp lost its round is looked up by its unit among those records, newest round first.

The record file and the index are perfxl's own, in folders of the bureau; what they hold is read as data
and checked for its shape, so a damaged one costs the forms it should check (`issued-missing`), never
the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from .errors import OutputError
from .files import home, write_bytes_atomic  # home: perfxl's folder for the user

RECORD_FILE = "下发记录.sqlite"
INDEX_FILE = "rounds.json"
ROW_KEYS = ("row", "group", "level1", "level2", "level3", "target", "points")
_ROW_KEY_SET = frozenset(ROW_KEYS)
_ROW_VALUE_TYPES = frozenset({str, int, float})
_FIELD_VALUE_TYPES = frozenset({str, int, float, type(None)})


@dataclass(frozen=True)
class IssuedProject:
    """One project of a follow-up form as it was issued: its sheet, its prefilled fields (locked on the
    form), and its indicator rows (ROW_KEYS) in order."""

    sheet: str
    fields: dict[str, Any]
    rows: tuple[dict[str, Any], ...]

    def to_data(self) -> dict:
        return {"sheet": self.sheet, "fields": self.fields, "rows": [dict(r) for r in self.rows]}

    @classmethod
    def from_data(cls, data: Any) -> IssuedProject:
        if not (isinstance(data, dict) and isinstance(data.get("sheet"), str) and isinstance(data.get("fields"), dict)
                and isinstance(data.get("rows"), list)):
            raise ValueError("an issued project of another shape")
        rows = []
        keys = _ROW_KEY_SET
        for row in data["rows"]:
            # exact types, as JSON gives them (a bool is no number here); `isinstance` with a union of types
            # cost a round of 10,000 units' merge 1.4 s over its 2.2 million values
            if not (type(row) is dict and row.keys() == keys
                    and all(type(v) in _ROW_VALUE_TYPES for v in row.values())):
                raise ValueError("an issued row of another shape")
            rows.append(row)
        if not all(type(v) in _FIELD_VALUE_TYPES for v in data["fields"].values()):
            raise ValueError("an issued field of another shape")
        return cls(data["sheet"], dict(data["fields"]), tuple(rows))


@dataclass(frozen=True)
class IssuedForm:
    """What one unit was issued in one round."""

    round: str
    unit_code: str
    template: str
    year: int
    projects: tuple[IssuedProject, ...]
    digest: str  # of the projects as recorded: a check kept in a ledger names the record it was made against
    text: str = ""  # the projects as recorded, whose sha256 the digest is
    issued_at: str = ""

    def record_row(self) -> tuple:
        """The row of the `issued` table this came from, as it was: a merge keeps it in its own ledger."""
        return (self.round, self.unit_code, self.template, self.year, self.issued_at, self.text, self.digest)


def new_round() -> str:
    return os.urandom(16).hex()


def _projects_text(projects: list[IssuedProject]) -> str:
    return json.dumps([p.to_data() for p in projects], ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def record_round(folder: Path, round_id: str, template: str, year: int,
                 issued: Iterable[tuple[str, list[IssuedProject]]]) -> Path:
    """Add one round (unit code → its projects, taken one unit at a time) to the record file in `folder`, and
    register the round on this machine. Rounds already recorded there stay: forms of an earlier run may
    still come back."""
    from .ledger import Ledger  # the ledger's format, application id and refusal of foreign files

    path = Path(folder) / RECORD_FILE
    ledger = Ledger(path)
    rows = []
    try:
        now = datetime.now().isoformat(timespec="seconds")
        with ledger.db:
            for unit_code, projects in issued:
                text = _projects_text(projects)
                digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
                rows.append((unit_code, digest))
                ledger.db.execute("INSERT INTO issued (round, unit_code, template, year, issued_at, projects, digest) "
                                  "VALUES (?,?,?,?,?,?,?)", (round_id, unit_code, template, year, now, text, digest))
        ledger.db.execute("PRAGMA journal_mode=DELETE")  # one file beside the forms, copied as it is
    except sqlite3.Error as exc:
        raise OutputError(f"无法写入下发记录 {path}: {exc}") from None
    finally:
        ledger.close()
    register(round_id, path, template, year, round_digest(rows))
    return path


def round_digest(rows) -> str:
    """One digest of a whole round: each unit's code and the digest of what it was issued. Kept in this
    machine's index, it tells a record file changed since it was written (the forms folder is often a
    shared one) from the one perfxl wrote."""
    text = "".join(f"{code}\t{digest}\n" for code, digest in sorted(rows))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# ----------------------------------------------------------------------------------------------------
# This machine's index of rounds
# ----------------------------------------------------------------------------------------------------

def _index() -> dict[str, dict]:
    try:
        data = json.loads((home() / INDEX_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, dict)
            and isinstance(v.get("record"), str)}


def register(round_id: str, record: Path, template: str, year: int, digest: str) -> None:
    """Remember where a round's record is, and its digest. Not being able to (a read-only home) only means
    that merges of its forms need `--issued`: said, never fatal."""
    index = {k: v for k, v in _index().items() if Path(v["record"]).is_file()}  # records deleted since: forgotten
    index[round_id] = {"record": str(Path(record).resolve()), "template": template, "year": year, "digest": digest,
                       "registered": datetime.now().isoformat(timespec="seconds")}
    try:
        home().mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(home() / INDEX_FILE, json.dumps(index, ensure_ascii=False, indent=1).encode("utf-8"))
    except (OSError, OutputError):
        pass


def registered_records(template: str | None = None, year: int | None = None,
                       index: dict[str, dict] | None = None) -> list[Path]:
    """The record files this machine registered (of one template and year, when given), newest first."""
    rows = sorted((_index() if index is None else index).values(), key=lambda v: str(v.get("registered", "")),
                  reverse=True)
    out: list[Path] = []
    for v in rows:
        if (template is None or v.get("template") == template) and (year is None or v.get("year") == year):
            path = Path(v["record"])
            if path not in out:
                out.append(path)
    return out


# ----------------------------------------------------------------------------------------------------
# Looking a form up
# ----------------------------------------------------------------------------------------------------

# A form of an earlier round than the unit's newest: checked against its own round's record, with a warning.
EARLIER_ROUND = "issued-earlier-round"
# What IssuedBook.find may say of a form's record besides nothing (missing, altered, of an earlier round)
FINDINGS = frozenset({EARLIER_ROUND, "issued-missing", "issued-altered"})


class IssuedBook:
    """The records a check may use: the files named (`--issued`), then this machine's registered rounds.
    Opened read-only, lazily, once per process."""

    def __init__(self, named: tuple[str, ...] = ()):
        self.named = tuple(Path(p) for p in named)
        self._db: dict[Path, tuple[sqlite3.Connection | None, tuple | None]] = {}  # (connection, file stamp)
        self._rounds: dict[str, dict] | None = None
        self._rounds_stamp: tuple | None = None
        self._digests: dict[tuple[Path, str], str | None] = {}
        # per record file: SQLite's data_version when read, and (template, year) → unit → its newest rowid
        self._newest_rows: dict[Path, tuple[int, dict[tuple[str, int], dict[str, int]] | None]] = {}

    def lookup(self, round_id: str | None, unit_code: str | None, template: str | None,
               year: int | None, parse: bool = True) -> IssuedForm | None:
        """The record a form is checked against, if one can be used (see `find`)."""
        record, problem = self.find(round_id, unit_code, template, year, parse)
        return record if problem in (None, EARLIER_ROUND) else None

    def find(self, round_id: str | None, unit_code: str | None, template: str | None,
             year: int | None, parse: bool = True) -> tuple[IssuedForm | None, str | None]:
        """The record of what was issued to this unit for this form, and what is wrong with it:
        - by the stamp's round, of this template and year (a round of another year is no record of this
          form); else, a stamp that lost its round, the unit's newest round of this template and year;
        - `issued-missing`: none; `issued-altered`: the record file no longer holds what this machine wrote
          into it (its round's digest in the index differs): not used; `issued-earlier-round` (a warning,
          with the record): the unit was issued a newer form of this template and year since.
        `parse=False` for a caller that wants only the record's digest or its row as stored: its projects are
        then not read (left empty). A text that matches its digest is the text a check once read whole, so
        a digest compared with a kept one says what a full lookup would: a re-merge of 10,000 self-evaluation
        forms looked each record up twice, reading its rows each time (2 s of its 5)."""
        if not unit_code or not template:
            return None, "issued-missing"
        index = self._index()
        sources = list(self.named)
        where = "unit_code=? AND template=?" + (" AND year=?" if year else "")
        args: tuple = (unit_code, template) + ((year,) if year else ())
        if round_id:
            entry = index.get(round_id)
            if entry and Path(entry["record"]) not in sources:
                sources.append(Path(entry["record"]))
            where, args = "round=? AND " + where, (round_id, *args)
        else:
            sources += [p for p in registered_records(template, year, index) if p not in sources]
        for path in sources:
            if round_id or not year:  # by its round (the key), or a form of no year (rare): one query
                rowid, found = self._row(path, where, args, parse)
            else:
                rowid, found = self._newest(path, unit_code, template, year, parse)
            if found is None:
                continue
            entry = index.get(found.round)
            if entry and entry.get("digest") and self._round_digest(path, found.round) != entry["digest"]:
                return None, "issued-altered"
            newest = None
            for p in sources:  # the first file whose newest row of the unit's form is usable
                newest_rowid = rowid if (p, found.year) == (path, year) and not round_id else \
                    self._newest_rowid(p, unit_code, template, found.year)  # found as the newest just now
                if newest_rowid is not None:
                    newest = found if (p, newest_rowid) == (path, rowid) else \
                        self._newest(p, unit_code, template, found.year, parse)[1]
                    if newest is not None:
                        break
            return found, (EARLIER_ROUND if newest and newest.round != found.round else None)
        return None, "issued-missing"

    def _newest(self, path: Path, unit_code: str, template: str, year: int,
                parse: bool) -> tuple[int | None, IssuedForm | None]:
        """The unit's newest row of this template and year in one record file, and the record it holds if that
        can be used. The row is asked for by its rowid *and* by what it must be, so that a file replaced
        between the two steps (forms generated again while a merge runs) gives nothing, never another
        unit's row."""
        rowid = self._newest_rowid(path, unit_code, template, year)
        if rowid is None:
            return None, None
        return rowid, self._row(path, "rowid=? AND unit_code=? AND template=? AND year=?",
                                (rowid, unit_code, template, year), parse)[1]

    def _newest_rowid(self, path: Path, unit_code: str, template: str, year: int) -> int | None:
        """The rowid of the unit's newest record of this template and year in one record file, as
        `... ORDER BY issued_at DESC, rowid DESC LIMIT 1` finds it. The table is keyed by round, so that query
        read the whole file for every form checked: 11 ms a form against a round of 10,000 units (62 MB),
        its time growing with the round. The newest row of every unit is now found in one ordered pass over
        the small columns, once per record file and change to it."""
        db = self._connect(path)
        if db is None:
            return None
        try:
            # a round written into the file since (by another process, within the file stamp's resolution)
            # is told by SQLite's own counter of other connections' commits
            version = db.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            return None
        kept = self._newest_rows.get(path)
        if kept is None or kept[0] != version:
            kept = self._newest_rows[path] = (version, _newest_rows(db))  # a file that cannot be read: once
        rows = kept[1]
        if rows is _BY_QUERY:  # values SQLite compares by its own rules: it is asked, form by form
            try:
                found = db.execute("SELECT rowid FROM issued WHERE unit_code=? AND template=? AND year=? "
                                   "ORDER BY issued_at DESC, rowid DESC LIMIT 1",
                                   (unit_code, template, year)).fetchone()
            except sqlite3.Error:
                return None
            return found[0] if found else None
        return rows.get((template, year), {}).get(unit_code) if rows is not None else None

    def units_issued(self, template: str, year: int | None) -> set[str] | None:
        """The units a form of this template (and year) was issued to, in any round the records named and
        this machine's registered ones hold; None when no record of it can be found (then nothing is known
        of who should hand in)."""
        index = self._index()
        sources = list(self.named) + [p for p in registered_records(template, year, index) if p not in self.named]
        where = "template=?" + (" AND year=?" if year else "")
        args = (template,) + ((year,) if year else ())
        found: set[str] | None = None
        for path in sources:
            db = self._connect(path)
            if db is None:
                continue
            try:
                rows = db.execute(f"SELECT round, unit_code FROM issued WHERE {where}", args).fetchall()
            except sqlite3.Error:
                continue
            for round_id, unit_code in rows:
                entry = index.get(str(round_id))
                if entry and entry.get("digest") and self._round_digest(path, str(round_id)) != entry["digest"]:
                    continue  # a round changed since this machine wrote it says nothing of who was issued a form
                if found is None:
                    found = set()
                found.add(str(unit_code))  # a new set a row (`found | {code}`) took 8.8 s for 10,000 units
        return found

    def _index(self) -> dict[str, dict]:
        """This machine's index of rounds, read again only when it changed (a round generated meanwhile)."""
        try:
            st = (home() / INDEX_FILE).stat()
            stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
        except OSError:
            stamp = None
        if self._rounds is None or stamp != self._rounds_stamp:
            self._rounds, self._rounds_stamp = _index(), stamp
        return self._rounds

    def _round_digest(self, path: Path, round_id: str) -> str | None:
        key = (path, round_id)
        if key not in self._digests:
            db = self._connect(path)
            try:
                rows = db.execute("SELECT unit_code, digest FROM issued WHERE round=?", (round_id,)).fetchall()
                self._digests[key] = round_digest((str(c), str(d)) for c, d in rows)
            except (sqlite3.Error, AttributeError):
                self._digests[key] = None
        return self._digests[key]

    def _connect(self, path: Path) -> sqlite3.Connection | None:
        """The record file read-only (perfxl.ledger.open_readonly: its schema only perfxl's, every query
        bounded in time), or None for one that cannot be used: its forms are then unchecked, said as such.
        A connection is kept while the file is the one it opened: a forms folder generated again (the demo,
        a bureau's second run) puts a new record at the same path, and the old connection would still read
        the deleted file's rounds."""
        from .ledger import open_readonly

        try:
            st = path.stat()
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = None
        kept = self._db.get(path)
        if kept is not None and kept[1] == stamp:
            return kept[0]
        if kept is not None and kept[0] is not None:
            kept[0].close()
        self._digests = {k: v for k, v in self._digests.items() if k[0] != path}
        self._newest_rows.pop(path, None)
        db = None
        try:
            if stamp is not None:
                db = open_readonly(path)
                if not _declared_as_perfxl_declares(db):
                    raise sqlite3.DatabaseError("a record table declared otherwise")
                db.execute("SELECT 1 FROM issued LIMIT 1").fetchall()
        except (sqlite3.Error, OutputError):
            if db is not None:
                db.close()
            db = None
        self._db[path] = (db, stamp)
        return db

    def _row(self, path: Path, where: str, args: tuple, parse: bool) -> tuple[int | None, IssuedForm | None]:
        """The newest row that answers `where`: its rowid, and the record it holds if that can be used."""
        db = self._connect(path)
        if db is None:
            return None, None
        try:
            row = db.execute(f"SELECT rowid, round, unit_code, template, year, projects, digest, issued_at FROM issued "
                             f"WHERE {where} ORDER BY issued_at DESC, rowid DESC LIMIT 1", args).fetchone()
        except sqlite3.Error:
            return None, None
        if row is None:
            return None, None
        return row[0], _issued_form(*row[1:], parse=parse)

    def close(self) -> None:
        for db, _ in self._db.values():
            if db is not None:
                db.close()
        self._db.clear()


_BOOKS: dict[tuple[str, ...], IssuedBook] = {}


def book(named: tuple[str, ...] = ()) -> IssuedBook:
    """This process's book for these named records (a merge's workers each keep one)."""
    if named not in _BOOKS:
        _BOOKS[named] = IssuedBook(named)
    return _BOOKS[named]


def _issued_form(round_id, unit_code, template, year, text, digest, issued_at, parse: bool) -> IssuedForm | None:
    """A record row as a record, if it can be used: one that does not match its own digest was changed since.
    Its projects read only when `parse`."""
    if not (isinstance(text, str) and type(year) is int
            and hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest() == digest):
        return None
    if not parse:
        return IssuedForm(str(round_id), str(unit_code), str(template), year, (), digest, text, str(issued_at))
    try:
        projects = tuple(IssuedProject.from_data(p) for p in json.loads(text))
    except (TypeError, ValueError, RecursionError):
        return None
    return IssuedForm(str(round_id), str(unit_code), str(template), year, projects, digest, text, str(issued_at))


_BY_QUERY: dict = {}  # a record whose rows the one pass cannot stand for (see _newest_rows)


def _newest_rows(db: sqlite3.Connection) -> dict[tuple[str, int], dict[str, int]] | None:
    """(template, year) → unit code → the rowid of its newest row, from one ordered pass (ascending, so the
    last row of a key is the one `ORDER BY issued_at DESC, rowid DESC` puts first). A text that is not UTF-8
    equals no code a form holds (SQLite compares the bytes), so such a row is left out. `_BY_QUERY` when the
    file holds a value of another type than perfxl writes (a code stored as a number, a year as text: SQLite
    compares those by the column's affinity) or is not UTF-8: the per-form query then answers, exactly as
    before, if slowly. None when the file cannot be read."""
    rows: dict[tuple[str, int], dict[str, int]] = {}
    names: dict[bytes, str | None] = {}  # each template's bytes decoded once
    try:
        if str(db.execute("PRAGMA encoding").fetchone()[0]).upper() != "UTF-8":
            return _BY_QUERY
        for unit, form, year, rowid, as_written in db.execute(
                "SELECT CAST(unit_code AS BLOB), CAST(template AS BLOB), year, rowid, "
                "typeof(unit_code)='text' AND typeof(template)='text' AND typeof(year)='integer' "
                "FROM issued ORDER BY issued_at, rowid"):
            if not as_written:
                return _BY_QUERY
            if form not in names:
                try:
                    names[form] = form.decode("utf-8")
                except UnicodeDecodeError:
                    names[form] = None
            try:
                code = unit.decode("utf-8")
            except UnicodeDecodeError:
                continue
            if names[form] is not None:
                rows.setdefault((names[form], year), {})[code] = rowid
    except sqlite3.Error:
        return None
    return rows


@cache
def _issued_declaration() -> str:
    """The record table as perfxl declares it (in SQLite's words, whitespace aside)."""
    from .ledger import SCHEMA

    db = sqlite3.connect(":memory:")
    try:
        db.executescript(SCHEMA)
        (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name='issued'").fetchone()
    finally:
        db.close()
    return " ".join(sql.split())


def _declared_as_perfxl_declares(db: sqlite3.Connection) -> bool:
    """A record file's table as perfxl wrote it. The ledger's check of a foreign file lets other column types
    and collations through, and a column of its own named rowid: each makes SQLite compare codes otherwise
    than the lookups here do (a NOCASE code, a numeric '1'), or a row be named by another's rowid."""
    row = db.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name='issued'").fetchone()
    return row is not None and isinstance(row[0], str) and " ".join(row[0].split()) == _issued_declaration()

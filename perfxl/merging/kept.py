"""What a merge keeps in its ledger as results come in, and takes back from it: each file's sighting and
status, its check under these settings (a re-merge of known content checks nothing again), and the roster
it read."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from perfxl import datajson
from perfxl.cachekeys import check_key
from perfxl.issued import EARLIER_ROUND
from perfxl.issued import book as issued_book
from perfxl.ledger import Ledger
from perfxl.pipeline import CheckOptions
from perfxl.problems import RETRIED_REJECTIONS
from perfxl.records import Seen
from perfxl.roster import Unit

from .worker import FileResult, seen_of


def collect(results: Iterable[FileResult], seen: dict[str, Seen], spool, ledger, progress, reader: str,
            keep=(None, None, None)) -> None:
    """Each result into `seen` (its checked form spooled), the ledger (as read under `reader`,
    cachekeys.read_key), and the kept checks."""
    pending_writes = 0
    kept, fingerprint, roster = keep
    for r in results:
        summary = r.summary
        # the next merge with these settings skips the check; not a rejection that may not happen again
        if (kept is not None and r.sha and r.source != "rollup"
                and summary["read_error"] not in RETRIED_REJECTIONS):
            kept.put(check_key(fingerprint, r.sha, r.path), datajson.dumps(
                {**{k: summary[k] for k in _SEEN_FIELDS}, "roster_entry": entry(roster, summary["unit_code"]),
                 "issued_finding": summary["issued_finding"]}))
        if kept is not None:  # what the form adds to the sheets, made where it was read
            for key, value in r.kept:
                kept.put(key, value)
        offset = spool.tell()
        spool.write(r.checked)
        seen[r.path] = s = seen_of(r.path, r.sha, r.stat, r.source, summary, offset, len(r.checked))
        if ledger and r.sha:  # the sighting and the status are recorded even for a file taken from the ledger
            ledger.record_later(r.sha, r.stat, s.path, summary, r.form_blob, reader)
            pending_writes += 1
            if pending_writes >= 200:
                ledger.flush()
                pending_writes = 0
        if progress:
            progress(1)
    if ledger:
        ledger.flush()


def keep_roster(ledger: Ledger, roster: Path | None, units: list[Unit] | None) -> str | None:
    """The digest under which the ledger keeps the roster this merge read (see Ledger.keep_roster)."""
    if roster is None or units is None:
        return None
    try:
        digest = hashlib.sha256(Path(roster).read_bytes()).hexdigest()
    except OSError:  # gone since it was read: kept under the digest of what was read
        digest = hashlib.sha256(json.dumps([u.to_dict() for u in units], ensure_ascii=False).encode()).hexdigest()
    ledger.keep_roster(digest, units)
    return digest


def entry(roster: dict | None, code: str | None) -> str:
    """A unit's roster entry as a form's check saw it."""
    return repr(roster.get(code or "")) if roster is not None else "-"


_SEEN_FIELDS = ("template", "year", "unit_code", "unit_name", "status", "errors", "warnings", "read_error",
                "project_names", "indicator_rows", "round", "issued", "signature", "checked")

# What a kept check holds, and the types each may have: a kept value of any other shape is not used.
_CHECK_TYPES = {"template": (str, type(None)), "year": (int, type(None)), "unit_code": (str, type(None)),
                "unit_name": (str, type(None)), "status": (str,), "errors": (int,), "warnings": (int,),
                "read_error": (str, type(None)), "project_names": (list,), "indicator_rows": (int,),
                "round": (str, type(None)), "issued": (str, type(None)), "signature": (str, type(None)),
                "checked": (str,), "roster_entry": (str,), "issued_finding": (str,)}


def kept_check(kept, fingerprint: str, sha: str, path: str, roster: dict | None, check: CheckOptions) -> dict | None:
    """The summary of this content's check under these settings, at a path of this extension, as an earlier
    merge kept it; None when there is none, or it is of another shape, or the unit's roster entry or issued
    record changed since."""
    blob = kept.get(check_key(fingerprint, sha, path))
    if blob is None:
        return None
    try:
        summary = datajson.loads(blob)
    except (ValueError, RecursionError):
        return None
    if not (isinstance(summary, dict) and summary.keys() == _CHECK_TYPES.keys()
            and all(type(summary[k]) in types for k, types in _CHECK_TYPES.items())
            and all(type(name) is str for name in summary["project_names"])):
        return None  # not what a merge keeps: the file is checked again
    if summary.pop("roster_entry") != entry(roster, summary["unit_code"]):
        return None  # the unit's roster entry changed since: check it again
    finding = summary.pop("issued_finding")
    if summary["issued"] is not None:  # a follow-up form: checked against a record that must still be the one
        record, problem = issued_book(check.issued).find(summary["round"], summary["unit_code"], summary["template"],
                                                         summary["year"], parse=False)  # its digest is all asked
        if record is None or problem not in (None, EARLIER_ROUND):
            record = None
        if (record.digest if record else "") != summary["issued"]:
            return None
        if (problem or "") != finding:  # a newer round issued to the unit since (or taken back), or the record
            return None  # altered, then gone: each checked otherwise (issued-altered is not issued-missing)
    summary["project_names"] = tuple(summary["project_names"])
    return summary

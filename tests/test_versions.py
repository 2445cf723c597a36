"""Which version of a unit's file counts: one rule (perfxl.merging.versions), asked by the merge for its
outcomes and by the portal for a unit's current version."""

from __future__ import annotations

from perfxl.merging.options import MergeOptions
from perfxl.merging.versions import decide
from perfxl.portal.store import _current
from perfxl.records import Seen


def _seen(name: str, sha: str, status: str, mtime_ns: int) -> Seen:
    return Seen(path=f"files/001/{name}.xlsx", size=1, mtime_ns=mtime_ns, sha=sha, source="read", offset=0,
                template="national/project", year=2025, unit_code="001", unit_name="甲单位", status=status,
                errors=int(status == "errors"), warnings=0, read_error=None, project_names=("项目",),
                indicator_rows=1)


def _submission(sid: int, sha: str, status: str, received: str) -> dict:
    return {"id": sid, "sha256": sha, "status": status, "received": received, "stored": f"files/001/{sha}.xlsx"}


def _merged(files: list[Seen]) -> str:
    decide(files, MergeOptions(year=2025))
    return next(s.sha for s in files if s.outcome == "merged")


def test_a_newer_version_with_errors_does_not_displace_one_without_in_the_portal_or_the_merge():
    files = [_seen("a", "a" * 64, "valid", 1), _seen("b", "b" * 64, "errors", 2)]
    subs = [_submission(2, "b" * 64, "errors", "2025-03-02 10:00:00"),
            _submission(1, "a" * 64, "valid", "2025-03-01 10:00:00")]
    assert _merged(files) == _current(subs)["sha256"] == "a" * 64


def test_the_newest_version_counts_in_the_portal_and_the_merge_and_a_tie_in_the_second_goes_to_the_later():
    files = [_seen("a", "a" * 64, "warnings", 1), _seen("b", "b" * 64, "valid", 2)]
    subs = [_submission(1, "a" * 64, "valid", "2025-03-01 10:00:00"),
            _submission(2, "b" * 64, "valid", "2025-03-01 10:00:00")]  # handed in within one second
    assert _merged(files) == _current(subs)["sha256"] == "b" * 64


def test_the_portal_counts_no_refused_unreadable_or_unchecked_version():
    subs = [_submission(3, "c" * 64, "checking", "2025-03-03 10:00:00"),
            _submission(2, "b" * 64, "rejected", "2025-03-02 10:00:00"),
            {**_submission(1, "a" * 64, "errors", "2025-03-01 10:00:00"), "stored": "refused/x.bin"}]
    assert _current(subs) is None

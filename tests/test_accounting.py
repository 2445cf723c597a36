"""Accounting holds on random inboxes, and merging the same inbox twice gives identical tables."""

import os
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perfxl.merging import MergeOptions, run_merge
from tests.hostile.conftest import good_form

UNITS = [{"code": f"80000{i}", "name": f"随机单位{i}", "department": f"部门{i % 2}"} for i in range(4)]
FORMS = {(u, v): good_form(UNITS[u], f"项目{u}", 10.0 * (u + 1) + v) for u in range(4) for v in range(2)}

entry = st.one_of(
    st.tuples(st.just("form"), st.integers(0, 3), st.integers(0, 1)),
    st.tuples(st.just("copy"), st.integers(0, 3), st.integers(0, 1)),
    st.tuples(st.just("broken"), st.integers(0, 3), st.integers(0, 1)),
)


def _tables(result) -> dict:
    return {t.name: [list(r) for r in t.iter_rows()] for t in result.tables if t.name != "说明" and not t.lazy}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(entry, min_size=1, max_size=9))
def test_files_and_rows_add_up(entries):
    with tempfile.TemporaryDirectory() as tmp:
        inbox = Path(tmp) / "inbox"
        inbox.mkdir()
        now = time.time()
        for i, (kind, unit, version) in enumerate(entries):
            target = inbox / f"{i:02d}-{kind}.xlsx"
            if kind == "broken":
                target.write_bytes(FORMS[(unit, version)][: 300 + 100 * i])
            else:
                target.write_bytes(FORMS[(unit, version)])
            os.utime(target, (now - 1000 + 100 * version + i, now - 1000 + 100 * version + i))
        options = MergeOptions(jobs=1, db=Path(tmp) / "ledger.sqlite")
        first = run_merge([inbox], None, options)
        c = first.counts
        assert c["files_in"] == len(entries)
        assert c["files_in"] == c["merged"] + c["rejected"] + c["duplicate"] + c["superseded"] + c["excluded"]
        assert c["rows_in"] == c["rows_merged"] + c["rows_set_aside"]
        units_sent = {(u, v) for k, u, v in entries if k != "broken"}
        assert c["merged"] == len({u for u, _ in units_sent})  # one merged version per unit
        assert c["rejected"] == sum(1 for k, _, _ in entries if k == "broken")
        second = run_merge([inbox], None, options)
        assert second.counts["read"] == 0
        assert _tables(first) == _tables(second)
        assert {k: v for k, v in first.counts.items() if k not in {"read", "from_ledger"}} == \
            {k: v for k, v in second.counts.items() if k not in {"read", "from_ledger"}}

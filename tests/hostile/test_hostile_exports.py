"""A roll-up trusts data, not claims (#19): what a lower level hands up (its ledger or `perfxl export`) is
evidence. A form is known by the digest of its data, recomputed on arrival; a copy that claims another
county's file with other data never replaces it, whatever the inputs are named; and a corrupt or hostile
export, or one form in it, costs only itself, with a coded problem named `input#…`, never the run."""

from __future__ import annotations

import json
import sqlite3
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from perfxl.cli import cli
from perfxl.ledger import export_merged
from perfxl.merger import MergeOptions, run_merge

from .conftest import good_form

COUNTY_A = [{"code": "610101", "name": "甲县财政局", "department": "财政"},
            {"code": "610102", "name": "甲县教育局", "department": "教育"}]
COUNTY_B = [{"code": "620101", "name": "乙县卫健委", "department": "卫健"}]


def _export(tmp_path: Path, name: str, units: list[dict], budget: float = 100.0) -> Path:
    inbox = tmp_path / name / "inbox"
    inbox.mkdir(parents=True)
    for i, unit in enumerate(units):
        (inbox / f"{unit['code']}.xlsx").write_bytes(good_form(unit, f"{unit['name']}项目", budget + i))
    db = tmp_path / name / "台账.sqlite"
    run_merge([inbox], tmp_path / name / "汇总.xlsx", MergeOptions(jobs=1, db=db))
    target = tmp_path / f"{name}.perfxl"
    export_merged(db, target)
    return target


def _outcomes(result) -> dict[str, tuple[str, str]]:
    return {s.path: (s.outcome, s.reason) for s in result.files}


def test_a_county_claiming_another_countys_file_with_other_data_replaces_nothing(tmp_path):
    genuine = _export(tmp_path, "乙县", COUNTY_B, budget=500.0)
    liar = _export(tmp_path, "甲县", [COUNTY_B[0]], budget=1.0)  # the same unit, other figures
    with sqlite3.connect(genuine) as con:
        true_sha = con.execute("SELECT sha256 FROM outcomes WHERE outcome='merged'").fetchone()[0]
    with sqlite3.connect(liar) as con:  # the liar claims the genuine form's file for its own data
        fake_sha, seen, form = con.execute(
            "SELECT o.sha256, o.seen, f.form FROM outcomes o JOIN files f ON f.sha256=o.sha256").fetchone()
        data = json.loads(zlib.decompress(form))
        data["sha256"] = true_sha
        seen = json.loads(seen)
        seen["sha"] = true_sha
        con.execute("UPDATE files SET sha256=?, form=? WHERE sha256=?",
                    (true_sha, zlib.compress(json.dumps(data, ensure_ascii=False).encode()), fake_sha))
        con.execute("UPDATE outcomes SET sha256=?, seen=? WHERE sha256=?",
                    (true_sha, json.dumps(seen, ensure_ascii=False), fake_sha))
    results = []
    for first, second in (("a", "z"), ("z", "a")):  # which copy wins must not depend on the names
        inputs = [genuine.rename(genuine.with_name(f"{first}乙县.perfxl")),
                  liar.rename(liar.with_name(f"{second}甲县.perfxl"))]
        genuine, liar = inputs
        result = run_merge(inputs, tmp_path / f"市{first}.xlsx", MergeOptions(jobs=1), materialize=True)
        results.append(result)
        lying = next(s for s in result.files if s.path.startswith(liar.name))
        true = next(s for s in result.files if s.path.startswith(genuine.name))
        assert lying.outcome == true.outcome == "rejected" and lying.reason == true.reason == "rollup-conflict"
        assert result.counts["merged"] == 0  # the lie replaced nothing, and it is not merged either
        changes = list(result.table("变更记录").iter_rows())
        assert any("下级上报数据冲突" in str(row) for row in changes)
        problems = {row[-2] for row in result.table("校验问题").iter_rows()}
        assert "rollup-conflict" in problems
    assert [sorted(o.values()) for o in map(_outcomes, results)] == [sorted(_outcomes(results[0]).values())] * 2


def test_the_same_file_handed_up_by_two_counties_is_one_form(tmp_path):
    a = _export(tmp_path, "甲县", [COUNTY_B[0]], budget=7.0)
    b = _export(tmp_path, "乙县", [COUNTY_B[0]], budget=7.0)  # the very same workbook bytes in two inboxes
    result = run_merge([a, b], tmp_path / "市.xlsx", MergeOptions(jobs=1))
    assert sorted(s.outcome for s in result.files) == ["duplicate", "merged"]


def _hostile(export: Path, how: str) -> None:
    with sqlite3.connect(export) as con:
        sha = con.execute("SELECT sha256 FROM outcomes WHERE outcome='merged' ORDER BY path LIMIT 1").fetchone()[0]
        form = con.execute("SELECT form FROM files WHERE sha256=?", (sha,)).fetchone()[0]
        data = json.loads(zlib.decompress(form))
        if how == "bomb":  # 500 MB of JSON once inflated, made without holding it
            packer = zlib.compressobj(9)
            chunk = b" " * (1 << 20)
            blob = packer.compress(b'{"pad":"') + b"".join(packer.compress(chunk) for _ in range(500))
            blob += packer.compress(b'"}') + packer.flush()
        elif how == "deep":
            blob = zlib.compress(b"[" * 200_000 + b"]" * 200_000)
        elif how == "not-zlib":
            blob = b"this is not zlib at all"
        elif how == "wrong-types":
            data["sheets"] = [{"sheet": 5, "fields": "x", "tables": None}]
            blob = zlib.compress(json.dumps(data).encode())
        elif how == "other-file":
            data["sha256"] = "0" * 64
            blob = zlib.compress(json.dumps(data).encode())
        else:
            blob = form
        con.execute("UPDATE files SET form=? WHERE sha256=?", (blob, sha))
        if how == "bad-outcome":
            con.execute("UPDATE outcomes SET seen=? WHERE sha256=?", ('{"path": 5, "outcome": [', sha))
        if how == "missing-outcome":
            con.execute("UPDATE outcomes SET seen='' WHERE sha256=?", (sha,))
        if how == "no-run":
            con.execute("DELETE FROM run_settings")


@pytest.mark.parametrize("how", ["bomb", "deep", "not-zlib", "wrong-types", "other-file", "bad-outcome",
                                 "missing-outcome"])
def test_a_hostile_form_in_an_export_costs_only_that_form(tmp_path, how):
    good = _export(tmp_path, "乙县", COUNTY_B)
    bad = _export(tmp_path, "甲县", COUNTY_A)
    _hostile(bad, how)
    out = tmp_path / "市" / "汇总.xlsx"
    r = CliRunner().invoke(cli, ["merge", str(good), str(bad), "-o", str(out), "--jobs", "1"])
    assert r.exit_code in (0, 1), r.output
    assert "Traceback" not in r.output and out.is_file()
    result = run_merge([good, bad], tmp_path / "再.xlsx", MergeOptions(jobs=1))
    outcomes = _outcomes(result)
    assert [o for p, o in outcomes.items() if p.startswith("乙县.perfxl#")] == [("merged", "")]
    hurt = {p: o for p, o in outcomes.items() if p.startswith("甲县.perfxl#") and o[0] != "merged"}
    assert list(hurt.values()) == [("rejected", "file-corrupt")], outcomes
    assert sum(1 for o in outcomes.values() if o == ("merged", "")) == 2  # the other form of 甲县 too


def test_an_export_with_no_finished_merge_costs_only_that_input(tmp_path):
    good = _export(tmp_path, "乙县", COUNTY_B)
    bad = _export(tmp_path, "甲县", COUNTY_A)
    _hostile(bad, "no-run")
    result = run_merge([good, bad], tmp_path / "市.xlsx", MergeOptions(jobs=1))
    assert _outcomes(result)["甲县.perfxl"] == ("rejected", "file-corrupt")
    assert result.counts["merged"] == 1


def test_an_inflation_bomb_in_an_export_is_refused_under_the_cap(tmp_path):
    """The bomb is refused while inflating, without holding 500 MB: the merge's peak memory stays far below."""
    import subprocess
    import sys

    good = _export(tmp_path, "乙县", COUNTY_B)
    bad = _export(tmp_path, "甲县", COUNTY_A)
    _hostile(bad, "bomb")
    script = ("import resource, sys; from pathlib import Path; from perfxl.merger import MergeOptions, run_merge\n"
              f"run_merge([Path({str(good)!r}), Path({str(bad)!r})], Path({str(tmp_path / 'm.xlsx')!r}), "
              "MergeOptions(jobs=1))\n"
              "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    peak_mb = int(done.stdout.split()[-1]) / 1024
    assert peak_mb < 400, f"peak {peak_mb:.0f} MB"

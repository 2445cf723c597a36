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
from perfxl.merging import MergeOptions, run_merge

from .conftest import good_form

COUNTY_A = [{"code": "610101", "name": "甲县财政局", "department": "财政"},
            {"code": "610102", "name": "甲县教育局", "department": "教育"}]
COUNTY_B = [{"code": "620101", "name": "乙县卫健委", "department": "卫健"}]
COUNTY_B_MORE = [{"code": "620102", "name": "乙县民政局", "department": "民政"}]


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
        assert lying.outcome == true.outcome == "excluded" and lying.reason == true.reason == "rollup-conflict"
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
        elif how in ("big-year", "text-year"):
            data["year"] = 10**30 if how == "big-year" else "2022"
            blob = zlib.compress(json.dumps(data).encode())
        elif how in ("nan-budget", "surrogate-text"):
            fields = data["sheets"][0]["fields"]
            key = next(k for k in fields if k.startswith("funds_total")) if how == "nan-budget" else "project_name"
            fields[key][0] = float("nan") if how == "nan-budget" else "A\ud800B"
            blob = zlib.compress(json.dumps(data).encode())
        else:
            blob = form
        con.execute("UPDATE files SET form=? WHERE sha256=?", (blob, sha))
        if how == "bad-outcome":
            con.execute("UPDATE outcomes SET seen=? WHERE sha256=?", ('{"path": 5, "outcome": [', sha))
        if how == "missing-outcome":
            con.execute("UPDATE outcomes SET seen='' WHERE sha256=?", (sha,))
        if how == "surrogate-path":
            seen = json.loads(con.execute("SELECT seen FROM outcomes WHERE sha256=?", (sha,)).fetchone()[0])
            seen["path"] = "\ud800.xlsx"
            con.execute("UPDATE outcomes SET seen=? WHERE sha256=?", (json.dumps(seen), sha))
        if how == "no-run":
            con.execute("DELETE FROM run_settings")


@pytest.mark.parametrize("how", ["bomb", "deep", "not-zlib", "wrong-types", "other-file", "bad-outcome",
                                 "missing-outcome", "big-year", "text-year", "surrogate-text"])
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
    script = ("import resource, sys; from pathlib import Path; from perfxl.merging import MergeOptions, run_merge\n"
              f"run_merge([Path({str(good)!r}), Path({str(bad)!r})], Path({str(tmp_path / 'm.xlsx')!r}), "
              "MergeOptions(jobs=1))\n"
              "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    peak_mb = int(done.stdout.split()[-1]) / 1024
    assert peak_mb < 400, f"peak {peak_mb:.0f} MB"


@pytest.mark.parametrize("how", ["nan-budget", "surrogate-path"])
def test_an_odd_but_harmless_form_in_an_export_is_merged_without_a_traceback(tmp_path, how):
    """A budget that is NaN is a number no rule takes (type-number); a path that is no text is shown escaped."""
    good = _export(tmp_path, "乙县", COUNTY_B)
    bad = _export(tmp_path, "甲县", COUNTY_A)
    _hostile(bad, how)
    out = tmp_path / "市" / "汇总.xlsx"
    r = CliRunner().invoke(cli, ["merge", str(good), str(bad), "-o", str(out), "--jobs", "1"])
    assert r.exit_code in (0, 1) and "Traceback" not in r.output and out.is_file(), r.output
    result = run_merge([good, bad], tmp_path / "再.xlsx", MergeOptions(jobs=1))
    assert result.counts["merged"] == 3


def _city_roster(tmp_path: Path) -> Path:
    from tests.conftest import write_roster

    return write_roster(tmp_path / "市名单.csv", [(u["code"], u["name"], u["department"], "甲县", "某市") for u in COUNTY_A]
                        + [(u["code"], u["name"], u["department"], "乙县", "某市") for u in COUNTY_B + COUNTY_B_MORE],
                        header=("code", "name", "department", "region", "parent"))


def _forge_into(export: Path, unit: dict, budget: float, claimed: str | None = None) -> None:
    """A county's export given one more merged form: another county's unit, other figures, a newer time,
    and (optionally) the sha256 of that unit's genuine file as its claim."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        forged = _export(Path(tmp), "伪造", [unit], budget=budget)
        with sqlite3.connect(forged) as con:
            sha, seen, form = con.execute(
                "SELECT o.sha256, o.seen, f.form FROM outcomes o JOIN files f ON f.sha256=o.sha256").fetchone()
            cursor = con.execute("SELECT * FROM files WHERE sha256=?", (sha,))
            row = dict(zip([d[0] for d in cursor.description], cursor.fetchone()))
    seen = json.loads(seen)
    seen["mtime_ns"] += 10**12  # newer than anything genuine
    if claimed:
        data = json.loads(zlib.decompress(form))
        data["sha256"] = claimed
        row["form"], row["sha256"] = zlib.compress(json.dumps(data, ensure_ascii=False).encode()), claimed
        sha = seen["sha"] = claimed
    with sqlite3.connect(export) as con:
        run = con.execute("SELECT run FROM outcomes LIMIT 1").fetchone()[0]
        seen["path"] = "伪造.xlsx"
        con.execute(f"INSERT INTO files ({','.join(row)}) VALUES ({','.join('?' * len(row))})", tuple(row.values()))
        con.execute("INSERT INTO outcomes VALUES (?,?,?,?,?)", (run, "伪造.xlsx", sha, "merged", json.dumps(seen)))


@pytest.mark.parametrize("claim", [False, True])
def test_a_county_cannot_hand_up_another_countys_unit_whatever_the_names_and_times(tmp_path, claim):
    """With a roster placing each unit in its county, a form in 乙县's export for a 甲县 unit is set aside
    (rollup-other-region): newer, or claiming the genuine file's sha256, it replaces nothing, and 甲县's
    genuine form is merged whatever the inputs are named."""
    genuine = _export(tmp_path, "甲县", COUNTY_A)
    with sqlite3.connect(genuine) as con:
        true_sha = con.execute("SELECT sha256 FROM outcomes WHERE outcome='merged' ORDER BY path LIMIT 1").fetchone()[0]
    thief = _export(tmp_path, "乙县", COUNTY_B + COUNTY_B_MORE)  # its own units outnumber what it forges
    _forge_into(thief, COUNTY_A[0], budget=1.0, claimed=true_sha if claim else None)
    roster = _city_roster(tmp_path)
    outcomes = []
    for first, second in (("a", "z"), ("z", "a")):
        inputs = [genuine.rename(genuine.with_name(f"{first}甲县.perfxl")),
                  thief.rename(thief.with_name(f"{second}乙县.perfxl"))]
        genuine, thief = inputs
        result = run_merge(inputs, tmp_path / f"市{first}.xlsx", MergeOptions(jobs=1, roster=roster))
        forged = next(s for s in result.files if s.path.endswith("#伪造.xlsx"))
        assert (forged.outcome, forged.reason) == ("excluded", "rollup-other-region")
        merged = {s.unit_code: s for s in result.files if s.outcome == "merged"}
        assert set(merged) == {u["code"] for u in COUNTY_A + COUNTY_B + COUNTY_B_MORE}
        assert merged[COUNTY_A[0]["code"]].path.split("#")[0].endswith("甲县.perfxl")
        outcomes.append(sorted((s.unit_code, s.outcome, s.reason) for s in result.files))
    assert outcomes[0] == outcomes[1]


def test_one_unit_from_two_lower_levels_with_other_data_is_a_conflict_not_the_newest(tmp_path):
    """Without regions to tell whose unit it is, a unit in two lower levels' exports with different data is
    set aside in both (listed), never decided by a time the exports claim."""
    a = _export(tmp_path, "甲县", [COUNTY_B[0]], budget=5.0)
    b = _export(tmp_path, "乙县", [COUNTY_B[0]], budget=9.0)
    result = run_merge([a, b], tmp_path / "市.xlsx", MergeOptions(jobs=1), materialize=True)
    assert sorted((s.outcome, s.reason) for s in result.files) == [("excluded", "rollup-unit-conflict")] * 2
    assert any("同一单位在两个下级的上报中数据不同" in str(r) for r in result.table("变更记录").iter_rows())


def test_two_lower_levels_whose_files_share_a_name_are_both_merged(tmp_path):
    a = _export(tmp_path, "甲县", COUNTY_A)
    b = _export(tmp_path, "乙县", COUNTY_B)
    (tmp_path / "一").mkdir()
    (tmp_path / "二").mkdir()
    a, b = a.rename(tmp_path / "一" / "export.perfxl"), b.rename(tmp_path / "二" / "export.perfxl")
    result = run_merge([a, b], tmp_path / "市.xlsx", MergeOptions(jobs=1))
    assert result.counts["merged"] == 3

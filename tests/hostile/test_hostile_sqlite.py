"""SQLite files that claim to be perfxl's (its application id) but hold what perfxl never writes (#19, F8):
a view over a query without end where a table should be, a trigger that never ends. Each is refused
before anything is read from it, wherever perfxl opens such a file: as a lower level's ledger (costing
only that input), as an --issued record or as the ledger at the default path (exit 2, saying which file
and why), as `perfxl export --ledger`, `open_ledger` or `generate --from`. And should a hostile schema
ever get past the check, a statement on a file perfxl did not create is stopped after a time bound.

Every run is a subprocess with a deadline: a regression fails the test instead of hanging the suite
(SIGALRM cannot interrupt a call into SQLite)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import openpyxl
import pytest

import perfxl
from perfxl.ledger import APPLICATION_ID, SCHEMA

from .conftest import good_form

DEADLINE = 120  # seconds for a run that takes two; a hang is what fails
ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)"
SEEN = json.dumps({"path": "p", "outcome": "merged", "sha": "0" * 64, "size": 1, "mtime_ns": 1})


def _perfxl_file(path: Path, build) -> Path:
    """A file in perfxl's format, with its application id, changed by `build(db)`."""
    db = sqlite3.connect(path)
    try:
        db.executescript(SCHEMA)
        db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        build(db)
        db.commit()
    finally:
        db.close()
    return path


def outcomes_view(db: sqlite3.Connection) -> None:
    """A finished run whose outcomes are a view over a query without end (a roll-up reads them all)."""
    db.execute("INSERT INTO runs (id, started, finished) VALUES (1, 'x', 'y')")
    db.execute("INSERT INTO run_settings VALUES (1, '{}')")
    db.execute("DROP TABLE outcomes")
    db.execute(f"CREATE VIEW outcomes (run, path, sha256, outcome, seen) AS {ENDLESS} "
               f"SELECT 1, 'p' || x, 's', 'merged', '{SEEN}' FROM c")


def issued_view(db: sqlite3.Connection) -> None:
    """A record whose issued forms are a view over a query without end (a lookup sorts them all)."""
    db.execute("DROP TABLE issued")
    db.execute(f"CREATE VIEW issued (round, unit_code, template, year, issued_at, projects, digest, rowid) AS "
               f"{ENDLESS} SELECT 'r' || x, '600001', 'national/selfeval', 2022, 'a' || x, '[]', 'd', x FROM c")


def trigger_on_runs(db: sqlite3.Connection) -> None:
    """A ledger whose every new run starts a query without end."""
    db.execute(f"CREATE TRIGGER t AFTER INSERT ON runs BEGIN SELECT max(x) FROM ({ENDLESS} SELECT x FROM c); END")


HOSTILE = {"outcomes-view": (outcomes_view, "含有视图 outcomes"), "issued-view": (issued_view, "含有视图 issued"),
           "trigger": (trigger_on_runs, "含有触发器 t")}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    # The perfxl under test, whatever the subprocess's folder
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(perfxl.__file__).parent.parent),
                                                                      os.environ.get("PYTHONPATH")]))}
    try:
        return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(map(str, args))} still ran after {DEADLINE} s: a hostile SQLite file hung it")


def _perfxl(*args, cwd: Path) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "perfxl.cli", *map(str, args)], cwd)


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-c", textwrap.dedent(code)], cwd)


@pytest.fixture
def inbox(tmp_path) -> Path:
    folder = tmp_path / "收件箱"
    folder.mkdir()
    (folder / "600001.xlsx").write_bytes(good_form())
    return folder


@pytest.mark.parametrize("kind", HOSTILE)
def test_a_hostile_rollup_input_costs_only_that_input(tmp_path, inbox, kind):
    build, why = HOSTILE[kind]
    county = _perfxl_file(tmp_path / "甲县.sqlite", build)
    out = tmp_path / "市" / "汇总.xlsx"
    r = _perfxl("merge", inbox, county, "-o", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "已汇总 1，无法读取 1" in r.stdout
    wb = openpyxl.load_workbook(out, read_only=True)
    rows = [row for row in wb["校验问题"].iter_rows(values_only=True) if row[0] == "甲县.sqlite"]
    wb.close()
    assert len(rows) == 1 and "file-corrupt" in rows[0] and why in rows[0][6]


@pytest.mark.parametrize("kind", HOSTILE)
def test_a_hostile_issued_record_is_refused_with_exit_2(tmp_path, inbox, kind):
    record = _perfxl_file(tmp_path / "下发记录.sqlite", HOSTILE[kind][0])
    r = _perfxl("merge", inbox, "-o", tmp_path / "汇总.xlsx", "--issued", record, cwd=tmp_path)
    assert r.returncode == 2
    assert "下发记录.sqlite 不是 perfxl 写出的下发记录" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("kind", HOSTILE)
def test_a_hostile_ledger_at_the_default_path_is_refused_with_exit_2_naming_it(tmp_path, inbox, kind):
    build, why = HOSTILE[kind]
    out = tmp_path / "共享" / "汇总.xlsx"
    out.parent.mkdir()
    _perfxl_file(out.parent / "汇总_报送台账.sqlite", build)
    r = _perfxl("merge", inbox, "-o", out, cwd=tmp_path)
    assert r.returncode == 2
    assert "汇总_报送台账.sqlite 不是 perfxl 写出的台账" in r.stderr and why in r.stderr
    assert not out.exists()


@pytest.mark.parametrize("opener", ["export", "open_ledger", "generate --from"])
def test_a_ledger_whose_outcomes_never_end_is_refused_wherever_it_is_read_back(tmp_path, opener):
    ledger = _perfxl_file(tmp_path / "汇总_报送台账.sqlite", outcomes_view)
    if opener == "export":
        r = _perfxl("export", "--ledger", ledger, "-o", tmp_path / "甲县.perfxl", cwd=tmp_path)
        assert r.returncode == 2 and "不是 perfxl 报送台账" in r.stderr
        return
    call = {"open_ledger": f"perfxl.open_ledger({str(ledger)!r}).submissions()",
            "generate --from": f"perfxl.followup.declarations({str(ledger)!r})"}[opener]
    r = _python(f"""
        import perfxl, perfxl.followup
        from perfxl.errors import OutputError
        try:
            {call}
        except OutputError as exc:
            print("refused:", exc)
    """, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("refused:") and "含有视图 outcomes" in r.stdout


@pytest.mark.parametrize("definition", [
    "CREATE TABLE notes (x)",
    "CREATE VIRTUAL TABLE outcomes_text USING fts4(seen)",
    "CREATE INDEX odd ON files(length(form))",
    "CREATE INDEX some ON files(year) WHERE year > 2000",
    "ALTER TABLE files ADD COLUMN big AS (printf('%.*c', 1000000000, 'x'))",
], ids=["another-table", "virtual-table", "expression-index", "partial-index", "computed-column"])
def test_a_ledger_holding_what_perfxl_never_writes_is_refused(tmp_path, definition):
    from perfxl.errors import OutputError
    from perfxl.ledger import check_ledger_file, is_ledger

    path = _perfxl_file(tmp_path / "台账.sqlite", lambda db: db.execute(definition))
    with pytest.raises(OutputError, match="不是 perfxl 写出的台账"):
        check_ledger_file(path)
    assert not is_ledger(path)


def test_perfxls_own_schema_ledgers_and_exports_pass_the_check(tmp_path, inbox):
    """The check refuses nothing perfxl writes (its SCHEMA, a merge's ledger, a county's export), so a
    change to SCHEMA that the check would refuse fails here, not in the field."""
    from perfxl.ledger import _schema_problem, export_merged, is_ledger
    from perfxl.merging import MergeOptions, default_db, run_merge

    db = sqlite3.connect(":memory:")
    db.executescript(SCHEMA)
    assert _schema_problem(db) is None
    out = tmp_path / "县" / "汇总.xlsx"
    run_merge([inbox], out, MergeOptions(jobs=1))
    export_merged(default_db(out), tmp_path / "县.perfxl")
    assert is_ledger(default_db(out)) and is_ledger(tmp_path / "县.perfxl")


def test_a_statement_on_a_hostile_file_the_check_missed_is_stopped_after_the_time_bound(tmp_path, inbox):
    """The schema checks switched off (as if a hostile shape got past them) and the bound set to a second: the
    roll-up input whose outcomes never end costs that input, and a record whose issued forms never end
    checks nothing, both within the deadline."""
    county = _perfxl_file(tmp_path / "甲县.sqlite", outcomes_view)
    record = _perfxl_file(tmp_path / "下发记录.sqlite", issued_view)
    r = _python(f"""
        import time
        from pathlib import Path
        import perfxl.ledger
        perfxl.ledger._schema_problem = lambda db: None
        perfxl.ledger.STATEMENT_SECONDS = 1.0
        import perfxl.issued
        perfxl.issued._declared_as_perfxl_declares = lambda db: True  # the record's own check off too
        from perfxl.issued import IssuedBook
        from perfxl.merging import MergeOptions, run_merge
        started = time.monotonic()
        print(IssuedBook(({str(record)!r},)).lookup(None, "600001", "national/selfeval", 2022),
              time.monotonic() - started)
        started = time.monotonic()
        result = run_merge([Path({str(inbox)!r}), Path({str(county)!r})], Path({str(tmp_path / "市" / "汇总.xlsx")!r}),
                           MergeOptions(jobs=1))
        print(result.counts["merged"], result.counts["rejected"], time.monotonic() - started)
        print(*[s.read_error for s in result.files if s.path == "甲县.sqlite"])
    """, tmp_path)
    assert r.returncode == 0, r.stderr
    lookup, counts, refused = r.stdout.splitlines()
    found, seconds = lookup.split()
    assert found == "None" and 1.0 <= float(seconds) < 60  # stopped by the bound, not refused at once
    merged, rejected, seconds = counts.split()
    assert (merged, rejected, refused) == ("1", "1", "file-corrupt") and 1.0 <= float(seconds) < 60


def test_the_time_bound_counts_only_the_time_inside_sqlite(tmp_path, inbox, monkeypatch):
    """A roll-up checks a form between two outcome rows: that time is the caller's, not the statement's."""
    import time

    from perfxl import ledger as ledger_module
    from perfxl.merging import MergeOptions, default_db, run_merge

    out = tmp_path / "县" / "汇总.xlsx"
    for i in range(3):
        (inbox / f"60000{i + 2}.xlsx").write_bytes(good_form(
            {"code": f"60000{i + 2}", "name": f"单位{i}", "department": "部门"}, f"项目{i}"))
    run_merge([inbox], out, MergeOptions(jobs=1))
    monkeypatch.setattr(ledger_module, "STATEMENT_SECONDS", 0.5)
    db = ledger_module.open_readonly(default_db(out))
    try:
        rows = 0
        for _ in db.execute("SELECT seen FROM outcomes"):
            time.sleep(0.3)  # the caller's work between two rows, longer in all than the bound
            rows += 1
        assert rows == 4
    finally:
        db.close()

"""A ledger someone else planted never runs code (#19): everything perfxl keeps in or reads from a ledger,
an export or a portal store is data. A planted value can at worst be refused or mislead; it is never
unpickled. Each test plants, under every key a merge will look up, a pickle whose loading would create
a marker file, and checks the marker never appears and the merge writes what a fresh merge writes."""

from __future__ import annotations

import pickle
import sqlite3
from pathlib import Path

import openpyxl
import pytest

from perfxl.ledger import export_merged
from perfxl.merging import MergeOptions, default_db, run_merge

from .conftest import good_form

UNITS = [{"code": "600101", "name": "甲单位", "department": "一部门"},
         {"code": "600102", "name": "乙单位", "department": "二部门"}]


class _Plant:
    """Unpickling this creates `marker`: the proof that a pickle from the ledger was loaded."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _poison(db: Path, marker: Path) -> int:
    """Every kept value and every stored form of a ledger replaced by the plant; returns how many."""
    payload = pickle.dumps(_Plant(marker))
    with sqlite3.connect(db) as con:
        kept = con.execute("UPDATE kept SET value=?", (payload,)).rowcount
        con.execute("UPDATE files SET form=? WHERE form IS NOT NULL", (payload,))
    return kept


def _inbox(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for i, unit in enumerate(UNITS):
        (folder / f"{unit['code']}.xlsx").write_bytes(good_form(unit, f"项目{i}", 100.0 + i))
    return folder


def _cells(path: Path) -> dict:
    wb = openpyxl.load_workbook(path, read_only=True)
    try:
        return {name: [row for row in wb[name].iter_rows(values_only=True)
                       if not any(isinstance(v, str) and v.startswith(("汇总时间", "生成时间", "本次读取")) for v in row)]
                for name in wb.sheetnames}
    finally:
        wb.close()


@pytest.mark.parametrize("where", ["default", "db"])
def test_a_planted_ledger_runs_no_code_and_the_merge_ignores_what_it_planted(tmp_path, where):
    inbox = _inbox(tmp_path / "inbox")
    out = tmp_path / "共享" / "汇总.xlsx"
    db = default_db(out) if where == "default" else tmp_path / "台账.sqlite"
    options = MergeOptions(jobs=1, db=None if where == "default" else db)
    run_merge([inbox], out, options)
    marker = tmp_path / "ran.txt"
    assert _poison(db, marker) > 0, "the first merge kept values a re-merge would use"
    again = run_merge([inbox], out, options)
    assert not marker.exists(), "a pickle planted in the ledger was loaded"
    assert again.counts["merged"] == 2
    fresh = tmp_path / "新" / "汇总.xlsx"
    run_merge([inbox], fresh, MergeOptions(jobs=1))
    assert _cells(out) == _cells(fresh)


def test_a_planted_ledger_given_as_a_rollup_input_runs_no_code(tmp_path):
    inbox = _inbox(tmp_path / "县" / "inbox")
    county = tmp_path / "县" / "汇总.xlsx"
    run_merge([inbox], county, MergeOptions(jobs=1))
    planted = tmp_path / "甲县.perfxl"  # what a county hands up, with every stored form a pickle
    export_merged(default_db(county), planted)
    marker = tmp_path / "ran.txt"
    _poison(planted, marker)
    result = run_merge([planted], tmp_path / "市" / "汇总.xlsx", MergeOptions(jobs=1))
    assert not marker.exists(), "a pickle planted in a lower level's ledger was loaded"
    assert result.counts["merged"] == 0 and result.counts["rejected"] == 2  # its forms cost only themselves


def test_a_planted_portal_store_runs_no_code(tmp_path):
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from perfxl.portal.app import PortalConfig, create_app
    from perfxl.portal.store import LEDGER_NAME
    from perfxl.roster import read_roster
    from tests.portal_setup import ADMIN_PASSWORD, set_up
    from tests.portal_setup import UNITS as PORTAL_UNITS

    setup = set_up(tmp_path)
    config = PortalConfig(setup["store"], read_roster(setup["roster"]), setup["roster"], setup["forms"],
                          ADMIN_PASSWORD, jobs=1)
    unit = PORTAL_UNITS[0][0]
    marker = tmp_path / "ran.txt"
    with TestClient(create_app(config)) as client:
        token = client.post("/api/login", json={"unit": unit, "code": setup["codes"][unit]}).json()["token"]
        path = setup["files"][(unit, "good")]
        r = client.post("/api/submissions", files=[("file", (path.name, path.read_bytes(), "application/x"))],
                        headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        admin = client.post("/api/login", json={"admin_password": ADMIN_PASSWORD}).json()["token"]
        first = client.get("/api/summary.xlsx", headers={"Authorization": f"Bearer {admin}"})
        assert first.status_code == 200
        assert _poison(setup["store"] / LEDGER_NAME, marker) > 0
        again = client.get("/api/summary.xlsx", headers={"Authorization": f"Bearer {admin}"})
        assert again.status_code == 200 and again.content[:2] == b"PK"
    assert not marker.exists(), "a pickle planted in the portal's store was loaded"

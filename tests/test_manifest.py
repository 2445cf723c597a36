"""manifest.json: one shape for blank forms and follow-up forms, access codes and 分发清单.xlsx for both,
codes kept when generating again, and folders written by earlier versions still read."""

from __future__ import annotations

import json

import openpyxl
import pytest
from click.testing import CliRunner

from perfxl.cli import cli
from perfxl.errors import PerfxlError
from perfxl.manifest import HANDOUT_FILE, read_manifest

from .portal_setup import UNITS, YEAR, followup_forms, set_up

A, B, C = (u[0] for u in UNITS)


@pytest.fixture(scope="module")
def rounds(tmp_path_factory):
    base = tmp_path_factory.mktemp("rounds")
    setup = set_up(base)
    return {"base": base, "setup": setup, "selfeval": followup_forms(base, setup, "national/selfeval"),
            "monitor": followup_forms(base / "monitor", setup, "national/monitor")}


def _raw(folder):
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


def test_blank_and_followup_folders_write_one_manifest_shape_with_access_codes(rounds):
    shapes = {}
    for kind, folder in (("blank", rounds["setup"]["forms"]), ("followup", rounds["selfeval"]),
                         ("followup", rounds["monitor"])):
        raw = _raw(folder)
        assert raw["manifest"] == 2 and raw["kind"] == kind and raw["year"] == YEAR
        shapes.setdefault("top", set(raw)).intersection_update(raw)
        for entry in raw["forms"]:
            assert {"unit_code", "unit_name", "department", "file", "access_code"} <= set(entry)
            assert len(entry["access_code"]) == 10 and (folder / entry["file"]).is_file()
        handout = openpyxl.load_workbook(folder / HANDOUT_FILE)["分发清单"]
        listed = {row[0]: row[4] for row in handout.iter_rows(min_row=4, values_only=True)}
        assert listed == {e["unit_code"]: e["access_code"] for e in raw["forms"]}
    assert {"manifest", "kind", "template", "year", "forms", "without_declaration"} <= shapes["top"]
    followup = _raw(rounds["selfeval"])
    assert [e["unit_code"] for e in followup["forms"]] == [A, B]
    assert [e["unit_code"] for e in followup["without_declaration"]] == [C]  # it declared nothing


def test_generating_followups_again_into_the_same_folder_keeps_the_access_codes(rounds, tmp_path):
    base, setup = rounds["base"], rounds["setup"]
    first = {e["unit_code"]: e["access_code"] for e in _raw(rounds["selfeval"])["forms"]}
    r = CliRunner().invoke(cli, ["generate", "national/selfeval", "--year", str(YEAR), "--roster", str(setup["roster"]),
                                 "--from", str(base / "申报汇总_报送台账.sqlite"), "-o", str(rounds["selfeval"])])
    assert r.exit_code == 0, r.output
    assert "分发清单.xlsx" in r.output
    assert {e["unit_code"]: e["access_code"] for e in _raw(rounds["selfeval"])["forms"]} == first


def test_the_reader_accepts_the_shapes_earlier_versions_wrote(rounds, tmp_path):
    blank = [{"unit_code": A, "unit_name": "甲", "department": "部门", "file": "a.xlsx", "access_code": "ABCDEFGHJK"}]
    (tmp_path / "old-blank").mkdir()
    (tmp_path / "old-blank" / "manifest.json").write_text(json.dumps(blank, ensure_ascii=False), encoding="utf-8")
    old = read_manifest(tmp_path / "old-blank")
    assert (old.kind, old.forms[0]["access_code"], old.by_unit()[A]["file"]) == ("blank", "ABCDEFGHJK", "a.xlsx")

    followup = {"template": "national/selfeval", "year": YEAR, "from": "x.sqlite",
                "forms": [{"unit_code": A, "unit_name": "甲", "file": "a.xlsx", "projects": ["项目"]}],
                "without_declaration": [{"unit_code": C, "unit_name": "丙"}]}
    (tmp_path / "old-followup").mkdir()
    (tmp_path / "old-followup" / "manifest.json").write_text(json.dumps(followup, ensure_ascii=False), encoding="utf-8")
    old = read_manifest(tmp_path / "old-followup")
    assert (old.kind, old.template, old.year, old.source) == ("followup", "national/selfeval", YEAR, "x.sqlite")
    assert old.forms[0]["access_code"] is None and old.without_declaration[0]["unit_code"] == C


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"forms": 3}', '"text"', '[{"file": "a.xlsx"}]'])
def test_a_damaged_manifest_is_a_chinese_error_not_a_traceback(tmp_path, text):
    (tmp_path / "manifest.json").write_text(text, encoding="utf-8")
    with pytest.raises(PerfxlError, match="manifest.json|perfxl generate"):
        read_manifest(tmp_path)

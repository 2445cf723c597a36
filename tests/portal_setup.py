"""A portal set up as README shows: a roster, `perfxl generate` for it (blank forms and access codes), and
filled forms for the first unit (one good, one with mistakes) made from the 盐城 seed's values."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from click.testing import CliRunner

from perfxl.cli import cli
from perfxl.fill import fill_workbook, load_sample, sample_files
from perfxl.spec import load_spec

from .conftest import write_roster

TEMPLATE, YEAR = "yancheng/project", 2022
UNITS = [("320900101", "盐城市住房公积金管理中心", "住房公积金中心"), ("320900102", "盐城市档案馆", "档案局"),
         ("320900103", "盐城市图书馆", "文广旅局")]
ADMIN_PASSWORD = "bureau-pass-2022"


def set_up(base: Path) -> dict:
    roster = write_roster(base / "名单.csv", UNITS)
    forms = base / "空白表"
    r = CliRunner().invoke(cli, ["generate", TEMPLATE, "--year", str(YEAR), "--roster", str(roster), "-o", str(forms)])
    assert r.exit_code == 0, r.output
    manifest = json.loads((forms / "manifest.json").read_text(encoding="utf-8"))
    entries = {m["unit_code"]: m for m in manifest}
    doc = load_sample(next(p for p in sample_files() if "seed-000" in p.name))
    projects = doc["workbooks"][0]["projects"]
    files = {}
    for code, _, _ in UNITS[:2]:
        spec = load_spec(TEMPLATE, YEAR, unit={"code": code})
        blank = forms / entries[code]["file"]
        files[(code, "good")] = fill_workbook(spec, blank, base / "filled" / f"{code}-好.xlsx", projects)
        broken = copy.deepcopy(projects)
        broken[0]["fields"]["project_name"] = ""  # required
        broken[0]["fields"]["funding_total_budget"] = 99999  # no longer the sum of its parts
        files[(code, "bad")] = fill_workbook(spec, blank, base / "filled" / f"{code}-有错.xlsx", broken)
    return {"roster": roster, "forms": forms, "codes": {c: entries[c]["access_code"] for c, _, _ in UNITS},
            "files": files, "store": base / "报送库"}

"""The contract between a generated form and everything that fills or reads it: defined names, the
offsets `describe --json` gives, and a structural golden description of every template's blank form."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from perfxl.cli import cli
from perfxl.generator import build_workbook
from perfxl.read import read_workbook
from perfxl.spec import list_templates, load_spec
from perfxl.structure import describe_workbook

GOLDEN = Path(__file__).parent / "golden"
UNIT = {"code": "000001", "name": "示例单位", "department": "示例部门"}


def _blank(tmp_path: Path, name: str) -> Path:
    spec = load_spec(name, 2024, unit=UNIT)
    path = tmp_path / (name.replace("/", "_") + ".xlsx")
    path.write_bytes(build_workbook(spec, UNIT, projects=2 if spec.multi_project else 1))
    return path


@pytest.mark.parametrize("name", list_templates())
def test_describe_offsets_land_on_the_right_cells(tmp_path, name):
    """A script that fills a table through its defined name and the offsets of describe --json puts every
    value in the column perfxl reads it from, merged columns included."""
    import openpyxl

    info = json.loads(CliRunner().invoke(cli, ["describe", name, "--year", "2024", "--json"]).output)
    blank = _blank(tmp_path, name)
    wb = openpyxl.load_workbook(blank)
    ws = wb[wb.sheetnames[1]] if info["multi_project"] else None
    sheet_names = ws.defined_names if ws is not None else wb.defined_names
    expected = {}
    for table in info["tables"]:
        ref = sheet_names[table["name"]].attr_text
        sheet, cells = ref.split("!")
        target = wb[sheet.strip("'")]
        first = cells.replace("$", "").split(":")[0]
        top = target[first]
        for column in table["columns"]:
            value = 7.0 if column["type"] in {"money", "number", "integer"} else f"{table['id']}·{column['id']}"
            target.cell(row=top.row, column=top.column + column["offset"]).value = value
            expected[(table["id"], column["id"])] = value
    filled = tmp_path / "filled.xlsx"
    wb.unprotect = None
    wb.save(filled)
    form = read_workbook(filled)
    sheet = form.sheets[0]
    assert sheet.sheet == target.title
    for (tid, cid), value in expected.items():
        got = sheet.tables[tid][0][cid].value
        assert got == value, (tid, cid, got)


@pytest.mark.parametrize("name", list_templates())
def test_blank_form_structure_matches_its_golden_description(tmp_path, name):
    """Sheets, defined names and ranges, validations, protection, merged ranges and print setup of each
    template's blank form, compared with tests/golden (regenerate: PERFXL_UPDATE_GOLDEN=1 pytest this file)."""
    structure = describe_workbook(_blank(tmp_path, name))
    golden = GOLDEN / (name.replace("/", "__") + ".json")
    text = json.dumps(structure, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    if os.environ.get("PERFXL_UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"no golden description for {name}: run with PERFXL_UPDATE_GOLDEN=1"
    assert json.loads(golden.read_text(encoding="utf-8")) == structure

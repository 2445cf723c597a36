"""The contract between a generated form and everything that fills or reads it: defined names, the
offsets `describe --json` gives, and a structural golden description of every template's blank form."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from perfxl.cli import cli
from perfxl.contract import DECLARED_CELL_CHARS, DECLARED_MARK, declared_from_cells, declared_sheet_rows
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


def _declared_cells(title: str, rows: list[dict]) -> dict:
    cells = {(0, 0): (DECLARED_MARK, None)}
    for r, line in enumerate(declared_sheet_rows(title, rows), start=2):
        for c, value in enumerate(line):
            cells[(r, c)] = (value, None)
    return cells


def test_declared_rows_survive_the_hidden_sheet_in_order_even_when_a_group_needs_several_cells():
    long_target = "≥" + "九十五" * 400 + "%"  # ~1,200 characters: 40 of them do not fit one cell
    rows = [{"row": i + 1, "group": "产出", "level1": "产出指标" if i % 3 else "效益指标", "level2": "数量指标",
             "level3": f"指标{i}", "target": long_target, "points": 1.25} for i in range(60)]
    rows[5]["level2"] = None  # an empty cell of the declaration: written as "", not refused when read back
    lines = declared_sheet_rows("项目1", rows)
    assert all(len(text) <= DECLARED_CELL_CHARS for *_, text in lines)
    assert len({level1 for _, level1, _, _ in lines}) == 2 and len(lines) > 2  # split, not truncated
    assert sum(points for _, level1, points, _ in lines if level1 == "产出指标") == pytest.approx(1.25 * 40)
    assert declared_from_cells(_declared_cells("项目1", rows)) == {"项目1": [{**r, "level2": r["level2"] or ""} for r in rows]}


def test_a_damaged_declared_sheet_is_refused_not_read_as_partial():
    rows = [{"row": 1, "group": "产出", "level1": "产出指标", "level2": "数量指标", "level3": "培训人数",
             "target": "≥100人", "points": 50}]
    cells = _declared_cells("项目1", rows)
    assert declared_from_cells({**cells, (2, 3): ('[["1", {"nested": 1}]]', None)}) is None
    assert declared_from_cells({**cells, (2, 3): ("[[1,", None)}) is None
    assert declared_from_cells({**cells, (0, 0): ("perfxl declared v1", None)}) is None

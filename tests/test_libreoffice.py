"""Workbooks re-saved or edited by LibreOffice, the way another office suite hands them back."""

import openpyxl
import pytest

from perfxl.read import read_workbook
from perfxl.validator import check_form

from .test_roundtrip import SEED_KEYS
from .test_spec import SEVEN

pytestmark = pytest.mark.libreoffice


@pytest.mark.parametrize("key", SEED_KEYS)
def test_resaved_seed_validates_without_errors(seeds, convert, key):
    resaved = convert(seeds[key].filled, "xlsx")
    form = read_workbook(resaved)
    assert (form.template, form.stamp_source) == (seeds[key].template, "sheet")
    checked = check_form(form)
    assert checked.errors == 0, [(p.code, p.cell, p.message) for p in checked.problems if p.severity == "error"]
    original = check_form(read_workbook(seeds[key].filled))
    assert [(p.code, p.sheet, p.cell) for p in checked.problems] == [(p.code, p.sheet, p.cell) for p in original.problems]
    assert [p.values for p in checked.projects] == [p.values for p in original.projects]


@pytest.mark.parametrize("template", SEVEN)
def test_stamp_and_names_survive_a_resave(tmp_path, convert, template):
    from perfxl import generator as generate
    from perfxl.spec import load_spec

    spec = load_spec(template, 2023, unit={"code": "0042", "name": "某单位", "department": "某部门"})
    blank = tmp_path / "blank.xlsx"
    blank.write_bytes(generate.build_workbook(spec, {"code": "0042", "name": "某单位"}, 2))
    resaved = convert(blank, "xlsx")
    form = read_workbook(resaved)
    assert (form.template, form.version, form.fingerprint, form.unit_code) == (template, spec.version, spec.fingerprint, "0042")
    assert len(form.sheets) == (2 if spec.multi_project else 1)
    assert set(form.sheets[0].fields) == set(spec.fields)
    wb = openpyxl.load_workbook(resaved)
    ws = wb[form.sheets[0].sheet]
    assert ws.protection.sheet


def test_a_form_copied_from_a_batch_master_survives_a_resave(tmp_path, convert):
    """A batch's blank forms are written by perfxl's own ZIP writer from a master's pieces compressed once
    (generator._Master): LibreOffice must open and save one as it does a form xlsxwriter wrote whole."""
    from perfxl import generator as generate
    from perfxl.roster import Unit

    units = [Unit("0042", "某单位&<甲>", "某部门"), Unit("0043", "另一单位", "某部门")]
    manifest = generate.generate_forms("national/project", 2023, units, tmp_path / "blank")
    resaved = convert(tmp_path / "blank" / manifest[0]["file"], "xlsx")
    form = read_workbook(resaved)
    assert (form.template, form.unit_code, form.unit_name) == ("national/project", "0042", "某单位&<甲>")
    assert set(form.sheets[0].fields) == set(read_workbook(tmp_path / "blank" / manifest[0]["file"]).sheets[0].fields)


def test_saved_as_xls(seeds, convert):
    xls = convert(seeds["002-0"].filled, "xls")
    form = read_workbook(xls)
    assert form.format == "xls" and form.template == "mianyang/project" and len(form.sheets) == 10
    checked = check_form(form)
    assert checked.errors == 0, [(p.code, p.cell, p.message) for p in checked.problems if p.severity == "error"]
    assert sum(p.values["budget"] for p in checked.projects) == 8_496_600


def test_rows_inserted_inside_and_below_the_indicator_table(seeds, lo_edit, tmp_path):
    seed = seeds["003-0"]
    original = check_form(read_workbook(seed.filled))
    first = int(read_workbook(seed.filled).sheets[0].tables["indicators"][0]["_row"])
    edited = lo_edit(seed.filled, tmp_path / "inserted.xlsx", "insert-rows", "项目1", first + 5, 3)
    checked = check_form(read_workbook(edited))
    assert checked.errors == 0
    assert [len(p.indicators) for p in checked.projects] == [len(p.indicators) for p in original.projects]
    assert [r.level3 for r in checked.projects[0].indicators] == [r.level3 for r in original.projects[0].indicators]
    # a clerk adds a row right under the table body and types an indicator into it
    body_end = int(read_workbook(edited).sheets[0].tables["indicators"][-1]["_row"])
    last = _table_last_row(edited, "项目1")
    edited2 = lo_edit(edited, tmp_path / "below.xlsx", "insert-rows", "项目1", last + 1, 1,
                      "fill", "项目1", f"A{last + 1}", "产出目标", "fill", "项目1", f"B{last + 1}", "数量",
                      "fill", "项目1", f"C{last + 1}", "新增的指标", "fill", "项目1", f"D{last + 1}", "≥3次")
    rows = check_form(read_workbook(edited2)).projects[0].indicators
    assert rows[-1].level3 == "新增的指标" and rows[-1].targets["value"].value == 3.0
    assert body_end < last + 1


def _table_last_row(path, sheet):
    from perfxl.fill import names_by_sheet

    ref = names_by_sheet(openpyxl.load_workbook(path))[sheet]["t_indicators"]
    return int(ref.split(":")[1].lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


def test_copied_project_sheet_is_read_as_another_project(seeds, lo_edit, tmp_path):
    edited = lo_edit(seeds["004-0"].filled, tmp_path / "copied.xlsx", "copy-sheet", "项目2", "项目3",
                     "fill", "项目3", "B4", "第三个项目")
    checked = check_form(read_workbook(edited))
    assert [p.sheet for p in checked.projects] == ["项目1", "项目2", "项目3"]
    assert checked.projects[2].name == "第三个项目"
    assert checked.errors == 0


def test_stamp_sheet_deleted_in_libreoffice(seeds, lo_edit, tmp_path):
    edited = lo_edit(seeds["000-0"].filled, tmp_path / "nostamp.xlsx", "delete-sheet", "_perfxl")
    form = read_workbook(edited)
    assert form.template == "yancheng/project" and form.stamp_source in {"properties", "labels"}
    assert check_form(form).errors == 0


def test_live_checks_are_evaluated_by_libreoffice(seeds, lo_edit, tmp_path):
    """The check cell beside a total says ✓ or ✗ once an office suite calculates the form."""
    from perfxl import generator as generate
    from perfxl.spec import cell_name, layout, load_spec

    seed = seeds["000-0"]
    spec = load_spec("yancheng/project", 2022, unit=seed.unit)
    lay = layout(spec)
    total_row = lay.fields["funding_total_budget"][0]
    check = cell_name(total_row, lay.check_column)
    good = seed.projects[0]
    bad = {"fields": dict(good["fields"], funding_general_budget=1224.13), "tables": good["tables"]}
    results = {}
    for label, project in (("good", good), ("bad", bad)):
        src = tmp_path / f"{label}.xlsx"
        src.write_bytes(generate.build_workbook(spec, seed.unit, values=[project]))
        recalculated = lo_edit(src, tmp_path / f"{label}-calc.xlsx")
        ws = openpyxl.load_workbook(recalculated, data_only=True)[spec.sheet_name]
        results[label] = (ws[check].value, ws[cell_name(lay.fields["funding_subtotal_budget"][0], lay.check_column)].value)
    assert results["good"] == ("✓ 与分项之和相符", "✓ 与分项之和相符")
    assert results["bad"][0].startswith("✓")  # the total still equals subtotal + carry-over + other
    assert results["bad"][1].startswith("✗")  # the subtotal no longer equals its sources


def test_a_libreoffice_resave_s_rich_text_is_read_without_the_xml_parser(seeds, convert):
    """LibreOffice writes the labels of a re-saved form as runs of rich text (a font for the Chinese, another
    for the digits): they are read by the fast path, as the XML parser reads them."""
    import zipfile

    from perfxl.reader import cells

    resaved = convert(seeds["002-0"].filled, "xlsx")
    xml = zipfile.ZipFile(resaved).read("xl/sharedStrings.xml")
    assert b"<r>" in xml, "LibreOffice wrote no rich text: this test no longer says anything"
    fast = cells._strings_fast(xml)
    assert fast is not None
    assert fast == cells._strings_expat(xml, "xl/sharedStrings.xml")

import io
import json
import zipfile
from pathlib import Path

import openpyxl
import pytest
import xlsxwriter.worksheet
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from perfxl import generator as generate
from perfxl.cli import cli
from perfxl.read import read_workbook
from perfxl.roster import Unit, read_roster
from perfxl.spec import describe, layout, load_spec

from .conftest import write_roster
from .test_spec import SEVEN

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

UNITS = [("001001", "盐城市住房公积金管理中心", "住建局"), ("001002", "上海市房地产学校", "房管局"),
         ("001003", "CON", "测试部门")]


def _generate(tmp_path, template, projects=2, extra=()):
    roster = write_roster(tmp_path / "roster.csv", UNITS)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["generate", template, "--year", "2023", "--roster", str(roster), "-o", str(out),
                                      "--projects", str(projects), *extra])
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "manifest.json").read_text("utf-8"))["forms"]


def _names(wb):
    names = {}
    for name, dn in wb.defined_names.items():
        names.setdefault(None, {})[name] = list(dn.destinations)
    for ws in wb.worksheets:
        for name, dn in ws.defined_names.items():
            names.setdefault(ws.title, {})[name] = list(dn.destinations)
    return names


@pytest.mark.parametrize("template", SEVEN)
def test_generated_form_is_protected_named_validated_and_stamped(tmp_path, template):
    out, manifest = _generate(tmp_path, template)
    assert [m["unit_code"] for m in manifest] == ["001001", "001002", "001003"]
    assert all((out / m["file"]).exists() for m in manifest)
    spec = load_spec(template, 2023)
    info = describe(spec)
    wb = openpyxl.load_workbook(out / manifest[0]["file"])
    project_sheets = [ws for ws in wb.worksheets if ws.title.startswith("项目") or ws.title == spec.sheet_name]
    assert len(project_sheets) == (2 if spec.multi_project else 1)
    names = _names(wb)
    for ws in project_sheets:
        assert ws.protection.sheet and ws.protection.insertRows is False  # False = inserting rows allowed
        scope = names[ws.title] if spec.multi_project else names[None]
        for f in info["fields"]:
            (sheet, ref), = scope[f["name"]]
            assert sheet == ws.title
            assert ws[ref.replace("$", "")].protection.locked is False, f["name"]
        for t in info["tables"]:
            (sheet, ref), = scope[t["name"]]
            first = ref.replace("$", "").split(":")[0]
            assert ws[first].protection.locked is False
        assert ws.data_validations.dataValidation, "dropdowns and prompts are present"
        label_row, label_col = next((p.row, p.col) for p in layout(spec).placements if p.kind == "label")
        assert ws.cell(label_row + 1, label_col + 1).protection.locked is True
        assert ws.print_title_rows or not spec.print_setup.get("repeat_header_of")
        assert ws.page_setup.paperSize == 9
    stamp = wb["_perfxl"]
    assert stamp.sheet_state == "hidden"
    values = {stamp.cell(r, 1).value: stamp.cell(r, 2).value for r in range(2, 11)}
    assert values["template"] == template and values["year"] == "2023" and values["unit_code"] == "001001"
    assert values["fingerprint"] == spec.fingerprint and values["unit_name"] == "盐城市住房公积金管理中心"


def test_chinese_and_reserved_names_make_safe_file_names(tmp_path):
    out, manifest = _generate(tmp_path, "yancheng/project")
    assert manifest[0]["file"].startswith("001001_盐城市住房公积金管理中心_2023_")
    assert not manifest[2]["file"].upper().startswith("CON.")
    for m in manifest:
        assert "/" not in m["file"] and "\\" not in m["file"]


def test_token_copies_equal_a_full_render(tmp_path):
    """The fast path (render once, patch strings) gives the same form as rendering for the unit."""
    out, manifest = _generate(tmp_path, "shanghai/project-2020")
    unit = {"code": "001002", "name": "上海市房地产学校", "department": "房管局"}
    full = tmp_path / "full.xlsx"
    full.write_bytes(generate.build_workbook(load_spec("shanghai/project-2020", 2023, unit=unit), unit, 2))
    fast = read_workbook(out / manifest[1]["file"])
    slow = read_workbook(full)
    assert fast.unit_name == slow.unit_name == "上海市房地产学校"
    assert [s.fields for s in fast.sheets] == [s.fields for s in slow.sheets]
    wb = openpyxl.load_workbook(out / manifest[1]["file"])
    assert wb["项目1"]["B3"].value == "上海市房地产学校"


def test_numeric_prefill_from_roster(tmp_path):
    roster = write_roster(tmp_path / "r.csv", [("9", "甲单位", "部门", "123456.5")],
                          header=("code", "name", "department", "last_budget"))
    out = tmp_path / "o"
    r = CliRunner().invoke(cli, ["generate", "shanghai/project-2020", "--year", "2020", "--roster", str(roster), "-o", str(out)])
    assert r.exit_code == 0, r.output
    form = read_workbook(next(out.glob("*.xlsx")))
    assert form.sheets[0].fields["last_budget"].value == 123456.5


def test_roster_reads_bom_gbk_and_xlsx(tmp_path):
    (tmp_path / "a.csv").write_bytes("单位编码,单位名称,主管部门\n0012,甲,乙\n".encode("gb18030"))
    assert read_roster(tmp_path / "a.csv")[0].code == "0012"
    wb = openpyxl.Workbook()
    wb.active.append(["code", "name", "department", "projects"])
    wb.active.append(["0013", "丙", "丁", 3])
    wb.save(tmp_path / "b.xlsx")
    unit = read_roster(tmp_path / "b.xlsx")[0]
    assert (unit.code, unit.projects) == ("0013", 3)


@pytest.mark.parametrize("rows,header,message", [
    ([("1", "a", "b"), ("1", "c", "d")], ("code", "name", "department"), "duplicate unit code"),
    ([("1", "a")], ("code", "name"), "missing column"),
])
def test_bad_roster_is_a_clear_error(tmp_path, rows, header, message):
    roster = write_roster(tmp_path / "r.csv", rows, header)
    r = CliRunner().invoke(cli, ["generate", "national/project", "--year", "2023", "--roster", str(roster), "-o", str(tmp_path / "o")])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output


def test_unknown_template_and_unwritable_output(tmp_path):
    roster = write_roster(tmp_path / "r.csv", UNITS)
    r = CliRunner().invoke(cli, ["generate", "nope/form", "--year", "2023", "--roster", str(roster)])
    assert r.exit_code == 2 and "unknown template" in r.output
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = CliRunner().invoke(cli, ["generate", "national/project", "--year", "2023", "--roster", str(roster), "-o", str(blocker / "sub")])
    assert r.exit_code == 2 and "output folder" in r.output and "Traceback" not in r.output


def test_jinja_error_through_the_cli(tmp_path):
    (tmp_path / "t" / "x").mkdir(parents=True)
    (tmp_path / "t" / "x" / "f.yaml").write_text("a: {% if %}\n", "utf-8")
    r = CliRunner().invoke(cli, ["describe", "x/f", "--templates", str(tmp_path / "t")])
    assert r.exit_code == 2 and "f.yaml:1" in r.output


def test_blank_rows_are_configurable(tmp_path):
    out, manifest = _generate(tmp_path, "yancheng/project", extra=("--rows", "120"))
    info = describe(load_spec("yancheng/project", 2023, blank_rows=120))
    indicators = next(t for t in info["tables"] if t["id"] == "indicators")
    assert indicators["rows"] == 120 + indicators["prefilled_rows"]
    wb = openpyxl.load_workbook(out / manifest[0]["file"])
    (sheet, ref), = list(wb.defined_names["t_indicators"].destinations)
    first, last = ref.replace("$", "").split(":")
    assert int(last[1:]) - int(first[1:]) + 1 == 131


def test_password_protection(tmp_path):
    out, manifest = _generate(tmp_path, "national/project", extra=("--password", "s3cret"))
    ws = openpyxl.load_workbook(out / manifest[0]["file"])["项目绩效目标"]
    assert ws.protection.sheet and ws.protection.password


def test_describe_json_matches_the_names_in_the_file(tmp_path):
    r = CliRunner().invoke(cli, ["describe", "mianyang/project", "--year", "2021", "--json"])
    info = json.loads(r.output)
    out, manifest = _generate(tmp_path, "mianyang/project", projects=1)
    with zipfile.ZipFile(out / manifest[0]["file"]) as zf:
        workbook_xml = zf.read("xl/workbook.xml").decode()
    for entry in info["fields"] + info["tables"]:
        assert f'name="{entry["name"]}" localSheetId=' in workbook_xml or f'localSheetId="1" name="{entry["name"]}"' in workbook_xml


def test_generation_is_deterministic(tmp_path):
    spec = load_spec("yancheng/department", 2021)
    first = generate.build_workbook(spec, {"code": "1", "name": "x"})
    assert first == generate.build_workbook(spec, {"code": "1", "name": "x"})
    assert first != generate.build_workbook(spec, {"code": "2", "name": "x"})


@pytest.mark.parametrize("template", ["shanghai/project-2020", "national/project", "yancheng/department"])
def test_each_member_of_a_copy_patched_from_the_master_is_what_a_form_built_for_the_unit_holds(tmp_path, template):
    """A batch patches each unit's values into a master's members kept compressed (the pieces between the
    tokens, concatenated as they are): every member, inflated, must be the one xlsxwriter writes for that
    unit, for a name XML must escape and a name long enough to need a master of its own."""
    units = [Unit("001002", "上海市房地产学校", "房管局"), Unit("001003", 'A&B<技工>学校 "联合"', "教育局"),
             Unit("001004", "上海市某某区某某街道社区事务受理服务中心（社区综合帮扶工作站）附属单位", "民政局")]
    manifest = generate.generate_forms(template, 2023, units, tmp_path)
    for unit, entry in zip(units, manifest):
        built = zipfile.ZipFile(io.BytesIO(generate.build_workbook(load_spec(template, 2023, unit=unit.as_params()),
                                                                   unit.as_params())))
        with zipfile.ZipFile(tmp_path / entry["file"]) as patched:
            assert patched.testzip() is None
            assert patched.namelist() == built.namelist()
            assert {n: patched.read(n) for n in patched.namelist()} == {n: built.read(n) for n in built.namelist()}


@pytest.mark.parametrize("template", ["national/project", "shanghai/project-2020", "national/selfeval"])
def test_formulas_prepared_once_per_text_write_the_workbook_xlsxwriter_writes(template, monkeypatch):
    """Project sheets keep each formula as xlsxwriter prepared it the first time (generator._FormSheet): the
    workbook must be the very bytes xlsxwriter's own worksheet writes, the second time as the first."""
    spec = load_spec(template, 2023, unit={"code": "1", "name": "某单位"})
    generate._PREPARED.clear()
    memoised = generate.build_workbook(spec, {"code": "1", "name": "某单位"}, 2)
    assert generate._PREPARED, "the live checks' formulas went through the memo"
    again = generate.build_workbook(spec, {"code": "1", "name": "某单位"}, 2)
    monkeypatch.setattr(generate, "_FormSheet", xlsxwriter.worksheet.Worksheet)
    assert memoised == again == generate.build_workbook(spec, {"code": "1", "name": "某单位"}, 2)


RICH_LOOKING = "<r>x</t></si><si><t>注入</r>"  # xlsxwriter would write it into sharedStrings.xml unescaped


def test_declared_text_shaped_like_a_rich_string_is_written_as_text(tmp_path):
    """A unit's declared text reaches its follow-up form (and, through the indicator library, every unit's
    form): written as xlsxwriter's rich-string shortcut it broke sharedStrings.xml."""
    from xml.etree import ElementTree

    spec = load_spec("national/selfeval", 2022, blank_rows=2)
    columns = [c.id for c in spec.tables["indicators"].columns]
    row = [RICH_LOOKING if c == "level3" else "产出指标" if c == "level1" else "" for c in columns]
    data = generate.build_workbook(spec, {"code": "001001", "name": RICH_LOOKING, "department": "住建局"},
                                   values=[{"fields": {"project_name": RICH_LOOKING}, "tables": {"indicators": [row]}}])
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        ElementTree.fromstring(zf.read("xl/sharedStrings.xml"))  # well-formed
    wb = openpyxl.load_workbook(io.BytesIO(data))
    texts = {c.value for ws in wb.worksheets for r in ws.iter_rows() for c in r}
    assert RICH_LOOKING in texts
    (tmp_path / "form.xlsx").write_bytes(data)
    form = read_workbook(tmp_path / "form.xlsx")
    assert form.sheets[0].fields["project_name"].value == RICH_LOOKING
    assert form.unit_name == RICH_LOOKING


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from("<>/&;rt 中文x\"'"), max_size=30))
def test_safe_workbook_writes_any_text_as_that_text(middle):
    from perfxl.xlsxsafe import SafeWorkbook

    texts = [middle, f"<r>{middle}</r>", f"<r>{middle}", f"{middle}</r>"]
    buffer = io.BytesIO()
    wb = SafeWorkbook(buffer, {"in_memory": True, "strings_to_formulas": False, "strings_to_urls": False})
    ws = wb.add_worksheet()
    for i, text in enumerate(texts):
        assert ws.write_string(i, 0, text) == 0
        assert ws.merge_range(i, 1, i, 2, text) == 0
    wb.close()
    read = openpyxl.load_workbook(io.BytesIO(buffer.getvalue())).active
    for i, text in enumerate(texts, start=1):
        assert read.cell(i, 1).value in (text, None if text == "" else text)
        assert read.cell(i, 2).value in (text, None if text == "" else text)


@pytest.mark.parametrize("template", ["national/project", "shanghai/project-2020", "yancheng/department",
                                      "yancheng/project", "national/selfeval"])
def test_a_unit_named_with_a_character_beyond_the_bmp_gets_its_form(tmp_path, template):
    """Jinja's tojson wrote 𠮷 as a pair of surrogate escapes, which YAML refuses: a roster unit named with a
    生僻字 (or its department) stopped the whole round, and the error blamed the shipped template."""
    unit = Unit("001009", "𠮷州市𬌗财政局😀", "𠮷部门")
    spec = load_spec(template, 2023, unit=unit.as_params())
    (tmp_path / "form.xlsx").write_bytes(generate.build_workbook(spec, unit.as_params()))
    form = read_workbook(tmp_path / "form.xlsx")
    assert form.unit_name == unit.name
    assert unit.name in {c.value for sheet in form.sheets for c in sheet.fields.values()}  # a field's default


def _template_with(tmp_path, department: str) -> Path:
    """yancheng/project as a bureau's own template, its 主管部门 default written as `department`, with two
    files it may take in: mine/m.j2 (a macro) and mine/inc.j2."""
    text = (TEMPLATES / "yancheng" / "project.yaml").read_text("utf-8")
    text = text.replace("{{ unit.department | tojson }}", department).replace("template: yancheng/project",
                                                                               "template: mine/project")
    (tmp_path / "tpl" / "mine").mkdir(parents=True, exist_ok=True)
    (tmp_path / "tpl" / "mine" / "project.yaml").write_text(text, "utf-8")
    (tmp_path / "tpl" / "mine" / "m.j2").write_text("{% macro dept() %}{{ unit.department[:1] | tojson }}"
                                                    "{% endmacro %}", "utf-8")
    (tmp_path / "tpl" / "mine" / "inc.j2").write_text("{{ unit.department[:1] | tojson }}", "utf-8")
    return tmp_path / "tpl"


@pytest.mark.parametrize("department", ['{{ (unit.department ~ "（" ~ unit.code[:3] ~ "）") | tojson }}',
                                        '{{ unit.department | lower | tojson }}',
                                        '{% if "局" in unit.department %}"局"{% else %}"其他"{% endif %}',
                                        '{% set d = unit.department %}{{ d | tojson }}',
                                        '{{ unit["department"] | tojson }}', '{{ unit.department | tojson | lower }}',
                                        # around a plain output, something that works on what it writes
                                        '{% filter lower %}{{ unit.department | tojson }}{% endfilter %}',
                                        '{% set d %}{{ unit.department | tojson }}{% endset %}{{ (d ~ "")[1:3] | tojson }}',
                                        '{% macro m() %}{{ unit.department | tojson }}{% endmacro %}{{ m()[1:3] | tojson }}',
                                        '{% macro w() %}{{ caller()[1:3] | tojson }}{% endmacro %}'
                                        '{% call w() %}{{ unit.department | tojson }}{% endcall %}',
                                        '{% from "mine/m.j2" import dept with context %}{{ dept() }}',
                                        '{% include "mine/" ~ "inc.j2" %}', '{% include ["mine/inc.j2"] %}'])
def test_a_template_that_works_on_the_unit_s_values_gives_each_unit_what_it_makes_of_its_own(tmp_path, department):
    """Blank forms patched from a master rendered for tokens gave every unit what the template made of the
    tokens (主管部门 "PXLTOK…（PXL）" on every form): such a template's forms are built one by one."""
    templates = _template_with(tmp_path, department)
    units = [Unit("320902001", "甲单位", "财政局"), Unit("410100002", "乙单位", "教育局")]
    manifest = generate.generate_forms("mine/project", 2023, units, tmp_path / "out", templates_dir=templates)
    for unit, entry in zip(units, manifest):
        spec = load_spec("mine/project", 2023, unit=unit.as_params(), templates_dir=templates)
        form = read_workbook(tmp_path / "out" / entry["file"], templates_dir=templates)
        assert form.sheets[0].fields["department"].value == spec.fields["department"].default
        assert "PXL" not in str(spec.fields["department"].default)


def test_every_shipped_template_puts_the_unit_s_values_on_its_forms_as_they_are():
    """The shipped templates' forms are patched from masters: each names the unit only as
    `{{ unit.X | tojson }}` (what spec.substitutes_unit looks for)."""
    from perfxl.spec import list_templates, substitutes_unit

    for name in list_templates():
        assert substitutes_unit(load_spec(name, 2023, unit=dict(generate.TOKENS)), generate.TOKENS), name

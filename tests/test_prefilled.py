"""Follow-up forms patched from a master (perfxl.prefilled) are the forms xlsxwriter builds.

Each comparison opens both workbooks and compares every member's XML with each shared string put in place
of its index: the same bytes, row heights, styles, validations and names included. Only the order of the
shared strings may differ (a copy adds the unit's after the master's)."""

from __future__ import annotations

import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perfxl import followup
from perfxl.followup import ADDED_ROWS, DEFAULT_PREFILL, PREFILLED_COLUMNS, Declared
from perfxl.generator import TOKENS
from perfxl.prefilled import PrefilledMaster, shared_string_xml
from perfxl.read import read_workbook
from perfxl.rounds import ADJUST
from perfxl.spec import load_spec

YEAR = 2022
ROUND = "20221201-abcdef"
UNIT = {"code": "001001", "name": "盐城市住房公积金管理中心", "department": "住建局", "round": ROUND}
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
FOLLOWUPS = ("national/selfeval", "national/monitor", "national/adjust", "national/department-selfeval",
             "national/department-monitor", "national/department-adjust")


def resolved(data: bytes) -> dict[str, bytes]:
    """Every member of a package, each shared-string index in a sheet replaced by its <si>, and the shared
    strings as a sorted set."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    entries = re.findall(rb"<si>.*?</si>", members["xl/sharedStrings.xml"], re.S)
    for name, raw in members.items():
        if name.startswith("xl/worksheets/"):
            members[name] = re.sub(rb't="s"><v>([0-9]+)</v>', lambda m: b't="s"><v>' + entries[int(m.group(1))]
                                   + b"</v>", raw)
    members["xl/sharedStrings.xml"] = b"\n".join(sorted(set(entries)))
    return members


def _fields(template: str, templates_dir=None) -> list[str]:
    spec = load_spec(template, YEAR, templates_dir=templates_dir)
    return [f for f in (spec.prefill or DEFAULT_PREFILL) if f in spec.fields]


def _project(template: str, n: int, rows: list[tuple], texts: dict | None = None, templates_dir=None) -> Declared:
    spec = load_spec(template, YEAR, templates_dir=templates_dir)
    fields = {}
    for f in _fields(template, templates_dir):
        kind = spec.fields[f].type
        fields[f] = (texts or {}).get(f, 100.0 + n if kind in ("money", "number") else f"{spec.fields[f].label}{n}")
    return Declared(UNIT["code"], fields, [
        {"level1": l1, "level2": l2, "level3": l3, "target": target, "group": "产出", "points": points}
        for l1, l2, l3, target, points in rows], f"项目{n}")


def _task(template: str, projects: list[Declared], shared: bool, unit: dict = UNIT, templates_dir=None,
          region: str | None = None, region_shared: tuple | None = None) -> tuple:
    spare = ADDED_ROWS if load_spec(template, YEAR, templates_dir=templates_dir).round.stage == ADJUST else 0
    return (template, YEAR, region, unit, projects, templates_dir, None, spare, shared, region_shared)


def _patched_and_built(template: str, projects: list[Declared], unit: dict = UNIT,
                       templates_dir=None, region: str | None = None,
                       region_shared: bool = False) -> tuple[bytes, bytes]:
    if region_shared:
        region_shared = followup._shared_region_key(load_spec(template, YEAR, region, templates_dir=templates_dir).title,
                                                    True)
    else:
        region_shared = None
    task = _task(template, projects, True, unit, templates_dir, region, region_shared)
    spare = task[7]
    rows = max(max(len(d.rows) for d in projects) + spare, 1)
    master = followup._master(template, YEAR, region, unit, len(projects), rows, tuple(projects[0].fields),
                              templates_dir, None, region_shared)
    assert master is not None
    own = {**unit, "region": region} if region_shared is not None else unit
    patched = master.copy_for(own, *followup._prefill(master.table, master.columns, projects))
    assert patched is not None, "the values fit the master: the form must be patched, not built"
    assert resolved(followup._build(task)) == resolved(patched)  # what the round's workers hand out
    return patched, followup._build(_task(template, projects, False, unit, templates_dir, region))


ROWS = [("产出指标", "数量指标", "完成住房公积金归集", "≥95%", 10.0),
        ("产出指标", "质量指标", "资金到位率" * 6, "=100%", 5.5),
        ("效益指标", "社会效益指标", "群众满意度，较上年提高并保持在较高水平，且投诉处理及时" * 3, "≥90%", 2.25),
        ("满意度指标", "服务对象满意度指标", "服务对象满意度", "≥85%", 0)]


@pytest.mark.parametrize("template", FOLLOWUPS)
def test_a_patched_follow_up_form_is_the_form_xlsxwriter_builds(template):
    projects = [_project(template, 1, ROWS), _project(template, 2, ROWS[:2])]
    if not load_spec(template, YEAR).multi_project:
        projects = projects[:1]
    patched, built = _patched_and_built(template, projects)
    assert resolved(patched) == resolved(built)


# A county's short name, a long one whose title wraps 填表说明's first line, a city
REGIONS = ("甲县", "某某省某某市某某自治县某某经济技术开发区管理委员会辖区某某镇", "绵阳市")


@pytest.mark.parametrize("template", FOLLOWUPS)
@pytest.mark.parametrize("region", REGIONS)
def test_a_form_patched_from_the_master_every_region_shares_is_the_form_built_for_its_region(template, region):
    """The national follow-up templates show the region only as it is (in their titles and stamps): one
    master, rendered for the region's token, serves every region, and each unit's copy is the form
    xlsxwriter builds for its own region, title, stamp, document properties and row heights included."""
    assert followup.region_shares_master(template, YEAR, region, ROUND, None)
    projects = [_project(template, 1, ROWS), _project(template, 2, ROWS[:2])]
    if not load_spec(template, YEAR).multi_project:
        projects = projects[:1]
    patched, built = _patched_and_built(template, projects, region=region, region_shared=True)
    assert resolved(patched) == resolved(built)
    assert region.encode() in resolved(patched)["xl/sharedStrings.xml"]
    assert b"PXLTOKEN" not in b"".join(resolved(patched).values())


def test_units_of_many_regions_share_one_master_unless_their_titles_wrap_differently():
    template = "national/selfeval"
    project = _project(template, 1, ROWS)
    keys = {followup._master_key(YEAR, followup._shared_region_key(load_spec(template, YEAR, r).title, True), UNIT,
                                 [project], 0) for r in ("甲县", "乙县", "丙市", "丁区")}
    assert len(keys) == 1
    wraps = followup._shared_region_key(load_spec(template, YEAR, REGIONS[1]).title, True)
    assert followup._master_key(YEAR, wraps, UNIT, [project], 0) not in keys


CHOICES = ",".join(f'"选项{i:02d}号内容"' for i in range(30))
FIELD = "preparer: {label: 填报人, type: text, required: true}"
# The region where the builder cuts or breaks a text after the spec: a prompt's title at 32 characters, a
# label broken at its phrases, a dropdown's list at 255 characters (30 choices and the token pass it)
REGION_IN_FIELDS = ('preparer: {label: "一二三四五六七八九十一二三四五六七八九十{{ region }}", type: text, required: true}',
                    'preparer: {label: "{{ region }}调整（金额万元）", type: text, required: true}',
                    'preparer: {label: 填报人, type: choice, required: true, choices: [' + CHOICES + ', "{{ region }}"]}')


@pytest.mark.parametrize("field", REGION_IN_FIELDS)
def test_a_region_in_a_label_prompt_or_choice_keeps_a_master_per_region(tmp_path, field):
    """Where the builder cuts or breaks a text holding the region after the spec is rendered, it would cut
    the token, not the region: a master for the token gave every form a prompt titled …PXLTOKENREGI, or a
    label broken where the region's would not be, or stopped the round (a dropdown list past 255)."""
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    text = (TEMPLATES / "national" / "selfeval.yaml").read_text(encoding="utf-8")
    assert FIELD in text
    (tmp_path / "templates" / "mine").mkdir()
    (tmp_path / "templates" / "mine" / "selfeval.yaml").write_text(text.replace(FIELD, field), encoding="utf-8")
    templates = tmp_path / "templates"
    assert followup.region_shares_master("national/selfeval", YEAR, "甲县", ROUND, templates)
    assert not followup.region_shares_master("mine/selfeval", YEAR, "甲县", ROUND, templates)
    project = _project("mine/selfeval", 1, ROWS, templates_dir=templates)
    patched, built = _patched_and_built("mine/selfeval", [project], templates_dir=templates, region="甲县")
    assert resolved(patched) == resolved(built)
    assert b"PXLTOKEN" not in b"".join(resolved(patched).values())


@pytest.mark.parametrize("region", ["PXLTOKENREGIONPXL", "PXLTOKENNAMEPXL", "甲PXLTOKENCODEPXL县"])
def test_a_region_named_like_a_token_is_kept_as_it_is(tmp_path, region):
    """check_region takes letters, so a roster's region may read like a master's token: its blank and
    follow-up forms are built for it, and show it, not a unit's name or nothing."""
    from perfxl.generator import build_workbook, generate_forms
    from perfxl.roster import Unit

    units = [Unit(code=f"00{i}", name=f"单位{i}", department="部门", region=region) for i in range(3)]
    out = tmp_path / "blank"
    generate_forms("national/project", YEAR, units, out)
    for unit in units:
        form = read_workbook(next(out.glob(f"{unit.code}_*.xlsx")))
        assert (form.unit_code, form.unit_name, form.region) == (unit.code, unit.name, region)
    assert not followup.region_shares_master("national/selfeval", YEAR, region, ROUND, None)
    project = _project("national/selfeval", 1, ROWS)
    task = _task("national/selfeval", [project], True, region=region)
    data = followup._build(task)
    whole = build_workbook(load_spec("national/selfeval", YEAR, region, unit=UNIT, blank_rows=len(ROWS)), UNIT,
                           values=followup._prefill(*_table_of("national/selfeval"), [project])[0],
                           declared=followup._prefill(*_table_of("national/selfeval"), [project])[1])
    assert resolved(data) == resolved(whole)


def _table_of(template: str) -> tuple[str, list[str]]:
    table = next(iter(load_spec(template, YEAR).tables.values()))
    return table.id, [c.id for c in table.columns]


def test_a_template_that_works_on_the_region_keeps_a_master_per_region(tmp_path):
    """A bureau's template that shortens the region, or says something of one region only, is not the token
    with the region put in: each region gets its own master, and its forms are still the built ones."""
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    path = tmp_path / "templates" / "national" / "selfeval.yaml"
    text = path.read_text(encoding="utf-8")
    old = '(region if region != "全国" else "")'
    assert old in text
    for i, changed in enumerate(('(region[:2] if region != "全国" else "")',
                                 '((region ~ "（试点）") if region == "甲县" else region)')):
        shutil.rmtree(tmp_path / "templates" / "mine", ignore_errors=True)
        (tmp_path / "templates" / "mine").mkdir()
        (tmp_path / "templates" / "mine" / f"selfeval{i}.yaml").write_text(text.replace(old, changed), encoding="utf-8")
        for other in ("_base.yaml",):
            if (tmp_path / "templates" / "national" / other).exists():
                shutil.copy(tmp_path / "templates" / "national" / other, tmp_path / "templates" / "mine" / other)
        template = f"mine/selfeval{i}"
        assert not followup.region_shares_master(template, YEAR, "甲县", ROUND, tmp_path / "templates")
        project = _project(template, 1, ROWS, templates_dir=tmp_path / "templates")
        patched, built = _patched_and_built(template, [project], templates_dir=tmp_path / "templates", region="甲县")
        assert resolved(patched) == resolved(built)


def test_rows_grow_with_the_unit_s_text_and_its_name(tmp_path):
    """Row heights are the unit's: a long 三级指标 and a long project name take taller rows than the master's
    tokens did, and a name that wraps 填表说明's line gets a master of its own."""
    template = "national/selfeval"
    long_name = dict(UNIT, name="某某市某某区某某街道办事处社区卫生服务中心及其下属各站点联合体" * 3)
    short = [_project(template, 1, ROWS[:1])]
    tall = [_project(template, 1, [ROWS[0], ("产出指标", "时效指标", "按时完成" * 40, "2022年12月31日前", 1)],
                     {"project_name": "很长的项目名称" * 20})]
    for unit, projects in ((UNIT, short), (UNIT, tall), (long_name, short)):
        patched, built = _patched_and_built(template, projects, unit)
        assert resolved(patched) == resolved(built)
    (tmp_path / "tall.xlsx").write_bytes(_patched_and_built(template, tall)[0])
    ws = openpyxl.load_workbook(tmp_path / "tall.xlsx")["项目1"]
    assert max(d.height or 0 for d in ws.row_dimensions.values()) > 100


def test_a_cell_showing_the_unit_s_name_is_as_tall_as_that_name_needs(tmp_path):
    """A field whose default is the unit's name (a bureau's template may have one the prefill does not fill)
    is as tall as the unit's name needs, not the token the master was written with."""
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    path = tmp_path / "templates" / "national" / "selfeval.yaml"
    text = path.read_text(encoding="utf-8")
    old = "preparer: {label: 填报人, type: text, required: true}"
    assert old in text
    path.write_text(text.replace(old, "preparer: {label: 填报人, type: text, required: true, default: {{ unit.name | tojson }}}"),
                    encoding="utf-8")
    templates = tmp_path / "templates"
    template = "national/selfeval"
    projects = [_project(template, 1, ROWS[:1], templates_dir=templates)]
    heights = set()
    for name in ("短名", "某某市某某区某某街道办事处社区卫生服务中心联合体" * 4):
        unit = dict(UNIT, name=name)
        patched, built = _patched_and_built(template, projects, unit, templates)
        assert resolved(patched) == resolved(built)
        heights.add(re.findall(rb'<row [^>]*>', resolved(patched)["xl/worksheets/sheet2.xml"]).__repr__())
    assert len(heights) == 2  # the long name took a taller row


TEXT = st.lists(st.sampled_from(list("产出指标数量 \t\n率≥%<>&\"'_x0041r/") + ["\x01", "\x1f", "_x0041_", "<r>", "</r>",
                                                                          "\u3000", "\ufffe"]),
                max_size=40).map("".join)
VALUE = st.one_of(TEXT, st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6),
                  st.just(True), st.just("1,234.5"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(TEXT, TEXT, TEXT, VALUE, st.one_of(st.floats(0, 100), st.integers(0, 20))),
                     min_size=0, max_size=6),
       name=TEXT, budget=VALUE, goal=TEXT)
def test_any_declared_values_patch_to_the_built_form(rows, name, budget, goal):
    template = "national/selfeval"
    project = _project(template, 1, [(*r[:4], r[4]) for r in rows],
                       {"project_name": name, "funds_total_initial": budget, "goal_expected": goal})
    patched, built = _patched_and_built(template, [project])
    assert resolved(patched) == resolved(built)


def test_values_that_do_not_fit_the_master_are_built_instead():
    template = "national/selfeval"
    spec = load_spec(template, YEAR, unit={**TOKENS, "round": ROUND}, blank_rows=2)
    table = next(iter(spec.tables.values()))
    fields = tuple(_fields(template))
    master = PrefilledMaster(spec, {**TOKENS, "round": ROUND}, 1, fields, table.id,
                             PREFILLED_COLUMNS & {c.id for c in table.columns}, None, UNIT)
    columns = [c.id for c in table.columns]
    row = ["" for _ in columns]
    ok = {"fields": dict.fromkeys(fields, "x"), "tables": {table.id: [row]}}
    assert master.copy_for(UNIT, [ok], [[]]) is not None
    unfilled = [c for c in columns if c not in PREFILLED_COLUMNS][0]
    for values in (
        {**ok, "tables": {table.id: [row, row, row]}},  # more rows than the master has
        {**ok, "fields": {**ok["fields"], "other": "x"}},  # a field it does not prefill
        {**ok, "tables": {table.id: [[("填了" if c == unfilled else "") for c in columns]]}},  # a column it leaves
        {**ok, "fields": {**ok["fields"], fields[0]: "长" * 40_000}},  # longer than a cell takes
    ):
        assert master.copy_for(UNIT, [values], [[]]) is None
    assert master.copy_for(UNIT, [ok, ok], [[], []]) is None  # another count of sheets


@settings(max_examples=200, deadline=None)
@given(TEXT)
def test_a_copy_s_shared_strings_are_written_as_xlsxwriter_writes_them(text):
    from perfxl.xlsxsafe import SafeWorkbook

    buffer = io.BytesIO()
    wb = SafeWorkbook(buffer, {"in_memory": True})
    wb.add_worksheet().write_string(0, 0, text)
    wb.close()
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as zf:
        sst = zf.read("xl/sharedStrings.xml")
    assert re.findall(rb"<si>.*?</si>", sst, re.S) == [shared_string_xml(text)]


def test_a_unit_code_that_looks_like_a_token_is_measured_as_itself():
    """The tokens were replaced one after another: a code that reads as the name's token took the name's
    length, and every later unit of that master got the row heights of that measure."""
    template = "national/selfeval"
    odd = dict(UNIT, code=TOKENS["name"], name="某" * 60)
    projects = [_project(template, 1, ROWS[:1])]
    followup._MASTERS.clear()
    for unit in (odd, UNIT):
        patched, built = _patched_and_built(template, projects, unit)
        assert resolved(patched) == resolved(built)


def test_a_roster_name_with_characters_xml_cannot_hold_gives_a_form_that_opens(tmp_path):
    template = "national/selfeval"
    unit = dict(UNIT, name="单位\ufffe名\x01称_x0041_\"<&>", department="部门\uffff")
    patched, built = _patched_and_built(template, [_project(template, 1, ROWS[:2])], unit)
    (tmp_path / "patched.xlsx").write_bytes(patched)
    (tmp_path / "built.xlsx").write_bytes(built)
    cells = [{ws.title: [[c.value for c in row] for row in ws.iter_rows()] for ws in openpyxl.load_workbook(p)}
             for p in (tmp_path / "patched.xlsx", tmp_path / "built.xlsx")]
    assert cells[0] == cells[1]
    assert "单位_xFFFE_名_x0001_称_x0041_\"<&>" in cells[0]["填表说明"][1][0]  # as xlsxwriter writes it
    stamped = [read_workbook(tmp_path / name).unit_name for name in ("patched.xlsx", "built.xlsx")]
    assert stamped[0] == stamped[1] and "_x0041_" in stamped[0]


def test_a_long_text_shaped_like_a_rich_string_does_not_stop_the_round(tmp_path):
    """Escaped inside its run, a 7,000-character text grew past a cell's 32,767 and the builder gave up:
    the whole round stopped at that unit."""
    template = "national/selfeval"
    text = "<r>" + "&" * 7000 + "</r>"
    project = _project(template, 1, [("产出指标", "数量指标", text, text, 5)], {"goal_expected": text})
    data = followup._build(_task(template, [project], True))
    (tmp_path / "form.xlsx").write_bytes(data)
    ws = openpyxl.load_workbook(tmp_path / "form.xlsx")["项目1"]
    assert sum(1 for row in ws.iter_rows() for c in row if c.value == text) == 3


NATIONAL_ROWS = [("产出指标", "数量指标", "完成户数", "≥100户"), ("产出指标", "质量指标", "验收合格率", "≥95%"),
                 ("产出指标", "时效指标", "完成时间", "2022年12月31日前"),
                 ("效益指标", "社会效益指标", "群众知晓率", "≥90%"),
                 ("满意度指标", "服务对象满意度指标", "服务对象满意度", "≥90%")]


def test_a_round_in_a_pool_of_workers_gives_each_unit_its_own_form_in_the_roster_s_order(tmp_path):
    """Sixty units in two shapes (4 and 5 indicator rows): the pool patches them from its masters, in
    batches sent a few at a time, and each form reads back as the one a single process makes for its unit."""
    from perfxl.generator import build_workbook
    from perfxl.merging import MergeOptions, run_merge
    from perfxl.roster import read_roster

    from .conftest import write_roster

    units = [(f"7{i:05d}", f"测试单位{i}", f"部门{i % 3}") for i in range(60)]
    roster = write_roster(tmp_path / "名单.csv", units)
    inbox = tmp_path / "申报"
    inbox.mkdir()
    for i, (code, name, department) in enumerate(units):
        unit = {"code": code, "name": name, "department": department}
        rows = [[l1, l2, f"{l3}{i}", target] for l1, l2, l3, target in NATIONAL_ROWS[:4 + i % 2]]
        fields = {"project_name": f"项目{i}", "project_attr": "新增项目", "project_period": "2022年",
                  "subject_code": "2010101", "long_term_goal": "提升公共服务水平。", "annual_goal": f"完成年度任务{i}。",
                  "funds_total_annual": 100.0 + i, "funds_fiscal_annual": 100.0 + i, "funds_other_annual": 0,
                  "funds_total_mid": 100.0 + i, "funds_fiscal_mid": 100.0 + i, "funds_other_mid": 0,
                  "preparer": "张三", "phone": "08162222222", "fill_date": "2021-11-15"}
        spec = load_spec("national/project", YEAR, unit=unit)
        (inbox / f"{code}.xlsx").write_bytes(build_workbook(spec, unit, values=[{"fields": fields,
                                                                                  "tables": {"indicators": rows}}]))
    run_merge([inbox], tmp_path / "申报汇总.xlsx", MergeOptions(roster=roster, jobs=1))
    forms = {}
    for jobs in (2, 1):
        out = tmp_path / f"自评表{jobs}"
        followup.generate_followups("national/selfeval", YEAR, read_roster(roster),
                                    tmp_path / "申报汇总_报送台账.sqlite", out, jobs=jobs)
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["forms"]
        assert [f["unit_code"] for f in manifest] == [u[0] for u in units]
        forms[jobs] = [read_workbook(out / f["file"]) for f in manifest]
    for pooled, alone, (code, name, _) in zip(forms[2], forms[1], units):
        assert (pooled.unit_code, pooled.unit_name) == (code, name)
        assert [s.fields["project_name"].value for s in pooled.sheets] == [f"项目{units.index((code, name, _))}"]
        assert [[(c.value, c.address) for c in s.fields.values()] for s in pooled.sheets] == \
            [[(c.value, c.address) for c in s.fields.values()] for s in alone.sheets]
        assert [[{k: (c.value, c.address) for k, c in row.items() if k != "_row"} for row in s.tables["indicators"]]
                for s in pooled.sheets] == [[{k: (c.value, c.address) for k, c in row.items() if k != "_row"}
                                             for row in s.tables["indicators"]] for s in alone.sheets]
        assert pooled.declared == alone.declared


def test_a_round_for_units_of_many_regions_makes_one_master_and_names_each_unit_s_region(tmp_path, monkeypatch):
    """Twelve units in three counties, alike but for their region: one master serves them all, and each
    unit's form is the one built for its county (its title, stamp and document properties)."""
    from perfxl import prefilled
    from perfxl.generator import build_workbook
    from perfxl.merging import MergeOptions, run_merge
    from perfxl.roster import read_roster

    from .conftest import write_roster

    regions = ("甲县", "乙县", "丙市高新区")
    units = [(f"8{i:05d}", f"测试单位{i}", "部门", regions[i % 3]) for i in range(12)]
    roster = write_roster(tmp_path / "名单.csv", units, header=("code", "name", "department", "region"))
    inbox = tmp_path / "申报"
    inbox.mkdir()
    for i, (code, name, department, region) in enumerate(units):
        unit = {"code": code, "name": name, "department": department}
        fields = {"project_name": f"项目{i}", "project_attr": "新增项目", "project_period": "2022年",
                  "subject_code": "2010101", "long_term_goal": "提升公共服务水平。", "annual_goal": "完成年度任务。",
                  "funds_total_annual": 100.0, "funds_fiscal_annual": 100.0, "funds_other_annual": 0,
                  "funds_total_mid": 100.0, "funds_fiscal_mid": 100.0, "funds_other_mid": 0,
                  "preparer": "张三", "phone": "08162222222", "fill_date": "2021-11-15"}
        spec = load_spec("national/project", YEAR, region, unit=unit)
        (inbox / f"{code}.xlsx").write_bytes(build_workbook(spec, unit, values=[
            {"fields": fields, "tables": {"indicators": [list(r) for r in NATIONAL_ROWS]}}]))
    run_merge([inbox], tmp_path / "申报汇总.xlsx", MergeOptions(roster=roster, jobs=1))
    made = []
    real = prefilled.PrefilledMaster.__init__
    monkeypatch.setattr(prefilled.PrefilledMaster, "__init__", lambda self, *a, **k: made.append(1) or real(self, *a, **k))
    followup._MASTERS.clear()
    out = tmp_path / "自评表"
    followup.generate_followups("national/selfeval", YEAR, read_roster(roster), tmp_path / "申报汇总_报送台账.sqlite",
                                out, jobs=1)
    assert len(made) == 1
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["forms"]
    assert [f["unit_code"] for f in manifest] == [u[0] for u in units]
    for entry, (code, _name, _department, region) in zip(manifest, units):
        data = (out / entry["file"]).read_bytes()
        form = read_workbook(out / entry["file"])
        assert (form.unit_code, form.region) == (code, region)
        assert entry["file"].endswith(f"_{region}项目支出绩效自评表.xlsx")
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            assert f"<dc:title>{region}项目支出绩效自评表</dc:title>" in zf.read("docProps/core.xml").decode()
            assert f"<Company>{region}</Company>" in zf.read("docProps/app.xml").decode()


def test_a_follow_up_template_that_works_on_the_unit_s_values_is_built_for_each_unit(tmp_path):
    """A master is rendered for tokens: a template that works on the unit's values (a title naming the first
    characters of the unit's name, `unit.name[:4]`) would give every unit what it made of the token. Such a
    template has no master."""
    text = (TEMPLATES / "national" / "selfeval.yaml").read_text("utf-8")
    text = text.replace('title: {{ ((region if region != "全国" else "") ~ "项目支出绩效自评表") | tojson }}',
                        'title: {{ (unit.name[:4] ~ "项目支出绩效自评表") | tojson }}').replace(
        "template: national/selfeval", "template: mine/selfeval")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "selfeval.yaml").write_text(text, "utf-8")
    project = _project("mine/selfeval", 1, ROWS[:2], templates_dir=tmp_path)
    rows = len(project.rows)
    assert followup._master("mine/selfeval", YEAR, None, UNIT, 1, rows, tuple(project.fields), tmp_path, None) is None
    (tmp_path / "form.xlsx").write_bytes(followup._build(_task("mine/selfeval", [project], True,
                                                                templates_dir=tmp_path)))
    texts = {c.value for ws in openpyxl.load_workbook(tmp_path / "form.xlsx") for row in ws.iter_rows() for c in row}
    assert "盐城市住项目支出绩效自评表" in texts and not any("PXL" in str(t) for t in texts)


@pytest.mark.parametrize("rows", [
    [("产出指标", "数量指标", "甲" * 20_000, "乙" * 15_000, 5)],  # one indicator's JSON past a cell
    [("产出指标", "数量指标", "𠮷" * 1_000 + str(i), "≥95%", 1) for i in range(25)],  # 30,000 characters, 60,000 for Excel
], ids=["one-long-row", "beyond-the-bmp"])
def test_the_declared_rows_come_back_whole_however_long(tmp_path, rows):
    """The hidden declared sheet cut a group's JSON at a cell's 32,767 without a word (xlsxwriter's -2 was
    not looked at), counting characters where Excel counts UTF-16 units: the form read back with no declared
    rows at all."""
    template = "national/selfeval"
    project = _project(template, 1, rows)
    (tmp_path / "form.xlsx").write_bytes(followup._build(_task(template, [project], True)))
    declared = read_workbook(tmp_path / "form.xlsx").declared["项目1"]
    assert [(d["level3"], d["target"], d["points"]) for d in declared] == [(r[2], r[3], r[4]) for r in rows]
    ws = openpyxl.load_workbook(tmp_path / "form.xlsx")["perfxl_declared"]
    assert all(len(str(c.value).encode("utf-16-le")) // 2 <= 32_767 for row in ws.iter_rows() for c in row)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 120), max_size=60))
def test_a_master_s_few_units_go_to_one_worker(sizes):
    """Batches were cut every 16 forms: a master whose few units a cut split went to both workers, and each
    built it (a province's varied rows and regions built a tenth of its masters twice; with one master for
    every region, masters of about 50 units, most of them)."""
    keys = [k for k, n in enumerate(sizes) for _ in range(n)]
    tasks = [(i,) for i in range(len(keys))]
    batches = list(followup._batches(tasks, keys))
    assert [t for b in batches for t in b] == tasks and all(len(b) <= followup.BATCH_MAX for b in batches)
    where = {}
    for b, batch in enumerate(batches):
        for (i,) in batch:
            where.setdefault(keys[i], set()).add(b)
    assert all(len(where[k]) == 1 for k, n in enumerate(sizes) if n <= 3 * followup.BATCH)
    assert all(len(b) >= followup.BATCH for b in batches[:-1])  # only the last batch is short

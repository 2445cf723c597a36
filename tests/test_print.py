"""What people read and print (#23): every workbook perfxl writes, printed by LibreOffice, loses nothing a
reader needs (tests/printcheck.py says what is measured and how).

The workbooks are made afresh with perfxl's own API and CLI: a blank form of every template, of a designed
template and of the shipped 绵阳 design (each with its 分发清单), and everything the demo writes — the
declaration's summary with its review, the annotated copies and 退回通知 of the units to revise, the
monitoring and self-evaluation rounds (forms, 分发清单, summaries) — and a roll-up of the demo's export
with cities and counties. They are rendered in two LibreOffice processes; each test looks at its own files.
Set PERFXL_PRINTCHECK_REPORT to a path to keep every finding there, one line each."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from perfxl.cli import cli
from perfxl.demo import run_demo
from perfxl.spec import list_templates, load_spec, shipped_templates_dir

from . import history_campaign, printcheck
from .conftest import IN_CI, write_roster
from .designs import make_design

pytestmark = pytest.mark.libreoffice

YEARS = {"shanghai/project-2018": 2018, "shanghai/project-2020": 2020, "yancheng/project": 2022}
# declarations and department forms go out blank; the follow-up forms (monitoring, self-evaluation) are made
# from a declaration's ledger, as the demo makes them
TEMPLATES = [t for t in list_templates() if load_spec(t, YEARS.get(t, 2021)).round.declaration]
LONGEST_UNIT = ("510704003", "游仙区文化广播电视和旅游局", "游仙区人民政府")  # the demo roster's longest name
KINDS = ([f"blank form {t}" for t in TEMPLATES] + ["designed form acme/fund", "designed form mianyang/designed",
         "分发清单", "declaration summary", "annotated copies", "退回通知", "monitoring form", "monitoring summary",
         "self-evaluation form", "self-evaluation summary", "roll-up summary", "部门整体 monitoring form",
         "部门整体 self-evaluation form", "adjustment form", "blank form with 上年参考 and 指标参考", "指标库",
         "declaration summary with 历史对比"])


def _cli(*args: str) -> None:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output


def _forms(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.xlsx") if p.name != "分发清单.xlsx")


def _longest_form(folder: Path) -> Path:
    return max(_forms(folder), key=lambda p: (len(p.stem), p.name))


def _workbooks(base: Path, department_declaration: Path, department_unit: dict) -> dict[str, list[Path]]:
    """Every kind of workbook perfxl writes, made as a bureau makes it."""
    kinds: dict[str, list[Path]] = {}
    roster = write_roster(base / "名单.csv", [LONGEST_UNIT])
    manifests = []
    for template in TEMPLATES:
        out = base / "forms" / template.replace("/", "_")
        _cli("generate", template, "--year", str(YEARS.get(template, 2021)), "--roster", str(roster), "-o", str(out))
        kinds[f"blank form {template}"] = _forms(out)
        manifests.append(out / "分发清单.xlsx")

    design = make_design(base / "某区表样.xlsx")
    shipped = shipped_templates_dir() / "designs" / "绵阳项目支出绩效目标表样.xlsx"
    for name, source, year in (("acme/fund", design, 2025), ("mianyang/designed", shipped, 2021)):
        imported = base / "designed" / name.replace("/", "_")
        _cli("template", "import", str(source), "-o", str(imported / "模板"))
        _cli("generate", name, "--templates", str(imported / "模板"), "--year", str(year), "--roster", str(roster),
             "-o", str(imported / "空白表"))
        kinds[f"designed form {name}"] = _forms(imported / "空白表")
        manifests.append(imported / "空白表" / "分发清单.xlsx")

    demo = run_demo(base / "demo", echo=lambda *a, **k: None)
    kinds["declaration summary"] = [demo["summary"]]
    kinds["annotated copies"] = sorted(demo["returns"].glob("*_校验.xlsx"))
    kinds["退回通知"] = sorted(demo["returns"].glob("*_退回通知.xlsx"))
    manifests.append(demo["blank"] / "分发清单.xlsx")
    for kind, summary in (("monitoring", demo["monitor"]), ("self-evaluation", demo["selfeval"])):
        kinds[f"{kind} form"] = [_longest_form(summary.parent / "空白表")]
        kinds[f"{kind} summary"] = [summary]
        manifests.append(summary.parent / "空白表" / "分发清单.xlsx")
    kinds["分发清单"] = manifests

    ledger = demo["summary"].with_name(demo["summary"].stem + "_报送台账.sqlite")
    adjust = base / "调整表"
    _cli("generate", "national/adjust", "--year", "2021", "--roster", str(demo["roster"]), "--from", str(ledger),
         "-o", str(adjust))
    kinds["adjustment form"] = [_longest_form(adjust)]
    manifests.append(adjust / "分发清单.xlsx")

    # the city's roll-up of the demo's county export: its roster names each county's city (上级地区)
    ledger = demo["summary"].with_name(demo["summary"].stem + "_报送台账.sqlite")
    export = base / "rollup" / "绵阳.perfxl"
    export.parent.mkdir()
    _cli("export", "--ledger", str(ledger), "-o", str(export))
    with open(demo["roster"], encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    city_roster = write_roster(base / "rollup" / "全市名单.csv",
                               [(r["code"], r["name"], r["department"], r["region"], "绵阳市") for r in rows],
                               header=("code", "name", "department", "region", "parent"))
    city = base / "rollup" / "市汇总.xlsx"
    _cli("merge", str(export), "-o", str(city), "--roster", str(city_roster))
    kinds["roll-up summary"] = [city]

    # 部门整体 monitoring and self-evaluation, from the ledger of the 盐城 seed's 部门整体 declaration
    inbox = base / "部门整体" / "申报"
    inbox.mkdir(parents=True)
    shutil.copy(department_declaration, inbox / "部门整体.xlsx")
    unit_roster = write_roster(base / "部门整体" / "名单.csv", [
        (department_unit["code"], department_unit["name"], department_unit["department"])])
    _cli("merge", str(inbox), "--roster", str(unit_roster), "-o", str(base / "部门整体" / "申报汇总.xlsx"))
    for kind, template in (("monitoring", "national/department-monitor"), ("self-evaluation", "national/department-selfeval")):
        out = base / "部门整体" / template.split("/")[1]
        _cli("generate", template, "--year", "2021", "--roster", str(unit_roster),
             "--from", str(base / "部门整体" / "申报汇总_报送台账.sqlite"), "-o", str(out))
        kinds[f"部门整体 {kind} form"] = _forms(out)
        kinds["分发清单"].append(out / "分发清单.xlsx")

    # History and the indicator library (#22): last year's reference and the library on next year's forms,
    # the library workbook itself, and a merge compared with history
    campaign = history_campaign.build(base / "历史")
    history = [a for p in campaign.history for a in ("--history", str(p))]
    library = base / "历史" / "指标库.xlsx"
    _cli("library", "build", *map(str, campaign.history), "-o", str(library))
    out = base / "历史" / "空白表"
    _cli("generate", "national/project", "--year", str(history_campaign.YEAR), "--roster", str(campaign.roster),
         "-o", str(out), "--library", str(library), *history)
    kinds["blank form with 上年参考 and 指标参考"] = [_longest_form(out)]
    kinds["指标库"] = [library]
    summary = base / "历史" / "申报汇总.xlsx"
    _cli("merge", str(campaign.inbox), "--roster", str(campaign.roster), "-o", str(summary), "--library", str(library),
         *history)
    kinds["declaration summary with 历史对比"] = [summary]

    for kind, paths in kinds.items():
        assert paths and all(p.is_file() for p in paths), f"perfxl wrote no {kind}"
    kinds["base"] = [base]
    return kinds


@pytest.fixture(scope="module")
def printed(soffice, seeds, tmp_path_factory):
    try:
        printcheck.missing_tools()
    except printcheck.RenderError as e:
        if IN_CI:
            pytest.fail(str(e))
        pytest.skip(str(e))
    base = tmp_path_factory.mktemp("print")
    kinds = _workbooks(base, seeds["001-0"].filled, seeds["001-0"].unit)
    every = [p for kind, paths in kinds.items() if kind != "base" for p in paths]
    findings = printcheck.check_workbooks(every, workdir=base / "rendered", processes=2)
    keep = os.environ.get("PERFXL_PRINTCHECK_REPORT")
    if keep:
        Path(keep).write_text(printcheck.report(findings, base), encoding="utf-8")
    return kinds, findings


@pytest.mark.parametrize("kind", KINDS)
def test_every_printed_page_shows_whole_text_at_a_readable_scale_on_a4_with_a_page_number(printed, kind):
    kinds, findings = printed
    found = {path: findings[path] for path in kinds[kind] if findings[path]}
    assert not found, f"{kind}: what a printed page loses\n" + printcheck.report(found, kinds["base"][0])


def test_every_sheet_leaves_room_for_its_footer_so_libreoffice_prints_its_last_row(printed):
    """With 0.6 in below the rows and the footer at 0.3 in, LibreOffice's PDF export draws the footer taller than
    its page layout counted: a last page that was nearly full loses its last row (found on the monitoring
    summary's 说明 when the demo ran in a folder with a longer path; 0.7 in was enough). Whether a page is nearly
    full depends on the data, so the room is checked on every sheet with a footer, not only on pages that fill."""
    import openpyxl

    kinds, _ = printed
    short = []
    for kind, paths in kinds.items():
        for path in paths if kind != "base" else []:
            wb = openpyxl.load_workbook(path)
            for ws in wb.worksheets:
                footer = ws.oddFooter
                if ws.sheet_state == "visible" and any(p.text for p in (footer.left, footer.center, footer.right)):
                    margins = ws.page_margins
                    if margins.bottom - margins.footer < 0.4 - 1e-9:
                        short.append(f"{path.name} {ws.title}: bottom {margins.bottom} in, footer {margins.footer} in")
    assert not short, "\n".join(short)

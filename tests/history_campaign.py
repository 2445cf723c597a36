"""A three-year campaign for the history tests: 2023 and 2024 declared and self-evaluated, 2025 declared.

Eight units of one bureau each run one road-maintenance project (national/project, 万元). Every year each
declares the same six indicators; the self-evaluations report what was achieved. What 2025 plants, and
nothing else, is what the comparison must find:
- 710001 met 养护里程 at 130 % in 2023 and 2024 and declares ≥100公里 again: target not raised, and below
  last year's actual;
- 710002 achieved 150公里 in 2024 and declares ≥100公里: below last year's actual;
- 710003 spent 1.5万元 a kilometre in 2024 and declares ≤2万元 (less is better): above last year's actual;
- 710004 drops 路面优良率 without a word; 710005 drops it and says why in its 年度目标;
- 710006 declares 群众满意度 ≥50 % where every other unit declares ≥90 %: outside its peers;
- 710007 replaces 养护里程 by 养护路段数 (dropped without a word, and the library's 固化指标 missing);
- 710008 renames its project (乡村道路管护工程): no history.
In 2023 每公里养护成本 is ≤2.1万元 … ≤2.8万元 by unit, and 710008's declaration lacks its 填报人 (an error: graded
中, so an indicator library leaves it out).
Forms are built filled (generator.build_workbook with values: a unit's saved form); the self-evaluation
forms are generated from the declaration's ledger and filled through their defined names (openpyxl); every
target not named above is met exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import openpyxl
from click.testing import CliRunner

from perfxl.cli import cli
from perfxl.fill import names_by_sheet
from perfxl.generator import build_workbook
from perfxl.merging import MergeOptions, run_merge
from perfxl.spec import column_offsets, load_spec, split_cell

from .conftest import write_roster

UNITS = [(f"71000{i}", f"第{i}公路养护站", "交通运输局") for i in range(1, 9)]
HISTORY_YEARS = (2023, 2024)
YEAR = 2025


@dataclass
class Campaign:
    base: Path
    roster: Path
    ledgers: dict[tuple[int, str], Path]  # (year, 申报 | 自评) → ledger
    inbox: Path  # 2025's declarations

    @property
    def history(self) -> list[Path]:
        return [self.ledgers[k] for k in sorted(self.ledgers)]


def project_name(code: str, year: int) -> str:
    return "乡村道路管护工程" if code == "710008" and year == YEAR else f"{year}年农村公路养护项目"


def declared_rows(code: str, year: int) -> list[list[str]]:
    satisfaction = "≥50%" if code == "710006" and year == YEAR else "≥90%"
    rows = [["产出指标", "数量指标", "养护里程", "≥100公里"],
            ["产出指标", "质量指标", "路面优良率", "≥85%"],
            ["产出指标", "时效指标", "养护完成时间", f"{year}年12月31日前完成"],
            ["产出指标", "成本指标", "每公里养护成本", f"≤{2 + int(code[-1]) / 10:g}万元" if year == 2023 else "≤2万元"],
            ["效益指标", "社会效益指标", "群众出行便捷度", "有效提升"],
            ["满意度指标", "服务对象满意度指标", "群众满意度", satisfaction]]
    if year == YEAR and code in ("710004", "710005"):
        rows = [r for r in rows if r[2] != "路面优良率"]
    if year == YEAR and code == "710007":
        rows[0] = ["产出指标", "数量指标", "养护路段数", "≥10段"]
    return rows


def actual(code: str, year: int, level3: str, target: str) -> tuple[str, float | None]:
    """(实际完成值, 得分 for a tier) of one row."""
    if level3 == "养护里程":
        if code == "710001":
            return "130公里", None
        if code == "710002" and year == 2024:
            return "150公里", None
        return "100公里", None
    if level3 == "每公里养护成本":
        return ("1.5万元" if code == "710003" and year == 2024 else target.lstrip("≤")), None
    if level3 == "路面优良率":
        return "85%", None
    if level3 == "群众满意度":
        return "90%", None
    return "达成年度指标", 1.0  # scaled to the row's points below


def declaration(code: str, name: str, year: int) -> bytes:
    unit = {"code": code, "name": name, "department": "交通运输局"}
    spec = load_spec("national/project", year, unit=unit)
    goal = "完成年度养护任务，路面优良率改为第三方检测，不再单列" if code == "710005" and year == YEAR else "完成年度养护任务"
    values = {"fields": {"unit_name": name, "project_name": project_name(code, year), "department": "交通运输局",
                         "implementing_unit": name, "project_attr": "延续项目", "project_period": f"{year}年",
                         "long_term_goal": "农村公路列养率 100%", "annual_goal": goal,
                         "preparer": "" if code == "710008" and year == 2023 else "王五",
                         "phone": "88150231", "fill_date": f"{year}-01-10", "funds_total_annual": 200,
                         "funds_fiscal_annual": 200, "funds_total_mid": 200, "funds_fiscal_mid": 200},
              "tables": {"indicators": declared_rows(code, year)}}
    return build_workbook(spec, unit, values=[values])


def _fill_selfeval(path: Path, code: str, year: int) -> None:
    spec = load_spec("national/selfeval", year)
    table = spec.tables["indicators"]
    wb = openpyxl.load_workbook(path)
    ws = wb["项目1"]
    names = names_by_sheet(wb)["项目1"]

    def put(field_id, value):
        ws[names[f"f_{field_id}"].split(":")[0]] = value

    put("funds_total_budget", 200)
    put("funds_fiscal_budget", 200)
    put("funds_total_spent", 190)
    put("funds_fiscal_spent", 190)
    put("goal_actual", "完成年度养护任务")
    put("preparer", "王五")
    put("phone", "88150231")
    first, last = names[table.name].split(":")
    (r0, c0), (r1, _) = split_cell(first), split_cell(last)
    offsets = column_offsets(table)
    for r in range(r0, r1 + 1):
        cell = {cid: ws.cell(row=r + 1, column=c0 + off + 1) for cid, off in offsets.items()}
        if not cell["level3"].value:
            continue
        value, tier_score = actual(code, year, cell["level3"].value, cell["target"].value)
        cell["actual"].value = value
        if tier_score is not None:
            cell["score"].value = cell["points"].value
    wb.save(path)


def build(base: Path) -> Campaign:
    base.mkdir(parents=True, exist_ok=True)
    roster = write_roster(base / "名单.csv", UNITS)
    ledgers = {}
    for year in HISTORY_YEARS:
        inbox = base / f"{year}申报"
        inbox.mkdir(parents=True)
        for code, name, _ in UNITS:
            (inbox / f"{code}.xlsx").write_bytes(declaration(code, name, year))
        ledger = base / f"{year}申报_报送台账.sqlite"
        run_merge([inbox], base / f"{year}申报汇总.xlsx", MergeOptions(roster=roster, jobs=1, db=ledger))
        ledgers[(year, "申报")] = ledger
        forms = base / f"{year}自评表"
        r = CliRunner().invoke(cli, ["generate", "national/selfeval", "--year", str(year), "--roster", str(roster),
                                     "--from", str(ledger), "-o", str(forms)])
        assert r.exit_code == 0, r.output
        manifest = json.loads((forms / "manifest.json").read_text(encoding="utf-8"))
        selfeval_inbox = base / f"{year}自评"
        selfeval_inbox.mkdir()
        for entry in manifest["forms"]:
            target = selfeval_inbox / entry["file"]
            target.write_bytes((forms / entry["file"]).read_bytes())
            _fill_selfeval(target, entry["unit_code"], year)
        ledger = base / f"{year}自评_报送台账.sqlite"
        run_merge([selfeval_inbox], base / f"{year}自评汇总.xlsx", MergeOptions(roster=roster, jobs=1, db=ledger))
        ledgers[(year, "自评")] = ledger
    inbox = base / f"{YEAR}申报"
    inbox.mkdir()
    for code, name, _ in UNITS:
        (inbox / f"{code}.xlsx").write_bytes(declaration(code, name, YEAR))
    return Campaign(base, roster, ledgers, inbox)

"""项目清单: one row per merged project, with its key fields, money in the summary's unit and its status."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from perfxl.rounds import PROJECT

from .base import STATUS_ZH, UNIT_IN_LABEL, Collector, Column, Context, Table, file_name, money, table, union

NAME = "项目清单"
FIRST_TITLE = "地区"
FORM_OWN = "（表内填写）"  # after the title of a form's field the sheet also fills from the roster


@dataclass(slots=True)  # one a project: 100,000 at province scale
class ProjectLine:
    region: str
    year: int | None
    department: str
    unit_code: str
    unit_name: str
    project: str
    template: str
    keys: dict[str, Any]
    budget: float | None
    funds: dict[str, float | None]
    indicators: int
    levels: Counter
    status: str
    errors: int
    warnings: int
    file: str
    sheet: str


@dataclass
class Projects(Collector):
    """Collects project lines while the merge's forms pass once; also the money per 主管部门 for 汇总."""

    ctx: Context
    lines: list[ProjectLine] = field(default_factory=list)
    per_group: dict[tuple, Counter] = field(default_factory=lambda: defaultdict(Counter))
    RECORDS = {"lines": ProjectLine}

    def __post_init__(self):
        specs = [sp for sp in self.ctx.specs.values() if sp.round.declaration and sp.round.subject == PROJECT]
        self.key_labels = union([_key_label(sp, f) for f in sp.key_fields] for sp in specs)
        self.money_keys = {_key_label(sp, f) for sp in specs for f in sp.key_fields if sp.fields[f].type == "money"}
        self.funding_labels = union([sp.fields[f].label for f in sp.funding_fields] for sp in specs)
        self.level1s = union(list(sp.indicator_table().indicator.hierarchy.levels) for sp in self.ctx.specs.values()
                             if sp.indicator_table() is not None)

    def add(self, s, checked, sp, who) -> None:
        if not (sp.round.declaration and sp.round.subject == PROJECT):
            return
        factor = self.ctx.factor(sp)
        indicator_table = sp.indicator_table()  # None: a bureau's form with no indicator table, no indicator rows
        hierarchy = indicator_table.indicator.hierarchy if indicator_table is not None else None
        for p in checked.projects:
            budget = money(p.values.get(sp.budget_field), factor) if sp.budget_field else None
            keys = {_key_label(sp, f): _key_value(p.values.get(f), sp.fields[f].type, factor) for f in sp.key_fields}
            funds = {sp.fields[f].label: money(p.values.get(f), factor) for f in sp.funding_fields}
            status = "errors" if p.errors else ("warnings" if p.warnings else "valid")
            self.lines.append(ProjectLine(
                who.region, s.year, who.department, who.unit_code, who.unit_name, p.name, sp.template, keys, budget,
                funds, len(p.indicators),
                Counter(hierarchy.canonical(r.level1) for r in p.indicators) if hierarchy else Counter(),
                STATUS_ZH[status], p.errors, p.warnings, file_name(s), p.sheet))
            group = self.per_group[(who.region, who.department)]
            group["projects"] += 1
            group["budget"] += budget or 0
            for label, amount in funds.items():
                group[label] += amount or 0

    def columns(self) -> list[Column]:
        m = self.ctx.money_suffix
        first = [Column("地区", "text", "region"), Column("年度", "int", "year"), Column("主管部门", "text", "department"),
                 Column("单位编码", "text", "unit_code"), Column("单位名称", "text", "unit_name"),
                 Column("项目名称", "text", "project"), Column("模板", "text", "template")]
        taken = {c.title for c in first}
        # a form's own field of a title the sheet already has (its 主管部门 beside the roster's) says where it is from
        keys = [Column(label + m, "money", _key(label)) if label in self.money_keys
                else Column(label + FORM_OWN if label in taken else label, "text", _key(label))
                for label in self.key_labels]
        return (first + keys + [Column("预算金额" + m, "money", "budget")]
                + [Column(label + m, "money", _fund(label)) for label in self.funding_labels]
                + [Column("指标数", "count", "indicators")]
                + [Column(level, "count", _level(level)) for level in self.level1s]
                + [Column("校验状态", "text", "status"), Column("错误数", "count", "errors"),
                   Column("提醒数", "count", "warnings"), Column("来源文件", "text", "file"),
                   Column("工作表", "text", "sheet")])

    def table(self) -> Table:
        self.lines.sort(key=lambda r: (str(r.region), str(r.department), str(r.unit_code), str(r.project)))
        return table(NAME, self.columns(), self.lines, totals=True, paper="A3")


def _key_label(sp, f) -> str:
    """A key field's label as the sheet's column knows it: a money field's without its unit, which the summary
    states for all (项目总预算(元) of one template and 项目总预算（万元） of another are one column)."""
    label = sp.fields[f].label.rstrip("：: ")
    return UNIT_IN_LABEL.sub("", label).strip() if sp.fields[f].type == "money" else label


def _key(label):
    return lambda r: r.keys.get(label, "")


def _fund(label):
    return lambda r: r.funds.get(label)


def _level(level):
    return lambda r: r.levels.get(level, 0)


def _key_value(value, field_type: str, factor: float):
    """A key column of 项目清单: money as a number in the summary's unit (text a clerk typed stays text)."""
    if field_type == "money" and isinstance(value, int | float) and not isinstance(value, bool):
        return round(value * factor, 6)
    return "" if value is None else value

"""指标明细: every indicator row of every merged project, its text as written and the parsed target."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

from .base import Column, Context, Table, per_form_table, union

NAME = "指标明细"
FIRST_TITLE = "单位编码"
NOTE = "来源文件见「项目清单」；位置为 工作表!单元格（最后一个指标值列）。"
TARGET_KIND_ZH = {"quantitative": "定量", "qualitative": "定性", "range": "区间", "deadline": "期限", "cost": "成本构成",
                  "placeholder": "占位符", "unparseable": "无法识别", "empty": "空"}


@dataclass(slots=True)  # 400,000 of them at 10,000 forms
class IndicatorLine:
    unit_code: str
    unit_name: str
    project: str
    level1: str
    level2: str
    level3: str
    values: dict[str, str]  # by the value column's printed label
    op: str
    number: float | None
    unit: str
    word: str
    where: str


def value_labels(ctx: Context) -> list[str]:
    return union([sp.indicator_table().column(v).label for v in sp.indicator_table().indicator.values]
                 for sp in ctx.specs.values() if sp.indicator_table() is not None)


def lines(checked, sp, who) -> Iterator[IndicatorLine]:
    """The indicator lines of one checked form (the public API's ledger reader uses this too)."""
    table_ = sp.indicator_table()
    if table_ is None:  # a follow-up form: its rows are in 指标得分
        return
    ind = table_.indicator
    labels = {v: table_.column(v).label for v in ind.values}
    for p in checked.projects:
        for r in p.indicators:
            main = r.targets[ind.main]
            yield IndicatorLine(who.unit_code, who.unit_name, p.name, r.level1, r.level2, r.level3,
                                {labels[v]: r.texts[v] for v in ind.values},
                                main.op or TARGET_KIND_ZH.get(main.kind, ""), main.value, main.unit or "",
                                main.word or main.deadline or "", f"{p.sheet}!{r.cells.get(ind.main, '')}")


def columns(ctx: Context) -> list[Column]:
    return ([Column("单位编码", "text", "unit_code"), Column("单位名称", "text", "unit_name"),
             Column("项目名称", "text", "project"), Column("一级指标", "text", "level1"),
             Column("二级指标", "text", "level2"), Column("三级指标", "text", "level3")]
            + [Column(label, "text", _value(label)) for label in value_labels(ctx)]
            + [Column("比较符/类型", "text", "op"), Column("数值", "number", "number"), Column("计量单位", "text", "unit"),
               Column("定性描述/期限", "text", "word"), Column("位置", "text", "where")])


def build(ctx: Context) -> Table:
    """Rows come form by form (at 10,000 forms this sheet holds 350,000 rows), each form's rendered once
    and kept under its key; a form is loaded only when its rows are not kept."""
    def forms():
        for s in ctx.merged:
            if ctx.spec_of(s).indicator_table() is not None:
                # a line per indicator row of the form (`lines`), as the form's reading counted them
                yield ctx.form_key(s), partial(_form_lines, ctx, s), s.indicator_rows

    return per_form_table(NAME, columns(ctx), forms, note=NOTE, paper="A3")


def _form_lines(ctx: Context, s) -> Iterator[IndicatorLine]:
    checked = ctx.load(s)
    return lines(checked, ctx.spec_of(s), ctx.who(s, checked))


def _value(label):
    return lambda r: r.values.get(label, "")

"""Arithmetic between inputs: totals and their parts, a part never above its whole."""

from __future__ import annotations

from perfxl.domain import SUM_TOLERANCE
from perfxl.problems import L, fmt_number
from perfxl.reader.cells import cell_name

from . import Highlight, Param, RuleKind, SumCheck, register


def _compare_sum(rule, ctx, total, got: float, what) -> None:
    """Report `sum-mismatch` (or the rule's code) on the total field when it differs from the parts."""
    difference = abs((total or 0) - got)
    if difference > SUM_TOLERANCE:
        field = rule.params["total"]
        ctx.out.add(rule.code, rule.severity, ctx.sheet, ctx.cells.get(field, ""), field, rule.message, what=what,
                    parts=fmt_number(got), total=fmt_number(total), diff=fmt_number(difference))


@register
class FieldSum(RuleKind):
    """A total field equals the sum of part fields (funding sources, budget lines)."""

    name = "field_sum"
    params = (Param("total", "field"), Param("parts", "fields"), Param("what", "text"))
    codes = ("sum-mismatch",)

    def check(self, rule, ctx):
        p = rule.params
        total = ctx.values.get(p["total"])
        parts = [ctx.values.get(x) for x in p["parts"]]
        if total is None and all(v is None for v in parts):
            return
        _compare_sum(rule, ctx, total, sum(v or 0 for v in parts), p["what"])

    def live(self, rule, positions):
        total = positions.fields[rule.params["total"]]
        parts = ",".join(cell_name(*positions.fields[p]) for p in rule.params["parts"])
        return [SumCheck(total[0], cell_name(*total), f"SUM({parts})")]


@register
class ColumnSum(RuleKind):
    """A total field equals the sum of one column of a table."""

    name = "column_sum"
    params = (Param("table", "table"), Param("column", "column"), Param("total", "field"))
    codes = ("sum-mismatch",)

    def check(self, rule, ctx):
        p = rule.params
        total = ctx.values.get(p["total"])
        rows = ctx.tables.get(p["table"], [])
        if total is None and not rows:
            return
        label = ctx.spec.fields[p["total"]].label
        table = ctx.spec.tables[p["table"]]
        column = table.column(p["column"]).label
        what = L(f"「{table.label}」的{column}之和与「{label}」", f"The {column} of '{table.label}' and '{label}'")
        _compare_sum(rule, ctx, total, sum(r.get(p["column"]) or 0 for r in rows), what)

    def live(self, rule, positions):
        pos = positions.tables[rule.params["table"]]
        c = pos.columns[rule.params["column"]]
        total = positions.fields[rule.params["total"]]
        body = f"{cell_name(pos.first_row, c)}:{cell_name(pos.last_row, c)}"
        return [SumCheck(total[0], cell_name(*total), f"SUM({body})")]


@register
class FieldNotExceed(RuleKind):
    """One field is never above another (this year's budget ≤ the total budget)."""

    name = "field_not_exceed"
    params = (Param("part", "field"), Param("whole", "field"), Param("what", "text"),
              Param("part_label", "text"), Param("whole_label", "text"))
    codes = ("period-exceeds", "budget-exceeds")

    def check(self, rule, ctx):
        p = rule.params
        part, whole = ctx.values.get(p["part"]), ctx.values.get(p["whole"])
        if part is not None and whole is not None and part > whole + SUM_TOLERANCE:
            ctx.out.add(rule.code, rule.severity, ctx.sheet, ctx.cells.get(p["part"], ""), p["part"], rule.message,
                        what=p["what"], part_label=p["part_label"], whole_label=p["whole_label"],
                        part=fmt_number(part), whole=fmt_number(whole))

    def live(self, rule, positions):
        part, whole = (positions.fields[rule.params[k]] for k in ("part", "whole"))
        a, b = cell_name(*part), cell_name(*whole)
        return [Highlight(part[0], part[1], part[0], part[1], f"=AND(ISNUMBER({a}),ISNUMBER({b}),{a}>{b})")]


@register
class RowNotExceed(RuleKind):
    """In every row of a table, one column is never above another (half-year ≤ full year)."""

    name = "row_not_exceed"
    params = (Param("table", "table"), Param("part", "column"), Param("whole", "column"))
    codes = ("period-exceeds",)

    def check(self, rule, ctx):
        p = rule.params
        table = ctx.spec.tables[p["table"]]
        for r in ctx.tables.get(p["table"], []):
            part, whole = r.get(p["part"]), r.get(p["whole"])
            if part is not None and whole is not None and part > whole + SUM_TOLERANCE:
                first_text = next((r[c.id] for c in table.columns if isinstance(r.get(c.id), str) and r[c.id]), "")
                ctx.out.add(rule.code, rule.severity, ctx.sheet, r[f"{p['part']}@"], f"{table.id}.{p['part']}",
                            rule.message, what=first_text or L(f"第 {r['_row']} 行", f"Row {r['_row']}"),
                            part_label=table.column(p["part"]).label, whole_label=table.column(p["whole"]).label,
                            part=fmt_number(part), whole=fmt_number(whole))

    def live(self, rule, positions):
        pos = positions.tables[rule.params["table"]]
        pc, wc = pos.columns[rule.params["part"]], pos.columns[rule.params["whole"]]
        a = cell_name(pos.first_row, pc).rstrip("0123456789")
        b = cell_name(pos.first_row, wc).rstrip("0123456789")
        r = pos.first_row + 1
        return [Highlight(pos.first_row, pc, pos.last_row, pc,
                          f"=AND(ISNUMBER(${a}{r}),ISNUMBER(${b}{r}),${a}{r}>${b}{r})")]

"""Rules on a table as a whole."""

from __future__ import annotations

from . import Param, RuleKind, register


@register
class TableMinRows(RuleKind):
    """A table has at least `min_rows` filled rows."""

    name = "table_min_rows"
    params = (Param("table", "table"), Param("min_rows", "int"))
    codes = ("table-empty",)

    def check(self, rule, ctx):
        p = rule.params
        table = ctx.spec.tables[p["table"]]
        if len(ctx.tables.get(p["table"], [])) < p["min_rows"]:
            ctx.out.add(rule.code, rule.severity, ctx.sheet, "", table.id, rule.message, label=table.label,
                        min_rows=p["min_rows"])

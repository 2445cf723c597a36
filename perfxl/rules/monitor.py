"""Mid-year monitoring (绩效运行监控, "双监控"): each declared target against the unit's forecast, and spending.

The forecast (全年预计完成值) is measured against the declared target with the self-evaluation's scoring
(perfxl/scoring.py, as a share of the target met): met → no light; at least 90% → blue (minor deviation);
at least 70% → yellow (at risk); below, or 完成目标可能性 = 完全不可能 → red (likely missed). A qualitative
target is judged by the likelihood alone (有可能 → yellow). Any deviation needs a 偏差原因 category.
"""

from __future__ import annotations

from perfxl.problems import L, short_text
from perfxl.reader.cells import cell_name
from perfxl.scoring import indicator_score
from perfxl.values import clean_text, normalize_text, parse_target

from . import CheckFormula, Param, RuleKind, register

LIGHTS = {"red": L("红灯：预计完不成", "red: likely missed"), "yellow": L("黄灯：有完不成的风险", "yellow: at risk"),
          "blue": L("蓝灯：略有偏差", "blue: minor deviation")}
LIGHT_ZH = {"red": "红", "yellow": "黄", "blue": "蓝", "": ""}


def light(target, expected, likelihood: str) -> tuple[str, float | None]:
    """The warning colour of one indicator, and the share of its target the forecast meets (None: no number)."""
    share = None
    if target.kind in {"quantitative", "range", "cost"} and expected.kind in {"quantitative", "cost"}:
        share = indicator_score(target, expected, 1.0).points
    if likelihood == "完全不可能" or (share is not None and share < 0.7):
        return "red", share
    if (share is not None and share < 0.9) or (likelihood == "有可能" and (share is None or share < 1)):
        return "yellow", share
    if share is not None and share < 1 - 1e-9:
        return "blue", share
    return "", share


@register
class Monitoring(RuleKind):
    """Lights, causes and changed targets of a 绩效运行监控表 sheet; 执行率 for the project."""

    name = "monitor"
    params = (Param("table", "table"), Param("budget", "field"), Param("spent", "field"))
    codes = ("monitor-expected-missing", "monitor-value-unreadable", "monitor-cause-missing", "monitor-likely-missed",
             "monitor-target-changed")
    order = 20
    owns_table = True

    def live(self, rule, positions):
        a, b = (cell_name(*positions.fields[rule.params[k]]) for k in ("budget", "spent"))
        return [CheckFormula(positions.fields[rule.params["spent"]][0],
                             f'=IF(N({a})>0,"执行率 "&TEXT(N({b})/{a},"0.0%")&IF(N({b})/{a}<0.4,"（低于序时 40%）",""),"")')]

    def check(self, rule, ctx):
        p = rule.params
        table = ctx.spec.tables[p["table"]]
        labels = {c.id: c.label for c in table.columns}
        declared = (ctx.form.declared if ctx.form is not None else {}).get(ctx.sheet, [])
        where = {"sheet": ctx.sheet}
        lines = []
        rows = [r for r in ctx.table_rows.get(table.id, []) if clean_text(r["level3"].value) or clean_text(r["target"].value)]
        if rows and not declared and ctx.form is not None:
            ctx.out.add("declared-missing", "error", **where)
        for i, row in enumerate(rows):
            promised = declared[i] if i < len(declared) else None
            level3 = clean_text(row["level3"].value)
            shown = clean_text(row["target"].value)
            if promised is not None and normalize_text(shown) != normalize_text(promised.get("target")):
                ctx.out.add("monitor-target-changed", "error", cell=row["target"].address, field_="indicators.target",
                            level3=level3, found=short_text(shown), declared=short_text(promised.get("target")), **where)
            target = parse_target(promised.get("target") if promised is not None else shown)
            expected = parse_target(row["expected"].value, formula=row["expected"].formula)
            likelihood = clean_text(row["likelihood"].value)
            for column in ("current", "expected"):
                value = parse_target(row[column].value, formula=row[column].formula)
                if value.kind in {"unparseable", "placeholder"}:
                    ctx.out.add("monitor-value-unreadable", "error", cell=row[column].address,
                                field_=f"indicators.{column}", level3=level3, column=labels[column],
                                value=short_text(value.text), **where)
            if expected.kind == "empty":
                ctx.out.add("monitor-expected-missing", "error", cell=row["expected"].address,
                            field_="indicators.expected", level3=level3, **where)
            colour, share = light(target, expected, likelihood)
            if colour and not clean_text(row["cause"].value):
                ctx.out.add("monitor-cause-missing", "error", cell=row["cause"].address, field_="indicators.cause",
                            level3=level3, light=LIGHTS[colour], **where)
            if colour == "red":
                ctx.out.add("monitor-likely-missed", "warning", cell=row["expected"].address,
                            field_="indicators.expected", level3=level3, light=LIGHTS[colour],
                            expected=short_text(expected.text), target=short_text(target.text), **where)
            lines.append({"row": row["_row"], "level1": clean_text(row["level1"].value),
                          "level2": clean_text(row["level2"].value), "level3": level3, "target": target.text,
                          "current": clean_text(row["current"].value), "expected": clean_text(row["expected"].value),
                          "share": share, "light": LIGHT_ZH[colour], "likelihood": likelihood,
                          "cause": clean_text(row["cause"].value), "note": clean_text(row["note"].value),
                          "measures": clean_text(row["measures"].value), "cell": row["expected"].address})
        budget, spent = ctx.values.get(p["budget"]), ctx.values.get(p["spent"])
        rate = spent / budget if isinstance(budget, int | float) and budget and isinstance(spent, int | float) else None
        ctx.results["scores"] = {"monitor": True, "budget": budget, "spent": spent, "rate": rate, "indicators": lines}

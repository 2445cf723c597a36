"""Mid-year monitoring (绩效运行监控, "双监控"): each declared target against the unit's forecast, and spending.

The forecast (全年预计完成值) is measured against the declared target with the self-evaluation's scoring
(perfxl/scoring.py, as a share of the target met): met → no light; at least 90% → blue (minor deviation);
at least 70% → yellow (at risk); below, or 完成目标可能性 = 完全不可能 → red (likely missed). A qualitative
target is judged by the likelihood alone (有可能 → yellow). Any deviation needs a 偏差原因 category.
Targets are those issued (perfxl.issued), rows paired by identity: what the form's copy says is not used.
"""

from __future__ import annotations

from perfxl.identity import match_rows, row_key
from perfxl.problems import L, short_text
from perfxl.reader.cells import cell_name
from perfxl.scoring import indicator_score
from perfxl.values import clean_text, normalize_text, parse_target

from . import CheckFormula, Param, RuleKind, register

LIGHTS = {"red": L("红灯：预计完不成", "red: likely missed"), "yellow": L("黄灯：有完不成的风险", "yellow: at risk"),
          "blue": L("蓝灯：略有偏差", "blue: minor deviation")}
LIGHT_ZH = {"red": "红", "yellow": "黄", "blue": "蓝", "": ""}


def light(target, expected, likelihood: str) -> tuple[str, float | None]:
    """The warning colour of one indicator, and the share of its target the forecast meets (None: no number).
    A forecast whose number cannot be measured against the target (another unit, a rate as a fraction) is
    red: nothing says the target will be met (the rule reports why)."""
    share = None
    if target.kind in {"quantitative", "range", "cost"} and expected.kind in {"quantitative", "cost"}:
        score = indicator_score(target, expected, 1.0)
        if score.problem:
            return "red", None
        share = score.points
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
             "monitor-target-changed", "monitor-unit-mismatch")
    order = 20
    owns_table = True

    def live(self, rule, positions):
        a, b = (cell_name(*positions.fields[rule.params[k]]) for k in ("budget", "spent"))
        return [CheckFormula(positions.fields[rule.params["spent"]][0],
                             f'=IF(N({a})>0,"执行率 "&TEXT(N({b})/{a},"0.0%")&IF(N({b})/{a}<0.4,"（低于序时 40%）",""),"")')]

    def check(self, rule, ctx):
        """Every row shown, paired by its identity with the row issued (perfxl.issued), its forecast measured
        against the issued target. An issued row gone from the form is reported and listed with a red light
        (nothing says it will be met); a row never issued is reported and given no light."""
        p = rule.params
        table = ctx.spec.tables[p["table"]]
        labels = {c.id: c.label for c in table.columns}
        issued = ctx.issued
        where = {"sheet": ctx.sheet}
        lines = []
        rows = [r for r in ctx.table_rows.get(table.id, [])
                if any(clean_text(r[c].value) for c in ("level1", "level2", "level3", "target"))]
        pairs = match_rows(rows, issued.rows if issued is not None else (),
                           lambda r: row_key(r["level1"].value, r["level2"].value, r["level3"].value))
        for row, promised in pairs:
            if row is None:
                ctx.out.add("declared-row-missing", "error", field_="indicators.level3", level1=promised["level1"],
                            level2=promised["level2"], level3=promised["level3"], target=promised["target"],
                            consequence=L("按预计完不成（红灯）列入监控预警", "it is listed as likely missed (red)"),
                            **where)
                lines.append({"row": promised["row"], "level1": promised["level1"], "level2": promised["level2"],
                              "level3": promised["level3"], "target": promised["target"], "current": "",
                              "expected": "", "share": None, "light": LIGHT_ZH["red"], "likelihood": "",
                              "cause": "", "note": "预填指标被删除", "measures": "", "cell": ""})
                continue
            level3 = clean_text(row["level3"].value)
            if promised is None:
                if issued is not None:
                    ctx.out.add("declared-row-added", "error", cell=row["level3"].address, field_="indicators.level3",
                                level1=clean_text(row["level1"].value), level2=clean_text(row["level2"].value),
                                level3=level3, **where)
                target = parse_target(clean_text(row["target"].value))
            else:
                shown = clean_text(row["target"].value)
                if normalize_text(shown) != normalize_text(promised["target"]):
                    ctx.out.add("monitor-target-changed", "error", cell=row["target"].address,
                                field_="indicators.target", level3=level3, found=short_text(shown),
                                declared=short_text(promised["target"]), **where)
                target = parse_target(promised["target"])
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
            colour, share = light(target, expected, likelihood) if promised is not None else ("", None)
            if colour == "red" and share is None and expected.kind in {"quantitative", "cost"}:
                ctx.out.add("monitor-unit-mismatch", "error", cell=row["expected"].address,
                            field_="indicators.expected", level3=level3, value=short_text(expected.text),
                            target=short_text(target.text), **where)
            if colour and not clean_text(row["cause"].value):
                ctx.out.add("monitor-cause-missing", "error", cell=row["cause"].address, field_="indicators.cause",
                            level3=level3, light=LIGHTS[colour], **where)
            if colour == "red":
                ctx.out.add("monitor-likely-missed", "warning", cell=row["expected"].address,
                            field_="indicators.expected", level3=level3, light=LIGHTS[colour],
                            expected=short_text(expected.text), target=short_text(target.text), **where)
            source = promised or {}
            lines.append({"row": row["_row"], "level1": source.get("level1", clean_text(row["level1"].value)),
                          "level2": source.get("level2", clean_text(row["level2"].value)),
                          "level3": source.get("level3", level3), "target": target.text,
                          "current": clean_text(row["current"].value), "expected": clean_text(row["expected"].value),
                          "share": share, "light": LIGHT_ZH[colour], "likelihood": likelihood,
                          "cause": clean_text(row["cause"].value), "note": clean_text(row["note"].value),
                          "measures": clean_text(row["measures"].value), "cell": row["expected"].address})
        budget, spent = ctx.values.get(p["budget"]), ctx.values.get(p["spent"])
        rate = spent / budget if isinstance(budget, int | float) and budget and isinstance(spent, int | float) else None
        ctx.results["scores"] = {"monitor": True, "budget": budget, "spent": spent, "rate": rate, "indicators": lines}

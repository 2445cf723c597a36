"""The self-evaluation round: every prefilled indicator row scored, checked against what was declared.

Reported at their cells: a target missed without its 偏差原因, a 年度指标值 that differs from the declaration
(the hidden declared sheet keeps what was prefilled; the cells are locked, but a clerk can unprotect the
sheet), an actual value that cannot be read, a tier score outside its band, and 分值 moved between groups.
The scores go into the project record for the summary's 自评得分 and 指标得分 sheets.
"""

from __future__ import annotations

from collections import defaultdict

from perfxl.problems import fmt_number, short_text
from perfxl.scoring import TIERS, execution_score, grade, indicator_score
from perfxl.values import clean_text, normalize_text, parse_target, to_number

from . import Param, RuleKind, register

COLUMNS = ("level1", "level2", "level3", "target", "actual", "points", "score", "reason")


def _number(cell) -> float | None:
    if cell is None or cell.value in (None, ""):
        return None
    value, problem = to_number(cell.value)
    return None if problem else value


def _same(a, b) -> bool:
    return normalize_text(a).replace(" ", "") == normalize_text(b).replace(" ", "")


@register
class SelfEvaluation(RuleKind):
    """Scores of a 项目支出绩效自评表 sheet, and the checks that make them trustworthy."""

    name = "selfeval"
    params = (Param("table", "table"), Param("budget", "field"), Param("spent", "field"), Param("points", "field"))
    codes = ("selfeval-actual-missing", "selfeval-actual-unreadable", "selfeval-actual-fraction",
             "selfeval-unit-mismatch", "selfeval-target-unreadable", "selfeval-tier-missing",
             "selfeval-tier-score-missing", "selfeval-tier-score-out-of-band", "selfeval-reason-missing",
             "selfeval-target-changed", "selfeval-points-moved", "selfeval-execution-missing")
    order = 20

    def check(self, rule, ctx):
        p = rule.params
        table = ctx.spec.tables[p["table"]]
        declared = (ctx.form.declared if ctx.form is not None else {}).get(ctx.sheet, [])
        where = {"sheet": ctx.sheet}
        field = f"{table.id}."
        lines = []
        expected: dict[str, float] = defaultdict(float)
        found: dict[str, float] = defaultdict(float)
        subtotal: dict[str, float] = defaultdict(float)
        rows = [r for r in ctx.table_rows.get(table.id, [])
                if any(clean_text(r[c].value) for c in ("level3", "target", "actual"))]
        for i, row in enumerate(rows):
            promised = declared[i] if i < len(declared) else None
            level3 = clean_text(row["level3"].value) or clean_text((promised or {}).get("level3"))
            shown = clean_text(row["target"].value)
            group = str((promised or {}).get("group") or "")
            if promised is not None and not _same(shown, promised.get("target")):
                ctx.out.add("selfeval-target-changed", "error", cell=row["target"].address, field_=field + "target",
                            level3=level3, found=short_text(shown), declared=short_text(promised.get("target")), **where)
            target_text = promised.get("target") if promised is not None else shown
            weight = _number(row["points"])
            if weight is None:
                weight = float((promised or {}).get("points") or 0)
            if promised is not None:
                expected[group] += float(promised.get("points") or 0)
            found[group] += weight
            actual_text = clean_text(row["actual"].value)
            tier = actual_text if actual_text in TIERS else None
            actual = parse_target("" if tier else row["actual"].value, formula=None if tier else row["actual"].formula)
            typed = _number(row["score"])
            score = indicator_score(parse_target(target_text), actual, weight, tier, typed)
            common = {"level3": level3, "value": short_text(actual_text), "target": short_text(target_text)}
            if score.problem:
                extra = {}
                if score.problem == "selfeval-tier-score-out-of-band":
                    low, high = TIERS[tier]
                    extra = {"tier": tier, "low": fmt_number(low * weight), "high": fmt_number(high * weight),
                             "value": fmt_number(typed)}
                cell = row["score"] if score.problem == "selfeval-tier-score-out-of-band" else row["actual"]
                ctx.out.add(score.problem, "error", cell=cell.address, field_=field + ("score" if cell is row["score"]
                                                                                     else "actual"),
                            **{**common, **extra}, **where)
            elif score.warning:
                ctx.out.add(score.warning, "warning", cell=row["score"].address, field_=field + "score",
                            level3=level3, tier=tier, points=fmt_number(score.points), **where)
            reason = clean_text(row["reason"].value)
            if score.missed and not reason:
                ctx.out.add("selfeval-reason-missing", "error", cell=row["reason"].address, field_=field + "reason",
                            level3=level3, points=fmt_number(score.points), weight=fmt_number(weight), **where)
            subtotal[group] += score.points or 0.0
            lines.append({"row": row["_row"], "group": group, "level1": clean_text(row["level1"].value),
                          "level2": clean_text(row["level2"].value), "level3": level3, "target": target_text,
                          "actual": actual_text, "points": weight, "score": score.points, "how": score.how,
                          "reason": reason, "cell": row["actual"].address})
        for group, total in expected.items():
            if abs(found[group] - total) > 0.01:
                anchor = next((r for r, line in zip(rows, lines) if line["group"] == group), None)
                ctx.out.add("selfeval-points-moved", "error", cell=anchor["points"].address if anchor else "",
                            field_=field + "points", group=group or "（未分组）", found=fmt_number(found[group]),
                            expected=fmt_number(total), **where)
        weight = ctx.values.get(p["points"])
        weight = float(weight) if isinstance(weight, int | float) else 10.0
        execution = execution_score(ctx.values.get(p["budget"]), ctx.values.get(p["spent"]), weight)
        if execution.problem:
            ctx.out.add(execution.problem, "error", cell=ctx.cells.get(p["spent"], ""), field_=p["spent"], **where)
        total = round((execution.points or 0.0) + sum(subtotal.values()), 2)
        ctx.results["scores"] = {
            "execution": {"budget": ctx.values.get(p["budget"]), "spent": ctx.values.get(p["spent"]),
                          "points": weight, "score": execution.points},
            "groups": dict(subtotal), "indicators": lines, "total": total, "grade": grade(total),
        }

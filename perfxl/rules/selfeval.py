"""The self-evaluation round: every prefilled indicator row scored against what was issued.

Each row shown is paired with the row perfxl issued (perfxl.issued: the record of the round, never the
form's own hidden copy) by its identity, not its position. Reported at their cells: a target missed
without its 偏差原因, a 年度指标值 that differs from what was issued (it is scored against what was issued),
an issued row removed (it scores 0) or a row added (not scored), an actual value that cannot be read, a
tier score outside its band, and a 分值 changed (it is fixed when the form is issued: scored as issued, so a
unit cannot weight the rows it met after the fact). The scores go into the
project record for the summary's 自评得分 and 指标得分 sheets.
"""

from __future__ import annotations

from collections import defaultdict

from perfxl.contract import DECLARED_HEADER, DECLARED_SHEET
from perfxl.identity import match_rows, row_key
from perfxl.problems import L, fmt_number, short_text
from perfxl.reader.cells import cell_name
from perfxl.scoring import TIERS, execution_score, grade, indicator_score
from perfxl.values import clean_text, normalize_text, parse_target, to_number

from . import CheckFormula, Param, RuleKind, register

COLUMNS = ("level1", "level2", "level3", "target", "actual", "points", "score", "reason")


def _number(cell) -> float | None:
    if cell is None or cell.value in (None, ""):
        return None
    value, problem = to_number(cell.value)
    return None if problem else value


def _column(pos, column_id: str) -> str:
    return cell_name(0, pos.columns[column_id]).rstrip("0123456789")


def _declared_column(key: str) -> str:
    return cell_name(0, DECLARED_HEADER.index(key)).rstrip("0123456789")


def _same(a, b) -> bool:
    if a == b:  # the usual case, a prefilled cell nobody touched: no normalising
        return True
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
    owns_table = True

    def live(self, rule, positions):
        """执行率 and its score beside the 预算执行率分值 row; beside every indicator row, a warning when its
        一级's 分值 no longer add up to what was declared (the declared sheet holds them)."""
        p = rule.params
        a, b = (cell_name(*positions.fields[p[k]]) for k in ("budget", "spent"))
        weight = cell_name(*positions.fields[p["points"]])
        out = [CheckFormula(positions.fields[p["points"]][0],
                            f'=IF(N({a})>0,"执行率 "&TEXT(N({b})/{a},"0.0%")&"，得分 "&TEXT(MIN(1,N({b})/{a})*N({weight}),'
                            f'"0.00"),"")')]
        pos = positions.tables[p["table"]]
        level1 = _column(pos, "level1")
        points = _column(pos, "points")
        first, last = pos.first_row + 1, pos.last_row + 1
        declared = f"'{DECLARED_SHEET}'!"
        sheet_col = _declared_column("sheet")
        level1_col = _declared_column("level1")
        points_col = _declared_column("points")
        for r in range(pos.first_row, pos.last_row + 1):
            row = r + 1
            given = f"SUMIFS({declared}${points_col}:${points_col},{declared}${sheet_col}:${sheet_col},{{sheet}},"
            given += f"{declared}${level1_col}:${level1_col},${level1}{row})"
            now = f"SUMIF(${level1}${first}:${level1}${last},${level1}{row},${points}${first}:${points}${last})"
            out.append(CheckFormula(r, f'=IF(${level1}{row}="","",IF(ABS({now}-{given})>0.005,'
                                       f'"✗ "&${level1}{row}&" 分值合计应为 "&TEXT({given},"0.00"),""))'))
        return out

    def check(self, rule, ctx):
        """Every row shown, paired by its identity with the row issued (perfxl.issued), scored against what was
        issued: its target, and its 分值 unless its 一级's 分值 no longer add up. A row issued and gone scores
        0, a row never issued scores nothing. Without a record (reported by the validator) nothing is scored."""
        p = rule.params
        table = ctx.spec.tables[p["table"]]
        issued = ctx.issued
        where = {"sheet": ctx.sheet}
        field = f"{table.id}."
        rows = [r for r in ctx.table_rows.get(table.id, [])
                if any(clean_text(r[c].value) for c in ("level1", "level2", "level3", "target", "actual"))]
        pairs = match_rows(rows, issued.rows if issued is not None else (),
                           lambda r: row_key(r["level1"].value, r["level2"].value, r["level3"].value))
        lines = []
        subtotal: dict[str, float] = defaultdict(float)
        for row, promised in pairs:
            if row is None:  # issued, and gone from the form: reported, and it earns nothing
                ctx.out.add("declared-row-missing", "error", field_=field + "level3", level1=promised["level1"],
                            level2=promised["level2"], level3=promised["level3"], target=promised["target"],
                            consequence=L("按 0 分计", "it scores 0"), **where)
                subtotal[str(promised["group"])] += 0.0
                lines.append({"row": promised["row"], "group": str(promised["group"]), "level1": promised["level1"],
                              "level2": promised["level2"], "level3": promised["level3"], "target": promised["target"],
                              "actual": "", "points": float(promised["points"] or 0), "score": 0.0,
                              "how": "预填指标被删除，按 0 分计", "reason": "", "cell": ""})
                continue
            level3 = clean_text(row["level3"].value)
            if promised is None:  # never issued (added, or renamed): listed, never scored
                if issued is not None:
                    ctx.out.add("declared-row-added", "error", cell=row["level3"].address, field_=field + "level3",
                                level1=clean_text(row["level1"].value), level2=clean_text(row["level2"].value),
                                level3=level3, **where)
                lines.append({"row": row["_row"], "group": "", "level1": clean_text(row["level1"].value),
                              "level2": clean_text(row["level2"].value), "level3": level3,
                              "target": clean_text(row["target"].value), "actual": clean_text(row["actual"].value),
                              "points": None, "score": None,
                              "how": "未下发的指标，不计分" if issued is not None else "找不到下发记录，不计分",
                              "reason": clean_text(row["reason"].value), "cell": row["actual"].address})
                continue
            shown = clean_text(row["target"].value)
            target_text = promised["target"]
            if not _same(shown, target_text):
                ctx.out.add("selfeval-target-changed", "error", cell=row["target"].address, field_=field + "target",
                            level3=level3, found=short_text(shown), declared=short_text(target_text), **where)
            weight = float(promised["points"] or 0)  # fixed when issued: a year's results never move them
            shown_points = _number(row["points"])
            if shown_points is None or abs(shown_points - weight) > 0.005:
                ctx.out.add("selfeval-points-moved", "error", cell=row["points"].address, field_=field + "points",
                            level3=level3, found=fmt_number(shown_points), expected=fmt_number(weight), **where)
            group = str(promised["group"])
            actual_text = clean_text(row["actual"].value)
            tier = actual_text if actual_text in TIERS else None
            actual = parse_target("" if tier else row["actual"].value, formula=None if tier else row["actual"].formula)
            typed = _number(row["score"])
            score = indicator_score(parse_target(target_text), actual, weight, tier, typed)
            if score.problem:
                common = {"level3": level3, "value": short_text(actual_text), "target": short_text(target_text)}
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
            lines.append({"row": row["_row"], "group": group, "level1": promised["level1"],
                          "level2": promised["level2"], "level3": promised["level3"], "target": target_text,
                          "actual": actual_text, "points": weight, "score": score.points, "how": score.how,
                          "reason": reason, "cell": row["actual"].address})
        weight = ctx.values.get(p["points"])
        weight = float(weight) if isinstance(weight, int | float) else 10.0
        execution = execution_score(ctx.values.get(p["budget"]), ctx.values.get(p["spent"]), weight)
        if execution.problem:
            ctx.out.add(execution.problem, "error", cell=ctx.cells.get(p["spent"], ""), field_=p["spent"], **where)
        scored = issued is not None
        total = round((execution.points or 0.0) + sum(subtotal.values()), 2) if scored else None
        ctx.results["scores"] = {
            "execution": {"budget": ctx.values.get(p["budget"]), "spent": ctx.values.get(p["spent"]),
                          "points": weight, "score": execution.points if scored else None},
            "groups": dict(subtotal), "indicators": lines, "total": total, "grade": grade(total) if scored else "",
        }

"""The adjustment round (绩效目标调整, 财预〔2015〕88号 第二十八条: adjusted targets go up with the budget
adjustment and are approved with it): each issued indicator row beside what the unit asks to change.

Rows are paired with what was issued (perfxl.issued) by their identity. A 调整后 value left blank, or equal
to the value before, is no change. A changed value, a row marked 删除 and a row added in the blank rows each
need a reason; an added row must be whole (its three levels and a value that can be read). An issued row
cleared from the form is `declared-row-missing` (a row is removed by marking it 删除, with its reason). A
target lowered while the budget is not cut, and money added mid-year with no target for it, are warnings
the reviewer reads first. The project's adjustment (its rows before and after, the budget before and after,
its kind) goes into the project record for 调整审核 and, once the bureau approves it, for the ledger's
versions of the project's targets (perfxl.versions).
"""

from __future__ import annotations

from perfxl.identity import match_rows, row_key
from perfxl.problems import L, fmt_number, short_text
from perfxl.reader.cells import cell_name
from perfxl.scoring import indicator_score
from perfxl.values import clean_text, normalize_text, parse_target

from . import CheckFormula, Param, RuleKind, register

MODIFY, ADD, REMOVE = "修改", "新增", "删除"
ACTIONS = (MODIFY, ADD, REMOVE)
MIDYEAR = "年中追加"


def _same(a: str, b: str) -> bool:
    return normalize_text(a).replace(" ", "") == normalize_text(b).replace(" ", "")


def lowered(before: str, after: str) -> bool:
    """Whether `after` asks less than `before`: the new value, measured as a result against the old target,
    would not meet it (so a 95% target made 90%, or a ≤12小时 made ≤16小时). Words compare as nothing."""
    old, new = parse_target(before), parse_target(after)
    if old.kind not in {"quantitative", "range", "cost"} or new.kind not in {"quantitative", "range", "cost"}:
        return False
    score = indicator_score(old, new, 1.0)
    return not score.problem and score.points < 1 - 1e-9


@register
class Adjustment(RuleKind):
    """The changes a 绩效目标调整表 sheet asks for, each with its reason, checked against what was issued."""

    name = "adjust"
    params = (Param("table", "table"), Param("budget_before", "field"), Param("budget_after", "field"),
              Param("kind_field", "field"))
    codes = ("adjust-reason-missing", "adjust-value-unreadable", "adjust-row-incomplete", "adjust-before-changed",
             "adjust-action-unknown", "adjust-target-lowered", "adjust-money-without-targets", "adjust-kind-missing")
    order = 20
    owns_table = True

    def live(self, rule, positions):
        """Beside every row, while the unit types: ✗ where a value is changed, a row added or one marked 删除
        without its reason (the merge's adjust-reason-missing), so it is seen before the form is sent."""
        pos = positions.tables[rule.params["table"]]

        def column(cid: str) -> str:
            return cell_name(0, pos.columns[cid]).rstrip("0123456789")

        target, after, action, reason = (column(c) for c in ("target", "after", "action", "reason"))
        out = []
        for r in range(pos.first_row, pos.last_row + 1):
            n = r + 1
            changed = (f'OR(${action}{n}="删除",AND(TRIM(${after}{n})<>"",TRIM(${after}{n})<>TRIM(${target}{n})))')
            out.append(CheckFormula(r, f'=IF(AND({changed},TRIM(${reason}{n})=""),"✗ 请填写调整原因","")'))
        return out

    def check(self, rule, ctx):
        p = rule.params
        table = ctx.spec.tables[p["table"]]
        issued = ctx.issued
        where = {"sheet": ctx.sheet}
        field = f"{table.id}."
        rows = [r for r in ctx.table_rows.get(table.id, [])
                if any(clean_text(r[c].value) for c in ("level1", "level2", "level3", "target", "after", "action"))]
        pairs = match_rows(rows, issued.rows if issued is not None else (),
                           lambda r: row_key(r["level1"].value, r["level2"].value, r["level3"].value))
        before_budget, after_budget = ctx.values.get(p["budget_before"]), ctx.values.get(p["budget_after"])
        budget_cut = (isinstance(before_budget, int | float) and isinstance(after_budget, int | float)
                      and after_budget < before_budget - 1e-9)
        lines = []
        for row, promised in pairs:
            if row is None:  # cleared, not marked 删除: the row stands as issued, and the form says so
                ctx.out.add("declared-row-missing", "error", field_=field + "level3", level1=promised["level1"],
                            level2=promised["level2"], level3=promised["level3"], target=promised["target"],
                            consequence=L("按未调整处理；删除指标请在“调整方式”中选择“删除”并填写原因",
                                          "it stands unchanged; mark a row 删除 with a reason to remove it"), **where)
                continue
            level = {k: clean_text(row[k].value) for k in ("level1", "level2", "level3")}
            after, action = clean_text(row["after"].value), clean_text(row["action"].value)
            reason = clean_text(row["reason"].value)
            if action and action not in ACTIONS:  # typed over the list: a 删除 the unit believes it asked for
                ctx.out.add("adjust-action-unknown", "error", cell=row["action"].address, field_=field + "action",
                            level3=level["level3"] or L("（未命名）", "(unnamed)"), value=short_text(action), **where)
            if promised is None:  # added in the blank rows
                missing = [label for key, label in (("level1", "一级指标"), ("level2", "二级指标"), ("level3", "三级指标"))
                           if not level[key]] + ([] if after else ["调整后指标值"])
                if missing:
                    ctx.out.add("adjust-row-incomplete", "error", cell=row["level3"].address, field_=field + "level3",
                                level3=level["level3"] or L("（未命名）", "(unnamed)"), missing="、".join(missing),
                                **where)
                change = ADD
                before = ""
            else:
                before = promised["target"]
                shown = clean_text(row["target"].value)
                if shown and not _same(shown, before):
                    ctx.out.add("adjust-before-changed", "error", cell=row["target"].address, field_=field + "target",
                                level3=level["level3"], found=short_text(shown), declared=short_text(before), **where)
                level = {k: promised[k] for k in ("level1", "level2", "level3")}
                if action == REMOVE:
                    change = REMOVE
                elif after and not _same(after, before):
                    change = MODIFY
                else:
                    change = ""
            if after and change != REMOVE:
                value = parse_target(after, formula=row["after"].formula)
                if value.kind in {"unparseable", "placeholder"}:
                    ctx.out.add("adjust-value-unreadable", "error", cell=row["after"].address, field_=field + "after",
                                level3=level["level3"], value=short_text(after), **where)
            if change and not reason:
                said = {ADD: L("是新增的", "is added"), REMOVE: L("要删除", "is to be removed"),
                        MODIFY: L(f"由“{short_text(before)}”调整为“{short_text(after)}”", f"is changed from "
                                  f"'{short_text(before)}' to '{short_text(after)}'")}[change]
                ctx.out.add("adjust-reason-missing", "error", cell=row["reason"].address, field_=field + "reason",
                            level3=level["level3"], change=said, **where)
            if change == MODIFY and not budget_cut and lowered(before, after):
                ctx.out.add("adjust-target-lowered", "warning", cell=row["after"].address, field_=field + "after",
                            level3=level["level3"], before=short_text(before), after=short_text(after), **where)
            lines.append({"row": row["_row"], **level, "before": before, "after": after if change != REMOVE else "",
                          "change": change, "reason": reason, "cell": row["after"].address,
                          "group": (promised or {}).get("group", ""), "points": (promised or {}).get("points")})
        changed = [line for line in lines if line["change"]]
        kind = clean_text(ctx.values.get(p["kind_field"]))
        money_changed = isinstance(after_budget, int | float) and not (
            isinstance(before_budget, int | float) and abs(after_budget - before_budget) < 0.005)
        if (changed or money_changed) and not kind:
            ctx.out.add("adjust-kind-missing", "error", cell=ctx.cells.get(p["kind_field"], ""), field_=p["kind_field"], **where)
        if kind == MIDYEAR and money_changed and isinstance(before_budget, int | float) and after_budget > before_budget \
                and not any(line["change"] in (MODIFY, ADD) for line in lines):
            ctx.out.add("adjust-money-without-targets", "warning", cell=ctx.cells.get(p["budget_after"], ""),
                        field_=p["budget_after"], kind=kind,
                        amount=fmt_number(after_budget - before_budget), **where)
        ctx.results["scores"] = {"adjust": True, "kind": kind, "budget_before": before_budget,
                                 "budget_after": after_budget if money_changed else None, "indicators": lines}

"""The indicator table: the hierarchy of 一级/二级/三级, every target parsed, and the cost checks.

One rule kind, `indicators`, added by the spec to every indicator table. It runs before the other kinds
because its records (the parsed targets) are what the project record and the summary carry.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from perfxl.domain import MONEY_UNITS, SUM_TOLERANCE
from perfxl.problems import EMPTY, Collector, L, fmt_number, short_text
from perfxl.records import IndicatorRecord
from perfxl.values import clean_text, compose_target, parse_target

from . import Param, RuleKind, register

if TYPE_CHECKING:
    from perfxl.spec import Spec, Table

KIND_WORDS = {"cost": L("成本指标", "cost indicator"), "time": L("时效指标", "timeliness indicator"),
              "quantity": L("数量指标", "quantity indicator"), "quality": L("质量指标", "quality indicator"),
              "satisfaction": L("满意度指标", "satisfaction indicator")}
LESS_WORDS = ("故障", "投诉", "逾期", "事故", "差错", "出错", "中断", "结余", "时长", "耗时", "成本", "费用", "误差",
              "不良", "违规", "损失", "空置", "流失", "返工", "等待", "排队", "响应时间", "处置时间", "修复时间", "占编率")
SPEND_WORDS = ("支出", "支付", "拨付", "资金", "经费", "费用", "投入", "预算", "花费", "开支")


def _indicators(table: Table, rows: list[dict], spec: Spec, out: Collector, sheet: str) -> list[IndicatorRecord]:
    ind = table.indicator
    h = ind.hierarchy
    records: list[IndicatorRecord] = []
    last1 = last2 = ""
    seen: dict[tuple, int] = {}
    allowed = "、".join(h.levels)
    labels = {c.id: c.label for c in table.columns}
    for row in rows:
        c1 = row[ind.level1]
        c2 = row[ind.level2] if ind.level2 else None
        c3 = row[ind.level3]
        l1 = clean_text(c1.value) or last1  # merged or blank cells inherit from the row above
        l2 = (clean_text(c2.value) if c2 else "") or (last2 if l1 == last1 else "")
        l3 = clean_text(c3.value)
        last1, last2 = l1, l2
        texts, targets, cells = {}, {}, {"level1": c1.address, "level3": c3.address}
        for vid in ind.values:
            value, address, formula = row[vid]
            if ind.sign_column:
                value = compose_target(row[ind.sign_column].value, value, row[ind.unit_column].value)
            target = parse_target(value, formula=formula)
            texts[vid] = target.text
            targets[vid] = target
            cells[vid] = address
        if not l3 and all(t.kind == "empty" for t in targets.values()):
            continue  # a level name left on an otherwise empty row
        if not l3:
            out.add("indicator-incomplete", "error", cell=c3.address, field_=f"{table.id}.{ind.level3}",
                    row=row["_row"], sheet=sheet)
        canonical1, canonical2 = h.canonical(l1), h.canonical(l2)
        if canonical1 not in h.levels:
            out.add("indicator-level1-unknown", "error", cell=c1.address, field_=f"{table.id}.{ind.level1}",
                    level1=l1 or EMPTY, allowed=allowed, sheet=sheet)
        elif ind.level2:
            if canonical2 not in h.levels[canonical1]:
                owner = [k for k, v in h.levels.items() if canonical2 in v]
                expected = "、".join(h.levels[canonical1])
                hint = L(f"它属于“{owner[0]}”", f"it belongs to '{owner[0]}'") if owner else \
                    L(f"应为 {expected}", f"expected {expected}")
                out.add("indicator-level2-mismatch", "error", cell=(c2 or c1).address,
                        field_=f"{table.id}.{ind.level2}", level1=l1, level2=l2 or EMPTY, hint=hint, sheet=sheet)
        key = (canonical1, canonical2, l3)
        if l3 and key in seen:
            out.add("indicator-duplicate", "warning", cell=c3.address, field_=f"{table.id}.{ind.level3}",
                    level3=l3, first=seen[key], sheet=sheet)
        seen.setdefault(key, row["_row"])
        record = IndicatorRecord(row=row["_row"], level1=l1, level2=l2, level3=l3, cells=cells, texts=texts,
                                 targets=targets)
        _check_targets(record, table, spec, out, sheet, labels)
        records.append(record)
    present = {h.canonical(r.level1) for r in records}
    anchor = table.columns[0]
    for level in ind.required_levels:
        if level not in present:
            out.add("indicator-category-missing", "error", sheet, "", f"{table.id}.{anchor.id}", level1=level)
    for level in ind.recommended_levels:
        if level not in present:
            out.add("indicator-category-recommended", "warning", sheet, "", f"{table.id}.{anchor.id}", level1=level)
    if records:
        main = ind.main
        quantitative = sum(1 for r in records if r.targets[main].quantitative)
        if quantitative / len(records) < 0.5:
            out.add("indicator-mostly-qualitative", "warning", sheet, "", f"{table.id}.{main}",
                    share=f"{quantitative / len(records):.0%}", quant=quantitative, total=len(records))
    return records


def indicator_kind(spec: Spec, level1: str, level2: str, level3: str) -> str | None:
    # Asked for every row of every form, and again for its cost: remembered for short texts only (a hostile
    # form's 30,000-character levels would stay in memory, 65,536 of them)
    if len(level1) + len(level2) + len(level3) <= KIND_MEMO_CHARS:
        return _indicator_kind(spec, level1, level2, level3)
    return _indicator_kind.__wrapped__(spec, level1, level2, level3)


KIND_MEMO_CHARS = 256


@lru_cache(maxsize=65536)  # a spec is hashed by identity, and held here while its rows are
def _indicator_kind(spec: Spec, level1: str, level2: str, level3: str) -> str | None:
    table = spec.indicator_table()
    h = table.indicator.hierarchy
    kind = h.kinds.get(h.canonical(level2)) or h.kinds.get(h.canonical(level1))
    if kind is None:
        if "满意" in level3:
            kind = "satisfaction"
        elif "成本" in level3 or "费用" in level3:
            kind = "cost"
    return kind


def usual_direction(kind: str | None, level3: str) -> str | None:
    """Which way an indicator of this kind normally points: less for costs, times and what should fall
    (故障率, 投诉), more for quantities, qualities and satisfaction; None where nothing says."""
    if kind in {"cost", "time"} or (_less_is_better if len(level3) <= KIND_MEMO_CHARS
                                    else _less_is_better.__wrapped__)(level3):
        return "less"
    if kind in {"quantity", "quality", "satisfaction"}:
        return "more"
    return None


@lru_cache(maxsize=65536)
def _less_is_better(metric: str) -> bool:
    """故障率 should fall; 无故障运行率 should rise: a negated keyword does not count."""
    for word in LESS_WORDS:
        at = metric.find(word)
        if at >= 0 and not (at > 0 and metric[at - 1] in "无不零未免"):
            return True
    return False


def _check_targets(record: IndicatorRecord, table: Table, spec: Spec, out: Collector, sheet: str,
                   labels: dict[str, str]) -> None:
    ind = table.indicator
    kind = indicator_kind(spec, record.level1, record.level2, record.level3)
    all_empty = all(t.kind == "empty" for t in record.targets.values())
    for vid in ind.values:
        t = record.targets[vid]

        def where(vid=vid) -> dict:  # where a problem of this cell is, and what it says: made only for a problem
            return {"sheet": sheet, "cell": record.cells[vid], "field_": f"{table.id}.{vid}"}

        def common(vid=vid, t=t) -> dict:
            return {"level3": record.level3 or L("（未命名）", "(unnamed)"), "column": labels[vid],
                    "value": short_text(t.text)}
        if t.kind == "empty":
            if all_empty and vid == ind.main:
                out.add("indicator-empty-value", "error", **where(), **common())
            elif not all_empty and vid == ind.values[0] and len(ind.values) > 1:
                out.add("indicator-empty-value", "warning", **where(), **common())
            continue
        if t.kind == "unparseable":
            out.add("indicator-unparseable", "error", **where(), **common())
            continue
        if t.kind == "qualitative" and record.level3.endswith(("率", "度")):
            # a rate with only words ("较高") cannot be scored at year end: flagged, not taken as a word
            out.add("indicator-rate-without-number", "warning", **where(), **common())
            continue
        if t.kind == "placeholder":
            out.add("indicator-placeholder", "warning", **where(), **common())
            continue
        expected = usual_direction(kind, record.level3)
        if expected and t.direction and t.direction != expected and not t.embedded:
            out.add("indicator-direction", "warning", **where(), **common(),
                    kind=KIND_WORDS.get(kind, L("该类指标", "indicator of this kind")),
                    expected="≤" if expected == "less" else "≥")
        if t.kind == "quantitative" and t.unit == "%" and t.value is not None and t.value > 100 \
                and not any(w in record.level3 for w in ("增长", "增幅", "提升", "比上年")):
            out.add("indicator-percent-over-100", "warning", **where(), **common())
        if t.kind == "quantitative" and not t.unit and t.value is not None and 0 < t.value <= 1 \
                and record.level3.endswith("率"):
            out.add("indicator-rate-as-fraction", "warning", **where(), **common(), percent=fmt_number(t.value * 100))
        if t.kind == "quantitative" and t.unit in MONEY_UNITS and kind in {"quantity", "quality"} \
                and any(w in record.level3 for w in SPEND_WORDS):
            out.add("indicator-money-as-output", "warning", **where(), **common())
        if t.kind == "deadline" and t.deadline and int(t.deadline[:4]) < spec.year:
            out.add("indicator-deadline-before-year", "warning", **where(), **common(), deadline=t.deadline, year=spec.year)
        if t.kind == "cost" and t.quantity is not None and t.price is not None and t.amount is not None:
            product = t.quantity * t.price
            if abs(product - t.amount) > SUM_TOLERANCE * max(1, MONEY_UNITS.get(spec.money_unit, 1) / 10_000):
                out.add("cost-tuple-mismatch", "error", **where(), level3=record.level3, product=fmt_number(product),
                        amount=fmt_number(t.amount))


def _cost_rules(table: Table, records: list[IndicatorRecord], values: dict, cells: dict, spec: Spec,
                out: Collector, sheet: str) -> None:
    ind = table.indicator
    main = ind.main
    targets = [r.targets[main] for r in records]
    budget_field = ind.budget_field or spec.budget_field
    budget = values.get(budget_field) if budget_field else None
    if ind.cost_tuple:
        costs = [t.amount for t in targets if t.kind == "cost" and t.amount is not None]
        if costs and budget is not None and abs(sum(costs) - budget) > SUM_TOLERANCE:
            out.add("cost-sum-mismatch", "error", sheet, cells.get(budget_field, ""), budget_field,
                    costs=fmt_number(sum(costs)), label=spec.fields[budget_field].label.rstrip("：: "), budget=fmt_number(budget),
                    diff=fmt_number(abs(sum(costs) - budget)))
        return
    total = cost_total(spec, records)
    if total is not None and budget is not None and total > budget + SUM_TOLERANCE:
        out.add("cost-exceeds-budget", "warning", sheet, cells.get(budget_field, ""), budget_field,
                costs=fmt_number(total), budget=fmt_number(budget))


def cost_total(spec: Spec, records: list[IndicatorRecord]) -> float | None:
    """Sum of the cost targets written in money, in the form's money unit (None when there are none, and
    on a form whose template has no indicator table)."""
    table = spec.indicator_table()
    if table is None:
        return None
    main = table.indicator.main
    total, found = 0.0, False
    for r in records:
        t = r.targets[main]
        if indicator_kind(spec, r.level1, r.level2, r.level3) != "cost":
            continue
        if t.kind == "cost" and t.amount is not None:
            total += t.amount
            found = True
        elif t.kind == "quantitative" and t.unit in MONEY_UNITS and t.value is not None:
            total += t.value * MONEY_UNITS[t.unit] / MONEY_UNITS[spec.money_unit]
            found = True
    return round(total, 6) if found else None


@register
class Indicators(RuleKind):
    """Every row of an indicator table against its hierarchy and the target grammar; costs against budget."""

    name = "indicators"
    params = (Param("table", "table"),)
    codes = ("indicator-level1-unknown", "indicator-level2-mismatch", "indicator-category-missing",
             "indicator-category-recommended", "indicator-incomplete", "indicator-empty-value",
             "indicator-duplicate", "indicator-unparseable", "indicator-placeholder", "indicator-direction",
             "indicator-percent-over-100", "indicator-rate-as-fraction", "indicator-mostly-qualitative",
             "indicator-money-as-output", "indicator-deadline-before-year", "indicator-rate-without-number", "cost-tuple-mismatch",
             "cost-sum-mismatch", "cost-exceeds-budget")
    order = 10
    owns_table = True

    def check(self, rule, ctx):
        table = ctx.spec.tables[rule.params["table"]]
        records = _indicators(table, ctx.table_rows.get(table.id, []), ctx.spec, ctx.out, ctx.sheet)
        _cost_rules(table, records, ctx.values, ctx.cells, ctx.spec, ctx.out, ctx.sheet)
        ctx.indicators = records

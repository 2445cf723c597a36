"""Validate stage: form data + the rules declared in its spec → problems (as data) and normalised records.

One small rule engine: every rule in the spec has a `kind`, and each kind is a function here. Field
attributes (required, type, choices, length, range, pattern, in_year) are rules too. Problems carry a
stable code, a severity, the sheet and cell, and a message in plain Chinese (English with lang="en").
Validation never raises on bad input; the records it returns are what the merge stage consumes.
"""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

from .domain import EXCEL_ERROR_VALUES, MONEY_UNITS, SUM_TOLERANCE, default_year
from .read import Cell, FormData, SheetData
from .spec import NUMERIC_TYPES, Field, Rule, Spec, Table, load_spec
from .values import (
    PATTERN_DIGITS,
    PATTERNS,
    Target,
    clean_text,
    compose_target,
    normalize_text,
    parse_target,
    to_code,
    to_date,
    to_date_range,
    to_number,
)

TOLERANCE = SUM_TOLERANCE

MESSAGES: dict[str, tuple[str, str]] = {
    "required": ("「{label}」为必填项，尚未填写", "'{label}' is required but empty"),
    "type-number": ("「{label}」应填写数字，现为“{value}”", "'{label}' must be a number, found '{value}'"),
    "type-integer": ("「{label}」应填写整数，现为“{value}”", "'{label}' must be a whole number, found '{value}'"),
    "type-date": ("「{label}」应填写日期（如 {year}-01-01），现为“{value}”", "'{label}' must be a date, found '{value}'"),
    "type-daterange": ("「{label}」应写作“开始日期至结束日期”，现为“{value}”",
                       "'{label}' must read 'start至end', found '{value}'"),
    "choice": ("「{label}」只能从下拉选项中选择（{choices}），现为“{value}”",
               "'{label}' must be one of {choices}, found '{value}'"),
    "length": ("「{label}」超过 {max} 个字符（现 {length} 个）", "'{label}' is longer than {max} characters ({length})"),
    "range": ("「{label}」应在 {min} 到 {max} 之间，现为 {value}", "'{label}' must be between {min} and {max}, found {value}"),
    "pattern-phone": ("「{label}」不像电话号码：“{value}”", "'{label}' is not a phone number: '{value}'"),
    "pattern-subject_code": ("「{label}」应为7位功能科目（项级）编码，如 2210302，现为“{value}”",
                             "'{label}' must be a 7-digit function code such as 2210302, found '{value}'"),
    "date-out-of-year": ("「{label}」{value} 不在 {year} 年度内", "'{label}' {value} is outside the year {year}"),
    "sum-mismatch": ("{what}：分项合计 {parts} 与填写的合计 {total} 不符（相差 {diff}）",
                     "{what}: the parts add up to {parts}, not the total {total} (difference {diff})"),
    "period-exceeds": ("{what}：{part_label} {part} 大于 {whole_label} {whole}",
                       "{what}: {part_label} {part} exceeds {whole_label} {whole}"),
    "budget-exceeds": ("{what}：{part_label} {part} 大于 {whole_label} {whole}",
                       "{what}: {part_label} {part} exceeds {whole_label} {whole}"),
    "table-empty": ("「{label}」至少应填写 {min_rows} 行", "'{label}' needs at least {min_rows} row(s)"),
    "name-mismatch": ("两处项目名称不一致：“{a}” 与 “{b}”", "The two project names differ: '{a}' vs '{b}'"),
    "indicator-level1-unknown": ("一级指标“{level1}”不属于本表的指标体系（应为 {allowed}）",
                                 "Level-1 indicator '{level1}' is not in this form's hierarchy ({allowed})"),
    "indicator-level2-mismatch": ("二级指标“{level2}”不属于一级指标“{level1}”{hint}",
                                  "Level-2 indicator '{level2}' does not belong to '{level1}'{hint}"),
    "indicator-category-missing": ("缺少一级指标“{level1}”，至少应填写一行", "Level-1 category '{level1}' is missing"),
    "indicator-category-recommended": ("未填写一级指标“{level1}”，建议补充", "No '{level1}' indicators; consider adding some"),
    "indicator-incomplete": ("第 {row} 行指标缺少三级指标名称", "Row {row}: the level-3 indicator name is missing"),
    "indicator-empty-value": ("指标“{level3}”没有填写{column}", "Indicator '{level3}' has no {column}"),
    "indicator-duplicate": ("指标“{level3}”重复填写（与第 {first} 行相同）",
                            "Indicator '{level3}' is repeated (same as row {first})"),
    "indicator-unparseable": ("指标“{level3}”的{column}“{value}”无法识别，请写成如 ≥95%、≤12小时、＝1套 或定性描述",
                              "Cannot read the {column} '{value}' of '{level3}'; write e.g. ≥95%, ≤12小时 or a qualitative word"),
    "indicator-placeholder": ("指标“{level3}”的{column}“{value}”含有未替换的占位符", "'{value}' of '{level3}' still holds a placeholder"),
    "indicator-direction": ("指标“{level3}”属于{kind_zh}，一般应使用“{expected}”，现为“{value}”",
                            "'{level3}' is a {kind} indicator and normally uses '{expected}', found '{value}'"),
    "indicator-percent-over-100": ("指标“{level3}”的百分比 {value} 超过 100%", "'{level3}': percentage {value} is above 100%"),
    "indicator-rate-as-fraction": ("指标“{level3}”是比率，却写成“{value}”，是否应为 {percent}%？",
                                   "'{level3}' is a rate written as '{value}'; did you mean {percent}%?"),
    "indicator-mostly-qualitative": ("定量指标只占 {share}（{quant}/{total}），绩效目标应以定量指标为主",
                                     "Only {share} of the targets are quantitative ({quant}/{total})"),
    "indicator-money-as-output": ("指标“{level3}”把资金支出写成了产出目标（{value}）",
                                  "'{level3}' states money spent as an output target ({value})"),
    "indicator-deadline-before-year": ("指标“{level3}”的完成时间 {deadline} 早于 {year} 年度",
                                       "'{level3}' has a completion date {deadline} before the year {year}"),
    "cost-tuple-mismatch": ("成本指标“{level3}”：数量×单价＝{product}，与金额 {amount} 不符",
                            "Cost '{level3}': quantity×price = {product}, not the amount {amount}"),
    "cost-sum-mismatch": ("成本指标金额合计 {costs} 与「{label}」{budget} 不符（相差 {diff}）",
                          "Cost indicators add up to {costs}, not '{label}' {budget} (difference {diff})"),
    "cost-exceeds-budget": ("成本指标合计 {costs} 超过项目预算 {budget}", "Cost targets {costs} exceed the budget {budget}"),
    "stamp-version": ("表单模板版本为 {found}，当前要求 {expected}，请使用新下发的表格重新填报",
                      "Form version {found}; {expected} is required — refill the new form"),
    "stamp-fingerprint": ("表单与当前模板的细节不一致（版本相同但模板已修改），请核对",
                          "The form differs from the current template (same version, changed spec)"),
    "stamp-year": ("这是 {found} 年度的表，本次汇总为 {expected} 年度", "This is a {found} form; {expected} is being merged"),
    "stamp-unit-unknown": ("单位编码 {unit_code}（{name}）不在名单中", "Unit code {unit_code} ({name}) is not on the roster"),
    "stamp-unit-name": ("单位编码 {unit_code} 在名单中为“{expected}”，表中为“{found}”",
                        "Unit {unit_code} is '{expected}' on the roster but '{found}' in the form"),
    "formula-unsupported": ("「{label}」含有公式 ={formula}，无法核算，请直接填写数值",
                            "'{label}' holds a formula ={formula} that cannot be recomputed; type the value"),
    "formula-error": ("「{label}」的计算结果为错误值 {value}", "'{label}' evaluates to an error {value}"),
}
KIND_ZH = {"cost": "成本指标", "time": "时效指标", "quantity": "数量指标", "quality": "质量指标",
           "satisfaction": "满意度指标"}
LESS_WORDS = ("故障", "投诉", "逾期", "事故", "差错", "出错", "中断", "结余", "时长", "耗时", "成本", "费用", "误差",
              "不良", "违规", "损失", "空置", "流失", "返工", "等待", "排队", "响应时间", "处置时间", "修复时间", "占编率")
SPEND_WORDS = ("支出", "支付", "拨付", "资金", "经费", "费用", "投入", "预算", "花费", "开支")


@dataclass
class Problem:
    severity: str  # error | warning
    code: str
    sheet: str
    cell: str
    field: str
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class IndicatorRecord:
    row: int
    level1: str
    level2: str
    level3: str
    cells: dict[str, str]
    texts: dict[str, str]
    targets: dict[str, Target]


@dataclass
class ProjectRecord:
    sheet: str
    name: str
    values: dict[str, Any]  # field id → normalised value (numbers in the form's money unit, dates ISO)
    cells: dict[str, str]  # field id → cell address
    tables: dict[str, list[dict[str, Any]]]
    indicators: list[IndicatorRecord]
    errors: int = 0
    warnings: int = 0


@dataclass
class CheckedForm:
    path: str
    template: str | None
    version: str | None
    year: int | None
    region: str | None
    unit_code: str | None
    unit_name: str | None
    money_unit: str | None
    family: str | None
    projects: list[ProjectRecord]
    problems: list[Problem]
    read_error: str | None = None

    @property
    def errors(self) -> int:
        return sum(1 for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> int:
        return sum(1 for p in self.problems if p.severity == "warning")

    @property
    def status(self) -> str:
        if self.read_error:
            return "rejected"
        return "errors" if self.errors else ("warnings" if self.warnings else "valid")


class _Collector:
    def __init__(self, lang: str):
        self.lang = lang
        self.problems: list[Problem] = []

    def add(self, code: str, severity: str, sheet: str = "", cell: str = "", field_: str = "",
            message_code: str | None = None, **params) -> None:
        zh, en = MESSAGES.get(message_code or code, ("{detail}", "{detail}"))
        template = en if self.lang == "en" else zh
        try:
            message = template.format(**params)
        except (KeyError, IndexError, ValueError):
            message = f"{code}: {params}"
        self.problems.append(Problem(severity, code, sheet, cell, field_, message))


def _fmt(x: float | None) -> str:
    if x is None:
        return "（空）"
    return f"{x:,.2f}".rstrip("0").rstrip(".") if abs(x) < 1e15 else f"{x:g}"


def _short(value: Any, limit: int = 40) -> str:
    text = "" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ----------------------------------------------------------------------------------------------------
# Formulas: recompute simple ones from the inputs, never trust a cached value
# ----------------------------------------------------------------------------------------------------

_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
               ast.USub: operator.neg, ast.UAdd: operator.pos}


def _evaluate(formula: str) -> float | None:
    """Arithmetic on numbers (=780+444.14, =100%) — anything else (cell references, functions) is
    reported, not guessed."""
    expr = normalize_text(formula).replace("%", "/100")
    if re.search(r"[A-Za-z$!:]", expr) or len(expr) > 200:
        return None
    ops = _ARITHMETIC

    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return ops[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in ops:
            return ops[type(node.op)](walk(node.operand))
        raise ValueError("unsupported")

    try:
        return walk(ast.parse(expr, mode="eval"))
    except (SyntaxError, ValueError, ZeroDivisionError, TypeError, RecursionError):
        return None


# ----------------------------------------------------------------------------------------------------
# The engine
# ----------------------------------------------------------------------------------------------------

def _normalise_field(f: Field, cell: Cell, spec: Spec, form: FormData, out: _Collector, sheet: str) -> Any:
    raw, address, formula = cell
    where = {"sheet": sheet, "cell": address, "field_": f.id}
    if isinstance(raw, str) and raw.startswith("#") and raw.upper() in EXCEL_ERROR_VALUES:
        out.add("formula-error", "error", **where, label=f.label, value=raw)
        return None
    if formula and f.type in NUMERIC_TYPES:
        value = _evaluate(formula)
        if value is None:
            out.add("formula-unsupported", "error", **where, label=f.label, formula=_short(formula))
            return None
        raw = value
    empty = raw is None or (isinstance(raw, str) and not raw.strip())
    if empty:
        if f.required:
            out.add("required", "error", **where, label=f.label)
        return None
    if f.type in {"money", "number", "percent", "integer"}:
        number, problem = to_number(raw, spec.money_unit if f.type == "money" else None)
        if problem:
            out.add("type-number", "error", **where, label=f.label, value=_short(raw))
            return None
        if f.type == "integer" and not float(number).is_integer():
            out.add("type-integer", "error", **where, label=f.label, value=_short(raw))
            return None
        lo, hi = f.min, f.max
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            out.add("range", "error", **where, label=f.label, value=_fmt(number),
                    min=_fmt(lo) if lo is not None else "-∞", max=_fmt(hi) if hi is not None else "∞")
        return int(number) if f.type == "integer" else number
    if f.type == "date":
        d, precision, problem = to_date(raw, form.date1904)
        if problem:
            out.add("type-date", "error", **where, label=f.label, value=_short(raw), year=spec.year)
            return None
        if f.in_year and d.year != spec.year:
            out.add("date-out-of-year", "error", **where, label=f.label, value=d.isoformat(), year=spec.year)
        return d.isoformat() if precision == "day" else (f"{d.year}-{d.month:02d}" if precision == "month" else str(d.year))
    if f.type == "daterange":
        span, problem = to_date_range(raw, form.date1904)
        if problem:
            out.add("type-daterange", "error", **where, label=f.label, value=_short(raw))
            return None
        if f.in_year and (span[0].year != spec.year or span[1].year != spec.year):
            out.add("date-out-of-year", "error", **where, label=f.label,
                    value=f"{span[0].isoformat()}至{span[1].isoformat()}", year=spec.year)
        return f"{span[0].isoformat()}至{span[1].isoformat()}"
    if f.type in {"choice", "tick"}:
        text = normalize_text(raw).replace("√", "").replace("□", "").strip()
        if text not in f.choices:
            out.add("choice", "error", **where, label=f.label, value=_short(raw), choices="、".join(f.choices))
        return text
    if f.type in {"code", "phone"}:
        text = to_code(raw, PATTERN_DIGITS.get(f.pattern or ""))
        pattern = f.pattern or ("phone" if f.type == "phone" else None)
        if pattern in PATTERNS and not PATTERNS[pattern].match(text):
            out.add(f"pattern-{pattern}", "error", **where, label=f.label, value=_short(raw))
        return text
    text = clean_text(raw)
    if f.max_length and len(text) > f.max_length:
        out.add("length", "error", **where, label=f.label, max=f.max_length, length=len(text))
    return text


def _normalise_table(table: Table, rows: list[dict], spec: Spec, form: FormData, out: _Collector,
                     sheet: str) -> list[dict[str, Any]]:
    result = []
    for row in rows:
        record: dict[str, Any] = {"_row": row["_row"]}
        for col in table.columns:
            raw, address, formula = row[col.id]
            if col.type in {"money", "number", "integer"}:
                if formula:
                    raw = _evaluate(formula)
                    if raw is None:
                        out.add("formula-unsupported", "error", sheet, address, f"{table.id}.{col.id}",
                                label=col.label, formula=_short(formula))
                number, problem = to_number(raw, spec.money_unit if col.type == "money" else None)
                if problem:
                    out.add("type-number", "error", sheet, address, f"{table.id}.{col.id}", label=col.label,
                            value=_short(raw))
                record[col.id] = number
            else:
                record[col.id] = clean_text(raw if not formula else "=" + formula)
            record[f"{col.id}@"] = address
        result.append(record)
    return result


def _indicators(table: Table, rows: list[dict], spec: Spec, out: _Collector, sheet: str) -> list[IndicatorRecord]:
    ind = table.indicator
    h = ind.hierarchy
    records: list[IndicatorRecord] = []
    last1 = last2 = ""
    seen: dict[tuple, int] = {}
    allowed = "、".join(h.levels)
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
        where = {"sheet": sheet}
        if not l3:
            out.add("indicator-incomplete", "error", cell=c3.address, field_=f"{table.id}.{ind.level3}",
                    row=row["_row"], **where)
        canonical1 = h.canonical(l1)
        if canonical1 not in h.levels:
            out.add("indicator-level1-unknown", "error", cell=c1.address, field_=f"{table.id}.{ind.level1}",
                    level1=l1 or "（空）", allowed=allowed, **where)
        elif ind.level2:
            canonical2 = h.canonical(l2)
            if canonical2 not in h.levels[canonical1]:
                owner = [k for k, v in h.levels.items() if canonical2 in v]
                hint = f"（它属于“{owner[0]}”）" if owner else f"（应为 {'、'.join(h.levels[canonical1])}）"
                out.add("indicator-level2-mismatch", "error", cell=(c2 or c1).address,
                        field_=f"{table.id}.{ind.level2}", level1=l1, level2=l2 or "（空）", hint=hint, **where)
        key = (h.canonical(l1), h.canonical(l2), l3)
        if l3 and key in seen:
            out.add("indicator-duplicate", "warning", cell=c3.address, field_=f"{table.id}.{ind.level3}",
                    level3=l3, first=seen[key], **where)
        seen.setdefault(key, row["_row"])
        record = IndicatorRecord(row=row["_row"], level1=l1, level2=l2, level3=l3, cells=cells, texts=texts,
                                 targets=targets)
        _check_targets(record, table, spec, out, sheet)
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
        main = ind.values[-1]
        quantitative = sum(1 for r in records if r.targets[main].quantitative)
        if quantitative / len(records) < 0.5:
            out.add("indicator-mostly-qualitative", "warning", sheet, "", f"{table.id}.{main}",
                    share=f"{quantitative / len(records):.0%}", quant=quantitative, total=len(records))
    return records


def indicator_kind(spec: Spec, level1: str, level2: str, level3: str) -> str | None:
    table = spec.indicator_table()
    h = table.indicator.hierarchy
    kind = h.kinds.get(h.canonical(level2)) or h.kinds.get(h.canonical(level1))
    if kind is None:
        if "满意" in level3:
            kind = "satisfaction"
        elif "成本" in level3 or "费用" in level3:
            kind = "cost"
    return kind


@lru_cache(maxsize=65536)
def _less_is_better(metric: str) -> bool:
    """故障率 should fall; 无故障运行率 should rise: a negated keyword does not count."""
    for word in LESS_WORDS:
        at = metric.find(word)
        if at >= 0 and not (at > 0 and metric[at - 1] in "无不零未免"):
            return True
    return False


def _check_targets(record: IndicatorRecord, table: Table, spec: Spec, out: _Collector, sheet: str) -> None:
    ind = table.indicator
    kind = indicator_kind(spec, record.level1, record.level2, record.level3)
    labels = {c.id: c.label for c in table.columns}
    all_empty = all(t.kind == "empty" for t in record.targets.values())
    for vid in ind.values:
        t = record.targets[vid]
        where = {"sheet": sheet, "cell": record.cells[vid], "field_": f"{table.id}.{vid}"}
        common = {"level3": record.level3 or "（未命名）", "column": labels[vid], "value": _short(t.text)}
        if t.kind == "empty":
            if all_empty and vid == ind.values[-1]:
                out.add("indicator-empty-value", "error", **where, **common)
            elif not all_empty and vid == ind.values[0] and len(ind.values) > 1:
                out.add("indicator-empty-value", "warning", **where, **common)
            continue
        if t.kind == "unparseable":
            out.add("indicator-unparseable", "error", **where, **common)
            continue
        if t.kind == "placeholder":
            out.add("indicator-placeholder", "warning", **where, **common)
            continue
        less_metric = _less_is_better(record.level3)
        expected = None
        if kind in {"cost", "time"} or less_metric:
            expected = "less"
        elif kind in {"quantity", "quality", "satisfaction"}:
            expected = "more"
        if expected and t.direction and t.direction != expected and not t.embedded:
            out.add("indicator-direction", "warning", **where, **common, kind=kind or "", kind_zh=KIND_ZH.get(kind, "该类指标"),
                    expected="≤" if expected == "less" else "≥")
        if t.kind == "quantitative" and t.unit == "%" and t.value is not None and t.value > 100 \
                and not any(w in record.level3 for w in ("增长", "增幅", "提升", "比上年")):
            out.add("indicator-percent-over-100", "warning", **where, **common)
        if t.kind == "quantitative" and not t.unit and t.value is not None and 0 < t.value <= 1 \
                and record.level3.endswith("率"):
            out.add("indicator-rate-as-fraction", "warning", **where, **common, percent=_fmt(t.value * 100))
        if t.kind == "quantitative" and t.unit in MONEY_UNITS and kind in {"quantity", "quality"} \
                and any(w in record.level3 for w in SPEND_WORDS):
            out.add("indicator-money-as-output", "warning", **where, **common)
        if t.kind == "deadline" and t.deadline and int(t.deadline[:4]) < spec.year:
            out.add("indicator-deadline-before-year", "warning", **where, **common, deadline=t.deadline, year=spec.year)
        if t.kind == "cost" and t.quantity is not None and t.price is not None and t.amount is not None:
            product = t.quantity * t.price
            if abs(product - t.amount) > TOLERANCE * max(1, MONEY_UNITS.get(spec.money_unit, 1) / 10_000):
                out.add("cost-tuple-mismatch", "error", **where, level3=record.level3, product=_fmt(product),
                        amount=_fmt(t.amount))


def _field_rules(rule: Rule, values: dict[str, Any], cells: dict[str, str], tables: dict, spec: Spec,
                 out: _Collector, sheet: str) -> None:
    p = rule.params
    if rule.kind == "field_sum":
        total = values.get(p["total"])
        parts = [values.get(x) for x in p["parts"]]
        if total is None and all(v is None for v in parts):
            return
        got = sum(v or 0 for v in parts)
        if abs((total or 0) - got) > TOLERANCE:
            out.add(rule.code, rule.severity, sheet, cells.get(p["total"], ""), p["total"], what=p["what"],
                    parts=_fmt(got), total=_fmt(total), diff=_fmt(abs((total or 0) - got)))
    elif rule.kind == "column_sum":
        total = values.get(p["total"])
        rows = tables.get(p["table"], [])
        if total is None and not rows:
            return
        got = sum(r.get(p["column"]) or 0 for r in rows)
        if abs((total or 0) - got) > TOLERANCE:
            label = spec.fields[p["total"]].label
            table = spec.tables[p["table"]]
            out.add(rule.code, rule.severity, sheet, cells.get(p["total"], ""), p["total"],
                    what=f"「{table.label}」的{table.column(p['column']).label}之和与「{label}」",
                    parts=_fmt(got), total=_fmt(total), diff=_fmt(abs((total or 0) - got)))
    elif rule.kind == "field_not_exceed":
        part, whole = values.get(p["part"]), values.get(p["whole"])
        if part is not None and whole is not None and part > whole + TOLERANCE:
            out.add(rule.code, rule.severity, sheet, cells.get(p["part"], ""), p["part"], what=p["what"],
                    part_label=p["part_label"], whole_label=p["whole_label"], part=_fmt(part), whole=_fmt(whole))
    elif rule.kind == "row_not_exceed":
        table = spec.tables[p["table"]]
        for r in tables.get(p["table"], []):
            part, whole = r.get(p["part"]), r.get(p["whole"])
            if part is not None and whole is not None and part > whole + TOLERANCE:
                first_text = next((r[c.id] for c in table.columns if isinstance(r.get(c.id), str) and r[c.id]), "")
                out.add(rule.code, rule.severity, sheet, r[f"{p['part']}@"], f"{table.id}.{p['part']}",
                        what=first_text or f"第 {r['_row']} 行", part_label=table.column(p["part"]).label,
                        whole_label=table.column(p["whole"]).label, part=_fmt(part), whole=_fmt(whole))
    elif rule.kind == "table_min_rows":
        table = spec.tables[p["table"]]
        if len(tables.get(p["table"], [])) < p["min_rows"]:
            out.add(rule.code, rule.severity, sheet, "", table.id, label=table.label, min_rows=p["min_rows"])
    elif rule.kind == "same_text":
        a, b = (values.get(x) for x in p["fields"])
        if a and b and normalize_text(a).replace("(", "（").replace(")", "）") != \
                normalize_text(b).replace("(", "（").replace(")", "）"):
            out.add(rule.code, rule.severity, sheet, cells.get(p["fields"][1], ""), p["fields"][1], a=a, b=b)


def _cost_rules(table: Table, records: list[IndicatorRecord], values: dict, cells: dict, spec: Spec,
                out: _Collector, sheet: str) -> None:
    ind = table.indicator
    main = ind.values[-1]
    targets = [r.targets[main] for r in records]
    budget_field = ind.budget_field or spec.budget_field
    budget = values.get(budget_field) if budget_field else None
    if ind.cost_tuple:
        costs = [t.amount for t in targets if t.kind == "cost" and t.amount is not None]
        if costs and budget is not None and abs(sum(costs) - budget) > TOLERANCE:
            out.add("cost-sum-mismatch", "error", sheet, cells.get(budget_field, ""), budget_field,
                    costs=_fmt(sum(costs)), label=spec.fields[budget_field].label, budget=_fmt(budget),
                    diff=_fmt(abs(sum(costs) - budget)))
        return
    total = cost_total(spec, records)
    if total is not None and budget is not None and total > budget + TOLERANCE:
        out.add("cost-exceeds-budget", "warning", sheet, cells.get(budget_field, ""), budget_field,
                costs=_fmt(total), budget=_fmt(budget))


def cost_total(spec: Spec, records: list[IndicatorRecord]) -> float | None:
    """Sum of the cost targets written in money, in the form's money unit (None when there are none)."""
    table = spec.indicator_table()
    main = table.indicator.values[-1]
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


def _stamp_rules(form: FormData, spec: Spec, out: _Collector, roster: dict | None, expect_year: int | None) -> None:
    if form.version and form.version != spec.version:
        out.add("stamp-version", "error", found=form.version, expected=spec.version)
    elif form.fingerprint and form.fingerprint != spec.fingerprint:
        out.add("stamp-fingerprint", "warning")
    if expect_year and form.year and form.year != expect_year:
        out.add("stamp-year", "error", found=form.year, expected=expect_year)
    if roster is not None and form.unit_code is not None:
        unit = roster.get(form.unit_code)
        if unit is None:
            out.add("stamp-unit-unknown", "error", unit_code=form.unit_code, name=form.unit_name or "")
        elif form.unit_name and unit.name != form.unit_name:
            out.add("stamp-unit-name", "warning", unit_code=form.unit_code, expected=unit.name, found=form.unit_name)


def check_form(form: FormData, roster: dict | None = None, expect_year: int | None = None, lang: str = "zh",
               templates_dir=None) -> CheckedForm:
    """Every rule of the form's spec over its data. Never raises on bad data."""
    out = _Collector(lang)
    spec = load_spec(form.template, form.year or expect_year or default_year(), form.region, templates_dir=templates_dir)
    out.problems.extend(Problem(n.severity, n.code, n.sheet, n.cell, "", n.message) for n in form.notices)
    _stamp_rules(form, spec, out, roster, expect_year)
    projects = []
    for sheet in form.sheets:
        before = len(out.problems)
        record = _check_sheet(sheet, spec, form, out)
        mine = out.problems[before:]
        record.errors = sum(1 for p in mine if p.severity == "error")
        record.warnings = len(mine) - record.errors
        projects.append(record)
    return CheckedForm(path=form.path, template=form.template, version=form.version, year=form.year or spec.year,
                       region=form.region or spec.region, unit_code=form.unit_code, unit_name=form.unit_name,
                       money_unit=spec.money_unit, family=spec.family, projects=projects, problems=out.problems)


def _check_sheet(sheet: SheetData, spec: Spec, form: FormData, out: _Collector) -> ProjectRecord:
    values: dict[str, Any] = {}
    cells: dict[str, str] = {}
    for fid, f in spec.fields.items():
        cell = sheet.fields.get(fid)
        if cell is None:
            continue
        cells[fid] = cell.address
        values[fid] = _normalise_field(f, cell, spec, form, out, sheet.sheet)
    tables: dict[str, list] = {}
    indicators: list[IndicatorRecord] = []
    for tid, table in spec.tables.items():
        rows = sheet.tables.get(tid, [])
        if table.indicator:
            indicators = _indicators(table, rows, spec, out, sheet.sheet)
            _cost_rules(table, indicators, values, cells, spec, out, sheet.sheet)
        else:
            tables[tid] = _normalise_table(table, rows, spec, form, out, sheet.sheet)
    for rule in spec.rules:
        _field_rules(rule, values, cells, tables, spec, out, sheet.sheet)
    name = values.get(spec.project_name_field) or ""
    return ProjectRecord(sheet=sheet.sheet, name=str(name), values=values, cells=cells, tables=tables,
                         indicators=indicators)


def rejected(path: str, code: str, message: str) -> CheckedForm:
    """A file that could not be read at all, as a checked form with one problem."""
    problem = Problem("error", code, "", "", "", message)
    return CheckedForm(path=path, template=None, version=None, year=None, region=None, unit_code=None,
                       unit_name=None, money_unit=None, family=None, projects=[], problems=[problem], read_error=code)

"""Validate stage: form data + the rules declared in its spec → problems (as data) and normalised records.

Each field is normalised by its declared type (required, number, date, choice, length, range, pattern,
in-year); each table by its column types. Then every rule of the spec runs through the registry
(`perfxl.rules`), which knows each kind; this module never branches on a kind's name. Problems are data
(`perfxl.problems`); their words are rendered at the edge. Validation never raises on bad input; the records
it returns are what the merge stage consumes.
"""

from __future__ import annotations

import ast
import hashlib
import operator
import re
from typing import Any

from .domain import EXCEL_ERROR_VALUES, SUM_TOLERANCE, default_year
from .issued import EARLIER_ROUND, RECORD_FILE, IssuedBook, IssuedForm, IssuedProject
from .problems import EMPTY, Collector
from .problems import fmt_number as _fmt
from .problems import short_text as _short
from .read import Cell, FormData, SheetData
from .records import CheckedForm, IndicatorRecord, ProjectRecord, rejected, rejected_by
from .rules import RuleContext, owned_tables, run_rules
from .rules.indicators import cost_total, indicator_kind
from .spec import NUMERIC_TYPES, Field, Spec, Table, load_spec
from .values import (
    PATTERN_DIGITS,
    PATTERNS,
    clean_text,
    normalize_text,
    to_code,
    to_date,
    to_date_range,
    to_number,
)

__all__ = ["CheckedForm", "IndicatorRecord", "ProjectRecord", "check_form", "cost_total", "indicator_kind",
           "rejected", "rejected_by"]


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

def _normalise_field(f: Field, cell: Cell, spec: Spec, form: FormData, out: Collector, sheet: str) -> Any:
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
        if problem:  # type-number, number-too-large
            out.add(problem, "error", **where, label=f.label, value=_short(raw))
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


def _normalise_table(table: Table, rows: list[dict], spec: Spec, form: FormData, out: Collector,
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
                if problem:  # type-number, number-too-large
                    out.add(problem, "error", sheet, address, f"{table.id}.{col.id}", label=col.label,
                            value=_short(raw))
                record[col.id] = number
            else:
                record[col.id] = clean_text(raw if not formula else "=" + formula)
            record[f"{col.id}@"] = address
        result.append(record)
    return result


def _stamp_rules(form: FormData, spec: Spec, out: Collector, roster: dict | None, expect_year: int | None) -> None:
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


def check_form(form: FormData, roster: dict | None = None, expect_year: int | None = None,
               templates_dir=None, issued: IssuedBook | None = None) -> CheckedForm:
    """Every rule of the form's spec over its data. Never raises on bad data. A follow-up form is checked
    against what `issued` recorded for its unit (see perfxl.issued), never against its own copy."""
    spec = load_spec(form.template, form.year or expect_year or default_year(), form.region, templates_dir=templates_dir)
    out = Collector(spec)
    out.problems.extend(form.notices)
    _stamp_rules(form, spec, out, roster, expect_year)
    record, issued_sheets = None, {}
    followup = spec.round.followup
    if followup:
        record, problem = (issued or IssuedBook()).find(form.round, form.unit_code, form.template,
                                                         form.year or spec.year)
        if problem == EARLIER_ROUND:
            out.add(problem, "warning")
        elif problem is not None:
            record = None
            out.add(problem, "error", record=RECORD_FILE)
        issued_sheets = _issued_sheets(form, spec, record, out)
    projects = []
    for sheet in form.sheets:
        before = len(out.problems)
        project = _check_sheet(sheet, spec, form, out, issued_sheets.get(sheet.sheet))
        mine = out.problems[before:]
        project.errors = sum(1 for p in mine if p.severity == "error")
        project.warnings = len(mine) - project.errors
        projects.append(project)
    return CheckedForm(path=form.path, template=form.template, version=form.version, year=form.year or spec.year,
                       region=form.region or spec.region, unit_code=form.unit_code, unit_name=form.unit_name,
                       money_unit=spec.money_unit, family=spec.family, projects=projects, problems=out.problems,
                       round=form.round, issued=(record.digest if record else "") if followup else None,
                       signature=project_signature(spec, projects))


def project_signature(spec: Spec, projects: list[ProjectRecord]) -> str | None:
    """What a single-project form keeps when a unit re-sends it with the project's name corrected: its
    budget and its indicator rows' names (一级/二级/三级, not their values, which a correction may change).
    None for a multi-project workbook or a form without indicators: there the name alone is the key."""
    if spec.multi_project or len(projects) != 1 or not projects[0].indicators:
        return None
    p = projects[0]
    budget = p.values.get(spec.budget_field) if spec.budget_field else None
    rows = sorted((r.level1, r.level2, r.level3) for r in p.indicators)
    return hashlib.sha256(repr((budget, rows)).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _issued_sheets(form: FormData, spec: Spec, record: IssuedForm | None, out: Collector) -> dict[str, IssuedProject]:
    """Each sheet of a follow-up form paired with the project it was issued as: by its sheet name, else
    (a renamed sheet) by its project name. What pairs with nothing is reported."""
    if record is None:  # reported by the caller
        return {}
    waiting = list(record.projects)
    paired: dict[str, IssuedProject] = {}
    for sheet in form.sheets:
        match = next((p for p in waiting if p.sheet == sheet.sheet), None)
        if match is not None:
            paired[sheet.sheet] = match
            waiting.remove(match)
    name_field = spec.project_name_field
    for sheet in form.sheets:
        if sheet.sheet in paired:
            continue
        name = clean_text(sheet.fields[name_field].value) if name_field in sheet.fields else ""
        match = next((p for p in waiting if name and _same_text(p.fields.get(name_field), name)), None)
        if match is not None:
            paired[sheet.sheet] = match
            waiting.remove(match)
        else:
            out.add("declared-project-added", "error", sheet=sheet.sheet)
    for project in waiting:
        out.add("declared-project-missing", "error", project=str(project.fields.get(name_field) or ""),
                issued_sheet=project.sheet)
    return paired


def _same_text(a: Any, b: Any) -> bool:
    return normalize_text("" if a is None else str(a)).replace(" ", "") == normalize_text(
        "" if b is None else str(b)).replace(" ", "")


def _keep_issued(values: dict[str, Any], cells: dict[str, str], issued: IssuedProject, spec: Spec,
                 out: Collector, sheet: str) -> None:
    """The prefilled fields as issued: a value changed on the form is reported, and the issued one is what
    the record keeps (and what the form is scored by)."""
    for fid, given in issued.fields.items():
        f = spec.fields.get(fid)
        if f is None:
            continue
        found = values.get(fid)
        if f.type in NUMERIC_TYPES and isinstance(given, int | float):
            same = isinstance(found, int | float) and abs(found - given) <= SUM_TOLERANCE
        else:
            same = _same_text(found, given)
        if not same:
            out.add("declared-changed", "error", sheet, cells.get(fid, ""), fid, label=f.label.rstrip("：: "),
                    issued=_fmt(given) if isinstance(given, float) else _short(given),
                    found=EMPTY if found in (None, "") else (_fmt(found) if isinstance(found, float) else _short(found)))
        values[fid] = given


def _check_sheet(sheet: SheetData, spec: Spec, form: FormData, out: Collector,
                 issued: IssuedProject | None = None) -> ProjectRecord:
    values: dict[str, Any] = {}
    cells: dict[str, str] = {}
    for fid, f in spec.fields.items():
        cell = sheet.fields.get(fid)
        if cell is None:
            continue
        cells[fid] = cell.address
        values[fid] = _normalise_field(f, cell, spec, form, out, sheet.sheet)
    if issued is not None:
        _keep_issued(values, cells, issued, spec, out, sheet.sheet)
    owned = owned_tables(spec)  # indicator and follow-up tables: their rule kind reads the rows itself
    tables = {tid: _normalise_table(table, sheet.tables.get(tid, []), spec, form, out, sheet.sheet)
              for tid, table in spec.tables.items() if tid not in owned}
    ctx = RuleContext(spec=spec, sheet=sheet.sheet, values=values, cells=cells, tables=tables,
                      table_rows=sheet.tables, out=out, form=form, issued=issued)
    run_rules(spec, ctx)
    name = values.get(spec.project_name_field) or ""
    return ProjectRecord(sheet=sheet.sheet, name=str(name), values=values, cells=cells, tables=tables,
                         indicators=ctx.indicators, scores=ctx.results.get("scores"))

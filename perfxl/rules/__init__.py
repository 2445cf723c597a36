"""The rule registry: every kind of rule a template may declare, each kind one class.

A rule kind holds, in one place:
- `params`: its typed parameters, checked when a spec is loaded (an unknown kind or a bad parameter is a
  SpecError naming the template file and line);
- `check(rule, ctx)`: form data → problems;
- `live(rule, positions)`: where Excel can express it, the live checks written into generated forms, as
  data (`SumCheck`, `Highlight`) that the generator renders.

Neither the validator nor the generator branches on kind names. To add a kind: a subclass of `RuleKind`
decorated with `@register` in one of this package's modules, and a problem code in `problems.CATALOGUE`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # rules sit below spec in the import order: the model is only a type here
    from perfxl.problems import Collector
    from perfxl.spec import Rule, Spec

PARAM_TYPES = ("field", "fields", "table", "column", "text", "int")


@dataclass(frozen=True)
class Param:
    """One parameter of a rule kind. `column` names a column of the table given by the `table` parameter."""

    name: str
    type: str
    required: bool = True
    help: str = ""


@dataclass
class RuleContext:
    """What a rule sees of one project sheet: normalised values and their cells, normalised table rows."""

    spec: Spec
    sheet: str
    values: dict[str, Any]
    cells: dict[str, str]
    tables: dict[str, list[dict[str, Any]]]
    table_rows: dict[str, list[dict]]  # raw rows as read, for kinds that normalise their own table
    out: Collector
    indicators: list = field(default_factory=list)
    form: Any = None  # the whole form data
    issued: Any = None  # a follow-up form's sheet: the project it was issued as (perfxl.issued.IssuedProject)
    results: dict[str, Any] = field(default_factory=dict)  # what a kind computed for the project record


@dataclass(frozen=True)
class SumCheck:
    """A check cell beside a total: ✓ when the total equals `expression` (an Excel formula body)."""

    row: int
    total: str  # A1 address of the total
    expression: str


@dataclass(frozen=True)
class Highlight:
    """Shade a range red while `formula` (relative to its first cell) is true."""

    first_row: int
    first_col: int
    last_row: int
    last_col: int
    formula: str


@dataclass(frozen=True)
class CheckFormula:
    """A formula written in the check column beside `row`; `{sheet}` stands for the sheet's quoted name."""

    row: int
    formula: str


class RuleKind:
    """Base of every rule kind."""

    name: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()
    codes: ClassVar[tuple[str, ...]] = ()  # the problem codes this kind may report (default: the rule's)
    order: ClassVar[int] = 50  # kinds that produce records others use run first
    owns_table: ClassVar[bool] = False  # reads its `table` parameter's raw rows itself: not normalised for it

    def check(self, rule: Rule, ctx: RuleContext) -> None:
        raise NotImplementedError

    def live(self, rule: Rule, positions) -> list[SumCheck | Highlight | CheckFormula]:
        """Live checks for a generated form; `positions` is the spec's layout. None by default."""
        return []


REGISTRY: dict[str, RuleKind] = {}


def register(cls: type[RuleKind]) -> type[RuleKind]:
    assert cls.name not in REGISTRY, cls.name
    assert all(p.type in PARAM_TYPES for p in cls.params), cls.name
    REGISTRY[cls.name] = cls()
    return cls


def kind_of(rule: Rule) -> RuleKind:
    return REGISTRY[rule.kind]


def check_params(kind: str, params: dict[str, Any], fields: dict, tables: dict) -> dict[str, Any]:
    """The parameters of one declared rule, checked against its kind and the spec's fields and tables.
    Raises ValueError with a message fit for the template's author (the spec loader adds file and line)."""
    if kind not in REGISTRY:
        known = "、".join(sorted(REGISTRY))
        raise ValueError(f"未知的规则类型 (unknown rule kind) {kind!r}；可用的类型: {known}")
    spec_kind = REGISTRY[kind]
    declared = {p.name: p for p in spec_kind.params}
    extra = sorted(set(params) - set(declared))
    if extra:
        raise ValueError(f"规则 {kind} 没有参数 (unknown parameter) {', '.join(extra)}；"
                         f"可用参数: {', '.join(declared) or '无'}")
    out: dict[str, Any] = {}
    for p in spec_kind.params:
        if p.name not in params or params[p.name] in (None, ""):
            if p.required:
                raise ValueError(f"规则 {kind} 缺少参数 (missing parameter) {p.name}")
            continue
        value = params[p.name]
        if p.type == "field":
            if not isinstance(value, str) or value not in fields:
                raise ValueError(f"规则 {kind} 的参数 {p.name}: 没有字段 (no field) {value!r}")
        elif p.type == "fields":
            if not isinstance(value, list | tuple) or not value:
                raise ValueError(f"规则 {kind} 的参数 {p.name} 应为字段列表 (a list of fields)")
            missing = [v for v in value if v not in fields]
            if missing:
                raise ValueError(f"规则 {kind} 的参数 {p.name}: 没有字段 (no field) {', '.join(map(str, missing))}")
            value = list(value)
        elif p.type == "table":
            if value not in tables:
                raise ValueError(f"规则 {kind} 的参数 {p.name}: 没有表格 (no table) {value!r}")
        elif p.type == "column":
            table = tables.get(params.get("table"))
            if table is None or value not in {c.id for c in table.columns}:
                raise ValueError(f"规则 {kind} 的参数 {p.name}: 表格中没有列 (no column) {value!r}")
        elif p.type == "int":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"规则 {kind} 的参数 {p.name} 应为非负整数 (a whole number)")
        elif p.type == "text":
            value = str(value)
        out[p.name] = value
    return out


def owned_tables(spec: Spec) -> set[str]:
    """Tables a rule kind reads row by row itself (indicator tables, follow-up tables)."""
    return {rule.params["table"] for rule in spec.rules if REGISTRY[rule.kind].owns_table}


def run_rules(spec: Spec, ctx: RuleContext) -> None:
    """Every rule of the spec over one project sheet, kinds that produce records first."""
    for rule in sorted(spec.rules, key=lambda r: REGISTRY[r.kind].order):
        REGISTRY[rule.kind].check(rule, ctx)


def live_checks(spec: Spec, positions) -> list[SumCheck | Highlight | CheckFormula]:
    out: list[SumCheck | Highlight | CheckFormula] = []
    for rule in spec.rules:
        out.extend(REGISTRY[rule.kind].live(rule, positions))
    return out


KIND_MODULES = ("adjust", "arithmetic", "indicators", "monitor", "selfeval", "tables", "text")  # each registers its kinds when imported
for _module in KIND_MODULES:
    importlib.import_module(f"{__name__}.{_module}")

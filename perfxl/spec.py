"""Spec stage: a Jinja-parameterised YAML template → a frozen form model and its sheet layout.

A template file is text rendered by Jinja2 (StrictUndefined, so a missing parameter fails loudly), then
parsed as YAML. Indicator hierarchies and row libraries are data files beside the templates. The layout
(which cell holds which field, where each table body starts) is computed here, deterministically, so the
generator writes it and the reader can fall back on it when a workbook lost its defined names.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import jinja2.nodes
import jinja2.sandbox
import yaml

from .contract import field_name, table_name
from .domain import MONEY_UNITS, default_year
from .errors import SpecError, UnknownTemplate
from .limits import TimeLimitExceeded, memory_limit, time_limit
from .problems import CATALOGUE, SEVERITIES
from .reader.cells import cell_name  # noqa: F401 - spec.cell_name is used by generate, read and tests
from .rounds import ROUNDS, Round
from .rules import check_params

try:  # libyaml is ~10x faster; fall back to the pure-Python loader where it is missing
    _YamlLoader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _YamlLoader = yaml.SafeLoader

FIELD_TYPES = {"text", "longtext", "money", "number", "integer", "date", "choice", "phone", "code", "tick",
               "daterange", "percent"}
COLUMN_TYPES = {"text", "longtext", "money", "number", "integer", "date", "choice", "target", "sign", "unit"}
NUMERIC_TYPES = {"money", "number", "integer", "percent"}


def shipped_templates_dir() -> Path:
    """The templates folder: inside the installed package, or the repository's top level when editable."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise SpecError("perfxl's own templates folder is missing; reinstall perfxl")


# ----------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Hierarchy:
    name: str
    levels: dict[str, tuple[str, ...]]
    aliases: dict[str, str]
    kinds: dict[str, str]

    def canonical(self, label: str) -> str:
        return self.aliases.get(label, label)

    def level2_of(self, level1: str) -> tuple[str, ...]:
        return self.levels.get(self.canonical(level1), ())


@dataclass(frozen=True)
class Field:
    id: str
    label: str
    type: str = "text"
    required: bool = False
    choices: tuple[str, ...] = ()
    help: str = ""
    min: float | None = None
    max: float | None = None
    max_length: int | None = None
    pattern: str | None = None
    in_year: bool = False
    default: Any = None
    lines: int = 1
    grid: str = ""
    column: str = ""
    section: str = ""
    locked: bool = False  # prefilled by perfxl (a follow-up form's declared values): shown, not editable
    cell: str = ""  # an Excel-designed template's input cell ("B3"); otherwise placed by the blocks

    @property
    def name(self) -> str:
        return field_name(self.id)


@dataclass(frozen=True)
class Column:
    id: str
    label: str
    type: str = "text"
    span: int = 1
    choices: tuple[str, ...] = ()
    required: bool = False
    help: str = ""
    locked: bool = False
    open_choices: bool = False  # the dropdown suggests its choices but any text is accepted


@dataclass(frozen=True)
class IndicatorSpec:
    hierarchy: Hierarchy
    level1: str
    level2: str | None
    level3: str
    values: tuple[str, ...]
    required_levels: tuple[str, ...]
    recommended_levels: tuple[str, ...] = ()
    cost_tuple: bool = False
    sign_column: str | None = None
    unit_column: str | None = None
    budget_field: str | None = None
    annual: str = ""  # the value column that holds the year's target, where it is not the last (`values`)

    @property
    def main(self) -> str:
        """The value column the year's target is read from: the declared `annual` column (the 盐城 部门整体
        form's 全年值, before its 上半年值 and 前三季度值), else the last of `values`."""
        return self.annual or self.values[-1]


@dataclass(frozen=True)
class Table:
    id: str
    label: str
    columns: tuple[Column, ...]
    blank_rows: int
    prefill: tuple[tuple[Any, ...], ...] = ()
    indicator: IndicatorSpec | None = None
    min_rows: int = 0
    range: str = ""  # an Excel-designed template's table body ("A12:F40"); otherwise placed by the blocks

    @property
    def name(self) -> str:
        return table_name(self.id)

    @property
    def body_rows(self) -> int:
        return len(self.prefill) + self.blank_rows

    def column(self, column_id: str) -> Column:
        for col in self.columns:
            if col.id == column_id:
                return col
        raise KeyError(column_id)


@dataclass(frozen=True)
class Rule:
    """One validation rule. `kind` selects the check; `params` are its arguments, taken from the spec."""

    code: str
    kind: str  # a kind of the registry in perfxl.rules
    severity: str
    params: dict[str, Any]
    message: tuple[str, str] | None = None  # (zh, en) a template's own words, for a code not in the catalogue


@dataclass(frozen=True)
class Grid:
    id: str
    caption: str
    header: tuple[str, ...]
    columns: tuple[str, ...]  # column ids
    rows: tuple[tuple[str, str, str], ...]  # (row id, group label, row label)


@dataclass(frozen=True)
class Block:
    kind: str  # title | line | fields | grid | table | section | pagebreak
    items: tuple[Any, ...] = ()
    text: str = ""
    ref: str = ""


@dataclass(frozen=True)
class Designed:
    """An Excel-designed template (perfxl template import): the form's own workbook is its layout."""

    workbook: Path  # the designer's workbook without its definition sheets, beside the YAML
    sheet: str  # the form sheet in it
    check_column: int  # the first column right of the design: where the live checks are written


@dataclass(frozen=True, eq=False)  # identity hash: specs are cached per parameters
class Spec:
    template: str
    version: str
    title: str
    family: str
    money_unit: str
    multi_project: bool
    sheet_name: str
    widths: tuple[float, ...]
    blocks: tuple[Block, ...]
    fields: dict[str, Field]
    tables: dict[str, Table]
    grids: dict[str, Grid]
    rules: tuple[Rule, ...]
    print_setup: dict[str, Any]
    fingerprint: str
    region: str
    year: int
    project_name_field: str
    budget_field: str | None
    key_fields: tuple[str, ...]
    funding_fields: tuple[str, ...]
    unit_name_field: str | None
    source: str
    designed: Designed | None = None
    # A follow-up template's fields prefilled from the declaration: field id → what was declared (a key of
    # followup.DECLARED_FACTS); empty: the project forms' usual fields (followup.DEFAULT_PREFILL).
    prefill: dict[str, str] = field(default_factory=dict)

    @property
    def width(self) -> int:
        return len(self.widths)

    @property
    def round(self) -> Round:
        """The round of the year this template's forms belong to (perfxl.rounds)."""
        return ROUNDS[self.family]

    @property
    def money_factor(self) -> int:
        return MONEY_UNITS[self.money_unit]

    def sheet_title(self, index: int) -> str:
        return self.sheet_name.format(n=index) if self.multi_project else self.sheet_name

    def indicator_table(self) -> Table | None:
        for table in self.tables.values():
            if table.indicator is not None:
                return table
        return None


# ----------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------

@lru_cache(maxsize=16)
def _environment(dirs: tuple[str, ...]) -> _BoundedEnvironment:
    """The sandboxed Jinja environment of these template folders, one per process: it keeps each template
    compiled, and compiles it again when its file changes (Jinja checks the file's time on every use). A
    follow-up round renders the template once per unit, and compiling it each time was 5 ms a form."""
    env = _BoundedEnvironment(loader=jinja2.FileSystemLoader(list(dirs)), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, autoescape=False)
    env.policies["json.dumps_function"] = yaml_json_dumps
    return env


_JSON_ESCAPES = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|\\.")


def yaml_json_dumps(value, **kwargs) -> str:
    """`tojson` for a template that is YAML: JSON, except that a character beyond the BMP (a 生僻字 such as 𠮷
    in a unit's name, an emoji) is YAML's escape \\UXXXXXXXX, not JSON's pair of surrogate escapes, which
    YAML reads as two lone surrogates and refuses: a roster name with one stopped the whole round."""
    def pair(m: re.Match) -> str:
        text = m.group(0)
        if len(text) == 2:  # another escape (\\, \n, …), kept: read in order, \\ud842 is no pair
            return text
        high, low = int(text[2:6], 16), int(text[8:12], 16)
        return "\\U%08X" % (0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))

    return _JSON_ESCAPES.sub(pair, json.dumps(value, **kwargs))


class _Catalog:
    """Where templates live: the user's folder first (if any), then the shipped one."""

    def __init__(self, user_dir: Path | None = None):
        shipped = shipped_templates_dir()
        self.dirs = [Path(user_dir)] if user_dir else []
        if user_dir is not None and not Path(user_dir).is_dir():
            raise SpecError(f"模板目录不存在 (templates folder not found): {user_dir}")
        self.dirs.append(shipped)
        self.env = _environment(tuple(str(d) for d in self.dirs))

    def names(self) -> list[str]:
        found = set()
        for base in self.dirs:
            for path in base.rglob("*.yaml"):
                rel = path.relative_to(base)
                if rel.parts[0] in {"hierarchies", "libraries"} or path.name.startswith("_"):
                    continue
                found.add(rel.with_suffix("").as_posix())
        return sorted(found)

    def path_of(self, name: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*", name or ""):
            raise UnknownTemplate(self._unknown(name))
        for base in self.dirs:
            path = base / f"{name}.yaml"
            if path.is_file():
                return path
        raise UnknownTemplate(self._unknown(name))

    def _unknown(self, name: str) -> str:
        return f"未知模板 (unknown template) '{name}'. 可用模板 (available): {', '.join(self.names())}"

    def data_file(self, folder: str, name: str) -> Path:
        for base in self.dirs:
            path = base / folder / f"{name}.yaml"
            if path.is_file():
                return path
        raise SpecError(f"{folder}/{name}.yaml not found in the templates folders")


def list_templates(templates_dir: Path | None = None) -> list[str]:
    return _Catalog(templates_dir).names()


def templates_in(folder: Path) -> list[str]:
    """The templates one folder defines itself (not the shipped ones it may fall back on)."""
    catalog = _Catalog(folder)
    catalog.dirs = catalog.dirs[:1]
    return catalog.names()


def template_summary(name: str, templates_dir: Path | None = None) -> dict[str, Any]:
    spec = load_spec(name, templates_dir=templates_dir)
    return {"template": spec.template, "version": spec.version, "title": spec.title,
            "money_unit": spec.money_unit, "multi_project": spec.multi_project, "family": spec.family}


_REGION_RE = re.compile(r"[\w\u3400-\u9fff（）()·\-]{1,40}")


def check_region(region: str | None) -> None:
    """A region is a place name: letters or Chinese characters, at most 40, no punctuation tricks."""
    if region is None:
        return
    if not _REGION_RE.fullmatch(str(region)) or not re.search(r"[^\W\d_]", str(region)):
        raise SpecError(f"地区名称不合法 (invalid region): {region!r}；应为地名，例如 绵阳市")


def default_params(year: int, region: str | None = None, unit: dict | None = None,
                   prefill: dict | None = None, blank_rows: int | None = None) -> dict[str, Any]:
    check_region(region)
    unit = dict(unit or {})
    unit.setdefault("code", "")
    unit.setdefault("name", "")
    unit.setdefault("department", "")
    return {"year": int(year), "region": region, "unit": unit, "prefill": dict(prefill or {}),
            "blank_rows": blank_rows}


def load_spec(name: str, year: int | None = None, region: str | None = None, unit: dict | None = None,
              prefill: dict | None = None, blank_rows: int | None = None,
              templates_dir: Path | None = None) -> Spec:
    params = default_params(year if year is not None else default_year(), region, unit, prefill, blank_rows)
    return _load(name, templates_dir, _freeze(params))


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple) and all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str)
                                        for x in value):
        return {k: _thaw(v) for k, v in value}
    return value


@lru_cache(maxsize=64)
def _load(name: str, templates_dir: Path | None, frozen_params: tuple) -> Spec:
    params = _thaw(frozen_params)
    catalog = _Catalog(templates_dir)
    path = catalog.path_of(name)
    try:
        region_default = _region_default(path)
        params["region"] = params["region"] or region_default
        text = _render(catalog.env.get_template(f"{name}.yaml"), params, str(path))
        digest = hashlib.sha256()
        for source in _sources(catalog, path):
            digest.update(source.read_bytes())
    except jinja2.TemplateSyntaxError as exc:
        raise _render_failure(exc, f"{exc.filename or path}:{exc.lineno}") from None
    except jinja2.TemplateError as exc:
        raise _render_failure(exc, f"{path}{_jinja_line(exc)}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: 模板文件不是 UTF-8 编码 (template is not UTF-8): {exc.reason}") from None
    except RecursionError as exc:
        raise _render_failure(exc, str(path)) from None
    except OSError as exc:
        raise SpecError(f"{exc.filename or path}: 无法读取模板 (cannot read template): {exc.strerror or exc}") from None
    except SpecError:
        raise
    except Exception as exc:  # template code may raise anything (OverflowError from range, ZeroDivisionError, ...)
        raise _render_failure(exc, f"{path}{_jinja_line(exc)}") from None
    raw = load_yaml(text, path)
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: 模板应渲染为 YAML 映射 (a template must render to a YAML mapping)")
    trail: list = []  # keys, and indexes into lists
    try:
        return _build(raw, name, params, catalog, digest, path, trail)
    except SpecError:
        raise
    except Exception as exc:  # a template is untrusted input: any shape it takes must end in a message
        where = _source_line(path, text, _key_line(text, trail))
        what = "/".join(map(str, trail))
        detail = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        raise SpecError(f"{path}{where}: 模板结构错误 (bad template structure){' 在 ' + what if what else ''}: "
                        f"{detail}") from None


# Templates come from bureaus' folders and are untrusted: rendering is sandboxed and bounded. The limits
# hold for a YAML template's whole text, and for all the texts of one designed form together (TextRenderer).
RENDER_SECONDS = 10.0
RENDER_MAX_CHARS = 8 * 1024 * 1024
RENDER_MAX_MEMORY = 256 * 1024 * 1024  # what a render may add to the process's address space (Linux)
RENDER_MAX_INT_BITS = 16_384  # * and ** on integers: a bigger result is minutes of C arithmetic no alarm stops
YAML_MAX_NODES = 500_000  # after aliases are expanded: a "billion laughs" of YAML stops here


class _BoundedEnvironment(jinja2.sandbox.SandboxedEnvironment):
    """Jinja's sandbox (no attribute tricks, range() capped) whose * and ** cannot build huge values.

    Intercepting them also keeps Jinja from folding them while it compiles, outside every limit."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context, operator, left, right):
        if operator == "**" and isinstance(right, int | float) and abs(right) > 64:
            raise jinja2.sandbox.SecurityError("指数过大，上限 64 (exponent too large)")
        if isinstance(left, int) and isinstance(right, int):
            bits = left.bit_length() * max(right, 1) if operator == "**" else left.bit_length() + right.bit_length()
            if bits > RENDER_MAX_INT_BITS:
                raise jinja2.sandbox.SecurityError(f"数值过大，超过 {RENDER_MAX_INT_BITS} 位 (number too large)")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int) and len(seq) * times > 1_000_000:
                    raise jinja2.sandbox.SecurityError("重复得到的字符串或列表过长，上限 1,000,000 (repetition too large)")
        return super().call_binop(context, operator, left, right)


# A template's short texts (a designed form's cells): undefined names render empty, as they always have.
_TEXT_ENV = _BoundedEnvironment(autoescape=False)


@dataclass
class _RenderBudget:
    """What is left of the limits: a YAML template spends one budget on its one render, a designed form
    one budget on all its texts, so a thousand cells cannot each take ten seconds."""

    deadline: float = field(default_factory=lambda: time.monotonic() + RENDER_SECONDS)
    chars: int = RENDER_MAX_CHARS


def _render(template: jinja2.Template | str, params: dict, where: str, budget: _RenderBudget | None = None) -> str:
    """Render within the limits (a str is compiled with _TEXT_ENV, inside them too); `where` names the
    template (file, or sheet and cell) in the messages. Jinja's own errors are left to _render_failure."""
    budget = budget or _RenderBudget()
    pieces: list[str] = []
    try:
        with time_limit(max(budget.deadline - time.monotonic(), 0.001)) as limit, memory_limit(RENDER_MAX_MEMORY):
            limit.check()  # the budget may be spent already (cooperative where there is no SIGALRM)
            if isinstance(template, str):
                template = _TEXT_ENV.from_string(template)
            for piece in template.generate(**params):
                budget.chars -= len(piece)
                if budget.chars < 0:
                    raise SpecError(f"{where}: 模板渲染结果过大（超过 {RENDER_MAX_CHARS >> 20} MB）"
                                    f"(rendered template too large)")
                pieces.append(piece)
                limit.check()
    except TimeLimitExceeded as exc:
        if exc.outer:  # the file's time ran out, not the template's: the reader says so (file-timeout)
            raise
        raise SpecError(f"{where}: 模板渲染超过 {RENDER_SECONDS:g} 秒 (template took too long to render)") from None
    except MemoryError:
        pieces.clear()
        raise SpecError(f"{where}: 模板渲染占用内存超过 {RENDER_MAX_MEMORY >> 20} MB "
                        f"(template used too much memory)") from None
    return "".join(pieces)


def _render_failure(exc: BaseException, where: str) -> SpecError:
    """The message for a template that fails to render, the same wherever its text came from."""
    if isinstance(exc, SpecError):
        return exc
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return SpecError(f"{where}: 模板语法错误 (Jinja syntax error): {exc.message}")
    if isinstance(exc, jinja2.UndefinedError):
        return SpecError(f"{where}: 模板参数缺失 (undefined template parameter): {exc.message}")
    if isinstance(exc, jinja2.sandbox.SecurityError):
        return SpecError(f"{where}: 模板做了不允许的操作 (unsafe template): {exc}")
    if isinstance(exc, jinja2.TemplateError):
        return SpecError(f"{where}: {exc}")
    if isinstance(exc, RecursionError):
        return SpecError(f"{where}: 模板递归过深（宏或 include 无限递归）(template recursion too deep)")
    if isinstance(exc, OverflowError):  # the sandbox's range() cap, or a float past its range
        return SpecError(f"{where}: 模板中的 range 或数值过大 (range or number too large): {exc}")
    return SpecError(f"{where}: 模板渲染出错 (template error): {type(exc).__name__}: {exc}")


class TextRenderer:
    """Renders a template's texts one by one (a designed form's cells, its fields' defaults and input
    prompts) as a YAML template is rendered: the same bounded environment, and RENDER_SECONDS and
    RENDER_MAX_CHARS for all the texts of one renderer together. Every failure is a SpecError that names
    the text's `where` (sheet and cell)."""

    def __init__(self, params: dict):
        self.params = params
        self.budget = _RenderBudget()

    def __call__(self, text: str, where: str) -> str:
        if "{{" not in text and "{%" not in text:
            return text
        try:
            return _render(text, self.params, where, self.budget)
        except Exception as exc:  # template code may raise anything (OverflowError from range, ...)
            raise _render_failure(exc, where) from None


def _jinja_line(exc: Exception) -> str:
    """The template line of an error raised while rendering, from Jinja's rewritten traceback."""
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(".yaml"):
            line = tb.tb_lineno
        tb = tb.tb_next
    return f":{line}" if line else ""


class _BoundedLoader(_YamlLoader):
    """Safe YAML whose aliases may not expand past YAML_MAX_NODES nodes."""

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None and _expanded_size(node, {}) > YAML_MAX_NODES:
            raise yaml.YAMLError(f"别名展开后节点过多（超过 {YAML_MAX_NODES:,} 个），疑似 YAML 炸弹 (alias bomb)")
        return node


def _expanded_size(node, memo: dict) -> int:
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # a cycle counts once; the constructor refuses nothing, but _build will
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    else:
        size = 1
    memo[key] = size
    return size


def load_yaml(text: str | bytes, path: Path):
    """YAML from a template or data file; every failure is a SpecError naming the file and line."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if "*" in text:  # aliases possible: the pure-Python composer, which can be bounded
            return yaml.load(text, Loader=_BoundedLoader)
        return yaml.load(text, Loader=_YamlLoader)
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: 文件不是 UTF-8 编码 (not UTF-8): {exc.reason}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise SpecError(f"{path}{where}: YAML 错误 (not valid YAML): {exc}") from None
    except RecursionError:
        raise SpecError(f"{path}: YAML 嵌套过深 (YAML nested too deep)") from None


def _declared_rule(rraw: Any, fields: dict, tables: dict) -> Rule:
    """One entry of a template's `rules:` list, checked against the rule registry and the problem catalogue."""
    if not isinstance(rraw, dict):
        raise ValueError(f"规则应写成映射 (a rule is a mapping: code, kind, …)，而不是 {type(rraw).__name__}")
    if "kind" not in rraw:
        raise ValueError("规则缺少 kind (a rule needs a kind)")
    kind = str(rraw["kind"])
    code = str(rraw.get("code") or kind)
    severity = rraw.get("severity", CATALOGUE[code].severity if code in CATALOGUE else "error")
    if severity not in SEVERITIES:
        raise ValueError(f"规则 {code} 的 severity 应为 error 或 warning，而不是 {severity!r}")
    message = None
    if rraw.get("message"):
        message = (str(rraw["message"]), str(rraw.get("message_en") or rraw["message"]))
    elif code not in CATALOGUE:
        raise ValueError(f"规则代码 {code!r} 不在问题目录中，请用已有代码或给出 message (unknown problem code; "
                         f"give the rule a message)")
    params = {k: v for k, v in rraw.items() if k not in {"code", "kind", "severity", "message", "message_en"}}
    return Rule(code=code, kind=kind, severity=severity, params=check_params(kind, params, fields, tables),
                message=message)


def _source_line(path: Path, rendered: str, where: str) -> str:
    """A line of the rendered YAML as a line of the template file: Jinja comments and tags take lines
    away, so the rendered line's own text is looked up in the file (the nearest match wins)."""
    if not where:
        return where
    line = int(where[1:])
    lines = rendered.splitlines()
    if not 0 < line <= len(lines) or not lines[line - 1].strip():
        return where
    try:
        source = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return where
    wanted = lines[line - 1].strip()
    matches = [i for i, text in enumerate(source, 1) if text.strip() == wanted]
    return f":{min(matches, key=lambda i: abs(i - line))}" if matches else where


def _key_line(text: str, trail: list[str]) -> str:
    """':line' of the deepest key of `trail` in the rendered YAML, or '' when it cannot be found."""
    try:
        node = yaml.compose(text, Loader=_YamlLoader)
    except Exception:
        return ""
    line = None
    for key in trail:
        if isinstance(key, int) and isinstance(node, yaml.SequenceNode) and 0 <= key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
            continue
        if not isinstance(node, yaml.MappingNode):
            break
        match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == key), None)
        if match is None:
            break
        line = match[0].start_mark.line + 1
        node = match[1]
    return f":{line}" if line else ""


def substitutes_unit(spec: Spec, fields) -> bool:
    """Whether this template puts the unit's `fields` (code, name, department) on its forms only as they are:
    only then is a form rendered for tokens in their place, the tokens then replaced by the unit's values,
    the form rendered for the unit (perfxl.generator and perfxl.prefilled patch forms from such masters).
    A template that works on them (`unit.code[:6]`, `unit.name | lower`, `{% if "市" in unit.name %}`) would
    give every unit what it made of the tokens: its forms are built one by one.

    "As they are" is `{{ unit.name | tojson }}` in the YAML (and what it extends or includes), and
    `{{ unit.name }}` in a designed template's texts and its fields' defaults, which are rendered into cells
    as they are; an input prompt is cut to Excel's 255 characters after it is rendered, so one that names the
    unit is not. Looked at once per template and version."""
    designed = spec.designed
    texts = ()
    if designed is not None:
        texts = tuple((name, value) for f in spec.fields.values() for name, value in vars(f).items()
                      if isinstance(value, str) and ("{{" in value or "{%" in value))
    return _substitutes_unit(spec.source, spec.template, spec.fingerprint,
                             str(designed.workbook) if designed is not None else "", texts, tuple(fields))


@lru_cache(maxsize=64)
def _substitutes_unit(source: str, name: str, fingerprint: str, workbook: str, field_texts: tuple,
                      fields: tuple[str, ...]) -> bool:
    path = Path(source)
    base = Path(*path.parts[:len(path.parts) - len(Path(name).parts)])  # the folder the template is found in
    catalog = _Catalog(base if base.resolve() != shipped_templates_dir().resolve() else None)
    try:
        trees = _template_closure(catalog, path)
        if trees is None:
            return False
        checks = [(tree, "tojson", imported) for tree, imported in trees]
        if workbook:
            checks += [(_TEXT_ENV.parse(t), "bare", False) for t in _workbook_texts(Path(workbook)) if "{{" in t or "{%" in t]
        checks += [(_TEXT_ENV.parse(text), "bare" if attr == "default" else None, False) for attr, text in field_texts]
        return all(_unit_only_substituted(tree, fields, how, imported) for tree, how, imported in checks)
    except Exception:  # unreadable, too big, not Jinja: not known to be safe, so built
        return False


def _template_closure(catalog: _Catalog, path: Path) -> list[tuple[Any, bool]] | None:
    """The template and every template it extends, includes or imports, parsed, each with whether it is
    reached through an import (its output then is a value the importer may work on); None when one is
    named by an expression, or cannot be found, so what it holds is not known."""
    seen: dict[tuple[Path, bool], Any] = {}
    todo = [(path, False)]
    while todo:
        current, imported = todo.pop()
        if (current, imported) in seen:
            continue
        tree = seen[(current, imported)] = _TEXT_ENV.parse(current.read_text("utf-8"))
        for node in tree.find_all((jinja2.nodes.Extends, jinja2.nodes.Include, jinja2.nodes.Import,
                                   jinja2.nodes.FromImport)):
            named = node.template
            if not (isinstance(named, jinja2.nodes.Const) and isinstance(named.value, str)):
                return None
            found = _template_file(catalog, named.value)
            if found is None:
                return None
            todo.append((found, imported or isinstance(node, jinja2.nodes.Import | jinja2.nodes.FromImport)))
    return [(tree, imported) for (_, imported), tree in seen.items()]


def _template_file(catalog: _Catalog, name: str) -> Path | None:
    """The file Jinja's loader takes for a template name (its pieces under each folder in turn; a name
    with ".." in it is none), if it is a file no bigger than a template may render to."""
    try:
        pieces = jinja2.loaders.split_template_path(name)
    except jinja2.TemplateNotFound:
        return None
    for base in catalog.dirs:
        path = base.joinpath(*pieces)
        if path.is_file():
            return path if path.stat().st_size <= RENDER_MAX_CHARS * 4 else None
    return None


# What may stand around the output of a unit's value, or around a block or an include (whose output another
# template places): statements that only choose whether, or how often, it is written. A filter block, a
# macro, a call block, a set block, or a block called through `self`, would hand the output to code that can
# work on it.
_PASS_THROUGH = (jinja2.nodes.Template, jinja2.nodes.Block, jinja2.nodes.If, jinja2.nodes.For, jinja2.nodes.With,
                 jinja2.nodes.Scope)


def _unit_only_substituted(tree, fields: tuple[str, ...], how: str | None, imported: bool = False) -> bool:
    """Whether every `unit` in a parsed template is `{{ unit.<one of fields> | tojson }}` (how="tojson") or
    `{{ unit.<one of fields> }}` (how="bare"), written where nothing can work on it; with how=None, or in a
    template that is imported, whether there is none. A template that calls `self` or `super` is not
    looked into further: it is not."""
    def passes(parents) -> bool:
        return all(isinstance(p, _PASS_THROUGH) for p in parents)

    def plain(node, parents) -> bool:
        if isinstance(node, jinja2.nodes.Name):
            if node.name in ("self", "super"):
                return False
            if node.name == "unit":
                if how is None or imported or node.ctx != "load" or len(parents) < 2:
                    return False
                attr = parents[-1]
                if not isinstance(attr, jinja2.nodes.Getattr) or attr.attr not in fields:
                    return False
                if how == "bare":
                    return isinstance(parents[-2], jinja2.nodes.Output) and passes(parents[:-2])
                convert = parents[-2]
                return (len(parents) >= 3 and isinstance(convert, jinja2.nodes.Filter) and convert.name == "tojson"
                        and convert.node is attr and not convert.args and not convert.kwargs
                        and convert.dyn_args is None and convert.dyn_kwargs is None
                        and isinstance(parents[-3], jinja2.nodes.Output) and passes(parents[:-3]))
        if isinstance(node, jinja2.nodes.Block | jinja2.nodes.Include | jinja2.nodes.Import
                      | jinja2.nodes.FromImport) and not passes(parents):
            return False
        parents.append(node)
        try:
            return all(plain(child, parents) for child in node.iter_child_nodes())
        finally:
            parents.pop()

    return plain(tree, [])


_TEXT_RE = re.compile(r"<(?:\w+:)?t(?:\s[^>]*)?>([^<]*)</(?:\w+:)?t>")
_WORKBOOK_TEXT_BYTES = 64 * 1024 * 1024


def _workbook_texts(path: Path) -> list[str]:
    """The texts of a designed template's workbook (shared and inline strings), as written in its XML."""
    import html
    import zipfile

    out = []
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.filename.endswith(".xml") and (info.filename == "xl/sharedStrings.xml"
                                                   or info.filename.startswith("xl/worksheets/")):
                if info.file_size > _WORKBOOK_TEXT_BYTES:
                    raise ValueError("a designed workbook's part is too big to look at")
                out += [html.unescape(t) for t in _TEXT_RE.findall(zf.read(info).decode("utf-8", "replace"))]
    return out


def _sources(catalog: _Catalog, path: Path) -> list[Path]:
    """The template file and every file it extends or includes, so the fingerprint covers all of them."""
    seen: list[Path] = []
    todo = [path]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.append(current)
        for ref in re.findall(r"{%-?\s*(?:extends|include|import|from)\s+[\"']([^\"']+)[\"']", current.read_text("utf-8")):
            found = _template_file(catalog, ref)
            if found is not None:
                todo.append(found)
    return seen


def _region_default(path: Path) -> str:
    match = re.search(r"^#\s*default-region:\s*(\S+)", path.read_text(encoding="utf-8"), re.M)
    return match.group(1) if match else "全国"


def load_data(folder: str, name: str, templates_dir: Path | None = None) -> Any:
    """A data file beside the templates (hierarchies/…, libraries/…), the user's folder first."""
    path = _Catalog(templates_dir).data_file(folder, name)
    return load_yaml(path.read_bytes(), path)


def _hierarchy(catalog: _Catalog, name: str, digest) -> Hierarchy:
    path = catalog.data_file("hierarchies", name)
    data = path.read_bytes()
    digest.update(data)
    raw = load_yaml(data, path)
    try:
        levels = {str(k): tuple(str(x) for x in (v or ())) for k, v in raw["levels"].items()}
        return Hierarchy(name=name, levels=levels,
                         aliases={str(k): str(v) for k, v in (raw.get("aliases") or {}).items()},
                         kinds={str(k): str(v) for k, v in (raw.get("kinds") or {}).items()})
    except Exception as exc:
        raise SpecError(f"{path}: 指标层级文件结构错误，应有 levels: {{一级: [二级, …]}} "
                        f"(bad hierarchy file): {type(exc).__name__}: {exc}") from None


def _library(catalog: _Catalog, name: str, digest) -> list[tuple]:
    path = catalog.data_file("libraries", name)
    data = path.read_bytes()
    digest.update(data)
    raw = load_yaml(data, path)
    try:
        return [tuple("" if x is None else str(x) for x in row) for row in raw["rows"]]
    except Exception as exc:
        raise SpecError(f"{path}: 预置指标文件结构错误，应有 rows: [[…], …] (bad library file): "
                        f"{type(exc).__name__}: {exc}") from None


def _choices(value) -> tuple[str, ...]:
    return tuple(str(x) for x in (value or ()))


def _make_field(fid: str, raw: dict, **extra) -> Field:
    ftype = raw.get("type", "text")
    if ftype not in FIELD_TYPES:
        raise ValueError(f"field {fid}: unknown type {ftype!r}")
    return Field(id=fid, label=str(raw["label"]), type=ftype, required=bool(raw.get("required", False)),
                 choices=_choices(raw.get("choices")), help=str(raw.get("help", "") or ""),
                 min=raw.get("min"), max=raw.get("max"), max_length=raw.get("max_length"),
                 pattern=raw.get("pattern"), in_year=bool(raw.get("in_year", False)),
                 default=raw.get("default"), lines=int(raw.get("lines", 4 if ftype == "longtext" else 1)),
                 locked=bool(raw.get("locked", False)), cell=_cell_text(raw.get("cell")), **extra)


def _cell_text(value: Any) -> str:
    if value in (None, ""):
        return ""
    split_cell(str(value))  # raises on anything that is not one A1 address
    return str(value).replace("$", "").upper()


def _build(raw: dict, name: str, params: dict, catalog: _Catalog, digest, path: Path, trail: list) -> Spec:
    """The frozen Spec from a rendered template. `trail` is kept at the key being built, so an error can
    name its line.

    Long because fields, grids, tables and rules are cross-referenced (a grid makes fields and rules, a
    table's columns make rules, rules name fields and tables) and are checked in the order they are
    declared, with `trail` pointing at each; splitting would scatter that one walk over the YAML."""
    year = params["year"]
    fields: dict[str, Field] = {}
    rules: list[Rule] = []

    for fid, fraw in (raw.get("fields") or {}).items():
        trail[:] = ["fields", fid]
        if not isinstance(fraw, dict):
            raise ValueError(f"字段 {fid} 应写成映射 (label: …, type: …)，而不是 {type(fraw).__name__}")
        fields[fid] = _make_field(fid, fraw)

    grids: dict[str, Grid] = {}
    for gid, graw in (raw.get("grids") or {}).items():
        trail[:] = ["grids", gid]
        cols = tuple(c["id"] for c in graw["columns"])
        col_labels = {c["id"]: c["label"] for c in graw["columns"]}
        col_locked = {c["id"]: bool(c.get("locked", False)) for c in graw["columns"]}
        rows = []
        for row in graw["rows"]:
            rid = row["id"]
            rows.append((rid, str(row.get("group", "") or ""), str(row["label"])))
            for cid in cols:
                fid = f"{gid}_{rid}_{cid}"
                fields[fid] = _make_field(fid, {"label": row["label"], "type": graw.get("type", "money"),
                                                "required": row.get("required", graw.get("required", False))
                                                and not col_locked[cid],
                                                "help": row.get("help", ""), "min": 0, "locked": col_locked[cid]},
                                          grid=gid, column=col_labels[cid], section=str(graw.get("caption", "")))
            if row.get("sum_of"):
                for cid in (c for c in cols if not col_locked[c]):  # a prefilled column is not the unit's to balance
                    rules.append(Rule(code="sum-mismatch", kind="field_sum", severity="error", params={
                        "total": f"{gid}_{rid}_{cid}",
                        "parts": [f"{gid}_{p}_{cid}" for p in row["sum_of"]],
                        "what": f"{row['label']}（{col_labels[cid]}）" if len(cols) > 1 else row["label"]}))
        for order in graw.get("period_order") or []:
            lesser, greater = order
            for rid, _, label in rows:
                rules.append(Rule(code="period-exceeds", kind="field_not_exceed", severity="error", params={
                    "part": f"{gid}_{rid}_{lesser}", "whole": f"{gid}_{rid}_{greater}",
                    "what": label, "part_label": col_labels[lesser], "whole_label": col_labels[greater]}))
        grids[gid] = Grid(id=gid, caption=str(graw.get("caption", "")),
                          header=tuple(str(h) for h in graw.get("header", ())), columns=cols, rows=tuple(rows))

    tables: dict[str, Table] = {}
    for tid, traw in (raw.get("tables") or {}).items():
        trail[:] = ["tables", tid]
        columns = []
        for craw in traw["columns"]:
            ctype = craw.get("type", "text")
            if ctype not in COLUMN_TYPES:
                raise ValueError(f"table {tid} column {craw['id']}: unknown type {ctype!r}")
            columns.append(Column(id=craw["id"], label=str(craw["label"]), type=ctype, span=int(craw.get("span", 1)),
                                  choices=_choices(craw.get("choices")), required=bool(craw.get("required", False)),
                                  help=str(craw.get("help", "") or ""), locked=bool(craw.get("locked", False)),
                                  open_choices=bool(craw.get("open_choices", False))))
        prefill: list[tuple] = []
        for source in traw.get("prefill") or []:
            if isinstance(source, dict) and "library" in source:
                prefill.extend(_library(catalog, source["library"], digest))
            else:
                prefill.append(tuple("" if x is None else str(x) for x in source))
        indicator = None
        if traw.get("indicator"):
            iraw = traw["indicator"]
            indicator = IndicatorSpec(
                hierarchy=_hierarchy(catalog, iraw["hierarchy"], digest), level1=iraw["level1"],
                level2=iraw.get("level2"), level3=iraw["level3"], values=tuple(iraw["values"]),
                required_levels=_choices(iraw.get("required_levels")),
                recommended_levels=_choices(iraw.get("recommended_levels")),
                cost_tuple=bool(iraw.get("cost_tuple", False)), sign_column=iraw.get("sign_column"),
                unit_column=iraw.get("unit_column"), budget_field=iraw.get("budget_field"),
                annual=str(iraw.get("annual") or ""))
            if indicator.annual and indicator.annual not in indicator.values:
                raise ValueError(f"indicator annual {indicator.annual!r} 不在 values 中 (must be one of the values)")
        body = str(traw.get("range") or "").replace("$", "").upper()
        blank_rows = int(traw.get("blank_rows", 10))
        if body:
            (r0, _), (r1, _) = (split_cell(x) for x in body.split(":"))
            blank_rows = r1 - r0 + 1 - len(prefill)
        tables[tid] = Table(id=tid, label=str(traw["label"]), columns=tuple(columns), blank_rows=blank_rows,
                            prefill=tuple(prefill), indicator=indicator, min_rows=int(traw.get("min_rows", 0)),
                            range=body)
        for craw in traw["columns"]:
            if craw.get("sum_to"):
                rules.append(Rule(code="sum-mismatch", kind="column_sum", severity="error", params={
                    "table": tid, "column": craw["id"], "total": craw["sum_to"]}))
        for lesser, greater in traw.get("row_not_exceed") or []:
            rules.append(Rule(code="period-exceeds", kind="row_not_exceed", severity="error", params={
                "table": tid, "part": lesser, "whole": greater}))
        if traw.get("min_rows"):
            rules.append(Rule(code="table-empty", kind="table_min_rows", severity="error",
                              params={"table": tid, "min_rows": int(traw["min_rows"])}))
        if indicator:
            rules.append(Rule(code="indicators", kind="indicators", severity="error", params={"table": tid}))

    # The rules built from grids and tables go through the same check as those a template declares.
    rules = [replace(rule, params=check_params(rule.kind, rule.params, fields, tables)) for rule in rules]
    for index, rraw in enumerate(raw.get("rules") or []):
        trail[:] = ["rules", index]
        rule = _declared_rule(rraw, fields, tables)
        if rule.kind == "indicators" and tables[rule.params["table"]].indicator is None:
            raise ValueError(f"规则 indicators 检查指标表，但表格 {rule.params['table']} 没有 indicator（指标层级）"
                             f"(the table has no indicator block)")
        rules.append(rule)

    for fid, f in fields.items():
        if f.type == "choice" and not f.choices:
            raise ValueError(f"choice field {fid} has no choices")

    designed = None
    if raw.get("designed"):
        trail[:] = ["designed"]
        designed = _designed(raw["designed"], path, digest, fields, tables)
    blocks = []
    trail[:] = ["blocks"]
    for braw in raw.get("blocks") or ([] if designed else raw["blocks"]):
        ((kind, value),) = braw.items()
        if kind in {"title", "section"}:
            blocks.append(Block(kind=kind, text=str(value)))
        elif kind in {"grid", "table"}:
            if value not in (grids if kind == "grid" else tables):
                raise ValueError(f"block refers to unknown {kind} {value!r}")
            blocks.append(Block(kind=kind, ref=value))
        elif kind == "fields":
            rows = tuple(tuple(_item(i, fields) for i in row) for row in value)
            blocks.append(Block(kind=kind, items=rows))
        elif kind == "pagebreak":
            blocks.append(Block(kind=kind))
        else:
            raise ValueError(f"unknown block kind {kind!r}")

    family = str(raw.get("family", "project"))
    if family not in ROUNDS:
        raise ValueError(f"family “{family}” 不是已知的轮次，可用：{'、'.join(ROUNDS)} (unknown family)")
    sheet = raw.get("sheet") or {}
    key_fields = tuple(raw.get("key_fields") or ())
    for fid in key_fields + tuple(x for x in (raw.get("budget_field"), raw.get("project_name_field")) if x):
        if fid not in fields:
            raise ValueError(f"unknown field {fid!r} named in the template header")
    return Spec(
        template=name, version=str(raw["version"]), title=str(raw["title"]), family=family,
        money_unit=raw.get("money_unit", "元"), multi_project=bool(raw.get("multi_project", False)),
        sheet_name=str(sheet.get("name", "绩效目标表")),
        widths=tuple(float(w) for w in sheet["columns"]) if not designed else (8.43,) * designed.check_column,
        blocks=tuple(blocks), fields=fields, tables=tables, grids=grids, rules=tuple(rules),
        print_setup=dict(sheet.get("print") or {}), fingerprint=digest.hexdigest()[:16],
        region=str(params["region"]), year=int(year), project_name_field=raw.get("project_name_field", ""),
        budget_field=raw.get("budget_field"), key_fields=key_fields,
        funding_fields=tuple(raw.get("funding_fields") or ()), unit_name_field=raw.get("unit_name_field"),
        source=str(path), designed=designed, prefill=_prefill(raw.get("prefill"), fields))


PREFILL_FACTS = ("name", "department", "unit_name", "goal", "budget", "adjustment", "adjusted_budget", "target_version")  # what a declaration gives a follow-up form


def _prefill(raw, fields: dict[str, Field]) -> dict[str, str]:
    if not raw:
        return {}
    if not isinstance(raw, dict):
        raise ValueError("prefill 应写成 字段: 申报内容 的映射 (prefill is a mapping of field → declared fact)")
    for fid, fact in raw.items():
        if fid not in fields:
            raise ValueError(f"prefill 中的字段 {fid!r} 不存在 (unknown field)")
        if fact not in PREFILL_FACTS:
            raise ValueError(f"prefill 中 {fid} 的来源 {fact!r} 应为 {'、'.join(PREFILL_FACTS)} 之一")
    return {str(k): str(v) for k, v in raw.items()}


_WORKBOOK_NAME = re.compile(r"[^/\\:*?\"<>|]{1,120}\.xlsx")


def _designed(raw: dict, path: Path, digest, fields: dict[str, Field], tables: dict[str, Table]) -> Designed:
    """The designed layout of an imported template: its workbook sits beside the YAML (never elsewhere),
    every field has a cell and every table a body range."""
    name = str(raw.get("workbook", ""))
    if not _WORKBOOK_NAME.fullmatch(name) or name.startswith("."):
        raise ValueError(f"designed.workbook 应为同一文件夹中的 .xlsx 文件名，而不是 {name!r}")
    workbook = path.parent / name
    if not workbook.is_file():
        raise ValueError(f"找不到表样工作簿 {workbook}（designed.workbook）")
    digest.update(workbook.read_bytes())
    for f in fields.values():
        if not f.cell:
            raise ValueError(f"字段 {f.id} 没有 cell：导入的模板中每个字段都要有单元格")
    for t in tables.values():
        if not t.range:
            raise ValueError(f"表格 {t.id} 没有 range：导入的模板中每个表格都要有区域")
    check = str(raw.get("check_column", ""))
    return Designed(workbook=workbook, sheet=str(raw.get("sheet", "")), check_column=split_cell(f"{check}1")[1])


def _item(item: Any, fields: dict[str, Field]) -> dict:
    if isinstance(item, str):
        if item not in fields:
            raise ValueError(f"layout names unknown field {item!r}")
        return {"field": item}
    if "field" in item and item["field"] not in fields:
        raise ValueError(f"layout names unknown field {item['field']!r}")
    return dict(item)


# ----------------------------------------------------------------------------------------------------
# Layout: where everything sits on a sheet (0-based rows and columns)
# ----------------------------------------------------------------------------------------------------

@dataclass
class Placement:
    kind: str  # title | text | label | input | header | check | grid-label
    row: int
    col: int
    last_row: int
    last_col: int
    text: str = ""
    field: str = ""
    table: str = ""
    column: str = ""
    style: str = ""
    height: float | None = None


@dataclass
class TablePosition:
    header_row: int
    first_row: int
    last_row: int
    columns: dict[str, int] = field(default_factory=dict)  # column id -> first grid column


@dataclass
class SheetLayout:
    placements: list[Placement]
    fields: dict[str, tuple[int, int]]
    tables: dict[str, TablePosition]
    row_heights: dict[int, float]
    page_breaks: list[int]
    last_row: int
    check_column: int


def _spread(width: int, spans: list[int | None]) -> list[int]:
    fixed = sum(s for s in spans if s)
    free = [i for i, s in enumerate(spans) if not s]
    out = [s or 0 for s in spans]
    if free:
        share, extra = divmod(width - fixed, len(free))
        for n, i in enumerate(free):
            out[i] = share + (1 if n < extra else 0)
    return out


@lru_cache(maxsize=64)
def layout(spec: Spec) -> SheetLayout:
    """Where every block of the spec goes on a project sheet: placements, field cells, table positions.

    Long because it is a cursor moving down the sheet block by block; each block kind is a short branch
    that advances the same row cursor, and splitting it would pass that cursor and three maps around."""
    if spec.designed is not None:
        return _designed_layout(spec)
    width = spec.width
    placements: list[Placement] = []
    fields: dict[str, tuple[int, int]] = {}
    tables: dict[str, TablePosition] = {}
    heights: dict[int, float] = {}
    breaks: list[int] = []
    ticks: list[Placement] = []
    r = 0

    def put(kind, row, col, last_row, last_col, **kw):
        placements.append(Placement(kind, row, col, last_row, last_col, **kw))

    for block in spec.blocks:
        if block.kind == "title":
            put("title", r, 0, r, width - 1, text=block.text)
            heights[r] = 30
            r += 1
        elif block.kind == "section":
            put("section", r, 0, r, width - 1, text=block.text)
            r += 1
        elif block.kind == "pagebreak":
            breaks.append(r)
        elif block.kind == "fields":
            for row in block.items:
                spans = _spread(width, [i.get("span") for i in row])
                c = 0
                tall = 1
                for item, span in zip(row, spans):
                    if "text" in item:
                        put("text", r, c, r, c + span - 1, text=str(item["text"]), style=item.get("align", "left"))
                    else:
                        f = spec.fields[item["field"]]
                        label_span = int(item.get("label_span", 1))
                        put("label", r, c, r, c + label_span - 1, text=f.label)
                        put("input", r, c + label_span, r, c + span - 1, field=f.id)
                        fields[f.id] = (r, c + label_span)
                        tall = max(tall, f.lines)
                        if f.type == "tick":  # the printed □/√ line sits under the dropdown
                            ticks.append(Placement("ticks", r + 1, c, r + 1, c + span - 1, field=f.id))
                    c += span
                heights[r] = 20 if tall == 1 else 18 * tall
                r += 1
                if ticks:
                    placements.extend(ticks)
                    heights[r] = 20
                    ticks.clear()
                    r += 1
        elif block.kind == "grid":
            grid = spec.grids[block.ref]
            ncols = len(grid.columns)
            has_group = any(g for _, g, _ in grid.rows)
            caption_span = 1 if grid.caption else 0
            label_first = caption_span + (1 if has_group else 0)
            label_span = width - label_first - ncols
            first = r
            put("header", r, caption_span, r, width - ncols - 1, text=grid.header[0] if grid.header else "")
            for j, title in enumerate(grid.header[1:]):
                put("header", r, width - ncols + j, r, width - ncols + j, text=title)
            r += 1
            for i, (rid, group, label) in enumerate(grid.rows):
                start = label_first
                if has_group and not group:
                    start = caption_span
                elif has_group and (i == 0 or grid.rows[i - 1][1] != group):
                    k = i
                    while k < len(grid.rows) and grid.rows[k][1] == group:
                        k += 1
                    put("label", r, caption_span, r + (k - i) - 1, caption_span, text=group)
                put("label", r, start, r, label_first + label_span - 1, text=label)
                for j, cid in enumerate(grid.columns):
                    fid = f"{grid.id}_{rid}_{cid}"
                    put("input", r, width - ncols + j, r, width - ncols + j, field=fid)
                    fields[fid] = (r, width - ncols + j)
                r += 1
            if grid.caption:
                put("label", first, 0, r - 1, 0, text=grid.caption)
        elif block.kind == "table":
            table = spec.tables[block.ref]
            spans = [c.span for c in table.columns]
            if sum(spans) != width:
                raise SpecError(f"{spec.source}: table {table.id!r} columns span {sum(spans)} grid columns, "
                                 f"the sheet has {width}; adjust the columns' span or sheet.columns")
            pos = TablePosition(header_row=r, first_row=r + 1, last_row=r + table.body_rows)
            c = 0
            for col, span in zip(table.columns, spans):
                put("header", r, c, r, c + span - 1, text=col.label, table=table.id, column=col.id)
                pos.columns[col.id] = c
                for body in range(pos.first_row, pos.last_row + 1):
                    put("cell", body, c, body, c + span - 1, table=table.id, column=col.id)
                c += span
            heights[r] = 32
            tables[table.id] = pos
            r = pos.last_row + 1
        else:  # pragma: no cover - rejected when the spec is built
            raise SpecError(f"unknown block {block.kind}")
    return SheetLayout(placements=placements, fields=fields, tables=tables, row_heights=heights,
                       page_breaks=breaks, last_row=r - 1, check_column=width)


def _designed_layout(spec: Spec) -> SheetLayout:
    """Positions straight from an imported template: nothing is placed, the design already shows it."""
    fields = {f.id: split_cell(f.cell) for f in spec.fields.values()}
    tables = {}
    last = max([r for r, _ in fields.values()] + [0])
    for t in spec.tables.values():
        (r0, c0), (r1, _) = (split_cell(x) for x in t.range.split(":"))
        pos = TablePosition(header_row=r0 - 1, first_row=r0, last_row=r1)
        c = c0
        for col in t.columns:
            pos.columns[col.id] = c
            c += col.span
        tables[t.id] = pos
        last = max(last, r1)
    return SheetLayout(placements=[], fields=fields, tables=tables, row_heights={}, page_breaks=[], last_row=last,
                       check_column=spec.designed.check_column)


def split_cell(address: str) -> tuple[int, int]:
    """A1 address (with or without $) → 0-based (row, col)."""
    match = re.fullmatch(r"\$?([A-Za-z]{1,3})\$?(\d+)", address.strip())
    if not match:
        raise ValueError(f"not a cell address: {address!r}")
    col = 0
    for ch in match.group(1).upper():
        col = col * 26 + (ord(ch) - 64)
    return int(match.group(2)) - 1, col - 1


def column_offsets(table: Table) -> dict[str, int]:
    """Each column's offset from the first column of the table's body (the range of its defined name):
    a column merged over two cells moves every later offset by two."""
    out, offset = {}, 0
    for c in table.columns:
        out[c.id] = offset
        offset += c.span
    return out


def _columns(table: Table) -> list[dict[str, Any]]:
    offsets = column_offsets(table)
    return [{"id": c.id, "label": c.label, "type": c.type, "offset": offsets[c.id], "span": c.span}
            for c in table.columns]


def describe(spec: Spec) -> dict[str, Any]:
    """What a form contains, with the defined name of every input: the contract the reader relies on."""
    fields = []
    for f in spec.fields.values():
        entry = {"id": f.id, "label": f.label, "type": f.type, "required": f.required, "name": f.name,
                 "choices": list(f.choices)}
        if f.grid:
            entry.update({"section": f.section, "column": f.column})
        fields.append(entry)
    tables = [{"id": t.id, "label": t.label, "name": t.name, "rows": t.body_rows,
               "prefilled_rows": len(t.prefill),
               "columns": _columns(t)} for t in spec.tables.values()]
    rules = [{"code": r.code, "kind": r.kind, "severity": r.severity} for r in spec.rules]
    return {"template": spec.template, "version": spec.version, "title": spec.title, "money_unit": spec.money_unit,
            "multi_project": spec.multi_project, "year": spec.year, "region": spec.region,
            "fingerprint": spec.fingerprint, "name_scope": "sheet" if spec.multi_project else "workbook",
            "fields": fields, "tables": tables, "rules": rules}

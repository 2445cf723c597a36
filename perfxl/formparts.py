"""What every form perfxl makes carries, whoever writes it (xlsxwriter for YAML templates, openpyxl for
Excel-designed ones): the input styles' colours and number formats, the stamp sheet's content with the
dropdown lists, the data validation of each field and table column, and the formula of a sum check.
Validations are xlsxwriter's dicts; the designed-form builder translates them."""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from . import __version__
from .contract import PROPERTY_PREFIX, STAMP_MARK, STAMP_SHEET, stamp_rows
from .domain import SUM_TOLERANCE
from .rules import SumCheck
from .spec import Spec, cell_name

LIST_COLUMN = 3  # dropdown lists start in column D of the stamp sheet

NUMBER_FORMATS = {"money": "#,##0.00", "number": "#,##0.00##", "integer": "#,##0", "percent": "0.00%",
                  "date": "yyyy-mm-dd"}
FILL_INPUT = "#FFF7D6"
FILL_REQUIRED_EMPTY = "#FFD9D9"
FILL_LABEL = "#EEF2F7"
FILL_PREFILLED = "#E7E6E6"  # what the declaration said, locked


def abs_ref(row: int, col: int) -> str:
    name = cell_name(row, col)
    letters = name.rstrip("0123456789")
    return f"${letters}${name[len(letters):]}"


def quote_sheet(title: str) -> str:
    return "'" + title.replace("'", "''") + "'"


@dataclass
class Lists:
    """Dropdown sources on the stamp sheet: level 1 names in a row, each one's level 2 list below it; with an
    indicator library, level 2 names in a row, each one's usual level 3 names below it, and each level 3
    name beside its typical value."""

    level1_range: str | None = None
    level2_anchor: str | None = None
    level2_height: int = 0
    level3_anchor: str | None = None
    level3_header: str | None = None
    level3_height: int = 0
    typical_range: str | None = None


@dataclass(frozen=True)
class ReferenceSheet:
    """A read-only sheet beside the form: 上年参考 (last year's targets and results of a continuing project)
    or 指标参考 (an indicator library's usual indicators). Blocks of a heading, facts and rows."""

    name: str
    title: str
    note: str
    columns: tuple[tuple[str, float], ...]  # (title, width)
    blocks: tuple[tuple[str, tuple[tuple[str, str], ...], tuple[tuple, ...]], ...]  # (heading, facts, rows)


@dataclass(frozen=True)
class FormExtras:
    """What a form carries besides its template: an indicator library's choices (三级 per 二级), typical
    values and 固化指标 rows, and reference sheets."""

    level3_choices: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (二级, its usual 三级 names)
    typical: tuple[tuple[str, str], ...] = ()  # (三级, typical value)
    required_rows: tuple[tuple[str, str, str], ...] = ()  # (一级, 二级, 三级) prefilled on every project sheet
    sheets: tuple[ReferenceSheet, ...] = ()


@dataclass
class StampSheet:
    """What the hidden stamp sheet holds, whatever writes it: its cells, the dropdown lists' references
    and the stamp again as custom document properties."""

    cells: list[tuple[int, int, str]]
    lists: Lists
    properties: list[tuple[str, str]]


def stamp_sheet(spec: Spec, unit: dict, projects: int, extras: FormExtras | None = None) -> StampSheet:
    rows = stamp_rows({"template": spec.template, "version": spec.version, "fingerprint": spec.fingerprint,
                       "region": spec.region, "year": spec.year, "unit_code": unit.get("code", ""),
                       "unit_name": unit.get("name", ""), "projects": projects, "perfxl": __version__,
                       "round": unit.get("round", "")})
    cells = [(0, 0, STAMP_MARK)]
    for i, (key, value) in enumerate(rows, start=1):
        cells += [(i, 0, key), (i, 1, value)]
    lists = Lists()
    table = spec.indicator_table()
    if table is not None:
        hierarchy = table.indicator.hierarchy
        level1 = list(hierarchy.levels)
        for j, name in enumerate(level1):
            cells.append((0, LIST_COLUMN + j, name))
            cells += [(i, LIST_COLUMN + j, sub) for i, sub in enumerate(hierarchy.levels[name], start=1)]
        sheet = quote_sheet(STAMP_SHEET)
        lists.level1_range = f"={sheet}!{abs_ref(0, LIST_COLUMN)}:{abs_ref(0, LIST_COLUMN + len(level1) - 1)}"
        lists.level2_anchor = f"{sheet}!{abs_ref(1, LIST_COLUMN - 1)}"
        lists.level2_height = max([len(v) for v in hierarchy.levels.values()] + [1])
        if extras is not None and extras.level3_choices:
            start = LIST_COLUMN + len(level1) + 1
            for j, (level2, names) in enumerate(extras.level3_choices):
                cells.append((0, start + j, level2))
                cells += [(i, start + j, name) for i, name in enumerate(names, start=1)]
            end = start + len(extras.level3_choices) - 1
            lists.level3_header = f"{sheet}!{abs_ref(0, start)}:{abs_ref(0, end)}"
            lists.level3_anchor = f"{sheet}!{abs_ref(1, start - 1)}"
            lists.level3_height = max(len(names) for _, names in extras.level3_choices)
        if extras is not None and extras.typical:
            at = LIST_COLUMN + len(level1) + 2 + len(extras.level3_choices)
            for i, (level3, typical) in enumerate(extras.typical):
                cells += [(i, at, level3), (i, at + 1, typical)]
            lists.typical_range = f"{sheet}!{abs_ref(0, at)}:{abs_ref(len(extras.typical) - 1, at + 1)}"
    return StampSheet(cells, lists, [(PROPERTY_PREFIX + key, value) for key, value in rows])


def field_validation(field, year: int) -> dict | None:
    """The data validation of one input field, in xlsxwriter's terms (the designed-form builder translates it)."""
    prompt = {"input_title": field.label.rstrip("：: ")[:32], "input_message": (field.help or "")[:255]}
    if not prompt["input_message"]:
        prompt["input_message"] = "必填" if field.required else "选填"
    if field.type in {"choice", "tick"}:
        return {"validate": "list", "source": list(field.choices), **prompt}
    if field.type in {"money", "number", "percent"}:
        lo = field.min if field.min is not None else -1e15
        hi = field.max if field.max is not None else 1e15
        return {"validate": "decimal", "criteria": "between", "minimum": lo, "maximum": hi,
                "error_title": "数值超出范围", "error_message": f"请填写 {lo:g} 到 {hi:g} 之间的数字", **prompt}
    if field.type == "integer":
        lo = int(field.min if field.min is not None else 0)
        hi = int(field.max if field.max is not None else 10**9)
        return {"validate": "integer", "criteria": "between", "minimum": lo, "maximum": hi,
                "error_title": "请填写整数", "error_message": f"请填写 {lo} 到 {hi} 之间的整数", **prompt}
    if field.type == "date":
        # A clerk may type "2025年"; warn rather than refuse, the validator reads such text.
        return {"validate": "date", "criteria": "between", "minimum": datetime(1990, 1, 1),
                "maximum": datetime(2100, 12, 31), "error_type": "warning",
                "error_message": f"请填写日期，例如 {year}-01-01", **prompt}
    if field.type in {"text", "longtext", "phone", "code", "daterange"}:
        limit = field.max_length or 32767
        return {"validate": "length", "criteria": "<=", "value": limit, "error_type": "warning",
                "error_message": f"最多 {limit} 个字符", **prompt}
    return None


def column_validation(table, col, lists: Lists, pos) -> dict | None:
    """The data validation of one table column, in xlsxwriter's terms: the hierarchy's dropdowns for the
    levels of an indicator table (level 2 follows level 1), choices, numbers, a prompt for targets."""
    prompt = {"input_title": col.label[:32], "input_message": (col.help or col.label)[:255]}
    rule = None
    ind = table.indicator
    if col.open_choices and col.choices:  # suggested, not enforced: a number is typed here too
        rule = {"validate": "list", "source": list(col.choices), "error_type": "information",
                "error_message": "可以从下拉中选择，也可以直接填写", **prompt}
    elif ind and col.id == ind.level1 and lists.level1_range:
        rule = {"validate": "list", "source": lists.level1_range, "error_type": "warning",
                "error_message": "一级指标不在本表的指标体系中", **prompt}
    elif ind and ind.level2 and col.id == ind.level3 and lists.level3_anchor:  # an indicator library's, free text allowed
        source = _cascade(pos, ind.level2, lists.level3_header, lists.level3_anchor, lists.level3_height)
        rule = {"validate": "list", "source": source, "error_type": "information",
                "error_message": "可以从指标库的常用指标中选择，也可以直接填写", "input_title": col.label[:32],
                "input_message": ("可从下拉列表选择指标库中本二级指标的常用指标（也可直接填写）；"
                                  "选中后，本行右侧显示该指标的典型值。" + (col.help or ""))[:255]}
    elif ind and col.id == ind.level2 and lists.level2_anchor:
        source = _cascade(pos, ind.level1, lists.level1_range[1:], lists.level2_anchor, lists.level2_height)
        rule = {"validate": "list", "source": source, "error_type": "warning",
                "error_message": "二级指标与一级指标不对应", **prompt}
    elif col.choices:
        rule = {"validate": "list", "source": list(col.choices), **prompt}
    elif col.type in {"money", "number"}:
        rule = {"validate": "decimal", "criteria": ">=", "value": 0,
                "error_title": "请填写数字", "error_message": "金额应为不小于 0 的数字", **prompt}
    elif col.type == "target":
        rule = {"validate": "any", **prompt}
    return rule


def _cascade(pos, parent: str, names: str, anchor: str, height: int) -> str:
    """A dropdown that follows the level chosen in the `parent` column of the same row: the list under that
    level's name among `names` (one row on the stamp sheet), counted from `anchor`."""
    cell = cell_name(pos.first_row, pos.columns[parent])
    letters = cell.rstrip("0123456789")
    match = f"MATCH(${letters}{cell[len(letters):]},{names},0)"
    return f"=OFFSET({anchor},0,{match},MAX(1,COUNTA(OFFSET({anchor},0,{match},{height},1))),1)"


def sum_check_formula(items: list[SumCheck]) -> str:
    """The check cell beside the totals of one row: ✓ while each equals the sum of its parts."""
    conditions = ",".join(f"ABS(N({c.total})-{c.expression})<{SUM_TOLERANCE}" for c in items)
    return (f'=IF(COUNT({items[0].total})=0,"",IF(AND({conditions}),"✓ 与分项之和相符",'
            f'"✗ 与分项之和不符，请核对"))')


# ----------------------------------------------------------------------------------------------------
# How much room a text takes when printed: what every sheet perfxl writes sizes its rows by
# ----------------------------------------------------------------------------------------------------
# Excel's measure, the narrower of the two suites a unit opens a form in: a column of width w (characters of
# the default font, Calibri 11) is 7 w + 5 pixels, a cell keeps about 3 pixels each side, and 宋体 draws a
# Chinese character one em wide (13.3 px at 10 pt) and a Latin one half as wide. LibreOffice's columns come
# out wider, so what fits here fits there. Latin letters are counted at 0.62 em: DejaVu Sans, which stands
# in for missing fonts, is wider than 宋体's half-width letters.

_PX_PER_WIDTH = 7
_CELL_PADDING_PX = 6
_OPENING = set("（(【[「『《〈“‘")
_CLOSING = set("）)】]」』》〉”’，,。.、；;：:！!？?%％")
_BREAK_AFTER = set("：:、，,；;/）)】」』》")


def column_pixels(widths) -> float:
    """The pixels Excel gives columns of these widths (a merged cell: their sum)."""
    return sum(w * _PX_PER_WIDTH + 5 for w in widths)


@lru_cache(maxsize=4096)
def _char_ems(ch: str) -> float:
    return 1.0 if unicodedata.east_asian_width(ch) in "WF" else 0.62


def _char_px(ch: str, size: float) -> float:
    return _char_ems(ch) * size * 96 / 72


def text_px(text: str, size: float = 10, bold: bool = False) -> float:
    """The printed width of one line of text, in pixels."""
    return sum(map(_char_ems, text)) * size * 96 / 72 * (1.05 if bold else 1)


def wrap_text(text: str, widths, size: float = 10, bold: bool = False) -> list[str]:
    """The lines a wrapping cell of these column widths shows the text in: Chinese breaks between any two
    characters but never puts closing punctuation at the start of a line nor opening at its end, Latin
    breaks at spaces, a line break in the text is kept."""
    room = max(column_pixels(widths) - _CELL_PADDING_PX, _char_px("中", size) * 2)
    if "\n" not in text and text_px(text, size, bold) <= room:
        return [str(text)]
    scale = 1.05 if bold else 1
    lines: list[str] = []
    for paragraph in str(text).split("\n"):
        line, used = "", 0.0
        for token in _unbreakable(paragraph):
            w = sum(_char_px(ch, size) for ch in token) * scale
            if line and used + w > room:
                lines.append(line.rstrip())
                token = token.lstrip()
                line, used = "", 0.0
                w = sum(_char_px(ch, size) for ch in token) * scale
            while w > room and len(token) > 1:  # a word longer than the cell: cut where it stops fitting
                cut, run = 0, 0.0
                while cut < len(token) and run + _char_px(token[cut], size) * scale <= room:
                    run += _char_px(token[cut], size) * scale
                    cut += 1
                lines.append(token[:max(1, cut)])
                token = token[max(1, cut):]
                w = sum(_char_px(ch, size) for ch in token) * scale
            line += token
            used += w
        lines.append(line.rstrip())
    return lines


def _unbreakable(text: str) -> list[str]:
    """Pieces no line breaks inside: a Chinese character with the punctuation that clings to it, a Latin
    word with the space after it."""
    tokens: list[str] = []
    opening = ""
    for ch in text:
        if ch in _CLOSING and tokens and not opening:
            tokens[-1] += ch
        elif ch in _OPENING:
            opening += ch
        elif unicodedata.east_asian_width(ch) in "WF" or not tokens or ch == " " or opening:
            if ch == " " and tokens and not opening:
                tokens[-1] += ch
            else:
                tokens.append(opening + ch)
                opening = ""
        elif tokens[-1][-1:].isspace() or unicodedata.east_asian_width(tokens[-1][-1]) in "WF":
            tokens.append(ch)
        else:
            tokens[-1] += ch
    if opening:
        tokens.append(opening)
    return tokens


def break_at_phrases(text: str, widths, size: float = 10, bold: bool = False) -> str:
    """The text with line breaks where a reader expects them, when it needs more than one line: before an
    opening bracket and after a colon, comma or slash, so "项目资金（万元）" reads 项目资金 / （万元）, never with a
    lone "）". A phrase longer than a line is left to wrap."""
    if len(wrap_text(text, widths, size, bold)) <= 1 or "\n" in text:
        return text
    room = column_pixels(widths) - _CELL_PADDING_PX
    phrases, current = [], ""
    for ch in text:
        if ch in _OPENING and current:
            phrases.append(current)
            current = ""
        current += ch
        if ch in _BREAK_AFTER:
            phrases.append(current)
            current = ""
    if current:
        phrases.append(current)
    lines: list[str] = []
    for phrase in phrases:
        if lines and text_px(lines[-1] + phrase, size, bold) <= room:
            lines[-1] += phrase
        else:
            lines.append(phrase)
    lines = [line.strip() for line in lines]
    if any(text_px(line, size, bold) > room for line in lines):
        return text
    return "\n".join(lines)


def line_height(size: float = 10) -> float:
    """Points one printed line takes: 13 at 10 pt (LibreOffice's fallback CJK font needs 12.4, 宋体 less)."""
    return size * 1.3


def rows_needed(lines: int, size: float = 10) -> float:
    """The row height, in points, that shows `lines` lines of text whole: 15 for one line at 10 pt, the
    height a sheet's rows have anyway."""
    return math.ceil(max(1, lines) * line_height(size) + 2)

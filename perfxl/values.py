"""Normalising what clerks type: numbers, money, dates, codes, and indicator targets.

Pure functions, no I/O: the validator and the merge both use them. A parse never guesses: a value it
cannot read comes back as a problem code, and the original text is always kept beside the parsed value.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple

from .domain import EXCEL_ERROR_VALUES, MONEY_UNITS

_SIGN_MAP = str.maketrans({"≧": "≥", "≦": "≤", "⩾": "≥", "⩽": "≤", "＝": "=", "＞": ">", "＜": "<", "﹥": ">",
                           "﹤": "<", "〉": ">", "〈": "<"})


def normalize_text(value: Any) -> str:
    """Full-width → half-width (NFKC), unified comparison signs, no stray whitespace at the ends."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = unicodedata.normalize("NFKC", str(value)).translate(_SIGN_MAP)
    text = text.replace(">=", "≥").replace("<=", "≤").replace("=>", "≥").replace("=<", "≤")
    return text.strip()


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


# ----------------------------------------------------------------------------------------------------
# Numbers and money
# ----------------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"^[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?$")

# A number a form may hold: no budget, count or rate comes near it, and a sum of values below it stays finite
# however many forms add up. Beyond it a number is not one: float("9" * 400) is infinite without an error, and
# two values near the largest float sum to infinity, which no sheet can show (xlsxwriter refuses it) and
# orjson would write as null.
NUMBER_LIMIT = 1e100


def usable_number(number: float) -> bool:
    """Whether `number` is one a form may hold: finite and within NUMBER_LIMIT (False for NaN)."""
    return -NUMBER_LIMIT < number < NUMBER_LIMIT


def to_number(value: Any, money_unit: str | None = None) -> tuple[float | None, str | None]:
    """(number, None), (None, None) for blank, or (None, code) when the text is not a number (type-number) or
    one past NUMBER_LIMIT (number-too-large).

    Money written with a unit ("1224.14万元", "12,241,400元") is converted to `money_unit`.
    A percentage ("95%") gives 95 when no money unit is asked for.
    """
    if value is None:
        return None, None
    if isinstance(value, bool):
        return None, "type-number"
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an integer past the largest float (a ledger's data, never a cell)
            return None, "number-too-large"
        if number != number:  # NaN: no number at all
            return None, "type-number"
        return (number, None) if usable_number(number) else (None, "number-too-large")
    text = _squash(normalize_text(value))
    if text == "":
        return None, None
    if text.startswith("(") and text.endswith(")"):  # accounting negative
        text = "-" + text[1:-1]
    factor = 1.0
    for unit in sorted(MONEY_UNITS, key=len, reverse=True):
        if text.endswith(unit):
            if money_unit is None:
                return None, "type-number"
            factor = MONEY_UNITS[unit] / MONEY_UNITS[money_unit]
            text = text[: -len(unit)]
            break
    else:
        if text.endswith("%") and money_unit is None:
            text = text[:-1]
    if not _NUMBER.match(text):
        return None, "type-number"
    number = round(float(text.replace(",", "")) * factor, 10)
    return (number, None) if usable_number(number) else (None, "number-too-large")


# ----------------------------------------------------------------------------------------------------
# Dates
# ----------------------------------------------------------------------------------------------------

_DATE_PATTERNS = [
    (re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[T ]\d{1,2}:\d{2}(?::\d{2})?)?$"), "day"),
    (re.compile(r"^(\d{4})年(\d{1,2})月(\d{1,2})[日号]?$"), "day"),
    (re.compile(r"^(\d{4})(\d{2})(\d{2})$"), "day"),
    (re.compile(r"^(\d{4})年(\d{1,2})月$"), "month"),
    (re.compile(r"^(\d{4})[-/.](\d{1,2})$"), "month"),
    (re.compile(r"^(\d{4})年?(?:度)?$"), "year"),
]


def serial_to_date(serial: float, date1904: bool = False) -> date | None:
    if not 0 < serial < 2_958_466:
        return None
    base = datetime(1904, 1, 1) if date1904 else datetime(1899, 12, 30)
    return (base + timedelta(days=int(serial))).date()


def to_date(value: Any, date1904: bool = False) -> tuple[date | None, str | None, str | None]:
    """(date, precision 'day'|'month'|'year', problem code)."""
    if value is None or value == "":
        return None, None, None
    if isinstance(value, datetime):
        return value.date(), "day", None
    if isinstance(value, date):
        return value, "day", None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if 1900 <= value <= 2200 and float(value).is_integer():
            return date(int(value), 1, 1), "year", None
        if 19000101 <= value <= 22001231 and float(value).is_integer():
            return to_date(str(int(value)))
        d = serial_to_date(float(value), date1904)
        return (d, "day", None) if d else (None, None, "type-date")
    text = _squash(normalize_text(value))
    for pattern, precision in _DATE_PATTERNS:
        m = pattern.match(text)
        if not m:
            continue
        parts = [int(g) for g in m.groups()] + [1, 1]
        try:
            return date(parts[0], parts[1], parts[2]), precision, None
        except ValueError:
            return None, None, "type-date"
    return None, None, "type-date"


_RANGE_SPLIT = re.compile(r"\s*(?:至|到|~|～|—|–|－|--)\s*")


def to_date_range(value: Any, date1904: bool = False) -> tuple[tuple[date, date] | None, str | None]:
    if value is None or value == "":
        return None, None
    text = normalize_text(value)
    parts = _RANGE_SPLIT.split(text)
    if len(parts) != 2:
        m = re.fullmatch(r"(\d{4}-\d{1,2}-\d{1,2})-(\d{4}-\d{1,2}-\d{1,2})", _squash(text))
        parts = list(m.groups()) if m else parts
    if len(parts) != 2:
        return None, "type-daterange"
    start, _, p1 = to_date(parts[0], date1904)
    end, _, p2 = to_date(parts[1], date1904)
    if p1 or p2 or start is None or end is None:
        return None, "type-daterange"
    return (start, end), None


# ----------------------------------------------------------------------------------------------------
# Codes, phones, text
# ----------------------------------------------------------------------------------------------------

def to_code(value: Any, digits: int | None = None) -> str:
    """A code as text; a number typed into the cell loses no digit, and known widths are zero-padded."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = _squash(normalize_text(value))
    if digits and text.isdigit() and len(text) < digits:
        text = text.zfill(digits)
    return text


PATTERNS = {
    "phone": re.compile(r"^(?:(?:\+?86)?1[3-9]\d{9}|(?:0\d{2,3}-?)?\d{7,8}(?:-\d{1,6})?|\d{5}|400-?\d{3}-?\d{4})$"),
    "subject_code": re.compile(r"^2\d{6}$"),
}
PATTERN_DIGITS = {"subject_code": 7}


def clean_text(value: Any) -> str:
    if value is None:
        return ""
    if type(value) is str and "\n" not in value and "\r" not in value:  # the common case, called per cell
        return value.strip()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.strip() for line in text.strip().split("\n"))


# ----------------------------------------------------------------------------------------------------
# Indicator targets
# ----------------------------------------------------------------------------------------------------

UNITS = sorted(["%", "‰", "元", "千元", "万元", "亿元", "次", "人次", "万人次", "天", "日", "小时", "分钟", "秒",
                "个工作日", "工作日", "个月", "月", "年", "周", "个", "套", "台", "人", "万人", "户", "万户", "家", "项",
                "分", "份", "件", "篇", "场", "期", "批", "条", "册", "本", "张", "辆", "平米", "平方米", "㎡", "m2",
                "公里", "km", "米", "吨", "万", "亿", "笔", "万笔", "处", "所", "座", "名", "位", "间", "级", "类",
                "GB", "TB", "Mbps", "M", "G", "倍", "点", "万次", "元/人", "元/次", "人/次"], key=len, reverse=True)
_UNIT_RE = "(?:" + "|".join(re.escape(u) for u in UNITS) + r")(?:/[\u4e00-\u9fffA-Za-z0-9]{1,3})*"
_NUM_RE = r"\d+(?:,\d{3})*(?:\.\d+)?"
_OPS = {"≥": "≥", "≤": "≤", "=": "=", ">": ">", "<": "<", "≠": "≠"}
_WORD_OPS = [("大于等于", "≥"), ("小于等于", "≤"), ("不低于", "≥"), ("不少于", "≥"), ("不小于", "≥"), ("至少", "≥"),
             ("达到", "≥"), ("大于", ">"), ("高于", ">"), ("超过", ">"), ("不超过", "≤"), ("不高于", "≤"),
             ("不大于", "≤"), ("不多于", "≤"), ("控制在", "≤"), ("低于", "<"), ("少于", "<"), ("小于", "<")]
_WORD_OPS.sort(key=lambda x: len(x[0]), reverse=True)
_OP_RE = "(?:" + "|".join(re.escape(w) for w, _ in _WORD_OPS) + r"|≥|≤|=|>|<|≠)"
_OP_WORDS = tuple(w for w, _ in _WORD_OPS) + ("完成", "为", "约", "共", "累计", "全年", "每年", "每月")
_TARGET_RE = re.compile(rf"(?P<op>{_OP_RE})?\s*(?P<num>{_NUM_RE})\s*(?P<unit>{_UNIT_RE})?\s*(?P<plus>\+)?"
                        r"\s*(?P<tail>以上|以内|以下|及以上|及以下)?")
_RANGE_RE = re.compile(rf"^(?P<lo>{_NUM_RE})\s*(?P<u1>{_UNIT_RE})?\s*(?:-|~|～|—|至|到)\s*(?P<hi>{_NUM_RE})\s*(?P<unit>{_UNIT_RE})?$")
_COST_RE = re.compile(rf"数量[:：]?\s*(?P<qty>{_NUM_RE})\s*[,，;；]\s*单位[:：]?\s*(?P<unit>[^,，;；]*?)\s*[,，;；]\s*"
                      rf"单价[:：]?\s*(?P<price>{_NUM_RE})\s*[,，;；]\s*金额[:：]?\s*(?P<amount>{_NUM_RE})")
_DEADLINE_RE = re.compile(r"(?P<y>\d{4})\s*[年\-/.]\s*(?P<m>\d{1,2})\s*[月\-/.]\s*(?P<d>\d{1,2})\s*[日号]?\s*"
                          r"(?:前|之前|以前|止|截止)")
_DEADLINE_MONTH_RE = re.compile(r"(?P<y>\d{4})\s*年\s*(?P<m>\d{1,2})\s*月(?:底|末)?\s*(?:前|之前|以前)")
_PLACEHOLDER_RE = re.compile(r"\*{2,}|[xX×]{2,}|＊{2,}|…|\?{2,}|？{2,}|待定|待填|填写|某某")
_BROKEN_RE = re.compile(r"[》《【】]")
_NOTE_RE = re.compile(r"[(（【\[][^)）】\]]*[)）】\]]\s*$")
_CN_NUM = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
_CN_COUNT_RE = re.compile(r"(?:每(?P<per>年|季度|季|月|周|日|天))?(?P<cn>[一二两三四五六七八九十])(?P<unit>次|份|个|场|期|批|篇|项)")

_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}
_CN_RUN = "[零〇一二两三四五六七八九十百千万亿点]+"
_CN_UNIT_AFTER = "(?:" + "|".join(re.escape(u) for u in sorted(
    ["人次", "万人次", "个工作日", "工作日", "个月", "小时", "分钟", "次", "天", "日", "月", "年", "周", "个", "套", "台",
     "人", "户", "家", "项", "份", "件", "篇", "场", "期", "批", "条", "册", "本", "张", "辆", "公里", "米", "吨", "笔",
     "处", "所", "座", "名", "位", "间", "元", "万元", "千元", "亿元", "平方米"], key=len, reverse=True)) + ")"
# 百分之九十五, 九成(五), or a Chinese number directly before a unit (两千人次, 三个工作日): turned into digits
# before the grammar runs, so clerks' colloquial values read like typed numbers.
_CN_PERCENT_RE = re.compile(rf"百分之({_CN_RUN})")
_CN_TENTHS_RE = re.compile(r"(?<![零〇一二两三四五六七八九十百千万亿\d])([一二三四五六七八九十])成([一二三四五六七八九])?"
                           r"(?!(?!以上|以下|及以上|左右)[\u4e00-\u9fff])")
_CN_BEFORE_UNIT_RE = re.compile(rf"([零〇一二两三四五六七八九十]{_CN_RUN[:-1]}*)(?={_CN_UNIT_AFTER}(?!性))")


def chinese_number(text: str) -> float | None:
    """一百二十 → 120, 两千 → 2000, 三点五 → 3.5, 1.2万 is not here (digits are handled by the grammar)."""
    if not text or not re.fullmatch(_CN_RUN, text):
        return None
    whole, _, fraction = text.partition("点")
    if fraction and not all(ch in _CN_DIGITS for ch in fraction):
        return None

    def below_ten_thousand(part: str) -> int | None:
        total, digit = 0, None
        for ch in part:
            if ch in "零〇" and len(part) > 1:  # a place holder (一百零一): it says a place is empty
                continue
            if ch in _CN_DIGITS:
                if digit is not None:  # two digits in a row (一二) is not a number
                    return None
                digit = _CN_DIGITS[ch]
            elif ch in _CN_UNITS:
                total += (1 if digit is None else digit) * _CN_UNITS[ch]
                digit = None
            else:
                return None
        return total + (digit or 0)

    value = 0
    rest = whole
    for big, factor in (("亿", 10**8), ("万", 10**4)):
        if big in rest:
            head, _, rest = rest.partition(big)
            part = below_ten_thousand(head) if head else 1
            if part is None:
                return None
            value += part * factor
    if rest:
        part = below_ten_thousand(rest)
        if part is None:
            return None
        value += part
    if not whole:
        return None
    if fraction:
        value += float("0." + "".join(str(_CN_DIGITS[ch]) for ch in fraction))
    return float(value)


def _arabic(compact: str) -> str:
    """Colloquial Chinese amounts as digits; text without them is returned unchanged."""
    if not re.search("[零〇一二两三四五六七八九十百千万亿]", compact):
        return compact

    def number(match, suffix=""):
        value = chinese_number(match.group(1))
        return match.group(0) if value is None else f"{value:g}{suffix}"

    def before_unit(match):
        # Only where a number can stand: at the start, after a sign or digitless punctuation, or after a
        # word such as 达到 / 不少于 — never inside a word (统一, 万一).
        before = compact[: match.start()]
        if before and re.search(r"[\u4e00-\u9fff\d.]$", before) and not before.endswith(_OP_WORDS):
            return match.group(0)
        return number(match)

    compact = _CN_PERCENT_RE.sub(lambda m: number(m, "%"), compact)
    compact = _CN_TENTHS_RE.sub(lambda m: f"{_CN_DIGITS.get(m.group(1), 10) * 10 + (_CN_DIGITS[m.group(2)] if m.group(2) else 0)}%",
                                compact)
    return _CN_BEFORE_UNIT_RE.sub(before_unit, compact)


QUALITATIVE_WORDS = sorted([
    "充分", "规范", "合理", "明确", "科学", "健全", "有效", "合规", "及时", "实时", "提高", "提升", "降低", "减少",
    "增强", "保持", "达标", "实现", "通过测试", "有所缓解", "不断提高", "不断增加", "达成年度指标", "部分达成", "未达成",
    "下降", "增加", "加强", "完善", "保障", "共享", "正常", "稳定", "安全", "按时", "准确", "完成", "投产", "平稳",
    "不发生", "无", "良好", "优良", "满意", "显著", "改善", "促进", "确保", "按期", "符合", "落实", "严格", "公开",
    "覆盖", "便捷", "高效", "优化", "可控", "暂不确定", "不适用"], key=len, reverse=True)


class Target(NamedTuple):
    """One indicator value as parsed. `text` is what the clerk wrote.

    A NamedTuple, not a dataclass: tens of thousands cross process boundaries in a merge, and a tuple
    pickles several times faster than a frozen dataclass."""

    text: str
    kind: str  # empty | quantitative | qualitative | range | deadline | cost | placeholder | unparseable
    op: str | None = None
    value: float | None = None
    high: float | None = None
    unit: str | None = None
    word: str | None = None
    deadline: str | None = None
    quantity: float | None = None
    price: float | None = None
    amount: float | None = None
    embedded: bool = False
    multiple: bool = False
    note: str | None = None

    @property
    def quantitative(self) -> bool:
        return self.kind in {"quantitative", "range", "cost", "deadline"}

    @property
    def direction(self) -> str | None:
        if self.op in {"≥", ">"}:
            return "more"
        if self.op in {"≤", "<"}:
            return "less"
        return None

    def as_dict(self) -> dict:
        return {k: v for k, v in self._asdict().items() if v is not None and v is not False}


def _num(text: str) -> float:
    return float(text.replace(",", ""))


def _word_in(text: str) -> str | None:
    for word in QUALITATIVE_WORDS:
        if word in text:
            return word
    return None


def _op_of(raw: str | None) -> str | None:
    if not raw:
        return None
    if raw in _OPS:
        return _OPS[raw]
    for word, op in _WORD_OPS:
        if raw == word:
            return op
    return None


def parse_target(value: Any, *, formula: str | None = None) -> Target:
    """Parse one indicator value. `formula` is the formula text when the cell held one (=100% → 100%)."""
    if formula and not (isinstance(value, str) and value.startswith("=")):
        value = "=" + formula
    if isinstance(value, str) and len(value) <= 400:
        return _parse_text_cached(value)  # the same targets recur across thousands of forms
    return _parse(value)


@lru_cache(maxsize=131072)
def _parse_text_cached(value: str) -> Target:
    return _parse(value)


def _parse(value: Any) -> Target:
    """`_grammar`'s reading, unless a number in it is not one a form may hold (`usable_number`): then the
    value is unparseable, as a number cell holding one is."""
    target = _grammar(value)
    for number in (target.value, target.high, target.quantity, target.price, target.amount):
        if number is not None and not usable_number(number):
            return Target(text=target.text, kind="unparseable")
    return target


def _grammar(value: Any) -> Target:
    """One indicator value as written → Target. Long because it is the grammar of targets in the order
    the cases must be tried (empty, placeholder, cost tuple, range, deadline, sign + number + unit,
    qualitative word); each case is a few lines and the order is the point."""
    if value is None:
        return Target(text="", kind="empty")
    if isinstance(value, bool):
        return Target(text=str(value), kind="unparseable")
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            return Target(text=str(value)[:40], kind="unparseable")
        original = f"{number:g}"
        if not usable_number(number):  # no target, and no actual, is NaN, infinite or beyond NUMBER_LIMIT
            return Target(text=original, kind="unparseable")
        if 0 < number < 1 and not number.is_integer():  # a cell formatted as percent stores 0.95 for 95%
            return Target(text=original, kind="quantitative", value=round(number * 100, 10), unit="%")
        return Target(text=original, kind="quantitative", value=number)
    original = str(value)
    text = normalize_text(original)
    if not text:
        return Target(text=original, kind="empty")
    if text.upper() in EXCEL_ERROR_VALUES:
        return Target(text=original, kind="unparseable")
    compact = _squash(text)
    note = None
    m = _NOTE_RE.search(compact)
    if m and m.start() > 0:
        note = compact[m.start():]
        compact = compact[: m.start()]
    if _PLACEHOLDER_RE.search(compact):
        sign = re.match(_OP_RE, compact)
        return Target(text=original, kind="placeholder", op=_op_of(sign.group(0)) if sign else None)
    if _BROKEN_RE.search(compact):
        return Target(text=original, kind="unparseable")
    compact = _arabic(compact)

    m = _COST_RE.search(compact)
    if m:
        return Target(text=original, kind="cost", quantity=_num(m["qty"]), unit=m["unit"] or None,
                      price=_num(m["price"]), amount=_num(m["amount"]), value=_num(m["amount"]), op="=")
    m = _DEADLINE_RE.search(compact) or _DEADLINE_MONTH_RE.search(compact)
    if m:
        try:
            d = date(int(m["y"]), int(m["m"]), int(m.groupdict().get("d") or 1))
            return Target(text=original, kind="deadline", op="≤", deadline=d.isoformat(), note=note)
        except ValueError:
            return Target(text=original, kind="unparseable")
    m = _RANGE_RE.match(compact)
    if m:
        return Target(text=original, kind="range", op="between", value=_num(m["lo"]), high=_num(m["hi"]),
                      unit=m["unit"] or m["u1"], note=note)

    matches = list(_TARGET_RE.finditer(compact))
    qualified = []
    for mm in matches:
        has_sign = bool(mm["op"]) or bool(mm["tail"])
        known_unit = bool(mm["unit"])
        at_start = mm.start() == 0 or (mm.start() <= 3 and not re.search(r"[\u4e00-\u9fff]", compact[: mm.start()]))
        whole = at_start and mm.end() == len(compact)
        if whole or has_sign or known_unit and (at_start or mm["unit"] in {"%", "‰"} or mm["unit"] in MONEY_UNITS
                                                or mm.end() == len(compact)):
            qualified.append(mm)
    if qualified:
        mm = qualified[0]
        op = _op_of(mm["op"])
        if mm["tail"] in {"以上", "及以上"}:
            op = op or "≥"
        elif mm["tail"] in {"以内", "以下", "及以下"}:
            op = op or "≤"
        embedded = not (mm.start() == 0 and mm.end() == len(compact))
        return Target(text=original, kind="quantitative", op=op, value=_num(mm["num"]), unit=mm["unit"],
                      embedded=embedded, multiple=len(qualified) > 1, note=note)
    sign = re.match(rf"^({_OP_RE})(.+)$", compact)
    if sign and re.search(r"[\u4e00-\u9fff]", sign.group(2)) and not re.search(r"\d", sign.group(2)):
        return Target(text=original, kind="qualitative", op=_op_of(sign.group(1)), word=sign.group(2), note=note)
    m = _CN_COUNT_RE.search(compact)
    if m:
        return Target(text=original, kind="quantitative", op=None, value=float(_CN_NUM[m["cn"]]), unit=m["unit"],
                      embedded=len(m.group(0)) != len(compact), note=note)
    if re.search(r"[\u4e00-\u9fff]", compact) and not re.fullmatch(rf"{_OP_RE}", compact):
        return Target(text=original, kind="qualitative", word=_word_in(compact), note=note)
    return Target(text=original, kind="unparseable")


def compose_target(sign: Any, value: Any, unit: Any) -> Any:
    """The budget system's three fields (指标性质, 指标值, 度量单位) joined into one target text."""
    sign_text = normalize_text(sign)
    if sign_text in {"定性", ""} and (unit in (None, "")):
        return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{'' if sign_text == '定性' else sign_text}{'' if value is None else value}{normalize_text(unit)}"

import pytest
from hypothesis import given
from hypothesis import strategies as st

from perfxl.values import normalize_text, parse_target, to_code, to_date, to_date_range, to_number


@pytest.mark.parametrize("raw", ["1,224.14", "１２２４.１４", "1224.14万元", " 1224.14\n", 1224.14, "12,241,400元"])
def test_the_same_money_however_written(raw):
    assert to_number(raw, "万元") == (1224.14, None)


@pytest.mark.parametrize("raw", ["abc", "12..3", "1,22,4", "一千", True])
def test_not_a_number(raw):
    assert to_number(raw, "万元") == (None, "type-number")


@pytest.mark.parametrize("raw", ["95%", 0.95, ">=95%", "≧95％", "≥95%", "＞＝95%", "不低于95%", "95%以上"])
def test_the_same_target_however_written(raw):
    t = parse_target(raw)
    assert (t.value, t.unit) == (95.0, "%")
    if isinstance(raw, str) and raw not in {"95%"}:
        assert t.op == "≥"


@pytest.mark.parametrize("raw,expected", [
    ("≦ 5%", ("quantitative", "≤", 5.0, "%")),
    ("＝207项", ("quantitative", "=", 207.0, "项")),
    ("≤12小时", ("quantitative", "≤", 12.0, "小时")),
    ("不超过3秒", ("quantitative", "≤", 3.0, "秒")),
    ("6-8份", ("range", "between", 6.0, "份")),
    ("≤30.00元/月/平米", ("quantitative", "≤", 30.0, "元/月/平米")),
    ("3.26亿元", ("quantitative", None, 3.26, "亿元")),
    ("每日平均立案量≥5000件", ("quantitative", "≥", 5000.0, "件")),
    ("缴存单位和职工满意度≥95%", ("quantitative", "≥", 95.0, "%")),
    ("充分", ("qualitative", None, None, None)),
    ("≥**人次", ("placeholder", "≥", None, None)),
    ("XX", ("placeholder", None, None, None)),
    ("》 万元", ("unparseable", None, None, None)),
    ("#REF!", ("unparseable", None, None, None)),
    ("=100%", ("quantitative", "=", 100.0, "%")),
])
def test_target_forms(raw, expected):
    t = parse_target(raw)
    assert (t.kind, t.op, t.value, t.unit) == expected
    assert t.text == raw


def test_formula_cell_is_read_as_the_target_typed():
    assert parse_target(1.0, formula="100%").as_dict() == parse_target("=100%").as_dict() | {"text": "=100%"}


def test_cost_tuple_and_deadline():
    t = parse_target("数量：1.00,单位：套,单价：300000.00,金额：300000.00")
    assert (t.kind, t.quantity, t.unit, t.price, t.amount) == ("cost", 1.0, "套", 300000.0, 300000.0)
    d = parse_target("2021年12月31日前完成")
    assert (d.kind, d.deadline, d.op) == ("deadline", "2021-12-31", "≤")


@pytest.mark.parametrize("raw", [44197, "2021-01-01", "2021/1/1", "2021年1月1日", "20210101", "２０２１－０１－０１"])
def test_dates(raw):
    assert str(to_date(raw)[0]) == "2021-01-01"


def test_date_1904_and_ranges():
    assert str(to_date(42735, date1904=True)[0]) == "2021-01-01"
    span, problem = to_date_range("2021-01-01至2021-12-31")
    assert problem is None and [str(d) for d in span] == ["2021-01-01", "2021-12-31"]
    assert to_date_range("明年")[1] == "type-daterange"


def test_codes_keep_their_digits():
    assert to_code(2210302.0, 7) == "2210302"
    assert to_code("０１２３", None) == "0123"
    assert to_code(123.0, 6) == "000123"


# --- properties -------------------------------------------------------------------------------------

@given(st.text(max_size=200))
def test_any_text_parses_to_a_kind_and_keeps_the_original(text):
    t = parse_target(text)
    assert t.kind in {"empty", "quantitative", "qualitative", "range", "deadline", "cost", "placeholder", "unparseable"}
    assert t.text == text
    if t.kind == "quantitative":
        assert t.value is not None


@given(st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False), st.sampled_from(["≥", ">=", "≧", "＞＝", "不低于"]))
def test_written_numbers_round_trip(number, sign):
    text = f"{sign}{number:,}%"
    t = parse_target(text)
    assert t.op == "≥" and t.value == pytest.approx(float(number)) and t.unit == "%"


@given(st.decimals(min_value=-10**12, max_value=10**12, places=2, allow_nan=False))
def test_thousands_and_full_width_are_the_same_number(number):
    plain = f"{number}"
    grouped = f"{number:,}"
    wide = plain.translate(str.maketrans("0123456789.-", "０１２３４５６７８９．－"))
    assert to_number(plain, "元")[0] == to_number(grouped, "元")[0] == to_number(wide, "元")[0] == pytest.approx(float(number))


@given(st.text(max_size=100))
def test_normalize_is_idempotent(text):
    assert normalize_text(normalize_text(text)) == normalize_text(text)


@pytest.mark.parametrize("text, op, value, unit", [
    ("百分之九十五", None, 95.0, "%"),
    ("百分之九十五点五", None, 95.5, "%"),
    ("九成", None, 90.0, "%"),
    ("九成五", None, 95.0, "%"),
    ("九成以上", "≥", 90.0, "%"),
    ("达到九成以上", "≥", 90.0, "%"),
    ("两千人次", None, 2000.0, "人次"),
    ("1.2万人", None, 1.2, "万人"),
    ("三个工作日", None, 3.0, "个工作日"),
    ("达到一百人", "≥", 100.0, "人"),
    ("不少于二十人", "≥", 20.0, "人"),
    ("二十万元", None, 200000.0, "元"),
    ("≥一万二千三百户", "≥", 12300.0, "户"),
])
def test_colloquial_chinese_amounts_read_as_numbers(text, op, value, unit):
    t = parse_target(text)
    assert (t.kind, t.op, t.value, t.unit) == ("quantitative", op, value, unit)


@pytest.mark.parametrize("text", ["统一规范", "万一发生", "一般", "千方百计推进", "一心为民"])
def test_chinese_numerals_inside_words_stay_words(text):
    assert parse_target(text).kind == "qualitative"


@given(st.integers(min_value=0, max_value=99_999_999))
def test_chinese_numbers_round_trip(n):
    from perfxl.values import chinese_number

    digits = "零一二三四五六七八九"

    def spoken(x: int) -> str:  # the way a clerk writes it, e.g. 一万二千三百零五
        if x == 0:
            return "零"
        out, zero = "", False
        for value, name in ((10**7, "千"), (10**6, "百"), (10**5, "十"), (10**4, "万"), (1000, "千"), (100, "百"),
                            (10, "十"), (1, "")):
            d, x = divmod(x, value)
            if d:
                out += ("零" if zero and out else "") + digits[d] + name
                zero = False
            else:
                zero = bool(out)
            if value == 10**4 and out and not out.endswith("万"):
                out += "万"
                zero = False
        return out

    assert chinese_number(spoken(n)) == n


@pytest.mark.parametrize("text", ["9" * 400, "9" * 400 + "元", "1" + "0" * 308, "-" + "9" * 101, "1" + "0" * 100 + "万元"])
def test_a_number_past_any_budget_is_no_number(text):
    """float("9" * 400) is infinite without an error: such a text was a budget no sheet could show."""
    assert to_number(text, "元") == (None, "number-too-large")


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -1e300, 1e101, 10 ** 400])
def test_a_number_cell_past_any_budget_is_no_number(value):
    assert to_number(value, "元") == (None, "type-number" if value != value else "number-too-large")
    assert parse_target(value).kind == "unparseable"


@pytest.mark.parametrize("text", ["≥" + "9" * 400 + "%", "＝" + "9" * 400, "1-" + "9" * 200, "≤" + "9" * 120 + "万元"])
def test_a_target_with_a_number_past_any_budget_is_unreadable(text):
    assert parse_target(text).kind == "unparseable"


def test_numbers_below_the_limit_are_numbers():
    assert to_number("9" * 99, "元") == (float("9" * 99), None)
    assert parse_target("≥" + "9" * 30 + "人次").value == float("9" * 30)

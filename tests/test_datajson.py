"""perfxl.datajson: what a merge spools and keeps for each form, made by orjson where it agrees with the
json module and by the json module where it would not, read by the json module: the very values come back,
and what an older perfxl (the json module) kept reads as it did."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfxl import datajson
from perfxl.records import checked_bytes, checked_from_bytes, rejected

# Texts as forms and paths hold them, lone surrogates included (a GBK file name left by unzip).
TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=30)
# Integers of every size: orjson refuses to write past 64 bits, and reads them back as floats.
INTEGER = st.one_of(st.integers(-1000, 1000), st.integers(-(2 ** 70), 2 ** 70), st.integers(-(2 ** 200), 2 ** 200))
FINITE = st.floats(allow_nan=False, allow_infinity=False)
DATA = st.recursive(st.one_of(st.none(), st.booleans(), INTEGER, FINITE, TEXT),
                    lambda inner: st.one_of(st.lists(inner, max_size=5),
                                            st.dictionaries(TEXT, inner, max_size=5)), max_leaves=30)


def _json_bytes(value) -> bytes:
    """What perfxl wrote before datajson, and still writes where orjson is not installed."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


def _same(a, b) -> bool:
    """Equal values of equal types all the way down (1 and 1.0 differ; -0.0 and 0.0 differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return a == b


@settings(max_examples=400, deadline=None)
@given(value=DATA)
def test_data_comes_back_as_it_went_whatever_it_holds(value):
    assert _same(datajson.loads(datajson.dumps(value)), value)


@settings(max_examples=400, deadline=None)
@given(value=DATA)
def test_what_the_json_module_wrote_reads_as_the_json_module_reads_it(value):
    """An older perfxl's ledger and spool, and a county's ledger from a perfxl without orjson."""
    old = _json_bytes(value)
    assert _same(datajson.loads(old), json.loads(old.decode("utf-8", "surrogatepass")))


@settings(max_examples=200, deadline=None)
@given(value=DATA)
def test_without_orjson_the_bytes_are_the_json_modules(value):
    # patched here, not by a module-scoped fixture, which would have left orjson away for the tests after it
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(datajson, "orjson", None)
        assert datajson.dumps(value) == _json_bytes(value)
        assert _same(datajson.loads(_json_bytes(value)), value)


def test_orjson_is_what_writes_where_it_is_installed():
    """The tests above compare orjson's bytes with the json module's only while orjson writes them."""
    orjson = pytest.importorskip("orjson")
    value = {"项目": [1e16, 0.1, -3, None, True, "测试\n"]}
    assert datajson.orjson is orjson and datajson.dumps(value) == orjson.dumps(value)


@pytest.mark.parametrize("integer", [2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1, 2 ** 64, 10 ** 30, -(2 ** 63) - 1])
def test_an_integer_past_64_bits_is_not_read_back_as_a_float(integer):
    """orjson.dumps refuses 2**64, and orjson.loads gives 1e+30 for 10**30: a code or an amount must not
    come back changed, whichever writes and reads it."""
    for data in (datajson.dumps([integer]), _json_bytes({"v": integer})):
        got = datajson.loads(data)
        value = got[0] if isinstance(got, list) else got["v"]
        assert type(value) is int and value == integer


def test_non_finite_numbers_an_old_ledger_holds_read_as_the_json_module_reads_them():
    got = datajson.loads(b'[NaN,Infinity,-Infinity,1e400]')
    assert math.isnan(got[0]) and got[1:] == [math.inf, -math.inf, math.inf]


def test_keys_that_are_not_text_are_written_as_the_json_module_writes_them():
    assert datajson.dumps({1: "a", None: "b"}) == _json_bytes({1: "a", None: "b"})


@pytest.mark.parametrize("data", [b"", b"[1,", b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000, b"\xef\xbb\xbf[1]"])
def test_bytes_that_are_not_data_raise_what_the_callers_catch(data):
    with pytest.raises((ValueError, RecursionError)):
        datajson.loads(data)


def test_a_checked_form_with_a_path_that_is_not_utf8_round_trips():
    path = "inbox/\udcb2\udce2\udcca\udcd4.xlsx"  # 测试 in GBK, decoded with surrogateescape
    checked = rejected(path, "file-unreadable", detail="无法读取")
    assert checked_from_bytes(checked_bytes(checked)).path == path

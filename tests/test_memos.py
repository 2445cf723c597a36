"""What a process remembers to read and check faster stays bounded, whatever a hostile workbook holds: the
portal and the merge's workers live long, and read many units' files one after another."""

from __future__ import annotations

from perfxl.reader import cells
from perfxl.reader.xml import raw_text
from perfxl.rules import indicators
from perfxl.spec import load_spec


def test_one_workbook_of_many_shared_strings_does_not_fill_the_memo_past_its_bound():
    """The memo's size was checked once a workbook: a shared-strings part of a million short texts left a
    million of them in memory (138 MB) until the next workbook was read."""
    cells._TEXTS_SEEN.clear()
    texts = [f"文本{i:06d}" for i in range(cells.TEXTS_KEPT * 2 + 500)]
    body = "".join(f"<si><t>{t}</t></si>" for t in texts).encode()
    xml = b'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">' \
          + body + b"</sst>"
    assert cells.shared_strings(xml, "xl/sharedStrings.xml") == texts
    assert len(cells._TEXTS_SEEN) <= cells.TEXTS_KEPT
    # read again: the same texts, whether remembered or not
    assert cells.shared_strings(xml, "xl/sharedStrings.xml") == texts
    assert len(cells._TEXTS_SEEN) <= cells.TEXTS_KEPT


def test_a_remembered_text_is_what_decoding_it_gives():
    cells._TEXTS_SEEN.clear()
    raw = ["a &amp; b", "x\r\ny", "_x0041_", "  空格  ", "&#13;", "甲乙"]
    xml = ('<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
           + "".join(f"<si><t>{t}</t></si>" for t in raw) + "</sst>").encode()
    expected = [raw_text(t.encode()) for t in raw]
    assert cells.shared_strings(xml, "p") == expected
    assert cells.shared_strings(xml, "p") == expected  # from the memo


def test_long_indicator_texts_are_not_kept_by_the_rule_s_memos():
    """The kind of an indicator, and whether it should fall, were remembered by their texts: a hostile form's
    rows of 30,000-character levels stayed in memory, up to 65,536 of them."""
    spec = load_spec("national/project", 2022)
    indicators._indicator_kind.cache_clear()
    indicators._less_is_better.cache_clear()
    long = "故障" + "长" * 30_000
    assert indicators.indicator_kind(spec, "产出指标", "数量指标", long) == \
        indicators.indicator_kind(spec, "产出指标", "数量指标", "故障")
    assert indicators.usual_direction(None, long) == "less"
    assert indicators._indicator_kind.cache_info().currsize == 1  # the short one only
    assert indicators._less_is_better.cache_info().currsize == 0


def test_a_row_s_identity_remembered_is_what_folding_its_levels_gives():
    """Follow-up rules fold each row's three levels twice a form (shown and issued); each short text is now
    folded once in a process. What is remembered must be what folding gives, whichever values came before
    (a level typed as a number is not a text: 1 and 1.0 read "1" and "1.0"), and the memo stays bounded."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from perfxl import identity
    from perfxl.values import normalize_text

    def folded(*levels):
        return tuple(normalize_text("" if v is None else str(v)).replace(" ", "") for v in levels)

    level = st.one_of(st.none(), st.text(max_size=120), st.sampled_from(["产出指标", "数量指标", "１ ２", " 1"]),
                      st.integers(-3, 3), st.floats(allow_nan=False), st.booleans())

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.tuples(level, level, level), min_size=1, max_size=20))
    def check(rows):
        for row in rows + rows:  # the second time from the memo
            assert identity.row_key(*row) == folded(*row)

    check()
    assert identity.row_key(1, "a", "b") == ("1", "a", "b") and identity.row_key(1.0, "a", "b") == ("1.0", "a", "b")
    assert identity.row_key(-0.0, "a", "b") == ("-0.0", "a", "b") and identity.row_key(0.0, "a", "b") == ("0.0", "a", "b")
    identity._KEYS_SEEN.clear()
    for i in range(identity.KEYS_KEPT * 2 + 7):
        identity.row_key("产出指标", "数量指标", f"指标{i}")
    assert len(identity._KEYS_SEEN) <= identity.KEYS_KEPT

"""How OOXML holds a text: the characters XML cannot hold (and CR, which XML would turn into LF) as _xHHHH_, and a
literal _xHHHH_ kept literal. Every writer of perfxl's escapes with `control_escaped`; the reader undoes it with
perfxl.reader.xml.unescape_control."""

from __future__ import annotations

import re

ENCODED = "\x00-\x08\x0b-\x1f\ufffe\uffff"  # the characters written as _xHHHH_ (a character class's body)
_CONTROL = re.compile(f"[{ENCODED}]")
# The underscore of a literal _xHHHH_ in a text: ended by an underscore of its own, or by the escape of the
# character after it, which starts with one; two literals may share an underscore (_x005F_x0041_)
_LITERAL = re.compile(f"_(?=x[0-9a-fA-F]{{4}}[_{ENCODED}])")


def control_escaped(text: str) -> str:
    """A text with the characters OOXML holds as _xHHHH_ so written, and every literal _xHHHH_ kept literal
    (its underscore written _x005F_), as a spreadsheet reads it back. xlsxwriter's own escape finds the
    literals one after another and misses the second of two that share an underscore, or one ended by a
    control character: _x005F_x0041_ came back from a form as _x005FA."""
    if "_x" in text:
        text = _LITERAL.sub("_x005F_", text)
    return _CONTROL.sub(_control_escape, text)


def _control_escape(match: re.Match) -> str:
    return f"_x{ord(match.group()):04X}_"

"""Data as compact JSON bytes: what a merge's workers send back, spool and keep in the ledger for each form
(its checked form, its form data, what it adds to the sheets). Never a pickle: whatever such bytes hold,
reading them back builds lists, dicts, strings and numbers, it cannot run code.

The bytes are those of `json.dumps(value, ensure_ascii=False, separators=(",", ":"))` encoded as UTF-8
with lone surrogates passed through (a path that is not UTF-8, as unzip leaves a GBK name), and they are
read back as `json.loads` reads them. orjson, a compiled wheel published for Windows, macOS and Linux,
makes and reads them 5–8× faster where it gives the same values. It refuses lone surrogates, integers
beyond 64 bits, keys that are not strings and NaN (which only an old ledger may hold), and those fall back
to the json module; and it would read an integer beyond 64 bits as a float, so bytes with a run of 19
digits or more (rare: a long code, a sha256 in hex now and then) are read by the json module too. What orjson writes differs from json's only in how some floats are spelled (1e16
for 1e+16), which reads back as the same number.

A number that is not finite is the one value the two would not agree on (orjson writes null): perfxl keeps
those out of its data where they could arise (reader.cells keeps such a cell's text, values refuses it,
scoring caps every ratio), as no sheet could show one either."""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # a platform without its wheel: the json module alone, as before
    orjson = None

_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_DIGITS_ONLY = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))  # every digit 0, all else blank
_MAYBE_BIG_INTEGER = b"0" * 19  # 2**63 has 19 digits: a shorter run is an integer orjson reads exactly


def dumps(value: Any) -> bytes:
    """`value` as compact JSON bytes (see the module's docstring)."""
    if orjson is not None:
        try:
            return orjson.dumps(value)
        except (TypeError, orjson.JSONEncodeError):  # surrogates, big integers, keys of other types
            pass
    return _ENCODE(value).encode("utf-8", "surrogatepass")


def loads(data: bytes | bytearray | memoryview) -> Any:
    """What `dumps` made (or json.dumps with these settings), back as data. Raises ValueError (JSON that
    does not parse, or bytes that are not UTF-8 even with surrogates passed through)."""
    if orjson is not None and _MAYBE_BIG_INTEGER not in bytes(data).translate(_DIGITS_ONLY):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:  # surrogates, NaN, deep nesting: the json module decides
            pass
    return json.loads(bytes(data).decode("utf-8", "surrogatepass"))

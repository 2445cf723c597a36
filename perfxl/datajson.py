"""Data as compact JSON bytes: what a merge's workers send back, spool and keep in the ledger for each form
(its checked form, its form data, what it adds to the sheets). Never a pickle: whatever such bytes hold,
reading them back builds lists, dicts, strings and numbers, it cannot run code.

The bytes are those of `json.dumps(value, ensure_ascii=False, separators=(",", ":"))` encoded as UTF-8
with lone surrogates passed through (a path that is not UTF-8, as unzip leaves a GBK name), and they are
read back by the json module. orjson, a compiled wheel published for Windows, macOS and Linux, makes them
5-6x faster (form data and checked forms of 300 bench forms, three passes, 2026-12-07 13:52): it refuses
lone surrogates, integers beyond 64 bits and keys that are not strings, and those fall back to the json
module; what it writes may differ from json's only in how a float is spelled (some
versions write 1e16 for 1e+16), which reads back as the same number.

Reading stays with the json module. orjson read the same checked forms 0.9-1.9x as fast (three passes),
but an integer beyond 64 bits as a float, and NaN not at all; and where a process read 10,000 forms' data
with it and then forked workers (follow-up forms prefilled from a ledger), the workers took 8-12% more CPU (farm-bench, --jobs 2; with one
job it was 1.6% faster): more than the 1% it saved a fresh merge.

A number that is not finite is the one value the two would not agree on (orjson writes null): perfxl keeps
those out of its data where they could arise, as no sheet could show one either (reader.cells keeps such a
cell's text; values refuses any number past NUMBER_LIMIT, typed as text too, so no sum of them overflows;
scoring caps every ratio)."""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # a platform without its wheel: the json module alone, as before
    orjson = None

_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


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
    does not parse, or bytes that are not UTF-8 even with surrogates passed through) or RecursionError."""
    return json.loads(bytes(data).decode("utf-8", "surrogatepass"))

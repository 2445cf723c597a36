"""How a follow-up form's indicator rows are known: by what they are, not where they stand.

A unit can insert, clear or reorder rows of its table; a row issued as 产出指标/数量指标/培训人次 is that row
wherever it is. The rules of the follow-up rounds pair the rows shown with the rows issued
(perfxl.issued) this way.
"""

from __future__ import annotations

from typing import Any

from .values import normalize_text


def row_key(level1: Any, level2: Any, level3: Any) -> tuple[str, str, str]:
    """An indicator row's identity on a follow-up form: its three levels as text, spaces and full-width
    forms folded (the form shows them locked, exactly as issued). Every unit's rows carry the same few
    hundred levels, twice a form (shown and issued): each short one is folded once in a process."""
    levels = (level1, level2, level3)
    key = _KEYS_SEEN.get(levels)  # only texts are kept, and no number equals a text: a hit is this very row's
    if key is None:
        key = tuple(normalize_text("" if v is None else str(v)).replace(" ", "") for v in levels)
        if len(_KEYS_SEEN) >= KEYS_KEPT:  # a hostile form's many levels: start again
            _KEYS_SEEN.clear()
        if all(v is None or (type(v) is str and len(v) <= KEY_CHARS) for v in levels):
            _KEYS_SEEN[levels] = key
    return key


_KEYS_SEEN: dict[tuple, tuple[str, str, str]] = {}
KEYS_KEPT, KEY_CHARS = 5_000, 100  # at most ~12 MB, whatever a form holds


def match_rows(shown: list, issued: tuple[dict, ...], key_of) -> list[tuple[Any, dict | None]]:
    """Each row shown on the form paired with the issued row of the same identity (levels, and order among
    rows of the same levels), or None; then each issued row nobody showed, paired with None. Order: the
    form's, then the missing ones in issued order."""
    waiting: dict[tuple, list[dict]] = {}
    for row in issued:
        waiting.setdefault(row_key(row["level1"], row["level2"], row["level3"]), []).append(row)
    pairs: list[tuple[Any, dict | None]] = []
    for row in shown:
        queue = waiting.get(key_of(row))
        pairs.append((row, queue.pop(0) if queue else None))
    used = {id(r) for _, r in pairs if r is not None}
    pairs += [(None, row) for row in issued if id(row) not in used]
    return pairs

"""Which form a workbook is: the stamp (hidden sheet, then custom document properties), and when both
are lost, the title and labels compared with every template."""

from __future__ import annotations

import re
from pathlib import Path

from perfxl.contract import STAMP_SHEET, stamp_from_cells, stamp_from_properties
from perfxl.reader.rawbook import RawBook
from perfxl.spec import Spec, list_templates, load_spec


def stamp(book: RawBook) -> tuple[dict[str, str], str | None]:
    stamp = stamp_from_cells(book.cells.get(STAMP_SHEET) or {})
    if stamp:
        return stamp, "sheet"
    stamp = stamp_from_properties(book.properties)
    if stamp.get("template"):
        return stamp, "properties"
    return {}, None


def by_labels(book: RawBook, templates_dir: Path | None) -> dict[str, str]:
    """The stamp is gone: find a template whose title stands near the top of a sheet."""
    titles: dict[str, list[str]] = {}
    for name in list_templates(templates_dir):
        spec = load_spec(name, templates_dir=templates_dir)
        titles.setdefault(spec.title, []).append(name)
    for sheet in book.sheet_names:
        cells = book.cells.get(sheet, {})
        top = [str(v) for (r, _), (v, _) in cells.items() if r < 8 and isinstance(v, str)]
        for text in top:
            candidates = titles.get(text.strip())
            if not candidates:
                continue
            labels = {str(v).strip() for (v, _) in cells.values() if isinstance(v, str)}
            best = max(candidates, key=lambda n: _label_overlap(load_spec(n, templates_dir=templates_dir), labels))
            year = None
            for t in top:
                m = re.search(r"(20\d\d)\s*年", t)
                if m:
                    year = m.group(1)
                    break
            return {"template": best, "year": year or ""}
    return {}


def _label_overlap(spec: Spec, labels: set[str]) -> int:
    wanted = {f.label for f in spec.fields.values()} | {c.label for t in spec.tables.values() for c in t.columns}
    return len(wanted & labels)


def as_int(text: str | None) -> int | None:
    try:
        return int(float(text)) if text not in (None, "") else None
    except ValueError:
        return None

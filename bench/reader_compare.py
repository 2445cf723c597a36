"""Choose the workbook reader on evidence: perfxl's own OOXML reader against python-calamine.

    pip install python-calamine
    python bench/reader_compare.py [--files 600] [--work bench/work/readers] [--design own|calamine|both]

Both designs must give perfxl what it needs from a returned form: every cell's value, the formula text of
formula cells (a typed "=100%" is a target; script-filled files have no cached values), the defined names
with their sheet scope, and the stamp sheet. So the calamine design is calamine for the values plus a
targeted pass for formulas and names:
  own       perfxl.read.load_raw: one inflate and one pass per sheet for values and formulas;
  calamine  python-calamine for values (from bytes), plus the workbook part for names and a regex pass over
            each sheet's XML for <f> elements (calamine has neither a formula nor a names API).
It builds (once) a campaign of filled forms, the same as bench/run.py's, checks that both designs see the
same cells, and prints CPU milliseconds per form (median of 5 timed passes over all files, in-process).
"""

from __future__ import annotations

import argparse
import io
import re
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

_F_RE = re.compile(rb'<c r="([A-Z]+)(\d+)"[^>]*>(?:<f>([^<]*)</f>|<f [^>]*>([^<]*)</f>)')


def own(data: bytes):
    from perfxl.read import load_raw

    book, _, _ = load_raw(Path("form.xlsx"), data)
    return book.cells, book.names


def calamine(data: bytes):
    from python_calamine import CalamineWorkbook

    from perfxl.reader import cells as ooxml_cells
    from perfxl.reader import xml as ooxml
    from perfxl.reader.parts import relationships, workbook_part
    from perfxl.reader.zipguard import Package

    wb = CalamineWorkbook.from_filelike(io.BytesIO(data))
    cells = {}
    for name in wb.sheet_names:
        rows = wb.get_sheet_by_name(name).to_python(skip_empty_area=False)
        cells[name] = {(r, c): (v, None) for r, row in enumerate(rows) for c, v in enumerate(row) if v != ""}
    pkg = Package(data)
    part = workbook_part(pkg)
    workbook = ooxml.parse_tree(pkg.read(part), part)
    names = [(d.get("name"), int(d.get("localSheetId")) if d.get("localSheetId") else None, d.text)
             for d in ooxml.children(workbook, "definedName")]
    targets = {rid: t for rid, _, t in relationships(pkg, part)}
    for sheet in ooxml.children(workbook, "sheet"):
        xml = pkg.read(targets[ooxml.attr(sheet, "id", ooxml.REL_NS)])
        sheet_cells = cells[sheet.get("name")]
        for letters, row, f1, f2 in _F_RE.findall(xml):
            key = (int(row) - 1, ooxml_cells.column_index(letters.decode()))
            value = sheet_cells.get(key, (None, None))[0]
            sheet_cells[key] = (value, ooxml.raw_text(f1 or f2))
    return cells, names


DESIGNS = {"own": own, "calamine": calamine}


def _same(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    return a == b or (a is not None and b is not None and abs(float(a) - float(b)) < 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=600)
    parser.add_argument("--work", type=Path, default=HERE / "work" / "readers")
    parser.add_argument("--design", choices=["own", "calamine", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from run import build_campaign

    inbox = args.work / "inbox"
    if not inbox.exists() or len(list(inbox.rglob("*.xlsx"))) < args.files:
        build_campaign(args.files, args.work)
    files = sorted(inbox.rglob("*.xlsx"))[: args.files]
    payloads = [p.read_bytes() for p in files]
    designs = list(DESIGNS) if args.design == "both" else [args.design]
    if len(designs) == 2:  # the same cells, or the comparison means nothing
        for data in payloads[:50]:
            (a, _), (b, _) = own(data), calamine(data)
            for sheet, cells in a.items():
                for key, (value, formula) in cells.items():
                    other = b[sheet].get(key, (None, None))
                    assert _same(value, other[0]) or value in (None, ""), (sheet, key, value, other)
                    assert formula == other[1], (sheet, key, formula, other)
    for name in designs:
        fn = DESIGNS[name]
        for data in payloads[:50]:
            fn(data)  # warm-up: imports, caches
        runs = []
        for _ in range(args.repeat):
            started = time.process_time()
            for data in payloads:
                fn(data)
            runs.append((time.process_time() - started) * 1000 / len(payloads))
        print(f"{name:<9} {statistics.median(runs):.3f} ms CPU per form (median of {args.repeat} passes over "
              f"{len(payloads)} forms; min {min(runs):.3f}, max {max(runs):.3f})", flush=True)


if __name__ == "__main__":
    main()

"""Reader conformance on anyone's workbooks: perfxl's cells against openpyxl's, file by file.

    python bench/corpus.py FOLDER [--json report.json] [--timeout 30]

For every file under FOLDER it runs what `perfxl inspect --cells --json` runs, in a child process with a
time limit (so a hang or a crash is counted, not suffered), and for the .xlsx/.xlsm files openpyxl also
opens it compares every non-empty cell: value (dates as serials, numbers within 1e-9) and formula text.
It prints the counts — files, read, refused by reason, hangs, crashes, internal errors, cells compared,
disagreements — and the first disagreements, so a change of reader can be judged on evidence.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, TimeoutError
from concurrent.futures.process import BrokenProcessPool
from datetime import date, datetime, time, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _inspect(path: str) -> dict:
    from perfxl.read import inspect_workbook

    try:
        return inspect_workbook(Path(path), with_cells=True)
    except Exception as exc:  # what the probe is looking for: a reader that raises
        return {"path": path, "traceback": f"{type(exc).__name__}: {exc}"}


def _openpyxl_cells(path: Path) -> dict[str, dict[str, tuple]] | None:
    import openpyxl
    from openpyxl.utils.datetime import to_excel

    try:
        values = openpyxl.load_workbook(path, data_only=True, read_only=False)
        formulas = openpyxl.load_workbook(path, data_only=False, read_only=False)
    except Exception:
        return None
    out: dict[str, dict[str, tuple]] = {}
    for ws in values.worksheets:
        fws = formulas[ws.title]
        cells = {}
        for row in ws.iter_rows():
            for cell in row:
                value = cell.value
                if isinstance(value, datetime | date | time | timedelta):
                    value = float(to_excel(value, values.epoch))
                formula = fws[cell.coordinate].value
                formula = formula[1:] if isinstance(formula, str) and formula.startswith("=") and \
                    fws[cell.coordinate].data_type == "f" else None
                if value is None and formula is None:
                    continue
                cells[cell.coordinate] = (value, formula)
        out[ws.title] = cells
    return out


def _same(a, b) -> bool:
    if a in (None, "") and b in (None, ""):
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def compare(path: Path, seen: dict) -> tuple[int, list[str]]:
    theirs = _openpyxl_cells(path)
    if theirs is None or "cells" not in seen:
        return 0, []
    compared, differences = 0, []
    for sheet, cells in seen["cells"].items():
        other = theirs.get(sheet, {})
        for c in cells:
            if c["value"] in (None, "") and not c["formula"]:
                continue
            compared += 1
            value, formula = other.get(c["cell"], (None, None))
            if not _same(c["value"], value):
                differences.append(f"{path.name} {sheet}!{c['cell']}: perfxl {c['value']!r} openpyxl {value!r}")
            elif (c["formula"] or None) != (formula or None) and formula is not None:
                differences.append(f"{path.name} {sheet}!{c['cell']}: formula perfxl {c['formula']!r} "
                                   f"openpyxl {formula!r}")
    return compared, differences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    files = sorted(p for p in args.folder.rglob("*") if p.is_file())
    outcome: Counter = Counter()
    refused: Counter = Counter()
    compared = 0
    differences: list[str] = []
    problems: list[str] = []
    for path in files:
        with ProcessPoolExecutor(max_workers=1) as pool:
            try:
                seen = pool.submit(_inspect, str(path)).result(timeout=args.timeout)
            except TimeoutError:
                outcome["hang"] += 1
                problems.append(f"hang: {path}")
                for process in pool._processes.values():
                    process.kill()
                continue
            except BrokenProcessPool:
                outcome["crash"] += 1
                problems.append(f"crash: {path}")
                continue
        if "traceback" in seen:
            outcome["traceback"] += 1
            problems.append(f"traceback: {path}: {seen['traceback']}")
            continue
        if "format" not in seen:
            outcome["refused"] += 1
            refused[seen["error"]["code"]] += 1
            continue
        outcome["read"] += 1
        if seen.get("error", {}).get("code") == "internal-error":
            outcome["internal-error"] += 1
            problems.append(f"internal-error: {path}")
        if path.suffix.lower() in {".xlsx", ".xlsm"}:
            n, diff = compare(path, seen)
            compared += n
            differences += diff
            outcome["compared with openpyxl"] += 1 if n else 0
    report = {"files": len(files), **outcome, "refused by reason": dict(refused), "cells compared": compared,
              "disagreements": len(differences), "first disagreements": differences[:40], "problems": problems}
    print(json.dumps(report, ensure_ascii=False, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()

"""Fill a generated form as a unit would, through its defined names (openpyxl).

Used by `perfxl demo` and by the tests. It is deliberately the slow, honest path: openpyxl opens the blank
form, writes each value into the cell a defined name points at, and saves a new file, exactly as a
script-filling clerk or a test would. Values starting with "=" are written as text, as a clerk typing into
a text-formatted cell gets.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import openpyxl
import yaml

from .errors import PerfxlError
from .spec import NUMERIC_TYPES, Spec, column_offsets, split_cell

_ISO_DATE = re.compile(r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})$")


def sample_files() -> list[Path]:
    return sorted((Path(__file__).parent / "samples").glob("seed-*.yaml"))


def load_sample(path: Path) -> dict:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def names_by_sheet(wb) -> dict[str, dict[str, str]]:
    """sheet title → {defined name → 'A1' or 'A1:B2'} for the workbook and sheet scopes."""
    out: dict[str, dict[str, str]] = {ws.title: {} for ws in wb.worksheets}
    scopes = [(None, wb.defined_names)] + [(ws.title, ws.defined_names) for ws in wb.worksheets]
    for scope, names in scopes:
        for name, dn in names.items():
            for sheet, ref in dn.destinations:
                out.setdefault(scope or sheet, {})[name] = ref.replace("$", "")
    return out


def _cell_value(value: Any, ftype: str):
    if value is None or value == "":
        return None
    if ftype in NUMERIC_TYPES and isinstance(value, str):
        try:
            return float(value.replace(",", ""))
        except ValueError:
            return value
    if ftype == "date" and isinstance(value, str):
        match = _ISO_DATE.match(value)
        if match:
            return datetime(*(int(g) for g in match.groups()))
    return value


def _put(ws, address: str, value) -> None:
    cell = ws[address]
    cell.value = value
    if isinstance(value, str) and value[:1] == "=":
        cell.data_type = "s"  # a text cell, not a formula: what a clerk typing into a text cell gets


def fill_workbook(spec: Spec, blank: Path, target: Path, projects: list[dict]) -> Path:
    """Write `projects` (each {"fields": {...}, "tables": {id: [[...], ...]}}) into a copy of `blank`."""
    wb = openpyxl.load_workbook(blank)
    names = names_by_sheet(wb)
    sheets = [spec.sheet_title(i + 1) for i in range(len(projects))] if spec.multi_project else [spec.sheet_name]
    missing = [s for s in sheets if s not in names]
    if missing:
        raise PerfxlError(f"{blank}: the form has no sheet(s) {', '.join(missing)} for {len(projects)} projects")
    for title, project in zip(sheets, projects):
        ws = wb[title]
        local = names[title]
        for fid, value in (project.get("fields") or {}).items():
            field = spec.fields[fid]
            if field.name not in local:
                raise PerfxlError(f"{blank}: no defined name {field.name} on sheet {title}")
            _put(ws, local[field.name].split(":")[0], _cell_value(value, field.type))
        for tid, rows in (project.get("tables") or {}).items():
            table = spec.tables[tid]
            first, last = local[table.name].split(":")
            r0, c0 = split_cell(first)
            r1, _ = split_cell(last)
            if len(rows) > r1 - r0 + 1:
                raise PerfxlError(f"{blank}: table {tid} has {r1 - r0 + 1} rows, {len(rows)} given")
            offsets = column_offsets(table)  # what describe --json gives a script
            for i in range(r1 - r0 + 1):
                row = rows[i] if i < len(rows) else []
                for j, col in enumerate(table.columns):
                    value = row[j] if j < len(row) else None
                    ws.cell(row=r0 + i + 1, column=c0 + offsets[col.id] + 1).value = None
                    if value not in (None, ""):
                        _put(ws, ws.cell(row=r0 + i + 1, column=c0 + offsets[col.id] + 1).coordinate,
                             _cell_value(value, col.type))
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    wb.save(target)
    return target



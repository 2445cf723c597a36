"""Read stage: a filled workbook → form data (fields and table rows per sheet, each value with its cell).

Nothing downstream opens the workbook again. The reader trusts no part of the file (see `perfxl.reader`):
the zip is inflated member by member under caps, DTDs are refused, formulas are kept as text beside their
cached value, the stamp says which spec to apply and the defined names say where each input is.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

from perfxl.contract import DECLARED_SHEET, declared_from_cells
from perfxl.domain import EXCEL_ERROR_VALUES, default_year
from perfxl.errors import ReadError, SpecError
from perfxl.problems import L, Problem, problem
from perfxl.reader import recognise
from perfxl.reader.book import MAX_FILE_BYTES, is_unknown_format, load_raw, too_large, unknown_format
from perfxl.reader.cells import cell_name
from perfxl.reader.form import Cell, FormData, SheetData
from perfxl.reader.names import extract, parse_ref
from perfxl.reader.rawbook import RawBook
from perfxl.spec import load_spec

# What the later stages use of the reader: this module is the stage's one entry point.
__all__ = ["MAX_FILE_BYTES", "Cell", "FormData", "RawBook", "SheetData", "form_from_raw", "found_at",
           "inspect_workbook", "load_raw", "read_workbook", "too_large"]


def read_workbook(path: Path, templates_dir: Path | None = None, template: str | None = None,
                  year: int | None = None, data: bytes | None = None) -> FormData:
    """Read one workbook into form data (from `data` when the caller already holds the bytes).
    Raises ReadError when the file cannot be read at all."""
    path = Path(path)
    book, data, kind = load_raw(path, data)
    return form_from_raw(path, book, data, kind, templates_dir, template, year)


def form_from_raw(path: Path, book: RawBook, data: bytes, kind: str, templates_dir: Path | None = None,
                  template: str | None = None, year: int | None = None) -> FormData:
    """The form data of a workbook already read into raw cells."""
    form = FormData(path=str(path), size=len(data), sha256=hashlib.sha256(data).hexdigest(), format=kind,
                    date1904=book.date1904)
    notice = _extension_notice(path, kind)
    if notice is not None:
        form.notices.append(notice)
    if book.has_macros:
        form.notices.append(problem("macros-present"))
    if book.external_links:
        form.notices.append(problem("external-links"))

    stamp, source = recognise.stamp(book)
    if not stamp:
        stamp = recognise.by_labels(book, templates_dir)
        source = "labels" if stamp else None
        if stamp:
            form.notices.append(problem("stamp-missing", template=stamp["template"]))
    if template and stamp.get("template") not in (None, "", template):
        form.notices.append(problem("stamp-template", found=stamp.get("template"), expected=template))
    chosen = stamp.get("template") or template
    if not chosen:
        raise ReadError("not-a-form", detail=L("没有 perfxl 标识，标题也不匹配任何模板",
                                              "no perfxl stamp, and the title matches no template"))
    form.template = chosen
    form.version = stamp.get("version") or None
    form.fingerprint = stamp.get("fingerprint") or None
    form.region = stamp.get("region") or None
    form.year = recognise.as_int(stamp.get("year")) or year
    form.unit_code = stamp.get("unit_code") or None
    form.unit_name = stamp.get("unit_name") or None
    form.stamp_source = source
    form.round = stamp.get("round") or None
    try:
        spec = load_spec(chosen, form.year or year or default_year(), form.region, templates_dir=templates_dir)
    except SpecError as exc:
        raise ReadError("unknown-template", template=chosen, detail=str(exc)) from None
    if DECLARED_SHEET in book.cells:
        form.declared = declared_from_cells(book.cells[DECLARED_SHEET]) or {}  # damaged: the rules report it
    extract(form, book, spec)
    return form


def found_at(form: FormData, path: str) -> FormData:
    """Form data kept for a file's content (the ledger keeps it by content), as read at `path`: what the reader
    notices of a file's name is what this name calls for. The same bytes renamed from .xlsx to .xls were
    merged with no notice, where reading them gave one (and a name put right kept its notice)."""
    form.path = path
    notices = [n for n in form.notices if n.code != "extension-mismatch"]
    notice = _extension_notice(Path(path), form.format)
    form.notices = ([notice] if notice is not None else []) + notices  # first, where reading puts it
    return form


def rejection_at(refused: Problem, path: str) -> Problem:
    """A rejection kept for a file's content (the ledger keeps one per content), in the words `path` calls for:
    a file of unknown format is named by its extension, and the same bytes as a.xlsx and b.doc had a.xlsx
    called （扩展名 .doc）, whichever name was recorded last."""
    if refused.code == "not-a-workbook" and is_unknown_format(refused.params.get("what")):
        return dataclasses.replace(refused, params={**refused.params,
                                                    "what": unknown_format(Path(path).suffix.lower())})
    return refused


def _extension_notice(path: Path, kind: str):
    suffix = path.suffix.lower()
    if (kind == "xls") != (suffix == ".xls"):
        return problem("extension-mismatch", suffix=suffix or L("（无）", "(none)"), actual=kind)
    return None


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, float | int):
        return "number"
    if isinstance(value, str) and value in EXCEL_ERROR_VALUES:
        return "error"
    return "text"


def inspect_workbook(path: Path, templates_dir: Path | None = None, with_cells: bool = False) -> dict:
    """Everything the reader sees in one file, as plain data: format, stamp, the template recognised, the
    defined names and where they point, each field's value and cell, and (with_cells) every non-empty cell.
    Never raises for a bad file: a file that cannot be read is described with its reason."""
    path = Path(path)
    out: dict[str, Any] = {"path": str(path)}
    try:
        book, data, kind = load_raw(path)
    except ReadError as exc:
        out["error"] = {"code": exc.code, "message": str(exc)}
        return out
    out.update(format=kind, size=len(data), sha256=hashlib.sha256(data).hexdigest(), date1904=book.date1904)
    stamp, source = recognise.stamp(book)
    out["stamp"] = {"source": source, **stamp} if stamp else None
    out["sheets"] = [{"name": s, "hidden": s in book.hidden, "cells": len(book.cells.get(s, {}))}
                     for s in book.sheet_names]
    names = []
    for name, local, ref in book.names:
        parsed = parse_ref(ref)
        entry = {"name": name, "scope": book.sheet_names[local] if local is not None and 0 <= local < len(
            book.sheet_names) else None, "refers_to": ref}
        if parsed:
            sheet, first, last = parsed
            entry["sheet"] = sheet
            entry["range"] = cell_name(*first) + ("" if first == last else ":" + cell_name(*last))
        names.append(entry)
    out["defined_names"] = names
    try:
        form = form_from_raw(path, book, data, kind, templates_dir)
    except ReadError as exc:
        out["form"] = None
        out["error"] = {"code": exc.code, "message": str(exc)}
    else:
        out["template"] = form.template
        try:
            labels = {f.id: f.label for f in load_spec(form.template, form.year or default_year(), form.region,
                                                       templates_dir=templates_dir).fields.values()}
        except SpecError:
            labels = {}
        out["form"] = {
            "template": form.template, "version": form.version, "year": form.year, "region": form.region,
            "unit_code": form.unit_code, "unit_name": form.unit_name, "stamp_source": form.stamp_source,
            "sheets": [{"sheet": s.sheet,
                        "fields": {fid: {"label": labels.get(fid, ""), "value": c.value, "cell": c.address,
                                         "formula": c.formula}
                                   for fid, c in s.fields.items()},
                        "tables": {tid: len(rows) for tid, rows in s.tables.items()}} for s in form.sheets],
            "notices": [{"code": n.code, "severity": n.severity, "message": n.message, "sheet": n.sheet}
                        for n in form.notices]}
    if with_cells:
        out["cells"] = {sheet: [{"cell": cell_name(r, c), "value": value, "type": _kind_of(value),
                                 "formula": formula}
                                for (r, c), (value, formula) in sorted(book.cells.get(sheet, {}).items())]
                        for sheet in book.sheet_names}
    return out

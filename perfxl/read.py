"""Read stage: a filled workbook → form data (fields and table rows per sheet, each value with its cell).

Nothing downstream opens the workbook again. The reader trusts no part of the file:
- the zip is inflated member by member with a byte cap (header sizes may lie) and an entry-count cap;
- XML is scanned with regular expressions over the raw text and any DOCTYPE is refused, so no entity
  is ever expanded and no external resource is ever fetched;
- formulas are kept as text beside their cached value, because a script-filled file has no cached
  values and a typed "=100%" is a target, not a computation;
- the stamp (hidden sheet, then custom properties, then title and labels) says which spec to apply;
  the defined names say where each field and table body is, following inserted rows and copied sheets.

.xls (BIFF) files are read with xlrd, which also gives their defined names with sheet scope.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from . import ooxml
from .contract import PROPERTY_PREFIX, STAMP_SHEET, stamp_from_cells, stamp_from_properties
from .domain import EXCEL_ERROR_VALUES, default_year
from .errors import ReadError, SpecError
from .inbox import NotRegularFile, TooLarge, read_regular_file
from .ooxml import MAX_CELLS
from .problems import L, Problem, problem
from .spec import Spec, cell_name, layout, list_templates, load_spec, split_cell

MAX_FILE_BYTES = 64 * 1024 * 1024
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


class Cell(NamedTuple):
    value: Any  # str | float | bool | None ; error results as "#REF!" strings
    address: str  # "B5"
    formula: str | None = None  # formula text without "=", when the cell holds one


@dataclass
class SheetData:
    sheet: str
    fields: dict[str, Cell] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # rows: {"_row": n, col: Cell}


@dataclass
class FormData:
    path: str
    size: int
    sha256: str
    format: str  # xlsx | xls
    template: str | None = None
    version: str | None = None
    fingerprint: str | None = None
    region: str | None = None
    year: int | None = None
    unit_code: str | None = None
    unit_name: str | None = None
    stamp_source: str | None = None  # sheet | properties | labels
    date1904: bool = False
    sheets: list[SheetData] = field(default_factory=list)
    notices: list[Problem] = field(default_factory=list)  # what the reader noticed

    def to_dict(self) -> dict:
        # By hand: dataclasses.asdict deep-copies every cell and costs more than reading the file.
        data = {k: getattr(self, k) for k in ("path", "size", "sha256", "format", "template", "version",
                                                "fingerprint", "region", "year", "unit_code", "unit_name",
                                                "stamp_source", "date1904")}
        data["sheets"] = [{"sheet": s.sheet, "fields": {k: list(v) for k, v in s.fields.items()},
                           "tables": {t: [{k: (v if k == "_row" else list(v)) for k, v in row.items()} for row in rows]
                                      for t, rows in s.tables.items()}} for s in self.sheets]
        data["notices"] = [n.to_record() for n in self.notices]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> FormData:
        data = dict(data)
        sheets = []
        for s in data.pop("sheets"):
            tables = {tid: [{k: (v if k == "_row" else Cell(*v)) for k, v in row.items()} for row in rows]
                      for tid, rows in s["tables"].items()}
            sheets.append(SheetData(sheet=s["sheet"], fields={k: Cell(*v) for k, v in s["fields"].items()},
                                    tables=tables))
        notices = [Problem.from_dict(n) for n in data.pop("notices")]
        return cls(sheets=sheets, notices=notices, **data)


# ----------------------------------------------------------------------------------------------------
# A workbook as raw cells: sheets → {(row, col): (value, formula)}, defined names, stamp
# ----------------------------------------------------------------------------------------------------

@dataclass
class RawBook:
    sheet_names: list[str]
    hidden: set[str]
    names: list[tuple[str, int | None, str]]  # (name, local sheet index or None, reference text)
    date1904: bool
    cells: dict[str, dict[tuple[int, int], tuple[Any, str | None]]]
    has_macros: bool = False
    external_links: bool = False
    # perfxl's custom document properties, read only when asked: the stamp sheet usually says it all
    load_properties: Any = None
    _properties: dict[str, str] | None = None

    @property
    def properties(self) -> dict[str, str]:
        if self._properties is None:
            self._properties = self.load_properties() if self.load_properties else {}
        return self._properties


def _workbook_part(pkg: ooxml.Package) -> str:
    """The office document named by the package relationships; xl/workbook.xml when they are missing."""
    for _, rel_type, target in ooxml.relationships(pkg, ""):
        if rel_type.endswith(ooxml.OFFICE_DOCUMENT) and pkg.has(target):
            return target
    if pkg.has("xl/workbook.xml"):
        return "xl/workbook.xml"
    if pkg.has("xl/workbook.bin"):
        raise ReadError("unsupported-format", what=L(".xlsb（Excel 二进制工作簿）", "an .xlsb (Excel binary workbook)"))
    if pkg.has("word/document.xml"):
        raise ReadError("not-a-workbook", what=L("Word 文档 (.docx)", "a Word document (.docx)"))
    if pkg.has("ppt/presentation.xml"):
        raise ReadError("not-a-workbook", what=L("PowerPoint 文档 (.pptx)", "a PowerPoint document (.pptx)"))
    raise ReadError("not-a-workbook", what=L("不含工作簿的压缩包", "a zip package without a workbook"))


def _custom_properties(pkg: ooxml.Package) -> dict[str, str]:
    part = next((t for _, rel_type, t in ooxml.relationships(pkg, "") if rel_type.endswith("/custom-properties")),
                "docProps/custom.xml")
    if not pkg.has(part):
        return {}
    properties = {}
    for prop in ooxml.children(ooxml.parse_tree(pkg.read(part, 1 << 20), part), "property"):
        name = prop.get("name") or ""
        if name.startswith(PROPERTY_PREFIX) and len(prop):
            properties[name[len(PROPERTY_PREFIX):]] = ooxml.unescape_control(prop[0].text or "")
    return properties


def _read_xlsx(data: bytes, wanted: set[str] | None = None) -> RawBook:
    pkg = ooxml.Package(data)
    if pkg.has("EncryptedPackage") or pkg.has("EncryptionInfo"):
        raise ReadError("file-encrypted")
    if pkg.has("mimetype") and b"opendocument" in pkg.read("mimetype", 4096):
        raise ReadError("unsupported-format", what=L("ODS 文件（LibreOffice/WPS 格式）", "an ODS file (LibreOffice/WPS)"))
    wb_part = _workbook_part(pkg)
    workbook = ooxml.parse_tree(pkg.read(wb_part), wb_part)
    if ooxml.local_name(workbook.tag) != "workbook" or ooxml.namespace(workbook.tag) not in ooxml.MAIN_NS:
        raise ReadError("not-a-workbook", what=L(f"非 SpreadsheetML 的 OOXML 文档 ({wb_part})", f"an OOXML document that is not SpreadsheetML ({wb_part})"))
    targets: dict[str, str] = {}
    strings_part = None
    for rid, rel_type, target in ooxml.relationships(pkg, wb_part):
        targets[rid] = target
        if rel_type.endswith("/sharedStrings"):
            strings_part = target
    sheets: list[tuple[str, str]] = []
    hidden: set[str] = set()
    for sheet in ooxml.children(workbook, "sheet"):
        name = sheet.get("name") or ""
        sheets.append((name, targets.get(ooxml.attr(sheet, "id", ooxml.REL_NS) or "", "")))
        if sheet.get("state") in {"hidden", "veryHidden"}:
            hidden.add(name)
    names = []
    for defined in ooxml.children(workbook, "definedName"):
        local = defined.get("localSheetId")
        names.append((defined.get("name") or "", int(local) if local and local.isdigit() else None,
                      ooxml.unescape_control(defined.text or "")))
    pr = next(ooxml.children(workbook, "workbookPr"), None)
    date1904 = pr is not None and (pr.get("date1904") or "").lower() in ("1", "true")

    if strings_part is None and pkg.has("xl/sharedStrings.xml"):
        strings_part = "xl/sharedStrings.xml"
    strings = ooxml.shared_strings(pkg.read(strings_part), strings_part) if strings_part and pkg.has(strings_part) else []

    cells: dict[str, dict] = {}
    count = 0
    for name, target in sheets:
        if wanted is not None and name not in wanted:
            continue
        if not target or not pkg.has(target):
            continue
        sheet_cells = ooxml.sheet_cells(pkg.read(target), strings, date1904, target)
        count += len(sheet_cells)
        if count > MAX_CELLS:
            raise ReadError("too-many-cells", limit=MAX_CELLS)
        cells[name] = sheet_cells
    members = pkg.names()
    has_macros = any(m.endswith("vbaproject.bin") for m in members)
    external = any(m.startswith("xl/externallinks/") for m in members)
    return RawBook(sheet_names=[s for s, _ in sheets], hidden=hidden, names=names, date1904=date1904, cells=cells,
                   has_macros=has_macros, external_links=external, load_properties=lambda: _custom_properties(pkg))


def _xls_failure(exc: Exception) -> ReadError:
    reason = str(exc).strip() or type(exc).__name__
    return ReadError("file-corrupt", detail=f".xls: {reason}")


def _read_xls(data: bytes) -> RawBook:
    import xlrd

    try:
        # ragged_rows: rows are not padded to the declared width, so a file that declares 65,536 × 256 cells
        # and holds four costs four cells, not 16 million.
        book = xlrd.open_workbook(file_contents=data, on_demand=True, ragged_rows=True, logfile=io.StringIO())
    except Exception as exc:  # xlrd raises XLRDError, CompDocError, struct.error, AssertionError, ...
        raise _xls_failure(exc) from None
    try:
        return _xls_book(xlrd, book)
    except ReadError:
        raise
    except (MemoryError, RecursionError):
        raise
    except Exception as exc:  # the same errors, raised while a sheet is loaded on demand
        raise _xls_failure(exc) from None
    finally:
        book.release_resources()


def _xls_book(xlrd, book) -> RawBook:
    sheet_names = book.sheet_names()
    names = []
    for nobj in book.name_obj_list:
        scope = nobj.scope if nobj.scope >= 0 else None
        try:
            target, rlo, rhi, clo, chi = nobj.area2d(clipped=False)
        except Exception:  # names that are not a plain area (constants, formulas, #REF!)
            continue
        ref = f"'{target.name.replace(chr(39), chr(39) * 2)}'!{cell_name(rlo, clo)}"
        if (rhi - rlo, chi - clo) != (1, 1):
            ref += f":{cell_name(rhi - 1, chi - 1)}"
        names.append((nobj.name, scope, ref))
    cells: dict[str, dict] = {}
    hidden = set()
    count = 0
    empty = (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK)
    for index, name in enumerate(sheet_names):
        sh = book.sheet_by_index(index)
        if getattr(sh, "visibility", 0):
            hidden.add(name)
        sheet_cells = {}
        for r in range(sh.nrows):
            for c in range(sh.row_len(r)):
                ctype = sh.cell_type(r, c)
                if ctype in empty:
                    continue
                value: Any = sh.cell_value(r, c)
                if ctype == xlrd.XL_CELL_ERROR:
                    value = xlrd.error_text_from_code.get(value, "#ERR")
                elif ctype == xlrd.XL_CELL_BOOLEAN:
                    value = bool(value)
                sheet_cells[(r, c)] = (value, None)
                count += 1
                if count > MAX_CELLS:
                    raise ReadError("too-many-cells", limit=MAX_CELLS)
        cells[name] = sheet_cells
        book.unload_sheet(index)
    return RawBook(sheet_names=sheet_names, hidden=hidden, names=names, date1904=bool(book.datemode), cells=cells)


def sniff(data: bytes, suffix: str) -> str:
    """xlsx | xls, or raise ReadError with the reason this is not a workbook."""
    if not data:
        raise ReadError("file-empty")
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        return "xlsx"
    if data[:8] == OLE_MAGIC:
        if b"E\x00n\x00c\x00r\x00y\x00p\x00t\x00e\x00d\x00P\x00a\x00c\x00k\x00a\x00g\x00e" in data[:1 << 20] or \
                b"EncryptedPackage" in data[:1 << 20]:
            raise ReadError("file-encrypted")
        return "xls"
    head = data[:2048].lstrip().lower()
    if head.startswith((b"<html", b"<!doctype html", b"<table", b"<?xml")) or b"<html" in head:
        raise ReadError("not-a-workbook", what=L("网页 (HTML) 文件", "a web page (HTML)"))
    if data[:4] == b"%PDF":
        raise ReadError("not-a-workbook", what=L("PDF 文件", "a PDF file"))
    try:
        text = data[:4096].decode("utf-8")
        if "," in text or "\t" in text:
            raise ReadError("not-a-workbook", what=L("文本 (CSV) 文件", "a text (CSV) file"))
    except UnicodeDecodeError:
        pass
    raise ReadError("not-a-workbook", what=L(f"未知格式的文件{'（扩展名 ' + suffix + '）' if suffix else ''}",
                                             f"a file of unknown format{' (extension ' + suffix + ')' if suffix else ''}"))


def too_large(size: int) -> dict:
    """The parameters of a `file-too-large` problem."""
    return {"size_mb": size // (1 << 20), "limit_mb": MAX_FILE_BYTES >> 20}


def load_raw(path: Path, data: bytes | None = None) -> tuple[RawBook, bytes, str]:
    path = Path(path)
    if data is None:
        try:
            data, _ = read_regular_file(path, MAX_FILE_BYTES)
        except NotRegularFile:
            raise ReadError("not-a-file") from None
        except TooLarge as exc:
            raise ReadError("file-too-large", **too_large(exc.size)) from None
        except OSError as exc:
            raise ReadError("file-unreadable", detail=str(exc.strerror or exc)) from None
    elif len(data) > MAX_FILE_BYTES:
        raise ReadError("file-too-large", **too_large(len(data)))
    kind = sniff(data, path.suffix.lower())
    book = _read_xlsx(data) if kind == "xlsx" else _read_xls(data)
    return book, data, kind


# ----------------------------------------------------------------------------------------------------
# From raw cells to form data
# ----------------------------------------------------------------------------------------------------

_REF_RE = re.compile(r"^=?(?:'((?:[^']|'')+)'|([^'!]+))!\$?([A-Z]{1,3})\$?(\d+)(?::\$?([A-Z]{1,3})\$?(\d+))?$")


def _parse_ref(text: str) -> tuple[str, tuple[int, int], tuple[int, int]] | None:
    m = _REF_RE.match(text.strip())
    if not m:
        return None
    sheet = (m.group(1) or "").replace("''", "'") or m.group(2)
    first = split_cell(m.group(3) + m.group(4))
    last = split_cell(m.group(5) + m.group(6)) if m.group(5) else first
    return sheet, first, last


def _stamp(book: RawBook) -> tuple[dict[str, str], str | None]:
    stamp = stamp_from_cells(book.cells.get(STAMP_SHEET) or {})
    if stamp:
        return stamp, "sheet"
    stamp = stamp_from_properties(book.properties)
    if stamp.get("template"):
        return stamp, "properties"
    return {}, None


def _recognise_by_labels(book: RawBook, templates_dir: Path | None) -> dict[str, str]:
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


def _as_int(text: str | None) -> int | None:
    try:
        return int(float(text)) if text not in (None, "") else None
    except ValueError:
        return None


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
    suffix = path.suffix.lower()
    if (kind == "xls") != (suffix == ".xls"):
        form.notices.append(problem("extension-mismatch", suffix=suffix or L("（无）", "(none)"), actual=kind))
    if book.has_macros:
        form.notices.append(problem("macros-present"))
    if book.external_links:
        form.notices.append(problem("external-links"))

    stamp, source = _stamp(book)
    if not stamp:
        stamp = _recognise_by_labels(book, templates_dir)
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
    form.year = _as_int(stamp.get("year")) or year
    form.unit_code = stamp.get("unit_code") or None
    form.unit_name = stamp.get("unit_name") or None
    form.stamp_source = source
    try:
        spec = load_spec(chosen, form.year or year or default_year(), form.region, templates_dir=templates_dir)
    except SpecError as exc:
        raise ReadError("unknown-template", template=chosen, detail=str(exc)) from None
    _extract(form, book, spec)
    return form


@lru_cache(maxsize=512)
def letter(col: int) -> str:
    return cell_name(0, col)[:-1]


def _extract(form: FormData, book: RawBook, spec: Spec) -> None:
    """Locate the form's inputs by their defined names (sheet-scoped or not, surviving inserted rows),
    falling back on the template's layout where names were lost, and copy fields and table rows out
    with their cell addresses.

    Long because the three steps share the per-sheet name map and the fallback decision, and reading a
    table's rows depends on where its name was found; it is one pass in the order a reader would check."""
    lay = layout(spec)
    wanted_names = {f.name: ("field", f.id) for f in spec.fields.values()}
    wanted_names.update({t.name: ("table", t.id) for t in spec.tables.values()})
    per_sheet: dict[str, dict[str, tuple]] = {}
    for name, local, ref in book.names:
        kind = wanted_names.get(name)
        if kind is None:
            continue
        parsed = _parse_ref(ref)
        if parsed is None:
            if "#REF" in ref:
                form.notices.append(problem("name-broken", name=name))
            continue
        sheet = parsed[0]
        if local is not None and 0 <= local < len(book.sheet_names):
            sheet = book.sheet_names[local]
        per_sheet.setdefault(sheet, {})[name] = parsed

    form_sheets = [s for s in book.sheet_names if s in per_sheet and s in book.cells]
    if not form_sheets:  # names lost (e.g. re-typed into a new workbook): fall back on the layout
        for s in book.sheet_names:
            if s in book.hidden or s == STAMP_SHEET:
                continue
            cells = book.cells.get(s, {})
            title_rows = [p for p in lay.placements if p.kind == "title"]
            if title_rows and str(cells.get((title_rows[0].row, 0), ("",))[0]).strip() == title_rows[0].text:
                form_sheets.append(s)
                per_sheet[s] = {}
                notice = problem("names-missing")
                notice.sheet = s
                form.notices.append(notice)
    if not form_sheets:
        raise ReadError("not-a-form", detail=L(f"找不到 {spec.title} 的填报区域，定义名称和版式都不匹配",
                                              f"no input area of {spec.title}: neither the names nor the layout match"))

    regions = []
    for sheet in form_sheets:
        for name, (_, first, last) in per_sheet[sheet].items():
            regions.append((sheet, first[0], last[0], name))
    label_texts = {p.text for p in lay.placements if p.kind in {"label", "section", "title", "header"} and p.text}

    for sheet in form_sheets:
        cells = book.cells.get(sheet, {})
        names = per_sheet[sheet]
        data = SheetData(sheet=sheet)
        for f in spec.fields.values():
            if f.name in names:
                _, (r, c), _ = names[f.name]
            elif not names and f.id in lay.fields:
                r, c = lay.fields[f.id]
            else:
                continue
            value, formula = cells.get((r, c), (None, None))
            data.fields[f.id] = Cell(value, cell_name(r, c), formula)
        for t in spec.tables.values():
            pos = lay.tables[t.id]
            if t.name in names:
                _, (r0, c0), (r1, _) = names[t.name]
            elif not names:
                r0, c0, r1 = pos.first_row, 0, pos.last_row
            else:
                continue
            others = [(a, b) for s, a, b, n in regions if s == sheet and n != t.name and a > r1]
            stop = min([a for a, _ in others] + [r1 + 500])
            rows = []
            columns = [(col.id, c0 + pos.columns[col.id], letter(c0 + pos.columns[col.id])) for col in t.columns]
            r = r0
            while r <= r1 or r < stop:
                found = [(cid, cc, lt, cells.get((r, cc))) for cid, cc, lt in columns]
                empty = all(v is None or (v[0] in (None, "") and not v[1]) for *_, v in found)
                if r > r1:  # rows a clerk added directly below the named body
                    texts = {str(v[0]).strip() for *_, v in found if v is not None and isinstance(v[0], str)}
                    if empty or texts & label_texts:
                        break
                if not empty:
                    row = {"_row": r + 1}
                    for cid, _, lt, v in found:
                        row[cid] = Cell(v[0], f"{lt}{r + 1}", v[1]) if v is not None else Cell(None, f"{lt}{r + 1}")
                    rows.append(row)
                r += 1
            data.tables[t.id] = rows
        form.sheets.append(data)
    if not form.unit_name and spec.unit_name_field:  # no stamp: the unit the form itself names
        for sheet in form.sheets:
            cell = sheet.fields.get(spec.unit_name_field)
            if cell and isinstance(cell.value, str) and cell.value.strip():
                form.unit_name = cell.value.strip()
                break


# ----------------------------------------------------------------------------------------------------
# What the reader sees, for people puzzled by a result (`perfxl inspect`)
# ----------------------------------------------------------------------------------------------------

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
    stamp, source = _stamp(book)
    out["stamp"] = {"source": source, **stamp} if stamp else None
    out["sheets"] = [{"name": s, "hidden": s in book.hidden, "cells": len(book.cells.get(s, {}))}
                     for s in book.sheet_names]
    names = []
    for name, local, ref in book.names:
        parsed = _parse_ref(ref)
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

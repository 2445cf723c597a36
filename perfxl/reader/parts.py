"""OOXML parts found through their relationships: the workbook is the part `_rels/.rels` names as the
office document, wherever it lives; sheets, shared strings and custom properties are found from it."""

from __future__ import annotations

from functools import lru_cache

from perfxl.contract import PROPERTY_PREFIX
from perfxl.errors import ReadError
from perfxl.problems import L
from perfxl.reader.cells import MAX_CELLS, shared_strings, sheet_cells
from perfxl.reader.rawbook import RawBook
from perfxl.reader.xml import (
    MAIN_NS,
    OFFICE_DOCUMENT,
    REL_NS,
    attr,
    children,
    local_name,
    namespace,
    parse_tree,
    unescape_control,
)
from perfxl.reader.zipguard import Package, rels_part, resolve

# The package's small parts (its relationships, the workbook part) are the same bytes in every form made
# from one template, and in every copy one office suite saved alike: each distinct text is parsed once in a
# process. Only parts this small are remembered, and the results are tuples nobody can change.
SAME_PART_BYTES = 64 * 1024


def _once_per_text(parse):
    remembered = lru_cache(maxsize=64)(parse)

    def parsed(data: bytes, *args):
        return remembered(data, *args) if len(data) <= SAME_PART_BYTES else parse(data, *args)

    return parsed


def relationships(pkg: Package, part: str) -> list[tuple[str, str, str]]:
    """(id, type, target part) of a part's relationships; external targets are left out."""
    if part in pkg.rels:
        return pkg.rels[part]
    path = rels_part(part) if part else "_rels/.rels"
    out: list[tuple[str, str, str]] = []
    pkg.rels[part] = out
    if pkg.has(path):
        out += _relationships(pkg.read(path, 4 << 20), path, part)
    return out


@_once_per_text
def _relationships(data: bytes, path: str, part: str) -> tuple[tuple[str, str, str], ...]:
    return tuple((rel.get("Id") or "", rel.get("Type") or "", resolve(part, rel.get("Target") or ""))
                 for rel in children(parse_tree(data, path), "Relationship")
                 if (rel.get("TargetMode") or "").lower() != "external")


@_once_per_text
def _workbook(data: bytes, part: str) -> tuple[tuple, tuple, bool]:
    """The workbook part's sheets (name, relationship id, hidden), its defined names (name, local sheet
    index or None, text) and whether its dates count from 1904."""
    workbook = parse_tree(data, part)
    if local_name(workbook.tag) != "workbook" or namespace(workbook.tag) not in MAIN_NS:
        raise ReadError("not-a-workbook", what=L(f"非 SpreadsheetML 的 OOXML 文档 ({part})", f"an OOXML document that is not SpreadsheetML ({part})"))
    sheets = tuple((sheet.get("name") or "", attr(sheet, "id", REL_NS) or "",
                    sheet.get("state") in {"hidden", "veryHidden"}) for sheet in children(workbook, "sheet"))
    names = []
    for defined in children(workbook, "definedName"):
        local = defined.get("localSheetId")
        names.append((defined.get("name") or "", int(local) if local and local.isdigit() else None,
                      unescape_control(defined.text or "")))
    pr = next(children(workbook, "workbookPr"), None)
    return sheets, tuple(names), pr is not None and (pr.get("date1904") or "").lower() in ("1", "true")


def workbook_part(pkg: Package) -> str:
    """The office document named by the package relationships; xl/workbook.xml when they are missing."""
    for _, rel_type, target in relationships(pkg, ""):
        if rel_type.endswith(OFFICE_DOCUMENT) and pkg.has(target):
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


def custom_properties(pkg: Package) -> dict[str, str]:
    part = next((t for _, rel_type, t in relationships(pkg, "") if rel_type.endswith("/custom-properties")),
                "docProps/custom.xml")
    if not pkg.has(part):
        return {}
    properties = {}
    for prop in children(parse_tree(pkg.read(part, 1 << 20), part), "property"):
        name = prop.get("name") or ""
        if name.startswith(PROPERTY_PREFIX) and len(prop):
            properties[name[len(PROPERTY_PREFIX):]] = unescape_control(prop[0].text or "")
    return properties


def read_xlsx(data: bytes, wanted: set[str] | None = None) -> RawBook:
    pkg = Package(data)
    if pkg.has("EncryptedPackage") or pkg.has("EncryptionInfo"):
        raise ReadError("file-encrypted")
    if pkg.has("mimetype") and b"opendocument" in pkg.read("mimetype", 4096):
        raise ReadError("unsupported-format", what=L("ODS 文件（LibreOffice/WPS 格式）", "an ODS file (LibreOffice/WPS)"))
    wb_part = workbook_part(pkg)
    entries, defined_names, date1904 = _workbook(pkg.read(wb_part), wb_part)
    targets: dict[str, str] = {}
    strings_part = None
    for rid, rel_type, target in relationships(pkg, wb_part):
        targets[rid] = target
        if rel_type.endswith("/sharedStrings"):
            strings_part = target
    sheets = [(name, targets.get(rid, "")) for name, rid, _ in entries]
    hidden = {name for name, _, is_hidden in entries if is_hidden}
    names = list(defined_names)

    if strings_part is None and pkg.has("xl/sharedStrings.xml"):
        strings_part = "xl/sharedStrings.xml"
    strings = shared_strings(pkg.read(strings_part), strings_part) if strings_part and pkg.has(strings_part) else []

    cells: dict[str, dict] = {}
    count = 0
    for name, target in sheets:
        if wanted is not None and name not in wanted:
            continue
        if not target or not pkg.has(target):
            continue
        decoded = sheet_cells(pkg.read(target), strings, date1904, target)
        count += len(decoded)
        if count > MAX_CELLS:
            raise ReadError("too-many-cells", limit=MAX_CELLS)
        cells[name] = decoded
    members = pkg.names()
    has_macros = any(m.endswith("vbaproject.bin") for m in members)
    external = any(m.startswith("xl/externallinks/") for m in members)
    return RawBook(sheet_names=[s for s, _ in sheets], hidden=hidden, names=names, date1904=date1904, cells=cells,
                   has_macros=has_macros, external_links=external, load_properties=lambda: custom_properties(pkg))

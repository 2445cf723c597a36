"""OOXML packages as a reader of untrusted files sees them: guarded zip members, parts found through their
relationships, and one decoder of worksheet cells.

The rules followed are those of ECMA-376 (Open Packaging Conventions and SpreadsheetML), not the habits of
one writer:
- part names are case-insensitive and may be stored with backslashes; the workbook is the part that
  `_rels/.rels` names as the office document, wherever it lives;
- elements are known by namespace URI (transitional or strict), never by prefix;
- a row or cell without the optional `r` attribute sits right after the previous one;
- text is XML text: CDATA, character references, CR LF → LF, `_xHHHH_` escapes;
- every cell type: shared and inline strings (rich runs, phonetic hints left out), numbers, booleans,
  errors, `t="str"` formula results and `t="d"` ISO dates (turned into serials like every other date).

The decoder has two paths that give the same result. The fast one is a single regular-expression pass over
the shape that Excel, WPS, LibreOffice, openpyxl and xlsxwriter write (unprefixed, UTF-8, every cell with
`r`); it declines, and the expat path takes the part, whenever any cell is not of that shape.
"""

from __future__ import annotations

import html
import io
import posixpath
import re
import zipfile
from datetime import datetime
from typing import Any
from xml.etree import ElementTree as ET
from xml.parsers import expat

from .errors import ReadError

MAX_ENTRIES = 2_000
MAX_MEMBER_BYTES = 48 * 1024 * 1024
MAX_TOTAL_BYTES = 160 * 1024 * 1024
MAX_CELLS = 400_000

MAIN_NS = ("http://schemas.openxmlformats.org/spreadsheetml/2006/main",
           "http://purl.oclc.org/ooxml/spreadsheetml/main")
REL_NS = ("http://schemas.openxmlformats.org/officeDocument/2006/relationships",
          "http://purl.oclc.org/ooxml/officeDocument/relationships")
PACKAGE_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
CUSTOM_NS = "http://schemas.openxmlformats.org/officeDocument/2006/custom-properties"
OFFICE_DOCUMENT = "/officeDocument"  # relationship types end so, in both conformance classes
SEP = "\x01"  # expat's namespace separator: "uri\x01local"

Cells = dict[tuple[int, int], tuple[Any, "str | None"]]


# ----------------------------------------------------------------------------------------------------
# The zip, guarded
# ----------------------------------------------------------------------------------------------------

class Package:
    """The members of a zip, inflated one by one under a byte cap (header sizes may lie)."""

    def __init__(self, data: bytes):
        try:
            self.zf = zipfile.ZipFile(io.BytesIO(data))
            infos = self.zf.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
            raise ReadError("file-corrupt", detail=f"corrupt zip: {exc}") from None
        if len(infos) > MAX_ENTRIES:
            raise ReadError("zip-bomb", detail=f"{len(infos)} members")
        # Part names are case-insensitive, and some writers store them with backslashes.
        self.by_name = {}
        for info in infos:
            self.by_name.setdefault(part_key(info.filename), info)
        self.total = 0
        self.rels: dict[str, list[tuple[str, str, str]]] = {}

    def has(self, name: str) -> bool:
        return part_key(name) in self.by_name

    def names(self) -> list[str]:
        return list(self.by_name)

    def read(self, name: str, cap: int = MAX_MEMBER_BYTES) -> bytes:
        info = self.by_name[part_key(name)]
        if info.flag_bits & 0x1:
            raise ReadError("file-encrypted")
        out = bytearray()
        try:
            with self.zf.open(info) as fh:
                while True:
                    chunk = fh.read(1 << 20)
                    if not chunk:
                        break
                    out += chunk
                    self.total += len(chunk)
                    if len(out) > cap or self.total > MAX_TOTAL_BYTES:
                        raise ReadError("zip-bomb", detail=f"{name} > {cap // (1 << 20)} MB")
        except ReadError:
            raise
        except Exception as exc:  # BadZipFile, zlib.error, NotImplementedError (compression), EOFError ...
            raise ReadError("file-corrupt", detail=f"{name}: {type(exc).__name__}: {exc}") from None
        return bytes(out)


def part_key(name: str) -> str:
    return name.replace("\\", "/").lstrip("/").lower()


def resolve(source_part: str, target: str) -> str:
    """A relationship target, relative to the part that holds the relationship, as a part name."""
    target = target.replace("\\", "/")
    if target.startswith("/"):
        return posixpath.normpath(target).lstrip("/")
    base = posixpath.dirname(source_part)
    return posixpath.normpath(posixpath.join(base, target)).lstrip("/")


def rels_part(part: str) -> str:
    folder, name = posixpath.split(part)
    return posixpath.join(folder, "_rels", name + ".rels")


# ----------------------------------------------------------------------------------------------------
# Small parts: a namespace-aware tree, DTDs refused
# ----------------------------------------------------------------------------------------------------

def _split(name: str) -> tuple[str, str]:
    ns, _, local = name.rpartition(SEP)
    return ns, local


def _parser(part: str) -> expat.XMLParserType:
    parser = expat.ParserCreate(namespace_separator=SEP)
    parser.buffer_text = True

    def refuse(*_):
        raise ReadError("xml-dtd", part=part)

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    return parser


def refuse_dtd(xml: bytes, part: str) -> None:
    """The fast paths never expand entities, but a part that declares any is refused all the same."""
    if b"<!DOCTYPE" in xml or b"<!ENTITY" in xml:
        raise ReadError("xml-dtd", part=part)


def _parse(parser, data: bytes, part: str) -> None:
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise ReadError("file-corrupt", detail=f"XML {part}: {exc}") from None


def parse_tree(data: bytes, part: str) -> ET.Element:
    """A whole (small) part as an ElementTree (C parser); tags are "{uri}local". DTDs are refused first,
    so no entity is ever declared, let alone expanded."""
    refuse_dtd(data, part)
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise ReadError("file-corrupt", detail=f"XML {part}: {exc}") from None


def local_name(tag: str) -> str:
    return tag.rpartition("}")[2]


def namespace(tag: str) -> str:
    return tag[1:].partition("}")[0] if tag.startswith("{") else ""


def children(element: ET.Element, local: str):
    """Descendants with that local name, in any namespace."""
    return element.iterfind(f".//{{*}}{local}")


def attr(element: ET.Element, local: str, namespaces: tuple[str, ...] = ("",)) -> str | None:
    for ns in namespaces:
        value = element.get(f"{{{ns}}}{local}" if ns else local)
        if value is not None:
            return value
    return None


def relationships(pkg: Package, part: str) -> list[tuple[str, str, str]]:
    """(id, type, target part) of a part's relationships; external targets are left out."""
    if part in pkg.rels:
        return pkg.rels[part]
    path = rels_part(part) if part else "_rels/.rels"
    out: list[tuple[str, str, str]] = []
    pkg.rels[part] = out
    if not pkg.has(path):
        return out
    for rel in children(parse_tree(pkg.read(path, 4 << 20), path), "Relationship"):
        if (rel.get("TargetMode") or "").lower() == "external":
            continue
        out.append((rel.get("Id") or "", rel.get("Type") or "", resolve(part, rel.get("Target") or "")))
    return out


# ----------------------------------------------------------------------------------------------------
# Text
# ----------------------------------------------------------------------------------------------------

_XML_ESCAPED_CONTROL = re.compile(r"_x([0-9A-Fa-f]{4})_")


def unescape_control(text: str) -> str:
    """OOXML writes characters XML cannot hold as _xHHHH_."""
    if "_x" in text:
        return _XML_ESCAPED_CONTROL.sub(lambda m: chr(int(m.group(1), 16)), text)
    return text


def raw_text(raw: bytes | None) -> str:
    """Element text taken by the fast path from raw UTF-8 bytes, as an XML parser would give it."""
    if not raw:
        return ""
    if b"\r" in raw:  # XML end-of-line handling; a &#13; reference survives, as it must
        raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    text = raw.decode("utf-8", "replace")
    if "&" in text:
        text = html.unescape(text)
    return unescape_control(text)


# ----------------------------------------------------------------------------------------------------
# Cell values
# ----------------------------------------------------------------------------------------------------

_EPOCH_1900 = datetime(1899, 12, 30)
_EPOCH_1904 = datetime(1904, 1, 1)


def iso_to_serial(text: str, date1904: bool) -> float | str:
    """A `t="d"` cell: ISO 8601 text → the serial number every other date cell holds."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", ""))
    except ValueError:
        return text
    if moment.tzinfo is not None:
        moment = moment.replace(tzinfo=None)
    delta = moment - (_EPOCH_1904 if date1904 else _EPOCH_1900)
    serial = delta.days + delta.seconds / 86400
    return float(serial) if serial >= 0 else text


def decode(t: str | None, raw: str | None, strings: list[str], date1904: bool) -> Any:
    """A cell's value from its type and the text of its <v>. Error values come back as their text."""
    if t == "s":
        try:
            return strings[int(raw)] if raw is not None else None
        except (ValueError, IndexError):
            return None
    if t in ("str", "e"):
        return raw if raw is not None else None
    if t == "b":
        return raw is not None and raw.strip() in ("1", "true")
    if raw is None:
        return None
    if t == "d":
        return iso_to_serial(raw, date1904)
    try:
        return float(raw)
    except ValueError:
        return raw


def column_index(letters: str) -> int:
    col = 0
    for ch in letters.upper():
        col = col * 26 + ord(ch) - 64
    return col - 1


_REF_PARTS = re.compile(r"([A-Za-z]{1,3})(\d{1,7})$")

# The shape every common writer uses: r, s, t in that order, no prefix.
_FAST_CELL_RE = re.compile(
    rb'<c r="([A-Z]{1,3})(\d{1,7})"(?: s="\d+")?(?: t="(\w+)")?(?: \w+="[^"]*")*>'
    rb'(?:<f>([^<]*)</f>|<f [^>]*?>([^<]*)</f>|<f[^>]*/>)?(?:<v>([^<]*)</v>|<v\s*/>)?'
    rb'(?:<is><t(?: [^>]*)?>([^<]*)</t></is>)?</c>')
_DEFAULT_MAIN_NS = re.compile(rb'<worksheet\b[^>]*\bxmlns="' + re.escape(MAIN_NS[0].encode()) + rb'"')
_ENCODING_RE = re.compile(rb'^<\?xml[^>]*?\bencoding=["\']([^"\']+)')


def is_utf8(xml: bytes) -> bool:
    """True when the part is UTF-8, the only encoding the fast paths read (UTF-16 is legal too)."""
    head = xml[:256]
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    elif head[:2] in (b"\xff\xfe", b"\xfe\xff") or head[:1] == b"\x00" or head[1:2] == b"\x00":
        return False
    m = _ENCODING_RE.match(head)
    return m is None or m.group(1).lower() in (b"utf-8", b"utf8")


def _fast_shape(xml: bytes) -> bool:
    return is_utf8(xml) and bool(_DEFAULT_MAIN_NS.search(xml[:4096]))


def sheet_cells(xml: bytes, strings: list[str], date1904: bool, part: str) -> Cells:
    """Every cell with a value or a formula: {(row, col): (value, formula text or None)}, 0-based."""
    refuse_dtd(xml, part)
    if _fast_shape(xml):
        cells = _cells_fast(xml, strings, date1904)
        if cells is not None:
            return cells
    return _cells_expat(xml, strings, date1904, part)


def _cells_fast(xml: bytes, strings: list[str], date1904: bool) -> Cells | None:
    if b'"shared"' in xml:  # shared formulas need their master's text translated: the full path does that
        return None
    found = _FAST_CELL_RE.findall(xml)
    if len(found) != xml.count(b"</c>") or b"<![CDATA[" in xml:
        return None
    if len(found) > MAX_CELLS:
        raise ReadError("too-many-cells", limit=MAX_CELLS)
    out: Cells = {}
    for letters, row, t, f1, f2, v, inline in found:
        formula = raw_text(f1 or f2) or None if (f1 or f2) else None
        if not t and v:  # a plain number, the commonest cell: no text decoding
            try:
                value = float(v)
            except ValueError:
                value = raw_text(v)
        elif t == b"s" and v:
            try:
                value = strings[int(v)]
            except (ValueError, IndexError):
                value = None
        elif t == b"inlineStr":
            value = raw_text(inline)
        else:
            value = decode(t.decode() if t else None, raw_text(v) if v else None, strings, date1904)
        if value is None and formula is None:
            continue
        col = letters[0] - 64
        for ch in letters[1:]:
            col = col * 26 + ch - 64
        out[(int(row) - 1, col - 1)] = (value, formula)
    return out


def _cells_expat(xml: bytes, strings: list[str], date1904: bool, part: str) -> Cells:
    """Any legal shape: prefixes, implicit positions, CDATA, inline rich text, other encodings.

    Long because expat's three callbacks share one cell state and must stay closures over it for speed
    (this path decodes every sheet the regex fast path declines); splitting them apart would turn each
    callback into attribute lookups on an object, on the hot path."""
    parser = _parser(part)
    out: Cells = {}
    state = {"row": -1, "col": -1, "t": None, "in": None, "v": None, "f": None, "is": None, "rph": 0,
             "shared": None}
    masters: dict[str, Any] = {}  # si → a translator of the shared formula's master (tokenized once)
    buffer: list[str] = []

    def start(name, attrs):
        ns, local = _split(name)
        if ns not in MAIN_NS:
            return
        if local == "row":
            r = attrs.get("r")
            state["row"] = int(r) - 1 if r and r.isdigit() else state["row"] + 1
            state["col"] = -1
        elif local == "c":
            ref = _REF_PARTS.match(attrs.get("r", "") or "")
            if ref:
                state["col"] = column_index(ref.group(1))
                state["row"] = int(ref.group(2)) - 1
            else:
                state["col"] += 1
                if state["row"] < 0:
                    state["row"] = 0
            state.update(t=attrs.get("t"), v=None, f=None, shared=None, **{"is": None})
        elif local in ("v", "f"):
            state["in"] = local
            buffer.clear()
            if local == "f" and attrs.get("t") == "shared":
                state["shared"] = attrs.get("si")
        elif local == "is":
            state["is"] = []
        elif local == "rPh":
            state["rph"] += 1
        elif local == "t" and state["is"] is not None and not state["rph"]:
            state["in"] = "t"
            buffer.clear()

    def end(name):
        ns, local = _split(name)
        if ns not in MAIN_NS:
            return
        if local in ("v", "f") and state["in"] == local:
            state[local] = "".join(buffer)
            state["in"] = None
        elif local == "t" and state["in"] == "t":
            state["is"].append("".join(buffer))
            state["in"] = None
        elif local == "rPh":
            state["rph"] -= 1
        elif local == "c":
            t = state["t"]
            if t == "inlineStr":
                value = unescape_control("".join(state["is"] or ())) if state["is"] is not None else None
            else:
                raw = state["v"]
                value = decode(t, unescape_control(raw) if raw is not None and t != "s" else raw, strings, date1904)
            formula = unescape_control(state["f"]) if state["f"] else None
            si = state["shared"]
            if si is not None:
                if formula:
                    masters[si] = _translator(formula, state["row"], state["col"])
                elif masters.get(si) is not None:
                    formula = _translate(masters[si], state["row"], state["col"])
            if value is None and formula is None:
                return
            out[(state["row"], state["col"])] = (value, formula)
            if len(out) > MAX_CELLS:
                raise ReadError("too-many-cells", limit=MAX_CELLS)

    def chars(text):
        if state["in"]:
            buffer.append(text)

    parser.StartElementHandler, parser.EndElementHandler, parser.CharacterDataHandler = start, end, chars
    _parse(parser, xml, part)
    return out


def cell_name(row: int, col: int) -> str:
    """0-based (row, col) → A1 address."""
    letters = ""
    col += 1
    while col:
        col, rem = divmod(col - 1, 26)
        letters = chr(65 + rem) + letters
    return f"{letters}{row + 1}"


def _translator(formula: str, row: int, col: int):
    """The master of a shared formula, tokenized once for all the cells that share it (None if openpyxl's
    tokenizer cannot split it: those cells then keep their value and no formula, never a wrong one)."""
    from openpyxl.formula.translate import Translator

    try:
        return Translator("=" + formula, origin=cell_name(row, col))
    except Exception:
        return None


def _translate(translator, to_row: int, to_col: int) -> str | None:
    """A shared formula's text as it reads in another cell of its range (relative references move)."""
    try:
        return translator.translate_formula(cell_name(to_row, to_col))[1:]
    except Exception:
        return None


# ----------------------------------------------------------------------------------------------------
# Shared strings
# ----------------------------------------------------------------------------------------------------

_SI_START_RE = re.compile(rb"<si\b")
_PLAIN_SI_RE = re.compile(rb"<si>\s*<t(?:\s[^>]*)?>([^<]*)</t>\s*</si>")


def shared_strings(xml: bytes, part: str) -> list[str]:
    refuse_dtd(xml, part)
    head = xml[:2048]
    if b"<sst" in head and b"<![CDATA[" not in xml and is_utf8(xml):
        plain = _PLAIN_SI_RE.findall(xml)
        if len(plain) == len(_SI_START_RE.findall(xml)):  # every item plain text, unprefixed: one pass
            return [raw_text(x) for x in plain]
    strings: list[str] = []
    parser = _parser(part)
    state = {"si": None, "in_t": False, "rph": 0}
    buffer: list[str] = []

    def start(name, attrs):
        ns, local = _split(name)
        if ns not in MAIN_NS:
            return
        if local == "si":
            state["si"] = []
        elif local == "rPh":
            state["rph"] += 1
        elif local == "t" and state["si"] is not None and not state["rph"]:
            state["in_t"] = True
            buffer.clear()

    def end(name):
        ns, local = _split(name)
        if ns not in MAIN_NS:
            return
        if local == "t" and state["in_t"]:
            state["si"].append("".join(buffer))
            state["in_t"] = False
        elif local == "rPh":
            state["rph"] -= 1
        elif local == "si" and state["si"] is not None:
            strings.append(unescape_control("".join(state["si"])))
            state["si"] = None

    def chars(text):
        if state["in_t"]:
            buffer.append(text)

    parser.StartElementHandler, parser.EndElementHandler, parser.CharacterDataHandler = start, end, chars
    _parse(parser, xml, part)
    return strings

"""The one decoder of worksheet cells and shared strings.

Every cell type: shared and inline strings (rich runs, phonetic hints left out), numbers, booleans,
errors, `t="str"` formula results and `t="d"` ISO dates (turned into serials like every other date);
shared formulas translated to each cell of their range; rows and cells without `r` take the next position.

Two paths give the same result. The fast one is a single regular-expression pass over the shape that
Excel, WPS, LibreOffice, openpyxl and xlsxwriter write (unprefixed, UTF-8, every cell with `r`); it
declines, and the expat path takes the part, whenever any cell is not of that shape."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

from perfxl.errors import ReadError
from perfxl.reader.xml import (
    MAIN_NS,
    feed,
    is_utf8,
    make_parser,
    raw_text,
    refuse_dtd,
    split_name,
    unescape_control,
    xml_chars,
)

MAX_CELLS = 400_000
Cells = dict[tuple[int, int], tuple[Any, "str | None"]]
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
    return number_or_text(raw)


def number_or_text(raw: str):
    """A number cell's value: its float, or its text when it is not a finite number. NaN and ±inf are
    what no spreadsheet writes but a hand-made file can ("<v>NaN</v>", "1e999"); taken as numbers they would
    compare as met (min(1, nan) is 1) and break every writer, so they stay text, which no rule reads as a
    number."""
    try:
        value = float(raw)
    except ValueError:
        return raw
    return value if math.isfinite(value) else raw


def column_index(letters: str) -> int:
    col = 0
    for ch in letters.upper():
        col = col * 26 + ord(ch) - 64
    return col - 1


_REF_PARTS = re.compile(r"([A-Za-z]{1,3})(\d{1,7})$")
_FAST_CELL_RE = re.compile(
    rb'<c r="([A-Z]{1,3})(\d{1,7})"(?: s="\d+")?(?: t="(\w+)")?(?: \w+="[^"]*")*>'
    rb'(?:<f>([^<]*)</f>|<f [^>]*?>([^<]*)</f>|<f[^>]*/>)?(?:<v>([^<]*)</v>|<v\s*/>)?'
    rb'(?:<is><t(?: [^>]*)?>([^<]*)</t></is>)?</c>')


_DEFAULT_MAIN_NS = re.compile(rb'<worksheet\b[^>]*\bxmlns="' + re.escape(MAIN_NS[0].encode()) + rb'"')


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


# A form's live checks are the same formulas in every unit's form: each text is decoded once in a process.
# Bounded (a hostile workbook's formulas are many and long): short texts only, and the memo starts afresh
# when full.
_FORMULAS: dict[bytes, str | None] = {}
_FORMULA_MEMO_BYTES = 1024
_FORMULA_MEMO_ENTRIES = 20_000


def _cells_fast(xml: bytes, strings: list[str], date1904: bool) -> Cells | None:
    if b'"shared"' in xml:  # shared formulas need their master's text translated: the full path does that
        return None
    found = _FAST_CELL_RE.findall(xml)
    if len(found) != xml.count(b"</c>") or b"<![CDATA[" in xml:
        return None
    if len(found) > MAX_CELLS:
        raise ReadError("too-many-cells", limit=MAX_CELLS)
    out: Cells = {}
    formulas = _FORMULAS
    for letters, row, t, f1, f2, v, inline in found:
        formula = None
        if f1 or f2:
            raw = f1 or f2
            formula = formulas.get(raw)
            if formula is None:
                formula = raw_text(raw) or None
                if len(raw) <= _FORMULA_MEMO_BYTES:
                    if len(formulas) >= _FORMULA_MEMO_ENTRIES:
                        formulas.clear()
                    formulas[raw] = formula
        if not t and v:  # a plain number, the commonest cell: no text decoding
            try:
                value = float(v)
            except ValueError:
                value = raw_text(v)
            else:
                if not math.isfinite(value):
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
    parser = make_parser(part)
    out: Cells = {}
    state = {"row": -1, "col": -1, "t": None, "in": None, "v": None, "f": None, "is": None, "rph": 0,
             "shared": None}
    masters: dict[str, Any] = {}  # si → a translator of the shared formula's master (tokenized once)
    buffer: list[str] = []

    def start(name, attrs):
        ns, local = split_name(name)
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
        ns, local = split_name(name)
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
    feed(parser, xml, part)
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


# Items of plain text or of runs of rich text, as Excel, WPS and LibreOffice write them: a run's format is
# empty elements only, its text one <t>. LibreOffice writes a run for each change of font, so a Chinese
# label with a digit in it is rich text. Excel writes an empty <phoneticPr> after the text a user typed in an
# East Asian locale: no text of its own. Every quantifier is possessive and every attribute quoted, so a
# match that fails gives nothing back to try again: time linear in the item, however it is spaced. Spaces
# are XML's four (a bytes pattern's \s also takes \f and \v, which XML refuses).
_WS = rb"[ \t\r\n]"
_ATTRIBUTE = _WS + rb"""++((?:xml:)?[A-Za-z_][\w.-]*+)""" + _WS + rb"*+=" + _WS + rb"""*+(?:"[^"<]*+"|'[^'<]*+')"""
_ATTRIBUTE_RE = re.compile(_ATTRIBUTE)  # each attribute's name
_NAME_AND_VALUE_RE = re.compile(_ATTRIBUTE.replace(b"""(?:"[^"<]*+"|'[^'<]*+')""", b"""(?:"([^"<]*+)"|'([^'<]*+)')"""))
_UNNAMED_ATTRIBUTE = _ATTRIBUTE.replace(b"((?:xml:)?", b"(?:(?:xml:)?")  # the same, capturing nothing
_ATTRIBUTES = rb"(?:" + _UNNAMED_ATTRIBUTE + rb")*+" + _WS + rb"*+"
_EMPTY = rb"<[A-Za-z]++" + _ATTRIBUTES + rb"/>"
_T = rb"<t" + _ATTRIBUTES + rb">([^<]*+)</t>"
_PHONETIC = rb"(?:<phoneticPr" + _ATTRIBUTES + rb"/>" + _WS + rb"*+)?"
# A run in three parts, to split an item's markup by: its format's elements, its text's attributes, its text.
# What lies between two runs must then be spaces, and after the last, spaces and perhaps phonetic properties.
_RUN_PARTS_RE = re.compile(
    rb"<r>(?:" + _WS + rb"*+(?:<rPr>((?:" + _WS + rb"*+" + _EMPTY + rb")*+)" + _WS + rb"*+</rPr>|<rPr" + _WS
    + rb"*+/>))?" + _WS + rb"*+<t(" + _ATTRIBUTES + rb")>([^<]*+)</t>" + _WS + rb"*+</r>")
_AFTER_RUNS_RE = re.compile(_WS + rb"*+" + _PHONETIC)
_PLAIN_ITEM_RE = re.compile(_WS + rb"*+" + _T + _WS + rb"*+" + _PHONETIC)
_PLAIN_SI_RE = re.compile(rb"<si>" + _WS + rb'*+<t(?: xml:space="preserve")?>([^<]*+)</t>' + _WS + rb"*+</si>")
# A tag with two attributes or more: are they distinct?
_TAG_ATTRIBUTES_RE = re.compile(rb"<[A-Za-z]++((?:" + _UNNAMED_ATTRIBUTE + rb"){2,}+)")
# The part's start: its XML declaration (version, encoding, standalone, in that order) and the root's tag
_DECLARATION_RE = re.compile(
    rb"<\?xml" + _WS + rb"++version" + _WS + rb"*+=" + _WS + rb"""*+(?:"1\.[0-9]++"|'1\.[0-9]++')"""
    rb"(?:" + _WS + rb"++encoding" + _WS + rb"*+=" + _WS + rb"""*+(?:"[A-Za-z][\w.-]*+"|'[A-Za-z][\w.-]*+'))?"""
    rb"(?:" + _WS + rb"++standalone" + _WS + rb"*+=" + _WS + rb"""*+(?:"(?:yes|no)"|'(?:yes|no)'))?"""
    + _WS + rb"*+\?>")
_SST_OPEN_RE = re.compile(_WS + rb"*+<sst((?:" + _UNNAMED_ATTRIBUTE + rb")*+)" + _WS + rb"*+>")
_MAIN = MAIN_NS[0].encode()
# What no well-formed part holds, which the parser refuses and the regular expressions would read: control
# characters, an "&" that starts no reference XML knows or names a character XML cannot hold, "]]>" in a
# text, U+FFFE and U+FFFF. Looked for in each item (and text) the first time it is seen, not in the part: the
# memos then spare the look to every later form that holds the same item.
_KNOWN_REFERENCE_RE = re.compile(rb"&(?:amp|lt|gt|quot|apos|#[0-9]++|#x[0-9A-Fa-f]++);")
_CHARACTER_REFERENCE_RE = re.compile(rb"&#(x?+)0*+([0-9A-Fa-f]*+);")


def _legal_character(code: int) -> bool:
    """A character XML 1.0 may hold (its production Char)."""
    return (0x20 <= code <= 0xD7FF or code in (0x9, 0xA, 0xD) or 0xE000 <= code <= 0xFFFD
            or 0x10000 <= code <= 0x10FFFF)


_NOT_CONTROLS = bytes(range(0x20, 0x100)) + b"\t\n\r"  # deleted from bytes, what is left is a control


def _only_what_xml_allows(raw: bytes) -> bool:
    """Markup or text holding only what a well-formed part may: UTF-8, no control character, no U+FFFE or
    U+FFFF, no "]]>", and every "&" a reference XML knows to a character XML may hold."""
    if raw.translate(None, _NOT_CONTROLS):
        return False
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if "]]>" in text or "\ufffe" in text or "\uffff" in text:
        return False
    if b"&" in raw:
        if raw.count(b"&") != len(_KNOWN_REFERENCE_RE.findall(raw)):
            return False
        if b"&#" in raw:
            for hexadecimal, digits in _CHARACTER_REFERENCE_RE.findall(raw):
                if len(digits) > 8 or not _legal_character(int(digits or b"0", 16 if hexadecimal else 10)):
                    return False
    return True


def _distinct_names(attributes: bytes) -> bool:
    """A tag's attributes (as the patterns above match them) name none twice."""
    names = _ATTRIBUTE_RE.findall(attributes)
    return len(set(names)) == len(names)


def _distinct_attributes(markup: bytes) -> bool:
    """No tag in the markup names an attribute twice (the parser refuses that)."""
    return all(_distinct_names(attributes) for attributes in _TAG_ATTRIBUTES_RE.findall(markup))


def _root_content(xml: bytes) -> tuple[int, int] | None:
    """Where the root's content starts and ends, when the part is a UTF-8 <sst> of the main namespace, that
    declared on the root's own tag (a second namespace would put elements in another vocabulary, whose texts
    are not the table's, or items under a prefix), with nothing before it but a declaration (a processing
    instruction or comment may hold what reads like an item) and nothing after it. None otherwise. What lies
    between is the callers' to check: items, and spaces between them."""
    start = 3 if xml.startswith(b"\xef\xbb\xbf") else 0
    declaration = _DECLARATION_RE.match(xml, start)
    if declaration is not None:
        start = declaration.end()
    root = _SST_OPEN_RE.match(xml, start)
    if root is None or not is_utf8(xml) or not _only_what_xml_allows(root.group(0)):
        return None
    attributes = {name: double or single for name, double, single in _NAME_AND_VALUE_RE.findall(root.group(1))}
    if attributes.get(b"xmlns") != _MAIN or len(attributes) != len(_ATTRIBUTE_RE.findall(root.group(1))):
        return None  # the main namespace not declared on the root itself, or an attribute named twice
    end = len(xml.rstrip(b" \t\r\n")) - 6
    if end < root.end() or not xml.startswith(b"</sst>", end):
        return None
    return root.end(), end


# Each short plain text decoded once in a process: every unit's form of a template carries the same labels
# and choices (about 100 of a form's 140 shared strings). Never more than TEXTS_KEPT, however many one
# workbook holds (a hostile one may hold millions, and a process such as the portal's lives long). Items
# read as markup (a part with rich text in it) are remembered apart, by their whole markup, and only once
# it has been checked: a text never stands for an item.
_TEXTS_SEEN: dict[bytes, str] = {}
_ITEMS_SEEN: dict[bytes, str] = {}
TEXTS_KEPT, ITEMS_KEPT = 20_000, 5_000
TEXT_BYTES, ITEM_BYTES = 256, 1024  # the longest remembered: a text; an item's markup (~150 bytes a run)


def _text_seen(raw: bytes) -> str | None:
    """A plain item's text (None when it holds what XML does not allow: the parser reads the part)."""
    if not _only_what_xml_allows(raw):
        return None
    text = raw_text(raw, strict=True)
    if len(raw) <= TEXT_BYTES and text and len(_TEXTS_SEEN) < TEXTS_KEPT:
        _TEXTS_SEEN[raw] = text
    return text


def _item_text(inner: bytes) -> str | None:
    """The text of an item's markup, plain or rich (None for any other markup). A rich item's runs' texts
    are joined, then OOXML's escapes read across them, as the parser does."""
    # an item opened inside one, or a namespace declared in one, is the parser's to read
    if b"<si" in inner or b"xmlns" in inner or not _only_what_xml_allows(inner):
        return None
    plain = _PLAIN_ITEM_RE.fullmatch(inner)
    if plain:
        if not _distinct_attributes(inner):
            return None
        text = raw_text(plain.group(1), strict=True)
    else:
        # One pass splits the runs from what lies between them (a 41 KB item of 400 runs, LibreOffice's
        # copy of a self-evaluation form's declared sheet, took 1.2 ms to match whole, find its texts and
        # look at every tag's attributes; each form holds three such items, all its own)
        pieces = _RUN_PARTS_RE.split(inner)
        between, formats, attributes, raws = pieces[0::4], pieces[1::4], pieces[2::4], pieces[3::4]
        if (not raws or any(p.strip(b" \t\r\n") for p in between[:-1]) or not _AFTER_RUNS_RE.fullmatch(between[-1])
                or not all(_distinct_attributes(f) for f in set(formats) if f)
                or not all(_distinct_names(a) for a in set(attributes)) or not _distinct_attributes(between[-1])):
            return None
        if b"\r" in inner:  # a line end cut between two runs is two line ends: each run read apart
            text = unescape_control("".join(xml_chars(raw, strict=True) for raw in raws))
        else:  # no reference spans two runs (each "&" starts a whole one, as checked above)
            text = unescape_control(xml_chars(b"".join(raws), strict=True))
    if len(inner) <= ITEM_BYTES and text and len(_ITEMS_SEEN) < ITEMS_KEPT:
        _ITEMS_SEEN[inner] = text
    return text


def _plain_and_rich(xml: bytes, start: int, end: int) -> list[str] | None:
    """Every item's text when each is plain text or runs of rich text, unprefixed, with nothing but spaces
    between them (None otherwise: the XML parser reads them)."""
    seen = _ITEMS_SEEN
    if len(seen) >= ITEMS_KEPT:  # full: start again, so that the items of the forms now read are kept
        seen.clear()
    texts = []
    # Items end at "</si>", which cannot stand in a text or a value ("<" is escaped there), nor in a
    # comment, a CDATA section or a processing instruction in an item: an item holding one is refused
    pieces = xml[start:end].split(b"</si>")
    if pieces.pop().strip(b" \t\r\n"):
        return None
    for piece in pieces:
        piece = piece.lstrip(b" \t\r\n")
        if not piece.startswith(b"<si>"):
            return None
        inner = piece[4:]
        text = seen.get(inner)
        if text is None:
            text = _item_text(inner)
            if text is None:
                return None
        texts.append(text)
    return texts


def shared_strings(xml: bytes, part: str) -> list[str]:
    refuse_dtd(xml, part)
    texts = _strings_fast(xml)
    return texts if texts is not None else _strings_expat(xml, part)


def _strings_fast(xml: bytes) -> list[str] | None:
    """The texts of a UTF-8 part whose items are plain text or runs of rich text, unprefixed, each perhaps
    with Excel's phonetic properties, read by regular expressions; None for any other part (the XML parser
    reads it, and refuses what is not well-formed)."""
    content = _root_content(xml)
    if content is None:
        return None
    start, end = content
    try:
        if b"<r>" not in xml:
            seen = _TEXTS_SEEN
            if len(seen) >= TEXTS_KEPT:  # full: start again, so that the texts of the forms now read are kept
                seen.clear()
            # what lies between the items, and the items' texts, in turn: between them, spaces only
            pieces = _PLAIN_SI_RE.split(xml[start:end])
            if not any(p.strip(b" \t\r\n") for p in pieces[::2]):
                texts = [seen.get(x) or _text_seen(x) for x in pieces[1::2]]
                return None if None in texts else texts
        return _plain_and_rich(xml, start, end)
    except UnicodeDecodeError:  # not UTF-8 after all: the parser says so
        return None


def _strings_expat(xml: bytes, part: str) -> list[str]:
    strings: list[str] = []
    parser = make_parser(part)
    state = {"si": None, "in_t": False, "rph": 0}
    buffer: list[str] = []

    def start(name, attrs):
        ns, local = split_name(name)
        if ns not in MAIN_NS:
            return
        if local == "si":
            state["si"], state["in_t"] = [], False  # an item opened inside a text ends that text
        elif local == "rPh":
            state["rph"] += 1
        elif local == "t" and state["si"] is not None and not state["rph"]:
            state["in_t"] = True
            buffer.clear()

    def end(name):
        ns, local = split_name(name)
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
    feed(parser, xml, part)
    return strings

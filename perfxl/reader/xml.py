"""XML as a reader of untrusted files must take it: elements known by namespace URI (transitional or
strict), never by prefix; DTDs and entity declarations refused before parsing; text as XML defines it
(CDATA, character references, CR LF → LF, `_xHHHH_` escapes)."""

from __future__ import annotations

import html
import re
from xml.etree import ElementTree as ET
from xml.parsers import expat

from perfxl.errors import ReadError

MAIN_NS = ("http://schemas.openxmlformats.org/spreadsheetml/2006/main",
           "http://purl.oclc.org/ooxml/spreadsheetml/main")


REL_NS = ("http://schemas.openxmlformats.org/officeDocument/2006/relationships",
          "http://purl.oclc.org/ooxml/officeDocument/relationships")


PACKAGE_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
CUSTOM_NS = "http://schemas.openxmlformats.org/officeDocument/2006/custom-properties"
OFFICE_DOCUMENT = "/officeDocument"  # relationship types end so, in both conformance classes
SEP = "\x01"  # expat's namespace separator: "uri\x01local"


def split_name(name: str) -> tuple[str, str]:
    ns, _, local = name.rpartition(SEP)
    return ns, local


def make_parser(part: str) -> expat.XMLParserType:
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


def feed(parser, data: bytes, part: str) -> None:
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


_XML_ESCAPED_CONTROL = re.compile(r"_x([0-9A-Fa-f]{4})_")


def unescape_control(text: str) -> str:
    """OOXML writes characters XML cannot hold as _xHHHH_."""
    if "_x" in text:
        return _XML_ESCAPED_CONTROL.sub(_escaped_character, text)
    return text


def _escaped_character(match: re.Match) -> str:
    code = int(match.group(1), 16)
    # _xD800_ … _xDFFF_ name half a UTF-16 pair, no character: it becomes U+FFFD, as an XML parser makes
    # of a bad reference, so no text read from a file can fail to encode later.
    return "\ufffd" if 0xD800 <= code <= 0xDFFF else chr(code)


def raw_text(raw: bytes | None, strict: bool = False) -> str:
    """Element text taken by the fast path from raw UTF-8 bytes, as an XML parser would give it."""
    return unescape_control(xml_chars(raw, strict)) if raw else ""


def xml_chars(raw: bytes, strict: bool = False) -> str:
    """The characters of raw UTF-8 text between two tags, as an XML parser gives them, before OOXML's
    `_xHHHH_` escapes (which may run on into the next run of rich text) are read. `strict`: UnicodeDecodeError
    for bytes that are not UTF-8 (the parser refuses them), else each is read as U+FFFD."""
    if b"\r" in raw:  # XML end-of-line handling; a &#13; reference survives, as it must
        raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    text = raw.decode("utf-8", "strict" if strict else "replace")
    return _REFERENCE.sub(_referenced, text) if "&" in text else text


# XML's five entities and character references, each read as XML reads it: html.unescape maps &#x80;–&#x9F;
# through Windows-1252 and drops &#x7F; and the noncharacters, which XML keeps. Any other name (never in a
# well-formed part: no DTD is allowed) is read as HTML reads it, as before.
# Leading zeros are allowed (&#x0000004E2D; is 中), and read past without backtracking into the digits.
_REFERENCE = re.compile(r"&(?:#x0*+([0-9A-Fa-f]{1,8})|#0*+([0-9]{1,10})|#x?(0)++|([A-Za-z][A-Za-z0-9]*));")
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


def _referenced(match: re.Match) -> str:
    hexadecimal, decimal, zero, name = match.groups()
    if zero is not None:
        return "\ufffd"
    if name is not None:
        return _ENTITIES.get(name) or html.unescape(match.group(0))
    code = int(hexadecimal, 16) if hexadecimal is not None else int(decimal)
    return "\ufffd" if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF or code == 0 else chr(code)


_ENCODING_RE = re.compile(rb'<\?xml\s[^>]*?\bencoding\s*=\s*["\']([^"\']+)')


def is_utf8(xml: bytes) -> bool:
    """True when the part is UTF-8, the only encoding the fast paths read (UTF-16 is legal too)."""
    start = 3 if xml.startswith(b"\xef\xbb\xbf") else 0
    head = xml[start:start + 2]
    if not start and (head in (b"\xff\xfe", b"\xfe\xff") or head[:1] == b"\x00" or head[1:2] == b"\x00"):
        return False
    if not xml.startswith(b"<?xml", start):
        return True
    end = xml.find(b"?>", start, start + 1024)
    if end < 0:  # a declaration this long is no office suite's: the XML parser reads it
        return False
    m = _ENCODING_RE.match(xml, start, end)
    return m is None or m.group(1).lower() == b"utf-8"  # the parser refuses "utf8"

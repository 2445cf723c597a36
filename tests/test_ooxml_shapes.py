"""Every legal shape of OOXML that other programs write reads exactly like the form perfxl wrote.

Each variant is built here by rewriting the XML of a real filled form (no third-party files are copied):
the same workbook, saved as the .NET Open XML SDK, a government export system or an old Mac Excel would
save it. The reader must give the same form data and `validate` the same problems.
"""

from __future__ import annotations

import io
import re
import zipfile
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape as xml_escape

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from perfxl import generator as generate
from perfxl.pipeline import CheckOptions, check_file
from perfxl.read import read_workbook
from perfxl.reader.xml import MAIN_NS
from perfxl.spec import load_spec

MAIN = MAIN_NS[0]
R_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
UNIT = {"code": "610001", "name": "形状测试单位", "department": "测试部门"}


def _form() -> bytes:
    """A filled form as xlsxwriter writes it (shared strings), with the fill date typed as a real date."""
    spec = load_spec("national/project", 2022, unit=UNIT)
    project = {"fields": {"unit_name": UNIT["name"], "project_name": "宣传服务 & <项目>", "department": "测试部门",
                          "implementing_unit": UNIT["name"], "project_attr": "新增项目", "project_period": "2022年",
                          "long_term_goal": "第一行：加强宣传\n第二行：提升知晓率", "annual_goal": "年度目标  两个空格 ",
                          "preparer": "张三", "phone": "08162345678", "fill_date": "2021-11-15",
                          "funds_total_annual": 120.5, "funds_fiscal_annual": 100, "funds_other_annual": 20.5,
                          "funds_total_mid": 120.5, "funds_fiscal_mid": 100, "funds_other_mid": 20.5},
               "tables": {"indicators": [["产出指标", "数量指标", "培训人次", "≥100人次"],
                                         ["产出指标", "质量指标", "合格率", "=100%"],
                                         ["效益指标", "社会效益指标", "政策知晓率", "≥90%"],
                                         ["满意度指标", "服务对象满意度指标", "满意度", "≥95%"]]}}
    members = _members(generate.build_workbook(spec, UNIT, values=[project]))
    index = _strings(members).index("2021-11-15")
    for part in _sheet_parts(members):
        members[part] = re.sub(rb'(<c r="[A-Z]+\d+"(?: s="\d+")?) t="s"><v>%d</v>' % index, rb"\1><v>44515</v>",
                               members[part])
    return _zip(members)


@pytest.fixture(scope="module")
def original() -> bytes:
    return _form()


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return out.getvalue()


def _sheet_parts(members) -> list[str]:
    return sorted(n for n in members if re.fullmatch(r"xl/worksheets/sheet\d+\.xml", n))


def _strings(members) -> list[str]:
    root = ET.fromstring(members["xl/sharedStrings.xml"])
    return ["".join(t.text or "" for t in si.iter(f"{{{MAIN}}}t")) for si in root]


def _tostring(root: ET.Element, prefix: str = "") -> bytes:
    ET.register_namespace(prefix, MAIN)
    ET.register_namespace("r", R_NS)
    try:
        return ET.tostring(root, xml_declaration=True, encoding="UTF-8")
    finally:
        ET.register_namespace("", MAIN)


def _rewrite_sheets(data: bytes, change) -> bytes:
    """Apply change(root, strings) to every worksheet tree and write it back unprefixed."""
    members = _members(data)
    strings = _strings(members)
    for part in _sheet_parts(members):
        root = ET.fromstring(members[part])
        change(root, strings)
        members[part] = _tostring(root)
    return _zip(members)


def _q(tag: str) -> str:
    return f"{{{MAIN}}}{tag}"


# --- the variants ----------------------------------------------------------------------------------

def prefixed(data: bytes) -> bytes:
    """<x:worksheet xmlns:x=…>, <x:c>, <x:row>: the .NET Open XML SDK's way, in every SpreadsheetML part."""
    members = _members(data)
    for part in [*_sheet_parts(members), "xl/workbook.xml", "xl/sharedStrings.xml"]:
        members[part] = _tostring(ET.fromstring(members[part]), prefix="x")
    assert b"<x:c " in members[_sheet_parts(members)[0]]
    return _zip(members)


def implicit_positions(data: bytes) -> bytes:
    """No r on rows or cells: gaps are filled with empty elements so every position is implicit."""
    def change(root, strings):
        data_el = root.find(_q("sheetData"))
        rows = list(data_el)
        for row in rows:
            data_el.remove(row)
        expected_row = 1
        for row in rows:
            number = int(row.get("r"))
            while expected_row < number:
                data_el.append(ET.Element(_q("row")))
                expected_row += 1
            cells = list(row)
            for cell in cells:
                row.remove(cell)
            col = 0
            for cell in cells:
                letters = re.match(r"[A-Z]+", cell.get("r")).group(0)
                index = 0
                for ch in letters:
                    index = index * 26 + ord(ch) - 64
                while col < index - 1:
                    row.append(ET.Element(_q("c")))
                    col += 1
                del cell.attrib["r"]
                row.append(cell)
                col += 1
            del row.attrib["r"]
            row.attrib.pop("spans", None)
            data_el.append(row)
            expected_row += 1
    return _rewrite_sheets(data, change)


def inline_strings(data: bytes) -> bytes:
    def change(root, strings):
        for cell in root.iter(_q("c")):
            if cell.get("t") == "s":
                v = cell.find(_q("v"))
                cell.remove(v)
                cell.set("t", "inlineStr")
                is_el = ET.SubElement(cell, _q("is"))
                ET.SubElement(is_el, _q("t")).text = strings[int(v.text)]
    return _rewrite_sheets(data, change)


def v_space_preserve(data: bytes) -> bytes:
    def change(root, strings):
        for v in root.iter(_q("v")):
            v.set("{http://www.w3.org/XML/1998/namespace}space", "preserve")
    return _rewrite_sheets(data, change)


def cdata(data: bytes) -> bytes:
    members = _members(data)
    sst = members["xl/sharedStrings.xml"].decode()

    def wrap(m):
        text = m.group(2).replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&amp;", "&")
        return f"{m.group(1)}<![CDATA[{text}]]></t>"
    members["xl/sharedStrings.xml"] = re.sub(r"(<t(?: [^>]*)?>)([^<]*)</t>", wrap, sst).encode()
    assert b"<![CDATA[" in members["xl/sharedStrings.xml"]
    return _zip(members)


def crlf(data: bytes) -> bytes:
    members = _members(data)
    assert b"\n" in members["xl/sharedStrings.xml"].split(b"?>", 1)[1]
    members["xl/sharedStrings.xml"] = members["xl/sharedStrings.xml"].replace(b"\n", b"\r\n")
    return _zip(members)


def iso_dates(data: bytes) -> bytes:
    """t="d": the fill date as ISO 8601 text, as Excel's strict format and some exporters write it."""
    def change(root, strings):
        for cell in root.iter(_q("c")):
            v = cell.find(_q("v"))
            if cell.get("t") is None and v is not None and v.text == "44515":  # 2021-11-15
                cell.set("t", "d")
                v.text = "2021-11-15T00:00:00"
                change.done = True
    change.done = False
    out = _rewrite_sheets(data, change)
    assert change.done, "the form holds the fill date as a serial"
    return out


def rich_text(data: bytes) -> bytes:
    """Shared strings written as runs with formatting and a phonetic hint."""
    members = _members(data)
    root = ET.fromstring(members["xl/sharedStrings.xml"])
    for si in root:
        t = si.find(_q("t"))
        if t is None or len(t.text or "") < 2:
            continue
        text = t.text
        si.remove(t)
        for piece in (text[:1], text[1:]):
            run = ET.SubElement(si, _q("r"))
            rpr = ET.SubElement(run, _q("rPr"))
            ET.SubElement(rpr, _q("b"))
            rt = ET.SubElement(run, _q("t"))
            rt.text = piece
            rt.set("{http://www.w3.org/XML/1998/namespace}space", "preserve")
        rph = ET.SubElement(si, _q("rPh"), sb="0", eb="1")
        ET.SubElement(rph, _q("t")).text = "ふりがな"
    members["xl/sharedStrings.xml"] = _tostring(root)
    return _zip(members)


def backslash_names(data: bytes) -> bytes:
    members = _members(data)
    return _zip({name.replace("/", "\\") if name.startswith("xl/") else name: payload
                 for name, payload in members.items()})


def workbook_elsewhere(data: bytes) -> bytes:
    """The workbook part at excel/book.xml, found only through _rels/.rels."""
    members = _members(data)
    moved = {}
    for name, payload in members.items():
        if name == "xl/workbook.xml":
            moved["excel/book.xml"] = payload
        elif name == "xl/_rels/workbook.xml.rels":
            moved["excel/_rels/book.xml.rels"] = payload
        elif name.startswith("xl/"):
            moved["excel/" + name[3:]] = payload
        else:
            moved[name] = payload
    moved["_rels/.rels"] = moved["_rels/.rels"].replace(b"xl/workbook.xml", b"excel/book.xml")
    moved["[Content_Types].xml"] = moved["[Content_Types].xml"].replace(b"/xl/", b"/excel/").replace(
        b"/excel/workbook.xml", b"/excel/book.xml")
    return _zip(moved)


def utf16_parts(data: bytes) -> bytes:
    members = _members(data)
    for part in [*_sheet_parts(members), "xl/sharedStrings.xml"]:
        text = members[part].decode("utf-8")
        text = re.sub(r'encoding="UTF-8"', 'encoding="UTF-16"', text, count=1, flags=re.I)
        members[part] = text.encode("utf-16")
    return _zip(members)


def strict_namespace(data: bytes) -> bytes:
    """ISO 29500 strict conformance: the purl.oclc.org namespaces."""
    members = _members(data)
    strict = MAIN_NS[1].encode()
    for part in [*_sheet_parts(members), "xl/workbook.xml", "xl/sharedStrings.xml"]:
        members[part] = members[part].replace(MAIN.encode(), strict).replace(
            R_NS.encode(), b"http://purl.oclc.org/ooxml/officeDocument/relationships")
    return _zip(members)


VARIANTS = {f.__name__: f for f in (prefixed, implicit_positions, inline_strings, v_space_preserve, cdata, crlf,
                                    iso_dates, rich_text, backslash_names, workbook_elsewhere, utf16_parts,
                                    strict_namespace)}


def _comparable(form) -> dict:
    data = form.to_dict()
    for key in ("path", "size", "sha256"):
        data.pop(key)
    return data


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_ooxml_shape_reads_like_the_original(tmp_path, original, variant):
    source = tmp_path / "original.xlsx"
    source.write_bytes(original)
    changed = tmp_path / f"{variant}.xlsx"
    changed.write_bytes(VARIANTS[variant](original))
    assert changed.read_bytes() != original
    expected, got = read_workbook(source), read_workbook(changed)
    assert _comparable(got) == _comparable(expected)
    fields = expected.sheets[0].fields
    assert fields["long_term_goal"].value == "第一行：加强宣传\n第二行：提升知晓率"
    assert fields["project_name"].value == "宣传服务 & <项目>"
    assert len(expected.sheets[0].tables["indicators"]) == 4


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_ooxml_shape_validates_like_the_original(tmp_path, original, variant):
    source = tmp_path / "original.xlsx"
    source.write_bytes(original)
    changed = tmp_path / f"{variant}.xlsx"
    changed.write_bytes(VARIANTS[variant](original))

    def projection(path):
        return [(p.code, p.severity, p.sheet, p.cell) for p in check_file(path, CheckOptions()).problems]
    assert projection(changed) == projection(source)
    assert not [p for p in projection(source) if p[1] == "error"]


def test_shared_formula_is_translated_to_each_cell():
    """Excel writes a filled-down formula once, as the master of a shared range; every other reader gives
    each cell its own text, so perfxl must too (it used to give the dependents no formula at all)."""
    from perfxl.reader.cells import sheet_cells

    xml = (f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{MAIN}"><sheetData>'
           '<row r="1"><c r="A1"><f t="shared" ref="A1:A3" si="0">B1*2+$C$1</f><v>2</v></c></row>'
           '<row r="2"><c r="A2"><f t="shared" si="0"/><v>4</v></c></row>'
           '<row r="3"><c r="A3"><f t="shared" si="0"/><v>6</v></c></row>'
           '</sheetData></worksheet>').encode()
    cells = sheet_cells(xml, [], False, "sheet1.xml")
    assert cells == {(0, 0): (2.0, "B1*2+$C$1"), (1, 0): (4.0, "B2*2+$C$1"), (2, 0): (6.0, "B3*2+$C$1")}


@settings(max_examples=80, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40).map(xml_escape)
                | st.sampled_from(["SUM(A1:A3)", 'A1&amp;"_x000D_"', "IF(B2&gt;0,1,0)", "A1&#13;B1\r\nC1"]),
                min_size=1, max_size=12))
def test_each_cell_gets_its_own_formula_text_when_texts_are_decoded_once_per_process(formulas):
    """The fast path decodes each formula text once in a process (a form's live checks are the same in every
    unit's form): cells read with the memo warm, and with a memo so small it starts afresh mid-sheet, hold
    the very texts the full XML parser gives them."""
    from perfxl.reader import cells as cells_module

    cells_xml = "".join(f'<row r="{i}"><c r="A{i}"><f>{f}</f><v>{i}</v></c></row>'
                        for i, f in enumerate(formulas, 1))
    xml = (f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{MAIN}"><sheetData>{cells_xml}'
           '</sheetData></worksheet>').encode()
    full = cells_module._cells_expat(xml, [], False, "sheet1.xml")
    assert cells_module._cells_fast(xml, [], False) == full
    assert cells_module._cells_fast(xml, [], False) == full  # every text now from the memo
    kept = cells_module._FORMULA_MEMO_ENTRIES, cells_module._FORMULAS
    cells_module._FORMULA_MEMO_ENTRIES, cells_module._FORMULAS = 2, {}
    try:
        assert cells_module._cells_fast(xml, [], False) == full
        assert cells_module._cells_fast(xml, [], False) == full
        assert len(cells_module._FORMULAS) <= 2
    finally:
        cells_module._FORMULA_MEMO_ENTRIES, cells_module._FORMULAS = kept


def test_a_defined_names_reference_is_parsed_once_only_when_short():
    """Every unit's form holds the same names, so their references are parsed once in a process; a long one
    (a hostile workbook's) is parsed each time and never held after its file is done."""
    from perfxl.reader import names

    short, long = "'表一'!$B$3:$D$9", "'" + "长" * 300 + "'!$A$1"
    assert names.parse_ref(short) == ("表一", (2, 1), (8, 3))
    assert names.parse_ref(short) is names.parse_ref(short)
    held = names._parse_ref.cache_info().currsize
    assert names.parse_ref(long) == ("长" * 300, (0, 0), (0, 0))
    assert names._parse_ref.cache_info().currsize == held


def test_a_workbook_part_parsed_once_for_many_forms_is_each_form_s_own(original, tmp_path):
    """The workbook part and the relationships are parsed once per distinct text (perfxl.reader.parts):
    what one form's reader does with its book does not reach the next form's, and a form whose workbook part
    differs by one defined name reads that name, not the one remembered."""
    from perfxl.reader.book import load_raw

    first, _, _ = load_raw(tmp_path / "a.xlsx", original)
    names, sheets, hidden = list(first.names), list(first.sheet_names), set(first.hidden)
    first.names.append(("t_indicators", None, "'项目1'!$A$1:$A$2"))
    first.sheet_names.append("另一张")
    first.hidden.add("另一张")
    second, _, _ = load_raw(tmp_path / "b.xlsx", original)
    assert (second.names, second.sheet_names, second.hidden) == (names, sheets, hidden)
    goal = dict((n, r) for n, _, r in names)["f_annual_goal"]
    members = _members(original)
    moved = members["xl/workbook.xml"].replace(goal.encode() + b"<", goal.replace("$13", "$12").encode() + b"<", 1)
    assert moved != members["xl/workbook.xml"]
    third, _, _ = load_raw(tmp_path / "c.xlsx", _zip({**members, "xl/workbook.xml": moved}))
    assert dict((n, r) for n, _, r in third.names)["f_annual_goal"] == goal.replace("$13", "$12")


_RPR_CHILDREN = ['<b/>', '<i/>', '<sz val="10"/>', '<color rgb="FF000000"/>', '<rFont val="宋体"/>',
                 '<rFont val="WenQuanYi Zen Hei"/>', '<family val="2"/>', '<charset val="134"/>',
                 '<scheme val="minor"/>', '<u val="single"/>', '<vertAlign val="superscript"/>']
_SPACE = st.sampled_from(["", "", " ", "\n", "\r\n  "])
_TEXT = (st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=12).map(xml_escape)
         | st.sampled_from(["_x000D_", "_x00", "0D_", "&#13;", "a\r\nb", "  ", "＝100%", "&amp;", "2020"]))


@st.composite
def _run(draw) -> str:
    space = draw(_SPACE)
    rpr = draw(st.sampled_from(["none", "empty", "children"]))
    props = ("" if rpr == "none" else "<rPr/>" if rpr == "empty" else
             "<rPr>" + space.join(draw(st.lists(st.sampled_from(_RPR_CHILDREN), max_size=5))) + "</rPr>")
    t = draw(st.sampled_from(["<t>", '<t xml:space="preserve">']))
    return f"<r>{space}{props}{space}{t}{draw(_TEXT)}</t>{space}</r>"


_PHONETIC = st.sampled_from(["", "", '<phoneticPr fontId="1" type="noConversion"/>', "<phoneticPr/>"])
_ITEM = (st.tuples(_TEXT, _PHONETIC).map(lambda tp: f"<si><t>{tp[0]}</t>{tp[1]}</si>")
         | st.tuples(st.lists(_run(), min_size=1, max_size=5), _PHONETIC).map(
             lambda rp: "<si>" + "".join(rp[0]) + rp[1] + "</si>"))
_ODD_ITEM = st.sampled_from([  # shapes the regular expressions leave to the XML parser
    '<si><r><t>甲</t></r><rPh sb="0" eb="1"><t>こう</t></rPh><phoneticPr fontId="1"/></si>',
    "<si><t/></si>", '<si><r><rPr><x14:b xmlns:x14="urn:x"/></rPr><t>乙</t></r></si>',
    "<si><!-- <si><t>注释</t></si> --><t>丙</t></si>", "<si><?pi </si><si><t>戊</t></si> ?><t>己</t></si>", '<si><r><t>&lt;丁&gt;</t></r><r><t xml:space="preserve"/></r></si>'])


@settings(max_examples=150, deadline=None)
@given(st.lists(_ITEM, min_size=1, max_size=12), st.lists(_ODD_ITEM, max_size=1))
@example(['<si><r><t>_x00</t></r><r><rPr><b/></rPr><t>0D_</t></r></si>', '<si><t>甲</t></si>'], [])
def test_rich_text_shared_strings_read_by_the_fast_path_as_the_xml_parser_reads_them(items, odd):
    """LibreOffice writes a run of rich text for each change of font, so most of a Chinese form's labels come
    back as runs, and Excel in a Chinese locale writes phonetic properties after what a user typed: both went
    through the XML parser (2.9 ms a form against 0.9). The regular expressions
    must give the parser's very texts, joined across runs (an escape cut between two runs included), from the
    memo too, and leave to the parser what they do not know."""
    from perfxl.reader import cells as cells_module

    body = "".join(items + odd)
    xml = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><sst xmlns="{MAIN}" count="{len(items)}">'
           f"{body}</sst>").encode()
    expected = cells_module._strings_expat(xml, "xl/sharedStrings.xml")
    fast = cells_module._strings_fast(xml)
    assert (fast is None) == bool(odd)
    assert cells_module.shared_strings(xml, "xl/sharedStrings.xml") == expected
    assert cells_module.shared_strings(xml, "xl/sharedStrings.xml") == expected  # from the memo


_SST = f'<sst xmlns="{MAIN}">'.encode()


@pytest.mark.parametrize("parts", [
    # a text remembered from one part stood for an item of another that holds no <t> at all
    [_SST + b"<si><t>Total</t></si></sst>", _SST + b"<si>Total</si></sst>"],
    [_SST + b"<si><t>  </t></si></sst>", _SST + b"<si>  </si><si><r><t>x</t></r></si></sst>"],
    # CR at the end of one run and LF at the start of the next are two line ends, not one
    [_SST + b"<si><r><t>a\r</t></r><r><t>\nb</t></r></si></sst>"],
    # a processing instruction before the root, where the check for one did not look
    [b"<?x <si><t>evil</t></si>?>" + _SST + b"<si><r><t>A</t></r></si></sst>"],
    [b"\xef\xbb\xbf<?x <si><t>evil</t></si>?>" + _SST + b"<si><t>A</t></si></sst>"],
    # items of another namespace, or of this one under a prefix
    [f'<sst xmlns="{MAIN}" xmlns:x="{MAIN}"><x:si><t>A</t></x:si><si><t>B</t></si></sst>'.encode()],
    [_SST + b'<ext xmlns="urn:o"><si><t>X</t></si></ext><si><t>A</t></si></sst>'],
    [b"<sst><si><t>A</t></si></sst>", _SST + b'<si><t xmlns="urn:o">X</t></si></sst>'],
    # a ">" in a quoted value; an item inside a phonetic run
    [_SST + b'<si><t a=">">X</t></si><si><r><t b=">">Y</t></r></si></sst>'],
    [_SST + b"<si><t>a</t></si><rPh><si><t>b</t></si></rPh></sst>"],
    # character references XML keeps and HTML maps or drops
    [_SST + b"<si><t>&#x80;&#x9F;&#x7F;&#xFDD0;&#x1FFFF;&#65;&amp;&lt;</t></si><si><r><t>&#x85;</t></r></si></sst>"],
    # an encoding declared with spaces round "="
    [b'<?xml version="1.0" encoding = "ISO-8859-1"?>' + _SST + b"<si><t>\xc3\xa9</t></si></sst>"],
])
def test_shared_strings_the_fast_path_misread_read_as_the_xml_parser_reads_them(parts):
    """Found by a hostile review of the rich-text fast path: each part, read after the ones before it in
    one process (so that what the memos hold counts), gives the XML parser's texts."""
    from perfxl.reader import cells as cells_module

    for xml in parts:
        assert cells_module.shared_strings(xml, "xl/sharedStrings.xml") == \
            cells_module._strings_expat(xml, "xl/sharedStrings.xml")



_M = MAIN.encode()
_PARSER_REFUSES_OR_READS_OTHERWISE = {
    # character references with leading zeros (XML allows any number): read as literal text
    "leading zeros, hexadecimal": _SST + b"<si><t>&#x0000000041;</t></si></sst>",
    "leading zeros, decimal": _SST + b"<si><t>&#00000000065;</t></si></sst>",
    "leading zeros, rich": _SST + b"<si><r><t>&#x000000004E2D;</t></r></si></sst>",
    "zeros only": _SST + b"<si><t>&#x0000;</t></si></sst>",
    # items outside the root, or a namespace declared only inside another attribute's value
    "items outside the root": b'<x><si><t>A</t></si><sst xmlns="' + _M + b'"><si><t>B</t></si></sst></x>',
    "root closed before the items": b'<x><sst xmlns="' + _M + b'"/><si><t>A</t></si></x>',
    "xmlns inside a value": b"<sst a=' xmlns=\"" + _M + b"\"'><si><t>A</t></si></sst>",
    "xmlns inside a value, rich": b"<sst a=' xmlns=\"" + _M + b"\"'><si><r><t>A</t></r></si></sst>",
    # what no well-formed part holds: the parser refuses it, and so must perfxl
    "undefined entity": _SST + b"<si><t>&nbsp;&AMP;</t></si></sst>",
    "bare ampersand": _SST + b"<si><t>A & B</t></si></sst>",
    "reference without a semicolon": _SST + b"<si><t>&#65</t></si></sst>",
    "capital X": _SST + b"<si><t>&#X41;</t></si></sst>",
    "NUL referenced": _SST + b"<si><t>a&#0;b</t></si></sst>",
    "control referenced": _SST + b"<si><t>a&#1;b</t></si></sst>",
    "surrogate referenced": _SST + b"<si><t>a&#xD800;b</t></si></sst>",
    "U+FFFE referenced": _SST + b"<si><t>a&#xFFFE;b</t></si></sst>",
    "beyond U+10FFFF": _SST + b"<si><t>a&#x110000;b</t></si></sst>",
    "raw control byte": _SST + b"<si><t>a\x01b</t></si></sst>",
    "raw NUL": _SST + b"<si><t>a\x00b</t></si></sst>",
    "not UTF-8": _SST + b"<si><t>a\xff\xfeb</t></si></sst>",
    "a surrogate in UTF-8": _SST + b"<si><t>a\xed\xa0\x80b</t></si></sst>",
    "raw U+FFFE": _SST + b"<si><t>a\xef\xbf\xbeb</t></si></sst>",
    "]]> in a text": _SST + b"<si><t>a]]>b</t></si></sst>",
    "form feed as a space": _SST + b"<si>\x0c<t>A</t>\x0b</si></sst>",
    "form feed in a run": _SST + b"<si><r>\x0c<t>A</t></r></si></sst>",
    "unbound prefix": _SST + b'<si><t p:a="1">A</t></si></sst>',
    "an attribute twice": _SST + b'<si><r><t a="1" a="2">A</t></r></si></sst>',
    "an attribute twice in a run's format": _SST + b'<si><r><rPr><b val="1" val="2"/></rPr><t>A</t></r></si></sst>',
    "an attribute twice in a second run's format": _SST + b'<si><r><rPr><sz val="1"/></rPr><t>A</t></r>'
                                                        b'<r><rPr><sz val="1" val="1"/></rPr><t>B</t></r></si></sst>',
    "an attribute twice after the runs": _SST + b'<si><r><t>A</t></r><phoneticPr fontId="1" fontId="2"/></si></sst>',
    "an attribute twice, plain": _SST + b'<si><t a="1" a="2">A</t></si></sst>',
    "not UTF-8 in the root's attribute": b'<sst xmlns="' + _M + b'" uniqueCount="\xff"><si><t>A</t></si></sst>',
    "an attribute twice on the root": b'<sst xmlns="' + _M + b'" count="1" count="2"><si><t>A</t></si></sst>',
    "& in a value": _SST + b'<si><t a="&">A</t></si></sst>',
    "unclosed root": _SST + b"<si><t>A</t></si>",
    "junk after the root": _SST + b"<si><t>A</t></si></sst><x/>",
    "mismatched tags between items": _SST + b"<si><t>A</t></si><foo></bar><si><t>B</t></si></sst>",
    "a declaration holding an item": b'<?xml version="1.0" x="<si><t>A</t></si>"?>' + _SST + b"</sst>",
    "utf8 named so": b'<?xml version="1.0" encoding="utf8"?>' + _SST + "<si><t>中</t></si></sst>".encode(),
    "two byte-order marks": b"\xef\xbb\xbf\xef\xbb\xbf" + _SST + b"<si><t>A</t></si></sst>",
    "a markup declaration between items": _SST + b"<si><t>A</t></si><!foo><si><t>B</t></si></sst>",
    # the parser itself once failed on an item opened inside a text (AttributeError, not "file-corrupt")
    "an item inside a text": _SST + b"<si><t><si/></t></si></sst>",
}


def _outcome(read, xml):
    from perfxl.errors import ReadError

    try:
        return read(xml, "xl/sharedStrings.xml")
    except ReadError as exc:
        return exc.code


@pytest.mark.parametrize("name", list(_PARSER_REFUSES_OR_READS_OTHERWISE))
def test_a_shared_strings_part_the_parser_refuses_or_reads_otherwise_is_read_as_the_parser_reads_it(name):
    """Found by the second and third hostile reviews of the fast path: parts it read where the parser read other
    texts or refused the part as not well-formed (what Excel would not open, perfxl merged)."""
    from perfxl.reader import cells as cells_module

    xml = _PARSER_REFUSES_OR_READS_OTHERWISE[name]
    expected = _outcome(cells_module._strings_expat, xml)
    assert _outcome(cells_module.shared_strings, xml) == expected
    assert _outcome(cells_module.shared_strings, xml) == expected  # again, with whatever the memos now hold


def test_a_character_reference_with_leading_zeros_in_a_cell_is_read_as_the_parser_reads_it():
    """The same leading zeros in a sheet's inline string and formula result, read by the sheet's fast path."""
    from perfxl.reader import cells as cells_module

    xml = (f'<worksheet xmlns="{MAIN}"><sheetData><row r="1">'
           '<c r="A1" t="inlineStr"><is><t>&#x0000000041;&#00000020013;</t></is></c>'
           '<c r="B1" t="str"><f>"x"</f><v>&#x00000031;</v></c></row></sheetData></worksheet>').encode()
    expected = cells_module._cells_expat(xml, [], False, "xl/worksheets/sheet1.xml")
    assert expected[(0, 0)][0] == "A中"
    assert cells_module.sheet_cells(xml, [], False, "xl/worksheets/sheet1.xml") == expected


def test_a_shared_strings_part_spaced_to_make_the_patterns_backtrack_is_read_in_linear_time():
    """Two adjacent optional spaces in a run's pattern let a 450-byte item of 24 unformatted runs that fails
    to match try 2^24 ways (9 s; days at 40 runs), and a run of spaces inside <r> took quadratic time
    (12 s at 80,000). Read in a process of its own, under a deadline."""
    import subprocess
    import sys

    script = (
        "from perfxl.reader import cells\n"
        f"head = b'<sst xmlns=\"{MAIN}\">'\n"
        "parts = [head + b'<si>' + b'<r> <t></t></r>' * 60 + b'<x/></si></sst>',\n"
        "         head + b'<si>' + b'<r>   <t></t></r>' * 40 + b'<x/></si></sst>',\n"
        "         head + b'<si>' + b'\\r\\n  <r>\\r\\n    <t>a</t>\\r\\n  </r>' * 40 + b'<rPh/></si></sst>',\n"
        "         head + b'<si><r>' + b' ' * 2_000_000 + b'</r></si></sst>']\n"
        "for xml in parts:\n"
        "    assert cells._strings_fast(xml) is None\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr

"""Broken and hostile files: each gets exactly one coded outcome, and the merge carries on."""

from __future__ import annotations

import io
import multiprocessing
import os
import re
import struct
import sys
import time
import zipfile
from pathlib import Path

import pytest

from perfxl import generator as generate
from perfxl.merging import MergeOptions, run_merge
from perfxl.merging import worker as merge_module
from perfxl.spec import load_spec
from tests.conftest import sha256

from .conftest import good_form, good_project, member, project_sheet_part, rezip


def _merge_with_good(tmp_path, name: str, payload: bytes, **options):
    """Merge the hostile file beside a good one (through the worker pool) and return both outcomes."""
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    (inbox / name).write_bytes(payload)
    good_unit = {"code": "600999", "name": "对照单位", "department": "测试部门"}
    (inbox / "对照单位.xlsx").write_bytes(good_form(good_unit, "对照项目", 50.0))
    before = {p: sha256(p) for p in inbox.iterdir()}
    result = run_merge([inbox], tmp_path / "out" / "汇总.xlsx", MergeOptions(jobs=options.pop("jobs", 2), **options))
    assert before == {p: sha256(p) for p in inbox.iterdir()}, "inputs are never modified"
    leftovers = [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".") or p.suffix in {".rows", ".spliced"}]
    assert not leftovers, f"temporary files left behind: {leftovers}"
    files = {Path(s.path).name: s for s in result.files}
    assert files["对照单位.xlsx"].outcome == "merged", "the good file is merged whatever the other one did"
    c = result.counts
    assert c["files_in"] == c["merged"] + c["rejected"] + c["duplicate"] + c["superseded"] + c["excluded"]
    return files[name], result


def _rejected(tmp_path, name, payload, code, **options):
    seen, result = _merge_with_good(tmp_path, name, payload, **options)
    assert (seen.outcome, seen.read_error) == ("rejected", code), (seen.outcome, seen.read_error)
    return seen


def _merged(tmp_path, name, payload, *codes, **options):
    """The hostile file is merged, and its problems are exactly `codes` (none: a clean read)."""
    seen, result = _merge_with_good(tmp_path, name, payload, **options)
    assert seen.outcome == "merged", (seen.outcome, seen.read_error)
    assert _problem_codes(result, name) == set(codes), (name, _problem_codes(result, name))
    return seen, result


def _project_line(result, name: str) -> dict:
    """The hostile file's row of 项目清单, by column title."""
    table = result.table("项目清单")
    titles = [t for t, _ in table.columns]
    rows = [dict(zip(titles, row)) for row in table.iter_rows() if row[titles.index("来源文件")] == name]
    assert len(rows) == 1, rows
    return rows[0]


def _problem_codes(result, name):

    table = next(t for t in result.tables if t.name == "校验问题")
    code = [title for title, _ in table.columns].index("规则")
    return {row[code] for row in table.iter_rows() if row[0] == name}


# --- not a workbook ------------------------------------------------------------------------------

def test_empty_file(tmp_path):
    _rejected(tmp_path, "empty.xlsx", b"", "file-empty")


def test_truncated_file(tmp_path, good_bytes):
    _rejected(tmp_path, "truncated.xlsx", good_bytes[: len(good_bytes) // 2], "file-corrupt")


def test_not_a_zip(tmp_path):
    _rejected(tmp_path, "random.xlsx", os.urandom(4096).replace(b"PK", b"pk").replace(b"\xd0\xcf", b"xx"),
              "not-a-workbook")


def test_csv_renamed_xlsx(tmp_path):
    _rejected(tmp_path, "table.xlsx", "单位,金额\n甲,100\n".encode(), "not-a-workbook")


def test_html_renamed_xlsx(tmp_path):
    _rejected(tmp_path, "page.xlsx", b"<!DOCTYPE html><html><body><table><tr><td>1</td></tr></table></body></html>",
              "not-a-workbook")


def test_ods_renamed_xlsx(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        zf.writestr("content.xml", "<office:document-content/>")
    _rejected(tmp_path, "calc.xlsx", buffer.getvalue(), "unsupported-format")


def test_password_protected(tmp_path, good_bytes):
    from msoffcrypto.format.ooxml import OOXMLFile

    out = io.BytesIO()
    OOXMLFile(io.BytesIO(good_bytes)).encrypt("密码", out)
    _rejected(tmp_path, "locked.xlsx", out.getvalue(), "file-encrypted")


def test_xlsx_named_xls(tmp_path):
    _merged(tmp_path, "wrong-extension.xls", good_form(), "extension-mismatch")


@pytest.mark.libreoffice
def test_xls_named_xlsx(tmp_path, convert):
    source = tmp_path / "src.xlsx"
    source.write_bytes(good_form())
    xls = convert(source, "xls").read_bytes()
    _merged(tmp_path, "really-xls.xlsx", xls, "extension-mismatch")


# --- bombs and entities --------------------------------------------------------------------------

def test_zip_bomb_entry_inflating_past_the_cap(tmp_path, good_bytes):
    part = project_sheet_part(good_bytes)
    compressor = zipfile.ZipFile  # built by streaming zeros so the test itself stays small and fast
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good_bytes)) as src, compressor(buffer, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename == part:
                with dst.open(part, "w", force_zip64=True) as fh:
                    chunk = b" " * (1 << 20)
                    for _ in range(200):  # 200 MB of blanks, a few hundred KB compressed
                        fh.write(chunk)
            else:
                dst.writestr(info, src.read(info))
    assert len(buffer.getvalue()) < 2_000_000
    _rejected(tmp_path, "bomb.xlsx", buffer.getvalue(), "zip-bomb")


def test_zip_with_100000_entries(tmp_path, good_bytes):
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good_bytes)) as src, zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        for i in range(100_000):
            dst.writestr(f"junk/{i}.bin", b"")
    _rejected(tmp_path, "entries.xlsx", buffer.getvalue(), "zip-bomb")


def test_lying_size_header(tmp_path, good_bytes):
    """The central directory says the sheet is 100 bytes; inflating must not trust it."""
    data = bytearray(good_bytes)
    part = project_sheet_part(good_bytes).encode()
    offset = 0
    while True:
        offset = data.find(b"PK\x01\x02", offset)
        name_len = struct.unpack("<H", data[offset + 28:offset + 30])[0]
        if data[offset + 46:offset + 46 + name_len] == part:
            break
        offset += 4
    data[offset + 24:offset + 28] = struct.pack("<I", 100)  # uncompressed size
    _rejected(tmp_path, "liar.xlsx", bytes(data), "file-corrupt")


def test_xml_entity_expansion(tmp_path, good_bytes):
    part = project_sheet_part(good_bytes)
    entities = b'<!ENTITY lol "lol">' + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10))
    laughs = (b'<?xml version="1.0"?><!DOCTYPE lolz [' + entities + b"]>"
              + member(good_bytes, part).split(b"?>", 1)[-1].replace(b"<sheetData>", b"<sheetData>&lol9;", 1))
    _rejected(tmp_path, "laughs.xlsx", rezip(good_bytes, {part: laughs}), "xml-dtd")


def test_external_entity(tmp_path, good_bytes):
    workbook = member(good_bytes, "xl/workbook.xml")
    xxe = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>' + \
        workbook.split(b"?>", 1)[-1].replace(b"<sheets>", b"<sheets>&xxe;", 1)
    _rejected(tmp_path, "xxe.xlsx", rezip(good_bytes, {"xl/workbook.xml": xxe}), "xml-dtd")


# --- odd but readable ----------------------------------------------------------------------------

def test_malformed_styles_part(tmp_path, good_bytes):
    _, result = _merged(tmp_path, "styles.xlsx", rezip(good_bytes, {"xl/styles.xml": b"<styleSheet><<<not xml"}))
    line = _project_line(result, "styles.xlsx")
    assert (line["项目名称"], line["预算金额（万元）"]) == ("正常项目", 100.0)  # values do not depend on styles


def test_value_at_xfd1048576(tmp_path, good_bytes):
    part = project_sheet_part(good_bytes)
    xml = member(good_bytes, part).replace(
        b"</sheetData>", b'<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>far away</t></is></c></row></sheetData>')
    seen, result = _merged(tmp_path, "far.xlsx", rezip(good_bytes, {part: xml}))
    assert seen.indicator_rows == 3 and _project_line(result, "far.xlsx")["预算金额（万元）"] == 100.0


def test_wrong_dimension_tag_as_wps_writes_it(tmp_path, good_bytes):
    part = project_sheet_part(good_bytes)
    xml = re.sub(rb'<dimension ref="[^"]*"/>', b'<dimension ref="A1"/>', member(good_bytes, part))
    seen, result = _merged(tmp_path, "wps.xlsx", rezip(good_bytes, {part: xml}))
    assert seen.indicator_rows == 3 and _project_line(result, "wps.xlsx")["预算金额（万元）"] == 100.0


def test_huge_sparse_sheet(tmp_path, good_bytes):
    part = project_sheet_part(good_bytes)
    rows = b"".join(b'<row r="%d"><c r="Z%d"><v>1</v></c><c r="AA%d"><v>2</v></c></row>' % (r, r, r)
                    for r in range(2000, 250_000))
    xml = member(good_bytes, part).replace(b"</sheetData>", rows + b"</sheetData>")
    _rejected(tmp_path, "sparse.xlsx", rezip(good_bytes, {part: xml}), "too-many-cells")


def test_xlsm_with_vba_project(tmp_path, good_bytes):
    _merged(tmp_path, "macro.xlsm", rezip(good_bytes, add={"xl/vbaProject.bin": b"\xd0\xcf\x11\xe0macro"}),
            "macros-present")


def test_links_to_external_workbooks(tmp_path, good_bytes):
    _merged(tmp_path, "links.xlsx", rezip(good_bytes, add={"xl/externalLinks/externalLink1.xml": b"<externalLink/>"}),
            "external-links")


def _with_cells(good_bytes, edits: dict[str, bytes]) -> bytes:
    """Replace the XML of given cells (by address) in the project sheet."""
    part = project_sheet_part(good_bytes)
    xml = member(good_bytes, part)
    for address, cell in edits.items():
        xml, n = re.subn(rb'<c r="%s"[^>]*?(?:/>|>.*?</c>)' % address.encode(), cell, xml, count=1, flags=re.S)
        assert n == 1, address
    return rezip(good_bytes, {part: xml})


def _field_cell(name: str) -> str:
    from perfxl.spec import cell_name, layout, load_spec

    return cell_name(*layout(load_spec("national/project", 2022)).fields[name])


def test_formulas_without_cached_values_are_recomputed(tmp_path, good_bytes):
    total, fiscal = _field_cell("funds_total_annual"), _field_cell("funds_fiscal_annual")
    payload = _with_cells(good_bytes, {total: b'<c r="%s"><f>60+40</f></c>' % total.encode(),
                                       fiscal: b'<c r="%s"><f>100</f></c>' % fiscal.encode()})
    seen, result = _merged(tmp_path, "formulas.xlsx", payload)
    assert seen.errors == 0


def test_error_results_ref_and_div0(tmp_path, good_bytes):
    total = _field_cell("funds_total_annual")
    payload = _with_cells(good_bytes, {total: b'<c r="%s" t="e"><f>#REF!/0</f><v>#DIV/0!</v></c>' % total.encode()})
    seen, result = _merged(tmp_path, "errors.xlsx", payload, "formula-error", "sum-mismatch")
    assert seen.status == "errors"


def test_1904_date_system(tmp_path, good_bytes):
    workbook = member(good_bytes, "xl/workbook.xml").replace(b"<workbookPr", b'<workbookPr date1904="1"', 1)
    date = _field_cell("fill_date")
    payload = rezip(good_bytes, {"xl/workbook.xml": workbook})
    payload = _with_cells(payload, {date: b'<c r="%s"><v>43783</v></c>' % date.encode()})  # 2023-11-15 in 1904
    seen, result = _merged(tmp_path, "mac.xlsx", payload)
    assert seen.errors == 0
    from perfxl.pipeline import CheckOptions, check_file

    (tmp_path / "mac-copy.xlsx").write_bytes(payload)
    checked = check_file(tmp_path / "mac-copy.xlsx", CheckOptions())
    assert checked.projects[0].values["fill_date"] == "2023-11-15"  # 2019-11-14 in the 1900 system


def test_control_characters(tmp_path, good_bytes):
    name = _field_cell("project_name")
    payload = _with_cells(good_bytes, {name: b'<c r="%s" t="inlineStr"><is><t>bad_x0007_bell\x09tab</t></is></c>'
                                       % name.encode()})
    _, result = _merged(tmp_path, "control.xlsx", payload)
    assert _project_line(result, "control.xlsx")["项目名称"] == "bad\x07bell\ttab"  # read as written, escapes decoded


def test_text_over_32767_characters(tmp_path, good_bytes):
    goal = _field_cell("long_term_goal")
    payload = _with_cells(good_bytes, {goal: b'<c r="%s" t="inlineStr"><is><t>%s</t></is></c>'
                                       % (goal.encode(), "长".encode() * 40_000)})
    seen, result = _merged(tmp_path, "long.xlsx", payload)
    from perfxl.pipeline import CheckOptions, check_file

    (tmp_path / "long-copy.xlsx").write_bytes(payload)
    assert len(check_file(tmp_path / "long-copy.xlsx", CheckOptions()).projects[0].values["long_term_goal"]) == 40_000


def test_formula_injection_in_text_fields(tmp_path):
    unit = {"code": "600002", "name": "=cmd|' /C calc'!A0", "department": "@部门"}
    _, result = _merged(tmp_path, "inject.xlsx", good_form(unit, "+SUM(1,1)"))
    assert _project_line(result, "inject.xlsx")["项目名称"] == "+SUM(1,1)"  # text, as typed
    with zipfile.ZipFile(tmp_path / "out" / "汇总.xlsx") as zf:  # and written as text, never as a formula
        assert not any(b"<f>" in zf.read(n) and b"SUM(1,1)" in zf.read(n) for n in zf.namelist() if n.endswith(".xml"))


# --- the same unit, the same file ------------------------------------------------------------------

def test_the_same_file_twice(tmp_path, good_bytes):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.xlsx").write_bytes(good_bytes)
    seen, result = _merge_with_good(tmp_path, "b.xlsx", good_bytes)
    assert seen.outcome == "duplicate" and Path(seen.duplicate_of).name == "a.xlsx"


def test_two_different_files_for_one_unit(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "old.xlsx").write_bytes(good_form(budget=80.0))
    os.utime(inbox / "old.xlsx", (time.time() - 3600, time.time() - 3600))
    seen, result = _merge_with_good(tmp_path, "new.xlsx", good_form(budget=90.0))
    assert seen.outcome == "merged"
    old = next(s for s in result.files if s.path.endswith("old.xlsx"))
    assert old.outcome == "superseded"


def test_roster_names_that_attack_the_file_system(tmp_path):
    from perfxl.generator import generate_forms
    from perfxl.roster import Unit

    units = [Unit("1", "../../x", "d"), Unit("2", "CON", "d"), Unit("3", "a/b\\c:d*?", "d"), Unit("4", "..", "d")]
    manifest = generate_forms("national/project", 2022, units, tmp_path / "out")
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert all((tmp_path / "out" / m["file"]).parent == tmp_path / "out" for m in manifest)
    assert not any(name.upper().startswith("CON.") for name in written)
    assert not (tmp_path / "x").exists() and len(written) == 6  # four forms, the manifest and the handout


# --- parsers that crash, hang or blow up --------------------------------------------------------

needs_fork = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                                reason="the reader is patched in forked workers")


def _patched_reader(monkeypatch, action):
    real = merge_module.read_workbook

    def reader(path, **kw):
        if Path(path).name.startswith("evil"):
            action()
        return real(path, **kw)

    monkeypatch.setattr(merge_module, "read_workbook", reader)  # forked workers inherit the patch


@needs_fork
def test_worker_crash_costs_one_file(tmp_path, monkeypatch, good_bytes):
    _patched_reader(monkeypatch, lambda: os._exit(70))  # what a Rust panic or a segfault looks like from outside
    _rejected(tmp_path, "evil-crash.xlsx", good_bytes.replace(b"x", b"x"), "worker-crash")


@needs_fork
def test_hanging_parser_is_stopped(tmp_path, monkeypatch, good_bytes):
    _patched_reader(monkeypatch, lambda: time.sleep(30))
    started = time.perf_counter()
    _rejected(tmp_path, "evil-hang.xlsx", good_bytes, "file-timeout", file_timeout=1.0)
    assert time.perf_counter() - started < 20


@needs_fork
def test_memory_blow_up_is_contained(tmp_path, monkeypatch, good_bytes):
    if os.name != "posix":
        pytest.skip("address-space limits are POSIX")
    _patched_reader(monkeypatch, lambda: bytearray(8 * 1024**3))
    _rejected(tmp_path, "evil-memory.xlsx", good_bytes, "file-too-complex", file_memory_mb=1024)


def test_every_bad_file_listed_every_good_file_merged(tmp_path, good_bytes):
    inbox = tmp_path / "inbox"
    (inbox / "bad").mkdir(parents=True)
    from msoffcrypto.format.ooxml import OOXMLFile

    encrypted = io.BytesIO()
    OOXMLFile(io.BytesIO(good_bytes)).encrypt("pw", encrypted)
    ods = io.BytesIO()
    with zipfile.ZipFile(ods, "w") as zf:
        zf.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
    part = project_sheet_part(good_bytes)
    sparse = member(good_bytes, part).replace(b"</sheetData>", b"".join(
        b'<row r="%d"><c r="B%d"><v>1</v></c><c r="C%d"><v>1</v></c></row>' % (r, r, r)
        for r in range(500, 220_000)) + b"</sheetData>")
    bad = {"empty.xlsx": (b"", "file-empty"), "junk.xlsx": (b"junk", "not-a-workbook"),
           "cut.xlsx": (good_bytes[:500], "file-corrupt"),
           "xxe.xlsx": (rezip(good_bytes, {"xl/workbook.xml": b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><w/>'}),
                        "xml-dtd"),
           "locked.xlsx": (encrypted.getvalue(), "file-encrypted"), "calc.xlsx": (ods.getvalue(), "unsupported-format"),
           "page.xlsx": (b"<html><body>1</body></html>", "not-a-workbook"),
           "table.xlsx": (b"a,b\n1,2\n", "not-a-workbook"),
           "sparse.xlsx": (rezip(good_bytes, {part: sparse}), "too-many-cells"),
           "bomb.xlsx": (rezip(good_bytes, {part: b" " * (60 << 20)}), "zip-bomb")}
    for name, (payload, _) in bad.items():
        (inbox / "bad" / name).write_bytes(payload)
    for i in range(6):
        unit = {"code": f"70000{i}", "name": f"单位{i}", "department": "部门"}
        (inbox / f"good{i}.xlsx").write_bytes(good_form(unit, f"项目{i}", 10.0 * (i + 1)))
    result = run_merge([inbox], tmp_path / "s.xlsx", MergeOptions(jobs=2))
    outcomes = {Path(s.path).name: (s.outcome, s.read_error) for s in result.files}
    assert all(outcomes[f"good{i}.xlsx"] == ("merged", None) for i in range(6))
    assert {n: o for n, o in outcomes.items() if n in bad} == {n: ("rejected", code) for n, (_, code) in bad.items()}
    assert result.counts["files_in"] == 6 + len(bad)


def test_no_network_or_file_access_from_xml(tmp_path, good_bytes):
    """The reader never resolves an entity, so nothing outside the file can be read into it."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    workbook = member(good_bytes, "xl/workbook.xml")
    payload = rezip(good_bytes, {"xl/workbook.xml": (f'<!DOCTYPE x [<!ENTITY s SYSTEM "file://{secret}">]>'.encode()
                                                    + workbook.split(b"?>", 1)[-1])})
    seen = _rejected(tmp_path, "leak.xlsx", payload, "xml-dtd")
    assert "TOP-SECRET" not in str(seen)


def test_half_a_utf16_pair_escaped_in_a_cell_is_read_as_a_replacement_character(tmp_path, good_bytes):
    """_xD800_ names no character: read as U+FFFD, so neither the ledger, the spool nor the summary can fail
    to encode it (it stopped every unit's merge with a traceback)."""
    name = _field_cell("project_name")
    payload = _with_cells(good_bytes, {name: b'<c r="%s" t="inlineStr"><is><t>A_xD800_B</t></is></c>' % name.encode()})
    _, result = _merged(tmp_path, "surrogate.xlsx", payload, jobs=1)
    assert _project_line(result, "surrogate.xlsx")["项目名称"] == "A\ufffdB"


@pytest.mark.parametrize("number", [b"NaN", b"1e999", b"-inf"])
def test_a_number_that_is_no_finite_number_is_text_never_a_budget(tmp_path, good_bytes, number):
    """<v>NaN</v> and its kin are what no spreadsheet writes: read as the text they are, they are reported
    (type-number) instead of breaking the summary writer or comparing as met."""
    total = _field_cell("funds_total_annual")
    payload = _with_cells(good_bytes, {total: b'<c r="%s"><v>%s</v></c>' % (total.encode(), number)})
    seen, result = _merged(tmp_path, "nan.xlsx", payload, "type-number", "sum-mismatch")
    assert _project_line(result, "nan.xlsx")["预算金额（万元）"] is None


@needs_fork
def test_a_worker_stopped_holding_the_shared_lock_does_not_hold_the_merge(tmp_path, monkeypatch, good_bytes):
    """A pool breaks when a file kills its worker, and the pool then stops its other workers, whatever they
    are doing: one stopped while it held the lock the workers share the templates they saw under left the
    retry pool's workers waiting on it forever (the whole merge hung)."""
    def die_holding_the_lock():
        merge_module._WORKER["parts"]._lock.acquire()
        os._exit(70)

    def merge_and_say_how() -> None:  # in a process of its own, which can be stopped if it hangs
        try:
            _rejected(tmp_path, "evil-crash.xlsx", good_bytes, "worker-crash")
        except BaseException as exc:
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
            os._exit(1)
        os._exit(0)

    _patched_reader(monkeypatch, die_holding_the_lock)
    # Not a thread of this process: with another thread running, the merge starts its workers without fork
    # (merging.worker.pool_context), and they would not read with the patched reader
    merging = multiprocessing.get_context("fork").Process(target=merge_and_say_how)
    merging.start()
    merging.join(timeout=240)
    if merging.is_alive():
        merging.kill()
        pytest.fail("the merge hung on a lock a stopped worker held")
    assert merging.exitcode == 0


# --- numbers no form may hold ---------------------------------------------------------------------

@pytest.mark.parametrize("jobs", [1, 2])
def test_numbers_typed_as_text_past_any_budget_are_refused_not_summed_to_infinity(tmp_path, jobs):
    """float("9" * 400) is infinite without an error, and two budgets of 1e308 sum to infinity: either took a
    budget past every check into the sheets, where the summary writer refused it and the whole merge stopped,
    and a target of 400 digits was written as <v>inf</v>, which no spreadsheet reads. Such a number is no
    number: the budget field is wrong, the target unreadable, and the run goes on for everyone."""
    huge, near_largest = "9" * 400, "1" + "0" * 308
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for n, (budget, target) in enumerate([(huge, "≥100人次"), (near_largest, "≥100人次"),
                                          (near_largest, "≥" + huge + "人次")]):
        unit = {"code": f"60010{n}", "name": f"单位{n}", "department": "测试部门"}
        project = good_project(f"项目{n}")
        project["fields"].update(funds_total_annual=budget, funds_fiscal_annual=budget)
        project["tables"]["indicators"][0][3] = target
        spec = load_spec("national/project", 2022, unit=unit)
        (inbox / f"单位{n}.xlsx").write_bytes(generate.build_workbook(spec, unit, values=[project]))
    (inbox / "对照单位.xlsx").write_bytes(good_form({"code": "600999", "name": "对照单位", "department": "测试部门"},
                                                  "对照项目", 50.0))
    out = tmp_path / "out" / "汇总.xlsx"
    result = run_merge([inbox], out, MergeOptions(jobs=jobs))
    assert {Path(s.path).name: s.outcome for s in result.files} == dict.fromkeys(
        ["单位0.xlsx", "单位1.xlsx", "单位2.xlsx", "对照单位.xlsx"], "merged")
    for n in range(3):
        assert "number-too-large" in _problem_codes(result, f"单位{n}.xlsx")
    assert "indicator-unparseable" in _problem_codes(result, "单位2.xlsx")
    with zipfile.ZipFile(out) as book:
        sheets = b"".join(book.read(name) for name in book.namelist() if name.startswith("xl/worksheets/"))
    assert not re.search(rb"<v>-?(inf|nan)", sheets, re.IGNORECASE)

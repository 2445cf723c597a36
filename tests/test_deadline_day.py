"""Trust on deadline day (issue #6): each test reproduces one defect found by probing main, in a form of its
own, and states the guarantee that replaces it. Names say what they reproduce."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from perfxl import generator as generate
from perfxl.cli import cli
from perfxl.files import TEMP_PREFIX
from perfxl.merging import MergeOptions, run_merge
from perfxl.pipeline import CheckOptions, check_file
from perfxl.spec import load_spec
from tests.conftest import sha256, write_roster

UNITS = [(f"61{i:04d}", f"测试单位{i}", "测试部门") for i in range(4)]


def _form(code: str, name: str, budget: float, project: str = "正常项目", rows: list | None = None) -> bytes:
    """A national/project form of one unit, filled through its names, with three indicator rows (or `rows`)."""
    unit = {"code": code, "name": name, "department": "测试部门"}
    spec = load_spec("national/project", 2022, unit=unit)
    values = {"fields": {"unit_name": name, "project_name": project, "department": "测试部门",
                         "implementing_unit": name, "project_attr": "新增项目", "project_period": "2022年",
                         "long_term_goal": "长期目标", "annual_goal": "年度目标", "preparer": "张三",
                         "phone": "88150231", "funds_total_annual": budget, "funds_fiscal_annual": budget,
                         "funds_total_mid": budget, "funds_fiscal_mid": budget},
              "tables": {"indicators": rows or [["产出指标", "数量指标", "培训人次", "≥100人次"],
                                                ["效益指标", "社会效益指标", "政策知晓率", "≥90%"],
                                                ["满意度指标", "服务对象满意度指标", "满意度", "≥95%"]]}}
    return generate.build_workbook(spec, unit, values=[values])


def _inbox(tmp_path: Path, n: int = 3) -> Path:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for code, name, _ in UNITS[:n]:
        (inbox / f"{code}.xlsx").write_bytes(_form(code, name, 100.0))
    return inbox


def _budgets(result) -> dict[str, float]:
    table = next(t for t in result.tables if t.name == "项目清单")
    titles = [title for title, _ in table.columns]
    budget = next(i for i, t in enumerate(titles) if t.startswith("预算金额"))
    unit = titles.index("单位名称")
    return {row[unit]: row[budget] for row in table.rows}


def _accounting_holds(result) -> None:
    c = result.counts
    assert c["files_in"] == c["merged"] + c["rejected"] + c["duplicate"] + c["superseded"] + c["excluded"]


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "perfxl", *args], capture_output=True, text=True, timeout=timeout)


def _no_traceback(proc) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr


# --- silently wrong results --------------------------------------------------------------------------

def test_correction_written_while_the_merge_runs_is_merged_not_the_old_version(tmp_path):
    """The main process knew the file by its old stat; the worker must not record the new stat against the
    old content (every later merge would then keep the old version, silently)."""
    inbox = _inbox(tmp_path)
    out = tmp_path / "out" / "汇总.xlsx"
    first = run_merge([inbox], out, MergeOptions(jobs=1))
    assert set(_budgets(first).values()) == {100.0}
    corrected = inbox / f"{UNITS[2][0]}.xlsx"

    def correct_during_run(_):
        if corrected.read_bytes() != _form(UNITS[2][0], UNITS[2][1], 250.0):
            corrected.write_bytes(_form(UNITS[2][0], UNITS[2][1], 250.0))  # after the walk, before its worker

    second = run_merge([inbox], out, MergeOptions(jobs=1), progress=correct_during_run)
    assert _budgets(second)[UNITS[2][1]] == 250.0
    third = run_merge([inbox], out, MergeOptions(jobs=1))
    assert _budgets(third)[UNITS[2][1]] == 250.0, "a later merge must not fall back on the old content"
    fresh = run_merge([inbox], tmp_path / "fresh" / "汇总.xlsx", MergeOptions(jobs=1))
    assert _budgets(third) == _budgets(fresh)


def test_files_changed_added_and_removed_during_the_merge_give_the_inbox_as_it_ends(tmp_path):
    inbox = _inbox(tmp_path)
    out = tmp_path / "out" / "汇总.xlsx"
    done = []

    def meddle(_):
        done.append(1)
        if len(done) == 1:  # the first file is already read: change it, add a fourth, remove the third
            (inbox / f"{UNITS[0][0]}.xlsx").write_bytes(_form(UNITS[0][0], UNITS[0][1], 321.0))
            (inbox / f"{UNITS[3][0]}.xlsx").write_bytes(_form(UNITS[3][0], UNITS[3][1], 40.0))
            (inbox / f"{UNITS[2][0]}.xlsx").unlink()

    result = run_merge([inbox], out, MergeOptions(jobs=1), progress=meddle)
    fresh = run_merge([inbox], tmp_path / "fresh" / "汇总.xlsx", MergeOptions(jobs=1))
    assert _budgets(result) == _budgets(fresh) == {UNITS[0][1]: 321.0, UNITS[1][1]: 100.0, UNITS[3][1]: 40.0}
    assert result.counts["files_in"] == 3
    _accounting_holds(result)


def test_ods_xlsb_pdf_in_the_inbox_are_counted_and_rejected_with_their_reason(tmp_path):
    inbox = _inbox(tmp_path, n=1)
    ods = io.BytesIO()
    with zipfile.ZipFile(ods, "w") as zf:
        zf.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        zf.writestr("content.xml", "<office:document-content/>")
    (inbox / "单位A.ods").write_bytes(ods.getvalue())
    xlsb = io.BytesIO()
    with zipfile.ZipFile(xlsb, "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("xl/workbook.bin", b"\x83\x01\x00")
    (inbox / "单位B.xlsb").write_bytes(xlsb.getvalue())
    (inbox / "盖章页.pdf").write_bytes(b"%PDF-1.4 scanned signature page")
    (inbox / "~$610000.xlsx").write_bytes(b"lock")
    (inbox / ".DS_Store").write_bytes(b"\x00")
    result = run_merge([inbox], tmp_path / "out" / "s.xlsx", MergeOptions(jobs=1))
    outcome = {Path(s.path).name: (s.outcome, s.read_error) for s in result.files}
    assert outcome == {"610000.xlsx": ("merged", None), "单位A.ods": ("rejected", "unsupported-format"),
                       "单位B.xlsb": ("rejected", "unsupported-format"), "盖章页.pdf": ("rejected", "not-a-workbook")}
    assert result.counts["files_in"] == 4
    _accounting_holds(result)
    assert sorted(reason for _, reason in result.skipped) == ["hidden", "lock-file"]
    proc = _cli("merge", str(inbox), "-o", str(tmp_path / "out2" / "s.xlsx"))
    assert proc.returncode == 0 and "已跳过" in proc.stdout and "Office 锁定文件" in proc.stdout


def test_money_key_columns_of_the_project_list_are_numbers(seeds, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "sh.xlsx").write_bytes(seeds["003-0"].filled.read_bytes())
    out = tmp_path / "s.xlsx"
    run_merge([inbox], out, MergeOptions(jobs=1))
    wb = openpyxl.load_workbook(out, read_only=True)
    rows = list(wb["项目清单"].iter_rows(values_only=True))
    wb.close()
    header = rows[0]
    columns = [i for i, title in enumerate(header) if title and title.startswith(("项目总预算", "同名项目上年"))]
    assert len(columns) == 3, header
    assert all(header[i].endswith("（元）") and "(元)" not in header[i] for i in columns), header
    for i in columns:
        values = [r[i] for r in rows[1:-1] if r[i] is not None]
        assert values and all(isinstance(v, int | float) for v in values), (header[i], values)
        assert rows[-1][i] == pytest.approx(sum(values)), "the totals row sums them"


# --- inputs touched or destroyed ------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["input", "roster", "db-input"])
def test_merge_refuses_to_write_over_an_input_or_the_roster(tmp_path, target):
    inbox = _inbox(tmp_path)
    roster = write_roster(tmp_path / "名单.csv", UNITS)
    victim = {"input": inbox / f"{UNITS[0][0]}.xlsx", "roster": roster, "db-input": inbox / f"{UNITS[1][0]}.xlsx"}[target]
    before = sha256(victim)
    args = ["merge", str(inbox), "--roster", str(roster)]
    args += ["--db", str(victim), "-o", str(tmp_path / "s.xlsx")] if target == "db-input" else ["-o", str(victim)]
    proc = _cli(*args)
    assert proc.returncode == 2, proc.stderr
    _no_traceback(proc)
    assert sha256(victim) == before


def test_db_pointing_at_another_applications_sqlite_is_refused_untouched(tmp_path):
    inbox = _inbox(tmp_path)
    foreign = tmp_path / "财务软件.db"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE vouchers (id INTEGER PRIMARY KEY, amount REAL)")
    db.execute("INSERT INTO vouchers (amount) VALUES (12.5)")
    db.commit()
    db.close()
    before = sha256(foreign)
    proc = _cli("merge", str(inbox), "-o", str(tmp_path / "s.xlsx"), "--db", str(foreign))
    assert proc.returncode == 2 and "其他程序的数据库" in proc.stderr
    _no_traceback(proc)
    assert sha256(foreign) == before
    assert not Path(str(foreign) + "-wal").exists(), "not even switched to WAL"


def test_db_that_is_not_a_database_is_refused_untouched(tmp_path):
    inbox = _inbox(tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_text("会议记录\n", encoding="utf-8")
    proc = _cli("merge", str(inbox), "-o", str(tmp_path / "s.xlsx"), "--db", str(notes))
    assert proc.returncode == 2 and "不是 SQLite 数据库" in proc.stderr
    _no_traceback(proc)
    assert notes.read_text(encoding="utf-8") == "会议记录\n"


# --- one file or one condition must not stop the run --------------------------------------------------

@pytest.mark.skipif(os.name != "posix" or sys.platform == "darwin", reason="Linux keeps names as raw bytes")
def test_file_name_that_is_not_utf8_is_merged_and_shown_decoded(tmp_path):
    inbox = _inbox(tmp_path, n=1)
    gbk_name = os.fsdecode("绵阳市财政局.xlsx".encode("gbk"))  # what unzip leaves for a zip made on Windows
    (inbox / gbk_name).write_bytes(_form(UNITS[1][0], UNITS[1][1], 80.0))
    out = tmp_path / "out" / "汇总.xlsx"
    result = run_merge([inbox], out, MergeOptions(jobs=2))
    assert result.counts["merged"] == 2
    again = run_merge([inbox], out, MergeOptions(jobs=2))
    assert again.counts["from_ledger"] == 2, "the ledger knows the file again by its name"
    wb = openpyxl.load_workbook(out, read_only=True)
    listed = [row[0] for row in wb["说明"].iter_rows(values_only=True)]
    wb.close()
    assert any("\\x" in str(v) for v in listed), "the raw name is shown escaped, never crashes the writer"
    status = openpyxl.load_workbook(out, read_only=True)["报送情况"]
    files = [v for row in status.iter_rows(values_only=True) for v in row if isinstance(v, str) and ".xlsx" in v]
    assert "绵阳市财政局.xlsx" in files, files  # as the unit named it, not as \xc3\xe0…
    proc = _cli("validate", str(inbox), "--json", "--annotate", str(tmp_path / "ann"))
    _no_traceback(proc)
    assert proc.returncode == 0 and len(json.loads(proc.stdout)["files"]) == 2


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5) | st.sampled_from("._-0123456789ab"),
               min_size=1, max_size=20))
def test_a_gbk_name_shows_as_its_text_and_a_utf8_name_as_it_is(name):
    from perfxl.files import display_path, shown_name

    shown = display_path(os.fsdecode(name.encode("gbk")))
    assume("\\x" in shown)  # GBK bytes that are UTF-8 too (a few pairs are) read as UTF-8: nothing tells them apart
    assert shown_name(shown) == name
    assert shown_name(display_path(name)) == name


def test_not_utf8_display_name_reads_as_gbk():
    from perfxl.files import display_path, readable_name

    raw = os.fsdecode("报表.xlsx".encode("gbk"))
    assert readable_name(raw) == "报表.xlsx"
    shown = display_path(raw)
    shown.encode("utf-8")  # always encodable
    assert shown != display_path(os.fsdecode("报表.xlsx".encode()))


def test_file_removed_between_walk_and_read_is_not_counted(tmp_path):
    inbox = _inbox(tmp_path)
    gone = inbox / f"{UNITS[1][0]}.xlsx"
    result = run_merge([inbox], tmp_path / "s.xlsx", MergeOptions(jobs=1), on_total=lambda n: gone.unlink())
    assert result.counts["files_in"] == 2 and result.counts["merged"] == 2
    _accounting_holds(result)


def test_read_only_output_folder_is_exit_2_naming_the_path(tmp_path):
    inbox = _inbox(tmp_path, n=1)
    target = Path("/proc/perfxl-test/汇总.xlsx") if Path("/proc/self").exists() else None
    if target is None:
        pytest.skip("needs a read-only location")
    proc = _cli("merge", str(inbox), "-o", str(target))
    assert proc.returncode == 2 and "/proc/perfxl-test" in proc.stderr, proc.stderr
    _no_traceback(proc)


@pytest.mark.skipif(os.name != "posix", reason="RLIMIT_FSIZE is POSIX")
def test_full_disk_during_the_summary_is_exit_2_and_the_previous_summary_stays(tmp_path):
    import resource

    inbox = _inbox(tmp_path)
    out = tmp_path / "out" / "汇总.xlsx"
    assert _cli("merge", str(inbox), "-o", str(out)).returncode == 0
    before = sha256(out)
    (inbox / "610003.xlsx").write_bytes(_form(UNITS[3][0], UNITS[3][1], 70.0))

    def small_disk():  # writes past 4 KB fail with EFBIG, as a full disk fails with ENOSPC
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    proc = subprocess.run([sys.executable, "-m", "perfxl", "merge", str(inbox), "-o", str(out), "--db",
                           str(tmp_path / "fresh.sqlite"), "--jobs", "1"],
                          capture_output=True, text=True, timeout=120, preexec_fn=small_disk)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    _no_traceback(proc)
    assert sha256(out) == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_paths_too_long_for_sqlite_or_the_file_system_are_exit_2(tmp_path):
    inbox = _inbox(tmp_path, n=1)
    deep = tmp_path
    for i in range(4):  # 4 × 200 bytes: a legal path, longer than SQLite's 512
        deep = deep / ("长" * 66 + str(i))
    deep.mkdir(parents=True)
    proc = _cli("merge", str(inbox), "-o", str(tmp_path / "s.xlsx"), "--db", str(deep / "台账.sqlite"))
    assert proc.returncode in (0, 2), proc.stderr  # some SQLite builds accept it; none may crash
    _no_traceback(proc)
    proc = _cli("merge", str(inbox), "-o", str(tmp_path / ("汇" * 100 + ".xlsx")))
    assert proc.returncode == 2 and "汇汇汇" in proc.stderr, proc.stderr
    _no_traceback(proc)


def test_xlrd_error_while_loading_a_sheet_is_file_corrupt_with_a_reason(tmp_path, monkeypatch):
    import xlrd
    from xlrd.book import Book

    def broken(self, index):
        raise xlrd.XLRDError("")  # xlrd raises some errors with no text at all

    monkeypatch.setattr(Book, "sheet_by_index", broken)
    from perfxl.reader.xls import read_xls

    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
    with pytest.raises(Exception) as info:
        read_xls(ole + b"\x00" * 600)
    assert info.value.code == "file-corrupt" and "()" not in str(info.value)


def test_xls_that_declares_a_far_corner_reads_fast(tmp_path, convert):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws["A1"], ws["B2"], ws["IU65535"], ws["IV65536"] = "a", 2, 4, "far"
    wb.save(tmp_path / "corner.xlsx")
    xls = convert(tmp_path / "corner.xlsx", "xls")
    from perfxl.read import load_raw

    started = time.perf_counter()
    book, _, kind = load_raw(xls)
    assert kind == "xls" and sum(len(c) for c in book.cells.values()) == 4
    assert time.perf_counter() - started < 3, "padding 16 million cells took 9 s and 200 MB before"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_fifo_as_input_neither_hangs_validate_nor_merge(tmp_path):
    inbox = _inbox(tmp_path, n=1)
    fifo = inbox / "管道.xlsx"
    os.mkfifo(fifo)
    proc = _cli("validate", str(fifo), timeout=60)
    assert proc.returncode == 1 and "not-a-file" in proc.stdout
    proc = _cli("merge", str(inbox), "-o", str(tmp_path / "s.xlsx"), timeout=60)
    assert proc.returncode == 0 and "不是普通文件" in proc.stdout
    proc = _cli("merge", str(fifo), str(inbox / f"{UNITS[0][0]}.xlsx"), "-o", str(tmp_path / "t.xlsx"), timeout=60)
    assert proc.returncode == 0 and "无法读取 1" in proc.stdout


# --- templates are untrusted input ------------------------------------------------------------------------

BAD_TEMPLATES = {
    "not-utf8": ("bad/form.yaml", "title: 申报表\n".encode("gbk"), "UTF-8"),
    "field-as-list": ("bad/form.yaml", b"title: t\nversion: '1'\nfields:\n  name: [a, b]\n", "form.yaml:4"),
    "recursive-macro": ("bad/form.yaml", b"{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}", "form.yaml"),
    "huge-range": ("bad/form.yaml", b"{% for i in range(10**15) %}x{% endfor %}", "form.yaml"),
    "string-bomb": ("bad/form.yaml", b"title: {{ 'x' * 10**10 }}", "form.yaml"),
    "yaml-alias-bomb": ("bad/form.yaml", ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8))).encode(),
        "YAML"),
}


@pytest.mark.parametrize("case", sorted(BAD_TEMPLATES))
def test_bad_template_folder_is_exit_2_with_the_file(tmp_path, case):
    rel, payload, expect = BAD_TEMPLATES[case]
    folder = tmp_path / "tpl"
    (folder / rel).parent.mkdir(parents=True)
    (folder / rel).write_bytes(payload)
    started = time.perf_counter()
    proc = _cli("describe", "bad/form", "--templates", str(folder), timeout=60)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    _no_traceback(proc)
    assert "form.yaml" in proc.stderr and expect in proc.stderr, proc.stderr
    assert time.perf_counter() - started < 30


def test_broken_hierarchy_file_is_exit_2_naming_it(tmp_path):
    folder = tmp_path / "tpl"
    (folder / "hierarchies").mkdir(parents=True)
    (folder / "hierarchies" / "national.yaml").write_text("levels: [产出指标, 效益指标]\n", encoding="utf-8")
    proc = _cli("describe", "national/project", "--templates", str(folder))
    assert proc.returncode == 2 and "national.yaml" in proc.stderr, proc.stderr
    _no_traceback(proc)


# --- debris and loose ends ---------------------------------------------------------------------------------

def test_temp_files_of_a_killed_run_are_removed_by_the_next(tmp_path):
    inbox = _inbox(tmp_path, n=1)
    out = tmp_path / "out"
    out.mkdir()
    writer = subprocess.Popen([sys.executable, "-c", (
        "import time, sys\nfrom pathlib import Path\nfrom perfxl.files import atomic_output\n"
        f"with atomic_output(Path({str(out / '汇总.xlsx')!r})) as tmp:\n"
        "    tmp.write_bytes(b'x' * 1000); Path(str(tmp) + '.1.rows').write_bytes(b'r'); print('ready', flush=True)\n"
        "    time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "ready"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    writer.stdout.close()
    debris = [p for p in out.iterdir() if p.name.startswith(TEMP_PREFIX)]
    assert len(debris) == 2, "the killed writer left its files"
    run_merge([inbox], out / "汇总.xlsx", MergeOptions(jobs=1))
    assert not [p for p in out.iterdir() if p.name.startswith(TEMP_PREFIX)]


@pytest.mark.skipif(sys.platform != "linux", reason="reads children from /proc")
def test_killing_the_merge_leaves_no_worker_running(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    form = _form(UNITS[0][0], UNITS[0][1], 1.0)
    for i in range(400):
        (inbox / f"{i:04d}.xlsx").write_bytes(form.replace(b"610000", f"{620000 + i}".encode()))
    merge = subprocess.Popen([sys.executable, "-m", "perfxl", "merge", str(inbox), "-o", str(tmp_path / "s.xlsx"),
                              "--jobs", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def children(pid: int) -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat_line = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat_line.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
        return found

    deadline = time.monotonic() + 30
    workers: list[int] = []
    while time.monotonic() < deadline and len(workers) < 2 and merge.poll() is None:
        workers = children(merge.pid)
        time.sleep(0.05)
    if merge.poll() is not None:
        pytest.skip("the merge finished before its workers could be seen")
    merge.kill()
    merge.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(Path(f"/proc/{w}").exists() and
                                              "Z" not in (Path(f"/proc/{w}") / "stat").read_text().split()[2]
                                              for w in workers if Path(f"/proc/{w}").exists()):
        time.sleep(0.1)
    alive = []
    for w in workers:
        try:
            state = (Path(f"/proc/{w}") / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(w)
    assert not alive, f"workers outlived their merge by 5 s: {alive}"


def test_unit_name_of_68_chinese_characters_generates_and_annotates(tmp_path):
    name = "绵" * 68
    roster = write_roster(tmp_path / "名单.csv", [("610099", name, "测试部门")])
    result = CliRunner().invoke(cli, ["generate", "national/project", "--year", "2022", "--roster", str(roster),
                                      "-o", str(tmp_path / "blank")])
    assert result.exit_code == 0, result.output
    made = [p for p in (tmp_path / "blank").iterdir() if p.suffix == ".xlsx" and p.name != generate.HANDOUT_FILE]
    assert len(made) == 1 and len(made[0].name.encode()) <= 255
    long_input = tmp_path / (("报" * 80) + ".xlsx")  # 244 bytes: the annotated name must still fit
    long_input.write_bytes(_form("610099", name, 5.0).replace(b"\xe5\xb9\xb4\xe5\xba\xa6\xe7\x9b\xae\xe6\xa0\x87", b""))
    result = CliRunner().invoke(cli, ["validate", str(long_input), "--annotate", str(tmp_path / "ann")])
    assert result.exit_code in (0, 1) and result.exception is None or isinstance(result.exception, SystemExit)
    assert [p for p in (tmp_path / "ann").iterdir() if len(p.name.encode()) <= 255]


@pytest.mark.parametrize("args", [
    ["merge", "{inbox}", "-o", "{tmp}/s.xlsx", "--year", "0"],
    ["merge", "{inbox}", "-o", "{tmp}/s.xlsx", "--year", "-1"],
    ["validate", "{inbox}", "--year", "99999"],
    ["generate", "national/project", "--year", "0", "--roster", "{roster}", "-o", "{tmp}/g"],
    ["generate", "national/project", "--year", "2022", "--roster", "{roster}", "-o", "{tmp}/g", "--region", "#"],
    ["merge", "{empty}", "-o", "{tmp}/s.xlsx"],
    ["validate", "{inbox}", "--template", "no/such-template"],
])
def test_nonsense_arguments_are_exit_2(tmp_path, args):
    inbox = _inbox(tmp_path, n=1)
    (tmp_path / "empty").mkdir()
    roster = write_roster(tmp_path / "名单.csv", UNITS[:1])
    filled = [a.format(inbox=inbox, tmp=tmp_path, roster=roster, empty=tmp_path / "empty") for a in args]
    result = CliRunner().invoke(cli, filled)
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_outputs_follow_the_umask_so_colleagues_can_read_them(tmp_path):
    roster = write_roster(tmp_path / "名单.csv", UNITS[:2])
    assert CliRunner().invoke(cli, ["generate", "national/project", "--year", "2022", "--roster", str(roster),
                                    "-o", str(tmp_path / "blank")]).exit_code == 0
    inbox = _inbox(tmp_path, n=2)
    run_merge([inbox], tmp_path / "out" / "s.xlsx", MergeOptions(jobs=1, csv_dir=tmp_path / "csv"))
    bad = tmp_path / "bad.xlsx"
    bad.write_bytes(_form("610000", "测试单位0", 1.0).replace("长期目标".encode(), b""))
    CliRunner().invoke(cli, ["validate", str(bad), "--annotate", str(tmp_path / "ann")])
    from perfxl.files import FILE_MODE

    made = [*(tmp_path / "blank").iterdir(), tmp_path / "out" / "s.xlsx", *(tmp_path / "csv").iterdir(),
            *(tmp_path / "ann").iterdir()]
    assert len(made) >= 5
    assert {oct(p.stat().st_mode & 0o777) for p in made} == {oct(FILE_MODE)}


def test_check_file_on_a_folder_is_a_coded_problem(tmp_path):
    checked = check_file(tmp_path, CheckOptions())
    assert [p.code for p in checked.problems] == ["not-a-file"]


def _same_size_replacement(path: Path, code: str, name: str) -> None:
    """Another form of the same unit, of exactly the same size, written over `path` with its size and
    mtime put back as `touch -r`, a sync client or an unzip would."""
    before = path.stat()
    for budget in range(101, 400):  # a one-figure change in the budget usually keeps the size
        data = _form(code, name, float(budget))
        if len(data) == before.st_size:
            break
    else:
        pytest.skip("no replacement of the same size")
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def test_a_same_size_replacement_with_its_mtime_put_back_is_merged_as_new(tmp_path):
    inbox = _inbox(tmp_path)
    out = tmp_path / "汇总.xlsx"
    run_merge([inbox], out, MergeOptions(jobs=1))
    code, name, _ = UNITS[0]
    _same_size_replacement(inbox / f"{code}.xlsx", code, name)
    again = run_merge([inbox], out, MergeOptions(jobs=1))
    assert again.counts["read"] == 1
    fresh = run_merge([inbox], tmp_path / "新.xlsx", MergeOptions(jobs=1, db=tmp_path / "新.sqlite"))
    assert _budgets(again) == _budgets(fresh) and _budgets(again)[name] != 100.0
    about = {row[0]: row[3] for row in next(t for t in again.tables if t.name == "说明").iter_rows()}
    assert about[str(inbox / f"{code}.xlsx")] == sha256(inbox / f"{code}.xlsx")


def test_where_the_stat_is_ambiguous_the_content_is_hashed_before_the_ledger_is_trusted(tmp_path, monkeypatch):
    """On Windows a rewrite in place keeps the creation time and the file index, so the stat cannot tell
    it: the file is hashed. Here a sighting that claims the file's very stat for other content stands in."""
    from perfxl.merging import run as merger

    inbox = _inbox(tmp_path, 1)
    out = tmp_path / "汇总.xlsx"
    run_merge([inbox], out, MergeOptions(jobs=1))
    code, name, _ = UNITS[0]
    path = inbox / f"{code}.xlsx"
    path.write_bytes(_form(code, name, 321.0))
    st = path.stat()
    with sqlite3.connect(out.with_name("汇总_报送台账.sqlite")) as con:  # the old content, at the new stat
        con.execute("UPDATE sightings SET size=?, mtime_ns=?, ctime_ns=?, ino=?",
                    (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    _reseal_sightings(out.with_name("汇总_报送台账.sqlite"))  # as perfxl itself would have recorded it
    monkeypatch.setattr(merger, "STAT_IDENTIFIES_CONTENT", False)
    again = run_merge([inbox], out, MergeOptions(jobs=1))
    assert again.counts["read"] == 1 and _budgets(again) == {name: 321.0}
    monkeypatch.setattr(merger, "STAT_IDENTIFIES_CONTENT", True)  # where the stat is trusted, the lie would pass
    with sqlite3.connect(out.with_name("汇总_报送台账.sqlite")) as con:
        con.execute("DELETE FROM sightings WHERE sha256=?", (sha256(path),))
        st = path.stat()
        con.execute("UPDATE sightings SET size=?, mtime_ns=?, ctime_ns=?, ino=?",
                    (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    _reseal_sightings(out.with_name("汇总_报送台账.sqlite"))
    assert _budgets(run_merge([inbox], out, MergeOptions(jobs=1))) == {name: 100.0}


def _reseal_sightings(db: Path) -> None:
    """Sightings edited by a test sealed with this user's key, as if the merge had recorded them (an edit
    by anyone else is not trusted at all: tests/hostile/test_planted_cache.py)."""
    from perfxl.ledger import Ledger

    ledger = Ledger(db)
    try:
        with ledger.db:
            for rowid, path, sha, *stat in ledger.db.execute(
                    "SELECT rowid, path, sha256, size, mtime_ns, ctime_ns, ino FROM sightings").fetchall():
                ledger.db.execute("UPDATE sightings SET mac=? WHERE rowid=?", (ledger.sealer.sighting(path, sha, *stat),
                                                                               rowid))
    finally:
        ledger.close()

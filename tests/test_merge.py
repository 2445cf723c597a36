"""perfxl merge over realistic inboxes: the acceptance scenarios of the merge issue."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from perfxl.cli import cli
from perfxl.merging import MergeOptions, run_merge

from .conftest import sha256, write_roster


def _sheet(path, name):
    wb = openpyxl.load_workbook(path, read_only=True)
    try:
        rows = [list(r) for r in wb[name].iter_rows(values_only=True)]
    finally:
        wb.close()
    if name == "汇总":  # the cover: title, figures and charts above the table per 主管部门
        start = next(i for i, r in enumerate(rows) if r and r[0] == "地区")
        rows = rows[start:]
    return rows[0], rows[1:]


def _column(header, rows, title):
    i = header.index(title)
    return [r[i] for r in rows if r[0] != "合计"], next((r[i] for r in rows if r[0] == "合计"), None)


@pytest.fixture(scope="module")
def seed_inbox(seeds, tmp_path_factory):
    """Every filled seed workbook in nested folders, as they arrive from units."""
    inbox = tmp_path_factory.mktemp("inbox")
    for key, seed in seeds.items():
        sub = inbox / seed.template.replace("/", "-") / seed.unit["name"]
        sub.mkdir(parents=True, exist_ok=True)
        shutil.copy(seed.filled, sub / f"{key}.xlsx")
    return inbox


def test_seed_figures_come_out_of_the_merge(seed_inbox, tmp_path):
    out = tmp_path / "mianyang.xlsx"
    run_merge([seed_inbox], out, MergeOptions(template="mianyang/project", year=2021, jobs=1))
    header, rows = _sheet(out, "项目清单")
    budgets, total = _column(header, rows, "预算金额（元）")
    assert len(budgets) == 10 and sum(budgets) == total == 8_496_600
    out = tmp_path / "shanghai2018.xlsx"
    run_merge([seed_inbox], out, MergeOptions(template="shanghai/project-2018", year=2018, jobs=1))
    header, rows = _sheet(out, "项目清单")
    per_unit = {}
    for r in rows:
        if r[0] != "合计":
            per_unit[r[header.index("单位名称")]] = per_unit.get(r[header.index("单位名称")], 0) + r[header.index("预算金额（元）")]
    assert per_unit == {"上海市公积金管理中心": 6_621_259, "上海市城乡建设和交通发展研究院": 7_246_485, "上海市房地产学校": 1_069_600}
    out = tmp_path / "department.xlsx"
    run_merge([seed_inbox], out, MergeOptions(template="yancheng/department", jobs=1))
    header, rows = _sheet(out, "部门预算")
    totals = [r for r in rows if r[header.index("收支")] == "预算支出" and r[header.index("项目")] == "合计"]
    assert [totals[0][header.index(h)] for h in ("全年数（万元）", "上半年数（万元）", "前三季度数（万元）")] == [5218.16, 2165, 3647.5]


def test_all_templates_in_one_run(seed_inbox, tmp_path):
    out = tmp_path / "all.xlsx"
    result = run_merge([seed_inbox], out, MergeOptions(jobs=2))
    c = result.counts
    assert c["files_in"] == 7 and c["merged"] == 7 and c["rejected"] == 0
    header, rows = _sheet(out, "项目清单")
    assert len([r for r in rows if r[0] != "合计"]) == 1 + 10 + 4 + 4  # yancheng + mianyang + shanghai 2020 + 2018
    header, rows = _sheet(out, "指标明细")
    assert len(rows) == c["indicators"]
    assert result.money_unit == "元"  # 万元 and 元 forms together: everything in 元
    budgets, total = _column(*_sheet(out, "项目清单"), "预算金额（元）")
    assert total == pytest.approx(12_241_400 + 8_496_600 + 34_548_079 + 6_621_259 + 7_246_485 + 1_069_600)


def test_every_table_of_all_templates_names_each_column_once_and_parquet_reads_each_by_name(seed_inbox, tmp_path):
    """项目清单 of every template together had two 主管部门 (the roster's and the form's) and two 项目总预算（元）
    (a template's label in 元, another's in 万元): pyarrow read neither by name, and a project's total budget was
    in one column or the other by its template."""
    pq = pytest.importorskip("pyarrow.parquet")
    result = run_merge([seed_inbox], tmp_path / "all.xlsx", MergeOptions(jobs=1, parquet_dir=tmp_path / "parquet"))
    files = sorted((tmp_path / "parquet").glob("*.parquet"))
    assert len(files) >= 5
    for path in files:
        names = pq.read_schema(path).names
        assert len(names) == len(set(names)), path.name
        for name in names:
            assert pq.read_table(path, columns=[name]).num_columns == 1
    header, rows = _sheet(tmp_path / "all.xlsx", "项目清单")
    assert "主管部门（表内填写）" in header
    shanghai = [r for r in rows if str(r[header.index("模板")]).startswith("shanghai/")]
    assert len(shanghai) == 8 and all(isinstance(r[header.index("项目总预算（元）")], int | float) for r in shanghai)
    assert result.counts["merged"] == 7


@pytest.fixture(scope="module")
def campaign(seeds, tmp_path_factory):
    """A deadline-day inbox: many units, nested folders, a duplicate, a resubmission, a broken file,
    a form of another year, and two roster units that never answer."""
    from perfxl import fill
    from perfxl import generator as generate
    from perfxl.spec import load_spec

    root = tmp_path_factory.mktemp("campaign")
    inbox = root / "inbox"
    seed = seeds["003-0"]
    units = [(f"31{i:04d}", f"测试单位{i}", f"部门{i % 3}") for i in range(12)]
    roster = write_roster(root / "roster.csv", units)
    expected_budget = {}
    for i, (code, name, dept) in enumerate(units):
        if i in (4, 9):
            continue  # never submitted
        unit = {"code": code, "name": name, "department": dept}
        spec = load_spec("shanghai/project-2020", 2020, unit=unit)
        blank = root / f"blank-{code}.xlsx"
        blank.write_bytes(generate.build_workbook(spec, unit, 2))
        projects = [dict(p, fields=dict(p["fields"], unit_name=name)) for p in seed.projects[:2]]
        for k, p in enumerate(projects):
            p["fields"]["current_budget"] = p["fields"]["total_budget"] = 1000 * (i + 1) + k
        sub = inbox / dept / ("2020年3月" if i % 2 else "")
        fill.fill_workbook(spec, blank, sub / f"{code}-{name}.xlsx", projects)
        expected_budget[code] = sum(p["fields"]["current_budget"] for p in projects)
        if i == 2:  # resubmission: the first version had a wrong budget, a corrected one came later
            projects[0]["fields"]["current_budget"] = 5
            fill.fill_workbook(spec, blank, sub / f"{code}-{name}-旧版.xlsx", projects)
            os.utime(sub / f"{code}-{name}-旧版.xlsx", (time.time() - 7200, time.time() - 7200))
    shutil.copy(next(inbox.rglob("310001-*.xlsx")), inbox / "副本-310001.xlsx")
    (inbox / "坏文件.xlsx").write_bytes(b"PK\x03\x04broken")
    (inbox / "~$310003-测试单位3.xlsx").write_bytes(b"lock file")
    other = load_spec("shanghai/project-2020", 2019, unit={"code": "310011", "name": "测试单位11", "department": "部门2"})
    (root / "b2019.xlsx").write_bytes(generate.build_workbook(other, {"code": "310011", "name": "测试单位11"}, 1))
    fill.fill_workbook(other, root / "b2019.xlsx", inbox / "去年的表.xlsx", seed.projects[:1])
    return {"inbox": inbox, "roster": roster, "expected_budget": expected_budget, "root": root}


def _merge(campaign, out, **kw):
    return run_merge([campaign["inbox"]], out, MergeOptions(template="shanghai/project-2020", year=2020,
                                                           roster=campaign["roster"], **kw))


def test_campaign_merges_in_one_run(campaign, tmp_path):
    hashes = {p: sha256(p) for p in campaign["inbox"].rglob("*") if p.is_file()}
    out = tmp_path / "summary.xlsx"
    result = _merge(campaign, out, csv_dir=tmp_path / "csv")
    c = result.counts
    assert c["files_in"] == 14  # 10 units + old version + copy + broken + last year's form; the lock file is skipped
    assert (c["merged"], c["duplicate"], c["superseded"], c["rejected"], c["excluded"]) == (10, 1, 1, 1, 1)
    assert c["files_in"] == c["merged"] + c["rejected"] + c["duplicate"] + c["superseded"] + c["excluded"]
    assert c["rows_in"] == c["rows_merged"] + c["rows_set_aside"]
    header, rows = _sheet(out, "项目清单")
    budgets = {}
    for r in rows[:-1]:
        budgets[r[header.index("单位编码")]] = budgets.get(r[header.index("单位编码")], 0) + r[header.index("预算金额（元）")]
    assert budgets == campaign["expected_budget"]
    assert rows[-1][header.index("预算金额（元）")] == sum(campaign["expected_budget"].values())
    header, rows = _sheet(out, "汇总")
    assert rows[-1][header.index("预算金额合计（元）")] == sum(campaign["expected_budget"].values())
    assert rows[-1][header.index("未报送")] == 2 and rows[-1][header.index("应报单位数")] == 12
    header, rows = _sheet(out, "报送情况")
    missing = sorted(r[header.index("单位编码")] for r in rows if r[header.index("报送状态")] == "未报送")
    assert missing == ["310004", "310009"]
    header, rows = _sheet(out, "变更记录")
    assert any(r[header.index("原值")] == "5.00" and r[header.index("内容")] == "项目当年预算(元):" for r in rows)
    header, rows = _sheet(out, "校验问题")
    assert any(r[header.index("规则")] == "other-year" for r in rows)
    assert any(r[header.index("规则")] == "file-corrupt" for r in rows)
    assert (tmp_path / "csv" / "项目清单.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    assert hashes == {p: sha256(p) for p in campaign["inbox"].rglob("*") if p.is_file()}, "inputs untouched"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary files left"


def test_second_run_reads_nothing_and_gives_the_same_tables(campaign, tmp_path):
    out = tmp_path / "s.xlsx"
    first = _merge(campaign, out, jobs=2)
    assert first.counts["read"] == 14
    tables1 = {n: _sheet(out, n) for n in ("汇总", "项目清单", "指标明细", "报送情况", "校验问题")}
    second = _merge(campaign, out, jobs=2)
    assert second.counts["read"] == 0 and second.counts["from_ledger"] == 14
    assert tables1 == {n: _sheet(out, n) for n in tables1}


def test_killed_merge_leaves_ledger_and_summary_intact(campaign, tmp_path):
    import sqlite3

    out = tmp_path / "k.xlsx"
    reference = tmp_path / "ref.xlsx"
    _merge(campaign, reference, db=tmp_path / "ref.sqlite")
    # The merge says when half the files are in its ledger, committed, and then waits to be killed there:
    # the kill lands mid-merge, after it wrote, whatever the machine's speed.
    script = ("import sys, time; from pathlib import Path; import perfxl.merging as merge; from perfxl import ledger\n"
              "real = ledger.Ledger.record_later\n"
              "def record(self, *a, **k):\n"
              "    real(self, *a, **k); record.n = getattr(record, 'n', 0) + 1\n"
              "    if record.n == 7:\n        self.flush(); print('written', flush=True); time.sleep(600)\n"
              "ledger.Ledger.record_later = record\n"
              f"merge.run_merge([Path({str(campaign['inbox'])!r})], Path({str(out)!r}), merge.MergeOptions("
              f"template='shanghai/project-2020', year=2020, roster=Path({str(campaign['roster'])!r}), jobs=1))\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        ready = _line_within(proc.stdout, 120)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert ready == "written", "the merge never got half way"
    assert proc.returncode == -signal.SIGKILL, "the merge was still running when it was killed"
    with sqlite3.connect(out.with_name("k_报送台账.sqlite")) as db:  # what it wrote before the kill is there
        assert db.execute("SELECT COUNT(*) FROM sightings").fetchone()[0] == 7
    assert not out.exists()
    _merge(campaign, out)
    for name in ("汇总", "项目清单", "指标明细", "报送情况", "校验问题", "变更记录"):
        assert _sheet(out, name) == _sheet(reference, name), name
    db = sqlite3.connect(out.with_name("k_报送台账.sqlite"))
    files = db.execute("SELECT COUNT(*), COUNT(DISTINCT sha256) FROM files").fetchone()
    assert files[0] == files[1] == 13  # 14 files, two of them identical
    db.close()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_merge_holds_no_ledger_lock_while_it_waits_for_its_workers(campaign, tmp_path, monkeypatch):
    """The portal records every upload in the ledger a consolidator merges (`--db 报送库/报送台账.sqlite`): a
    merge that kept a write transaction open while it waited for its workers kept each upload waiting as
    long, 4.2 s at a time at 10,000 forms (bench/ledger_hold.py), and a slower PC past the portal's 10 s."""
    from concurrent.futures import as_completed, wait

    from perfxl import ledger as ledger_module
    from perfxl.merging import render_ahead, worker

    opened = []
    real_init = ledger_module.Ledger.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        opened.append(self)

    held = []  # at each wait for workers: the ledgers this process holds a write transaction on

    def looked() -> None:
        held.append([ledger.path.name for ledger in opened if not ledger.readonly and _in_transaction(ledger.db)])

    def as_completed_looked(futures, *args, **kwargs):
        looked()
        for future in as_completed(futures, *args, **kwargs):
            yield future
            looked()

    def wait_looked(*args, **kwargs):
        looked()
        return wait(*args, **kwargs)

    monkeypatch.setattr(ledger_module.Ledger, "__init__", init)
    monkeypatch.setattr(worker, "as_completed", as_completed_looked)
    monkeypatch.setattr(render_ahead, "wait", wait_looked)
    monkeypatch.setattr(render_ahead, "AHEAD_MIN_FORMS", 1)  # its pool, for these few forms too
    result = _merge(campaign, tmp_path / "summary.xlsx", jobs=2)
    assert result.counts["merged"] == 10
    assert len(held) > 10, "the merge's waits for its workers were not looked at"
    assert not [h for h in held if h], held


def test_outcomes_are_written_and_old_runs_outcomes_deleted_a_lot_at_a_time(campaign, tmp_path, monkeypatch):
    """A run's outcomes go in lots of OUTCOMES_BATCH, one transaction each (one transaction of 100,000 held the
    ledger 1.2-1.3 s); the runs before the KEEP_RUNS latest lose theirs, however many lots that takes."""
    import sqlite3

    from perfxl import ledger as ledger_module

    monkeypatch.setattr(ledger_module, "OUTCOMES_BATCH", 3)
    monkeypatch.setattr(ledger_module, "KEEP_RUNS", 2)
    commits, lots = [], []  # rows changed per call; per transaction
    real_record = ledger_module.Ledger.record_outcomes

    def record(self, *args, **kwargs):
        before = mark = self.db.total_changes

        def traced(statement: str) -> None:
            nonlocal mark
            if statement.strip().upper() == "COMMIT":
                lots.append(self.db.total_changes - mark)
                mark = self.db.total_changes

        self.db.set_trace_callback(traced)
        try:
            real_record(self, *args, **kwargs)
        finally:
            self.db.set_trace_callback(None)
        commits.append(self.db.total_changes - before)

    monkeypatch.setattr(ledger_module.Ledger, "record_outcomes", record)
    out = tmp_path / "汇总.xlsx"
    for _ in range(4):
        _merge(campaign, out)
    with sqlite3.connect(out.with_name("汇总_报送台账.sqlite")) as db:
        runs = db.execute("SELECT run, COUNT(*) FROM outcomes GROUP BY run ORDER BY run").fetchall()
    assert runs == [(3, 14), (4, 14)]  # 14 files a run; runs 1 and 2 gone, 14 rows each in lots of 3
    assert commits[:2] == [14 + 1, 14 + 1]  # outcomes and settings; nothing older than two runs yet
    assert commits[2:] == [14 + 1 + 14, 14 + 1 + 14]  # and one old run's outcomes deleted
    # each run: 5 lots of outcomes, its settings, and deletes (nothing to delete; then 5 lots of an old run)
    assert max(lots) == 3 and len(lots) == 7 + 7 + 11 + 11, lots


def _in_transaction(db) -> bool:
    try:
        return db.in_transaction
    except Exception:  # closed
        return False


@pytest.mark.skipif(not Path("/proc/self/task").exists() or not hasattr(os, "fork"), reason="reads /proc; forks")
def test_render_ahead_workers_end_when_their_merge_is_killed(campaign, tmp_path):
    """kill -9 of a merge while its render-ahead pool works: the pool's workers end too (they outlived it
    for ever, holding its ledger open). Each worker says it started its share and then stays in it."""
    from .test_processes import children, kill_all, outlived

    script = ("import os, sys, time; from pathlib import Path; import perfxl.merging as merge\n"
              "from perfxl.merging import render_ahead\n"
              "render_ahead.AHEAD_MIN_FORMS = 1\n"
              "def stuck(batch):\n    os.write(1, b'ahead\\n'); time.sleep(600)\n"  # one write: two workers' lines never run together (CI saw 'aheadahead')
              "render_ahead._render_share = stuck\n"
              f"merge.run_merge([Path({str(campaign['inbox'])!r})], Path({str(tmp_path / 'k.xlsx')!r}), "
              f"merge.MergeOptions(template='shanghai/project-2020', year=2020, "
              f"roster=Path({str(campaign['roster'])!r}), jobs=2))\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    workers: set[int] = set()
    try:
        ready = _line_within(proc.stdout, 120)
        workers = children(proc.pid)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    try:
        assert ready == "ahead", "the merge never rendered ahead"
        assert workers, "the render-ahead pool has no workers"
        assert not outlived(workers, 15), "render-ahead workers outlived their merge"
    finally:
        kill_all(workers)
        proc.stdout.close()


def _line_within(stream, seconds: float) -> str | None:
    """The next line a child process prints, or None if none comes within `seconds`."""
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if selector.select(timeout=seconds):
            return stream.readline().strip()
    return None


def test_formula_like_text_stays_text(seeds, tmp_path):
    from perfxl import fill
    from perfxl import generator as generate
    from perfxl.spec import load_spec

    unit = {"code": "77", "name": "=HYPERLINK(\"http://x\",\"点我\")", "department": "+部门"}
    spec = load_spec("national/project", 2022, unit=unit)
    blank = tmp_path / "b.xlsx"
    blank.write_bytes(generate.build_workbook(spec, unit))
    project = {"fields": {"project_name": "@SUM(1,2)", "department": "-1+1", "implementing_unit": unit["name"],
                          "project_attr": "新增项目", "project_period": "2022年", "long_term_goal": "x", "annual_goal": "y",
                          "preparer": "\t=1+1", "phone": "88150231", "unit_name": unit["name"],
                          "funds_total_annual": 10, "funds_fiscal_annual": 10, "funds_total_mid": 10, "funds_fiscal_mid": 10},
               "tables": {"indicators": [["产出指标", "数量指标", "=1+2", "=100%"]]}}
    inbox = tmp_path / "in"
    fill.fill_workbook(spec, blank, inbox / "f.xlsx", [project])
    out = tmp_path / "s.xlsx"
    run_merge([inbox], out, MergeOptions(jobs=1, csv_dir=tmp_path / "csv"))
    ws = openpyxl.load_workbook(out)["项目清单"]
    cells = [c for row in ws.iter_rows() for c in row if isinstance(c.value, str) and c.value[:1] in "=+-@"]
    assert cells and all(c.data_type == "s" for c in cells)
    import zipfile

    with zipfile.ZipFile(out) as zf:
        assert all(b"<f>" not in zf.read(n) for n in zf.namelist() if n.startswith("xl/worksheets/"))
    text = (tmp_path / "csv" / "项目清单.csv").read_text("utf-8-sig")
    assert "'@SUM(1,2)" in text and "'-1+1" in text and "\n@" not in text


@pytest.mark.libreoffice
def test_summary_opens_in_libreoffice(campaign, tmp_path, convert):
    out = tmp_path / "lo.xlsx"
    _merge(campaign, out)
    pdf = convert(out, "pdf")
    assert pdf.stat().st_size > 10_000
    resaved = convert(out, "xlsx")
    header, rows = _sheet(resaved, "汇总")
    assert rows[-1][header.index("预算金额合计（元）")] == sum(campaign["expected_budget"].values())


def test_merge_cli_summary_and_usage_errors(campaign, tmp_path):
    r = CliRunner().invoke(cli, ["merge", str(campaign["inbox"]), "-o", str(tmp_path / "c.xlsx"), "--roster",
                                 str(campaign["roster"]), "--year", "2020", "--template", "shanghai/project-2020"])
    assert r.exit_code == 0, r.output
    assert "读取文件 14 个" in r.output and "未报送 2 个单位" in r.output and "汇总表 →" in r.output
    r = CliRunner().invoke(cli, ["merge", str(tmp_path / "nope"), "-o", str(tmp_path / "x.xlsx")])
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_every_template_with_year_filter_duplicate_resubmission_and_broken_file(seeds, seed_inbox, tmp_path):
    """All seven seed workbooks in nested folders, plus a copy, an older version and a broken file,
    merged for 2021 against a roster: only the 2021 forms are merged, the rest are listed."""
    inbox = tmp_path / "inbox"
    shutil.copytree(seed_inbox, inbox)
    mianyang = next(inbox.rglob("002-0.xlsx"))
    shutil.copy(mianyang, inbox / "转发-绵阳.xlsx")  # the same file again, from another mailbox
    from perfxl.fill import fill_workbook

    dept = seeds["001-0"]
    draft = [dict(dept.projects[0], fields=dict(dept.projects[0]["fields"], phone="88150000"))]
    fill_workbook(dept.spec, dept.blank, inbox / "初稿-部门.xlsx", draft)  # an earlier, different version
    os.utime(inbox / "初稿-部门.xlsx", (time.time() - 86400, time.time() - 86400))
    (inbox / "坏.xlsx").write_bytes(b"PK\x03\x04 not really")
    roster = write_roster(tmp_path / "roster.csv", [
        ("510700201", "绵阳市住房公积金服务中心", "绵阳市住房和城乡建设局"),
        ("320900101", "盐城市住房公积金管理中心", "盐城市住房公积金管理中心（部门）"),
        ("999999999", "没有报送的单位", "某局")])
    out = tmp_path / "2021.xlsx"
    result = run_merge([inbox], out, MergeOptions(year=2021, roster=roster, jobs=2))
    c = result.counts
    assert c["files_in"] == 7 + 3
    assert (c["merged"], c["duplicate"], c["superseded"]) == (2, 1, 1)  # 绵阳 projects, 盐城 department
    assert c["excluded"] == 5 and c["rejected"] == 1  # the 2018/2020/2022 forms; the broken file
    assert c["files_in"] == c["merged"] + c["rejected"] + c["duplicate"] + c["superseded"] + c["excluded"]
    header, rows = _sheet(out, "项目清单")
    budgets, total = _column(header, rows, "预算金额（元）")
    assert len(budgets) == 10 and total == 8_496_600
    header, rows = _sheet(out, "部门预算")
    assert {r[header.index("单位名称")] for r in rows} == {"盐城市住房公积金管理中心"}
    header, rows = _sheet(out, "报送情况")
    missing = [r[header.index("单位名称")] for r in rows if r[header.index("报送状态")] == "未报送"]
    assert missing == ["没有报送的单位"]
    header, rows = _sheet(out, "校验问题")
    assert sum(1 for r in rows if r[header.index("规则")] == "other-year") == 5
    assert "初稿-部门.xlsx" not in {r[0] for r in rows}  # a superseded draft's problems are not listed
    header, rows = _sheet(out, "变更记录")
    assert [(r[header.index("内容")], r[header.index("原值")], r[header.index("新值")]) for r in rows] == [
        ("联系电话", "88150000", "88150231")]


def test_target_quality_puts_forms_with_errors_first_and_never_grades_them_top(tmp_path):
    from perfxl.demo import run_demo

    summary = run_demo(tmp_path / "demo", echo=lambda *a: None)["summary"]
    header, rows = _sheet(summary, "目标审核")
    order = {"差": 0, "中": 1, "良": 2, "优": 3}
    weakest = [(order[r[header.index("等级")]], r[header.index("得分")]) for r in rows]
    assert weakest == sorted(weakest), "weakest declarations first: by grade, then points"
    grade = {(r[header.index("单位名称")], r[header.index("项目名称")]): r[header.index("等级")] for r in rows}
    p_header, projects = _sheet(summary, "项目清单")
    with_errors = [(p[p_header.index("单位名称")], p[p_header.index("项目名称")]) for p in projects
                   if p[0] != "合计" and p[p_header.index("错误数")]]
    assert len(with_errors) == 4  # the demo's four merged projects with mistakes
    assert all(grade[key] in {"中", "差"} for key in with_errors)
    capped = {(r[header.index("单位名称")], r[header.index("项目名称")]) for r in rows
              if "审核等级至多为" in (r[header.index("完整性扣分原因")] or "")}  # the year end cannot give more
    clean = [key for key in grade if key not in with_errors and key not in capped]
    assert clean and all(grade[key] in {"优", "良"} for key in clean)
    assert all(grade[key] == "中" for key in capped)


@pytest.mark.libreoffice
def test_a_sheet_past_excels_row_limit_continues_on_numbered_sheets(seeds, tmp_path, monkeypatch, convert):
    """Excel refuses a sheet of more than 1,048,576 rows. With the limit forced down to 12, 指标明细 must
    continue in 指标明细(2), (3), … with its header, every row present once, the CSV whole, and 说明 and
    汇总 saying so; LibreOffice must open the result."""
    import csv

    from perfxl import report

    monkeypatch.setattr(report, "EXCEL_ROWS", 12)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for key in ("000-0", "003-0"):
        shutil.copy(seeds[key].filled, inbox / f"{key}.xlsx")
    result = run_merge([inbox], tmp_path / "汇总.xlsx", MergeOptions(jobs=1, csv_dir=tmp_path / "csv",
                                                                   parquet_dir=tmp_path / "parquet"))
    indicators = result.counts["indicators"]
    wb = openpyxl.load_workbook(tmp_path / "汇总.xlsx", read_only=True)
    parts = [n for n in wb.sheetnames if n == "指标明细" or n.startswith("指标明细(")]
    assert len(parts) == -(-indicators // 10) > 1
    header = None
    rows = []
    for name in parts:
        sheet = list(wb[name].iter_rows(values_only=True))
        assert len(sheet) <= 12 and (header is None or sheet[0] == header)
        header = sheet[0]
        rows += sheet[1:]
    assert len(rows) == indicators and len(set(rows)) == len(rows)
    with open(tmp_path / "csv" / "指标明细.csv", encoding="utf-8-sig") as fh:
        assert len(list(csv.reader(fh))) == indicators + 1
    pq = pytest.importorskip("pyarrow.parquet")
    whole = pq.read_table(tmp_path / "parquet" / "指标明细.parquet")
    assert whole.num_rows == indicators and whole.column_names == list(header)
    about = "\n".join(str(v) for name in wb.sheetnames if name.startswith("说明")  # 说明 continues too, at 12
                      for row in wb[name].iter_rows(values_only=True) for v in row if v)
    cover = "\n".join(str(v) for row in wb["汇总"].iter_rows(values_only=True) for v in row if v)
    wb.close()
    assert f"「指标明细」共 {indicators:,} 行" in about and "指标明细(2)" in cover
    reopened = openpyxl.load_workbook(convert(tmp_path / "汇总.xlsx", "xlsx"), read_only=True)
    names = reopened.sheetnames
    reopened.close()
    assert parts[-1] in names


def test_a_city_merge_of_county_ledgers_equals_one_merge_of_all_files(seeds, tmp_path):
    """节点汇总: three counties merge their own inboxes; the city merges their ledgers and gets the same
    projects, indicator rows and totals as one merge of every file, each row keeping its county and the
    original sha256. A unit handed in to two counties is counted once, and the other copy is listed."""
    counties = {"甲县": ("000-0", "002-0"), "乙县": ("003-0",), "丙县": ("004-0", "000-0")}
    everything = tmp_path / "全部"
    everything.mkdir()
    ledgers = []
    for county, keys in counties.items():
        inbox = tmp_path / county
        inbox.mkdir()
        for key in keys:
            shutil.copy(seeds[key].filled, inbox / f"{key}.xlsx")
            shutil.copy(seeds[key].filled, everything / f"{key}.xlsx")
        db = tmp_path / f"{county}_报送台账.sqlite"
        run_merge([inbox], tmp_path / f"{county}.xlsx", MergeOptions(jobs=1, db=db))
        ledgers.append(db)
    roster = tmp_path / "名单.csv"  # each unit's 区县 and its 市: the summary totals both levels
    home = {}
    for county, keys in counties.items():
        for key in keys:
            home.setdefault(seeds[key].unit["code"], (seeds[key].unit, county))
    roster.write_text("单位编码,单位名称,主管部门,地区,上级地区\n" + "".join(
        f"{u['code']},{u['name']},{u['department']},{county},{'西市' if county == '乙县' else '东市'}\n"
        for u, county in home.values()), encoding="utf-8")
    city = run_merge(ledgers, tmp_path / "市.xlsx", MergeOptions(jobs=1, db=tmp_path / "市_报送台账.sqlite",
                                                                roster=roster), materialize=True)
    whole = run_merge([everything], tmp_path / "全部.xlsx", MergeOptions(jobs=1, roster=roster), materialize=True)
    levels = city.table("汇总").cover.tables[0]
    assert levels.name == "分级合计" and list(levels.iter_rows()) == list(whole.table("汇总").cover.tables[0].iter_rows())
    titles = [title for title, _ in levels.columns]
    by = {(r[0], r[1], r[2]): dict(zip(titles, r)) for r in levels.iter_rows()}
    total = by[("合计", "", "")]
    assert titles[:3] == ["层级", "地区", "上级地区"]
    assert total["已报单位数"] == whole.counts["units"] and total["项目数"] == whole.counts["projects"]
    cities = [r for k, r in by.items() if k[0] == "市"]
    counties_rows = [r for k, r in by.items() if k[0] == "区县"]
    assert {r["地区"] for r in cities} == {"东市", "西市"} and len(counties_rows) >= 2
    for column in ("应报单位数", "已报单位数", "项目数", "预算金额合计（元）"):
        assert sum(r[column] for r in cities) == sum(r[column] for r in counties_rows) == total[column], column
    east = next(r for r in cities if r["地区"] == "东市")
    assert east["已报单位数"] == sum(r["已报单位数"] for r in counties_rows if r["上级地区"] == "东市") > 0

    def rows(result, name, drop=("来源文件",)):  # by title: columns of several templates come in file order
        titles = [title for title, _ in result.table(name).columns]
        return sorted(tuple(sorted((t, repr(v)) for t, v in zip(titles, r) if t not in drop))
                      for r in result.table(name).iter_rows())

    for name in ("项目清单", "指标明细"):
        assert rows(city, name) == rows(whole, name), name
    assert city.counts["merged"] == whole.counts["merged"] == 4
    assert city.counts["indicators"] == whole.counts["indicators"]
    merged = [s for s in city.files if s.outcome == "merged"]
    assert all("#" in s.path and s.source == "rollup" for s in merged)
    assert {s.claimed for s in merged} == {s.sha for s in whole.files if s.outcome == "merged"}
    twice = [s for s in city.files if s.outcome in {"duplicate", "superseded"}]
    assert len(twice) == 1 and twice[0].unit_code == seeds["000-0"].unit["code"]
    province = run_merge([tmp_path / "市_报送台账.sqlite"], tmp_path / "省.xlsx", MergeOptions(jobs=1),
                         materialize=True)
    assert rows(province, "指标明细") == rows(whole, "指标明细")  # and up again, city → province


def test_a_form_missing_from_a_county_ledger_is_reported_not_dropped(seeds, tmp_path):
    import sqlite3

    inbox = tmp_path / "甲县"
    inbox.mkdir()
    shutil.copy(seeds["000-0"].filled, inbox / "a.xlsx")
    db = tmp_path / "甲县_报送台账.sqlite"
    run_merge([inbox], tmp_path / "甲县.xlsx", MergeOptions(jobs=1, db=db))
    with sqlite3.connect(db) as con:
        con.execute("UPDATE files SET form = NULL")
    city = run_merge([db], tmp_path / "市.xlsx", MergeOptions(jobs=1))
    assert city.counts["rejected"] == 1 and city.counts["merged"] == 0
    assert city.files[0].read_error == "file-unreadable"


def test_a_city_merge_of_county_exports_equals_one_of_their_ledgers(seeds, tmp_path):
    """perfxl export: a county sends one compact file up, not its whole ledger; the city merges the
    exports as it would the ledgers, each row naming the export it came from. A newer export from a county
    replaces that county's rows."""
    exports, ledgers = [], []
    for county, keys in {"甲县": ("000-0", "002-0"), "乙县": ("003-0",)}.items():
        inbox = tmp_path / county
        inbox.mkdir()
        for key in keys:
            shutil.copy(seeds[key].filled, inbox / f"{key}.xlsx")
        db = tmp_path / f"{county}_报送台账.sqlite"
        run_merge([inbox], tmp_path / f"{county}.xlsx", MergeOptions(jobs=1, db=db))
        result = CliRunner().invoke(cli, ["export", "--ledger", str(db), "-o", str(tmp_path / f"{county}.perfxl")])
        assert result.exit_code == 0, result.output
        assert "已导出" in result.output
        ledgers.append(db)
        exports.append(tmp_path / f"{county}.perfxl")
    assert not list(tmp_path.glob("*.perfxl-*")), "one file, no journal beside it"
    by_ledgers = run_merge(ledgers, tmp_path / "市1.xlsx", MergeOptions(jobs=1, db=tmp_path / "市1.sqlite"),
                           materialize=True)
    by_exports = run_merge(exports, tmp_path / "市2.xlsx", MergeOptions(jobs=1, db=tmp_path / "市2.sqlite"),
                           materialize=True)
    assert by_exports.counts["merged"] == by_ledgers.counts["merged"] == 3
    assert sorted(map(tuple, by_exports.table("指标明细").iter_rows())) == \
        sorted(map(tuple, by_ledgers.table("指标明细").iter_rows()))
    assert {s.path.split("#")[0] for s in by_exports.files} == {"甲县.perfxl", "乙县.perfxl"}
    for e, d in zip(exports, ledgers):  # a ledger in use is its file and its journal (-wal) beside it
        assert e.stat().st_size < sum(p.stat().st_size for p in tmp_path.glob(d.name + "*"))

    shutil.copy(seeds["004-0"].filled, tmp_path / "乙县" / "004-0.xlsx")  # 乙县 merges again, sends again
    run_merge([tmp_path / "乙县"], tmp_path / "乙县.xlsx", MergeOptions(jobs=1, db=ledgers[1]))
    assert CliRunner().invoke(cli, ["export", "--ledger", str(ledgers[1]), "-o", str(exports[1])]).exit_code == 0
    again = run_merge(exports, tmp_path / "市2.xlsx", MergeOptions(jobs=1, db=tmp_path / "市2.sqlite"))
    assert again.counts["files_in"] == 4 and again.counts["merged"] + again.counts["superseded"] == 4


def test_export_refuses_what_is_not_a_ledger_and_never_overwrites_another_file(tmp_path):
    other = tmp_path / "别的.xlsx"
    other.write_bytes(b"not a ledger")
    result = CliRunner().invoke(cli, ["export", "--ledger", str(other), "-o", str(tmp_path / "x.perfxl")])
    assert result.exit_code == 2 and "不是 perfxl 报送台账" in result.output
    missing = CliRunner().invoke(cli, ["export", "--ledger", str(tmp_path / "无.sqlite"), "-o", str(other)])
    assert missing.exit_code == 2 and "不存在" in missing.output
    assert other.read_bytes() == b"not a ledger"


def _chunk_of_results(chunk: list) -> list:
    """A read worker's chunk, as big as a real one's results: 1 MB a task."""
    return [bytes(1 << 20) for _ in chunk]


def test_the_read_pool_lets_go_of_each_chunks_results_once_given_on(monkeypatch):
    """#24: the read pool kept every chunk's future, and so every checked form of the run, until the pool
    ended. A chunk's results must be garbage once the merge has taken them, while later chunks are read."""
    import gc
    import weakref

    from perfxl.merging import worker

    monkeypatch.setattr(worker, "_process_chunk", _chunk_of_results)
    seen = []
    real = worker.as_completed

    def watched(futures):
        for future in real(futures):
            seen.append(weakref.ref(future))
            yield future

    monkeypatch.setattr(worker, "as_completed", watched)
    results = worker._run_pool([(f"f{i}", None, None) for i in range(12)], MergeOptions(), None, None, jobs=2, chunk=2)
    taken = 0
    for _ in results:
        taken += 1
        if taken == 8:  # four chunks taken, two still to come, the pool alive
            gc.collect()
            assert seen[0]() is None and seen[1]() is None
    assert taken == 12


@pytest.mark.parametrize("size", [0, 1, 15_000, 65_536, 65_537, 3 * (1 << 20) + 7])
def test_a_file_is_read_whole_whatever_its_size_against_the_first_reads_size(tmp_path, size):
    """The first read asks for the size the stat gave, the next 64 KB at a time: every byte comes, in order,
    and a file one byte over the cap is refused, at the cap it is read."""
    from perfxl.inbox import TooLarge, read_regular_file

    data = os.urandom(size)
    path = tmp_path / "表.xlsx"
    path.write_bytes(data)
    got, st = read_regular_file(path, max(size, 1))
    assert got == data and st.st_size == size
    if size > 1:
        with pytest.raises(TooLarge):
            read_regular_file(path, size - 1)

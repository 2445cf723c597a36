"""Deadline-day benchmark: perfxl against the way clerks merge today, on a synthetic campaign.

    python bench/run.py --units 1000 10000 [--jobs 2] [--naive-limit K] [--out bench/results]

For each N it builds a campaign (N units on a roster, Shanghai 2020 and national forms filled with
realistic random values, ~3% with mistakes), then times in one run, each step in its own process:
  generate  — `perfxl generate` of N blank forms;
  merge     — `perfxl merge` of the N filled forms into the summary workbook (fresh ledger);
  remerge   — the same merge again over the unchanged inbox (everything from the ledger);
  plus3     — the same merge again after three units hand in a corrected form (deadline day);
  followup  — `perfxl generate national/selfeval --from LEDGER`: self-evaluation forms prefilled from the
              merge's ledger (ms of CPU per form generated);
  naive     — openpyxl load_workbook per file + pandas.concat + DataFrame.to_excel;
  floor     — what no merge can do without, from well-kept parts: python-calamine reading every cell of every
              sheet in a pool of --jobs processes, and the rows written as one sheet's XML at zlib level 1
              (no checking, no ledger, no layout): how far perfxl is from the least a merge costs.
It prints files/s, wall time, CPU time, peak memory (the whole process tree) and perfxl/naive, and
writes the figures to JSON. With --naive-limit K the naive way is timed on the first K files and
scaled linearly to N; the JSON says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime
from multiprocessing import Pool
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

NATIONAL_ROWS = {
    "产出指标": {"数量指标": ["培训人次", "服务对象户数", "设备采购数量", "巡查次数", "发放补贴人数"],
               "质量指标": ["验收合格率", "系统可用率", "资料归档完整率", "数据准确率"],
               "时效指标": ["项目完成时间", "故障响应时间", "补贴发放及时率"],
               "成本指标": ["设备采购成本", "运维服务成本", "培训成本"]},
    "效益指标": {"社会效益指标": ["群众办事便捷度", "政策知晓率", "服务覆盖率"],
               "经济效益指标": ["带动社会投资"], "可持续影响指标": ["长效机制建立", "系统持续运行年限"]},
    "满意度指标": {"服务对象满意度指标": ["服务对象满意度", "群众满意度"]},
}


def _target(rng: random.Random, kind: str, year: int = 2022) -> str:
    if kind == "数量指标":
        return f"≥{rng.randint(1, 5000)}{rng.choice(['人次', '户', '台', '次', '件'])}"
    if kind == "质量指标":
        return rng.choice(["≥95%", "≥98%", "=100%", "≥90%", "规范"])
    if kind == "时效指标":
        return rng.choice([f"≤{rng.randint(1, 48)}小时", "及时", f"{year}年12月31日前完成", "≥95%"])
    if kind == "成本指标":
        return f"≤{rng.randint(5, 300)}万元"
    if kind.endswith("满意度指标"):
        return rng.choice(["≥90%", "≥95%", "≥85%"])
    return rng.choice(["提高", "有效提升", "≥80%", "长期", "≥5年"])


def _national(rng: random.Random, i: int, mistake: str | None, year: int = 2022) -> dict:
    rows = []
    while len(rows) < 40:
        for l1, groups in NATIONAL_ROWS.items():
            for l2, metrics in groups.items():
                metric = rng.choice(metrics)
                rows.append([l1, l2, f"{metric}{len(rows) + 1}", _target(rng, l2, year)])
    rows = rows[:40]
    total = round(rng.uniform(10, 900), 2)
    fiscal = round(total * rng.uniform(0.5, 1), 2)
    fields = {"project_name": f"项目{i}", "project_attr": rng.choice(["新增项目", "延续项目"]),
              "project_period": f"{year}年", "subject_code": rng.choice(["2010101", "2080201", "2210302"]),
              "long_term_goal": "提升公共服务水平，保障各项工作有序开展。" * 3,
              "annual_goal": "完成年度建设任务，服务对象满意度达到95%以上。" * 2,
              "funds_total_annual": total, "funds_fiscal_annual": fiscal, "funds_other_annual": round(total - fiscal, 2),
              "funds_total_mid": total, "funds_fiscal_mid": fiscal, "funds_other_mid": round(total - fiscal, 2),
              "preparer": "张三", "phone": f"0816{rng.randint(1000000, 9999999)}", "fill_date": f"{year - 1}-11-15"}
    _mistake(fields, rows, mistake, "funds_fiscal_annual", "long_term_goal", 3)
    return {"fields": fields, "tables": {"indicators": rows}}


def _shanghai(rng: random.Random, i: int, seed_projects: list, mistake: str | None) -> dict:
    base = rng.choice(seed_projects)
    rows = [list(r) for r in base["tables"]["indicators"]]
    while len(rows) < 40:
        rows.append(["产出目标", "数量", f"补充指标{len(rows)}", f">={rng.randint(1, 99)}次"])
    for r in rows:
        if r[3].startswith((">=", "≥", "=")) and r[3].endswith("%"):
            r[3] = rng.choice([">=90%", ">=95%", "=100%", "≥85%"])
    budget = rng.randint(50_000, 20_000_000)
    fields = dict(base["fields"], project_name=f"{base['fields']['project_name']}（{i}）", total_budget=budget,
                  current_budget=budget, last_budget=rng.randint(50_000, 20_000_000))
    fields["last_spent"] = fields["last_budget"]
    _mistake(fields, rows, mistake, "current_budget", "overview", 3)
    return {"fields": fields, "tables": {"indicators": rows[:40]}}


def _mistake(fields, rows, kind, number_field, text_field, value_col):
    if kind == "required":
        fields[text_field] = None
    elif kind == "number":
        fields[number_field] = "约" + str(fields[number_field])
    elif kind == "unparseable":
        rows[5][value_col] = "》 万元"
    elif kind == "level2":
        rows[2][1] = "满意度"


def _fill_one(args) -> None:
    from perfxl import generator as generate
    from perfxl.spec import load_spec

    path, template, year, unit, project = args
    spec = load_spec(template, year, unit=unit)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(generate.build_workbook(spec, unit, values=[project]))


def build_campaign(n: int, root: Path, seed: int = 2022, years_back: int = 0) -> dict:
    """N units' filled forms (half national/project of 2022, half shanghai/project-2020), or the same units'
    and projects' forms `years_back` years earlier (bench/history.py's history)."""
    from perfxl.fill import load_sample

    rng = random.Random(seed)
    shanghai_seed = load_sample(Path(__file__).parents[1] / "perfxl" / "samples" / "seed-003-shanghai-2020.yaml")
    seed_projects = shanghai_seed["workbooks"][0]["projects"]
    root.mkdir(parents=True, exist_ok=True)
    roster = root / "roster.csv"
    jobs = []
    lines = ["code,name,department,region"]
    for i in range(n):
        code = f"{900000 + i}"
        dept = f"部门{i % 40:02d}"
        region = f"区县{i % 8}"
        name = f"预算单位{i:05d}"
        lines.append(f"{code},{name},{dept},{region}")
        unit = {"code": code, "name": name, "department": dept}
        mistake = rng.choice(["required", "number", "unparseable", "level2"]) if rng.random() < 0.03 else None
        if i % 2:
            year = 2022 - years_back
            template, project = "national/project", _national(rng, i, mistake, year)
            project["fields"]["unit_name"] = name
            project["fields"]["implementing_unit"] = name
            project["fields"]["department"] = dept
        else:
            template, year, project = "shanghai/project-2020", 2020 - years_back, _shanghai(rng, i, seed_projects, mistake)
            project["fields"]["unit_name"] = name
        jobs.append((str(root / "inbox" / dept / f"{code}_{name}.xlsx"), template, year, unit, project))
    roster.write_text("\n".join(lines) + "\n", encoding="utf-8")
    started = time.perf_counter()
    with Pool(os.cpu_count() or 1) as pool:
        pool.map(_fill_one, jobs, chunksize=64)
    return {"roster": roster, "inbox": root / "inbox", "fill_seconds": time.perf_counter() - started,
            "files": n}


# ----------------------------------------------------------------------------------------------------
# Measuring a step in its own process tree
# ----------------------------------------------------------------------------------------------------

def _proc_kb(path: str, field: str) -> int:
    """A `field: N kB` line of a /proc file; 0 where the kernel has no such file (smaps_rollup before 4.14)."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(field):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def _tree_memory(pid: int) -> tuple[int, int]:
    """Resident and proportional memory (RSS, PSS) of a process and all its descendants, in bytes (Linux
    /proc). Forked workers share their parent's pages: RSS counts a shared page once per process, PSS
    splits it among them, so the tree's PSS is what the machine actually gives the run."""
    rss = pss = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            rss += _proc_kb(f"/proc/{p}/status", "VmRSS:") * 1024
            pss += _proc_kb(f"/proc/{p}/smaps_rollup", "Pss:") * 1024
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError):
            continue
    return rss, pss


def measure(command: list[str], sample_memory: bool = True) -> dict:
    """A command's wall and CPU time (its process tree's), and with `sample_memory` its tree's peak RSS and PSS,
    sampled every 50 ms. Sampling reads /proc/PID/smaps_rollup, which holds each process's memory map lock
    while it walks it, and so slows a process that maps and unmaps memory (a 10,000-form merge with history
    took 40 s alone and 49-51 s sampled, the same hour): figures compared for time are taken without it."""
    started = time.perf_counter()
    before = os.times()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    peak = [0, 0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            rss, pss = _tree_memory(proc.pid)
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    if sample_memory:
        sampler.start()
    output, _ = proc.communicate()
    done.set()
    if sample_memory:
        sampler.join()
    after = os.times()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{output}")
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_mb": round(peak[0] / 2**20, 1),
            "peak_pss_mb": round(peak[1] / 2**20, 1) if peak[1] else None, "output": output}


NAIVE = r"""
import sys, openpyxl, pandas as pd
from pathlib import Path
files = sorted(Path(sys.argv[1]).rglob("*.xlsx"))[: int(sys.argv[3])]
frames = []
for path in files:
    wb = openpyxl.load_workbook(path)                 # the usual way: full load, styles and all
    for ws in wb.worksheets:
        if ws.sheet_state != "visible" or ws.title == "填表说明":
            continue
        rows = [[c for c in row] for row in ws.iter_rows(values_only=True)]
        frame = pd.DataFrame(rows).astype(str)
        frame.insert(0, "file", path.name)
        frames.append(frame)
pd.concat(frames, ignore_index=True).to_excel(sys.argv[2], index=False)
print(len(files))
"""


def read_validate_cpu(inbox: Path, sample: int = 500) -> float:
    """CPU milliseconds to read and validate one form, in-process, over a sample after a warm-up."""
    from perfxl.read import read_workbook
    from perfxl.validator import check_form

    files = sorted(inbox.rglob("*.xlsx"))
    warm_up = min(100, len(files) // 5)
    warm, timed = files[:warm_up], files[warm_up:warm_up + sample]
    for path in warm:
        check_form(read_workbook(path))
    data = [(path, path.read_bytes()) for path in timed]
    started = time.process_time()
    for path, payload in data:
        check_form(read_workbook(path, data=payload))
    return round((time.process_time() - started) * 1000 / len(data), 2)


FLOOR = r"""
import sys, zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from xml.sax.saxutils import escape
from python_calamine import CalamineWorkbook

def rows_of(path):
    out = []
    wb = CalamineWorkbook.from_path(str(path))
    for name in wb.sheet_names:
        for row in wb.get_sheet_by_name(name).to_python(skip_empty_area=False):
            cells = []
            for v in row:
                if v == "" or v is None:
                    continue
                if type(v) in (int, float):
                    cells.append(f"<c><v>{v!r}</v></c>")
                else:
                    cells.append(f'<c t="inlineStr"><is><t>{escape(str(v))}</t></is></c>')
            out.append("<row>" + "".join(cells) + "</row>")
    return "".join(out).encode()

if __name__ == "__main__":
    files = sorted(Path(sys.argv[1]).rglob("*.xlsx"))
    with ProcessPoolExecutor(int(sys.argv[3])) as pool, \
            zipfile.ZipFile(sys.argv[2], "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z, \
            z.open("xl/worksheets/sheet1.xml", "w") as sheet:
        sheet.write(b"<worksheet><sheetData>")
        for xml in pool.map(rows_of, files, chunksize=32):
            sheet.write(xml)
        sheet.write(b"</sheetData></worksheet>")
    print(len(files))
"""


def plus_three(campaign_dir: Path, inbox: Path, merge_cmd: list[str]) -> dict:
    """Deadline day: three units hand in a corrected form (a small campaign of the same shape, whose units
    are the big campaign's first three) and the merge runs again; the corrections are taken away after."""
    late = campaign_dir / "late"
    shutil.rmtree(late, ignore_errors=True)
    build_campaign(3, late, seed=7)
    arrived = []
    try:
        for path in sorted((late / "inbox").rglob("*.xlsx")):
            target = inbox / "更正" / path.name
            target.parent.mkdir(exist_ok=True)
            shutil.copy2(path, target)
            arrived.append(target)
        return measure(merge_cmd)
    finally:
        for target in arrived:
            target.unlink()
        shutil.rmtree(inbox / "更正", ignore_errors=True)


def compile_perfxl() -> None:
    """perfxl's modules compiled to bytecode before anything is timed, as `pip install .` leaves them: an
    editable install run with PYTHONDONTWRITEBYTECODE=1 (this project's machine sets it) compiles every
    module again in each command, 0.14 s of a re-merge's 3 s that no installed perfxl pays."""
    import compileall

    import perfxl

    compileall.compile_dir(str(Path(perfxl.__file__).parent), quiet=1)


def run(n: int, root: Path, jobs: int, naive_limit: int | None) -> dict:
    campaign_dir = root / f"n{n}"
    print(f"\n== N = {n:,}: building the campaign in {campaign_dir} …", flush=True)
    if campaign_dir.exists():
        subprocess.run(["rm", "-rf", str(campaign_dir)], check=True)
    campaign = build_campaign(n, campaign_dir)
    print(f"   filled {n:,} forms in {campaign['fill_seconds']:.1f} s (setup, not timed)", flush=True)
    perfxl = [sys.executable, "-m", "perfxl"]
    results = {}
    results["generate"] = measure(perfxl + ["generate", "shanghai/project-2020", "--year", "2020", "--roster",
                                            str(campaign["roster"]), "-o", str(campaign_dir / "blank")])
    summary = campaign_dir / "summary.xlsx"
    merge_cmd = perfxl + ["merge", str(campaign["inbox"]), "-o", str(summary), "--roster", str(campaign["roster"]),
                          "--jobs", str(jobs)]
    results["merge"] = measure(merge_cmd)
    results["remerge"] = measure(merge_cmd)
    results["plus3"] = plus_three(campaign_dir, campaign["inbox"], merge_cmd)
    selfeval = campaign_dir / "selfeval-blank"
    results["followup"] = measure(perfxl + ["generate", "national/selfeval", "--year", "2022", "--roster",
                                            str(campaign["roster"]), "--from",
                                            str(campaign_dir / "summary_报送台账.sqlite"), "-o", str(selfeval)])
    followup_forms = sum(1 for path in selfeval.rglob("*.xlsx") if path.name != "分发清单.xlsx")  # not the list
    limit = min(n, naive_limit) if naive_limit else n
    naive = measure([sys.executable, "-c", NAIVE, str(campaign["inbox"]), str(campaign_dir / "naive.xlsx"), str(limit)])
    naive["files_timed"] = limit
    if limit < n:
        naive["wall_s_measured"] = naive["wall_s"]
        naive["wall_s"] = round(naive["wall_s"] * n / limit, 1)
        naive["cpu_s"] = round(naive["cpu_s"] * n / limit, 1)
        naive["extrapolated"] = True
    results["naive"] = naive
    results["floor"] = measure([sys.executable, "-c", FLOOR, str(campaign["inbox"]), str(campaign_dir / "floor.xlsx"),
                                str(jobs)])
    rows = 0
    for line in results["merge"]["output"].splitlines():
        if "指标" in line and "行" in line:
            rows = int(line.split("指标")[1].split("行")[0].strip())
    figures = {"units": n, "indicator_rows": rows, "jobs": jobs}
    for step, r in results.items():
        figures[step] = {k: v for k, v in r.items() if k != "output"}
        figures[step]["files_per_s"] = round(n / r["wall_s"], 1) if r["wall_s"] else None
    figures["speedup_vs_naive"] = round(results["naive"]["wall_s"] / results["merge"]["wall_s"], 1)
    figures["merge_over_floor_wall"] = round(results["merge"]["wall_s"] / results["floor"]["wall_s"], 2)
    figures["cpu_ms_per_form_merge"] = round(results["merge"]["cpu_s"] * 1000 / n, 2)
    figures["cpu_ms_per_form_floor"] = round(results["floor"]["cpu_s"] * 1000 / n, 2)
    figures["cpu_ms_read_validate_one_form"] = read_validate_cpu(campaign["inbox"])
    if results["followup"]["wall_s"]:  # per form generated (national units only), not per unit
        figures["followup"]["files_per_s"] = round(followup_forms / results["followup"]["wall_s"], 1)
    figures["plus3_over_fresh_wall"] = round(results["plus3"]["wall_s"] / results["merge"]["wall_s"], 3)
    figures["followup_forms"] = followup_forms
    figures["cpu_ms_per_form_followup_generate"] = round(results["followup"]["cpu_s"] * 1000 / max(1, followup_forms), 2)
    figures["cpu_ms_per_form_blank_generate"] = round(results["generate"]["cpu_s"] * 1000 / n, 2)
    print(f"   {'step':<10}{'files/s':>10}{'wall s':>10}{'cpu s':>10}{'peak MB':>10}")
    for step in ("generate", "merge", "remerge", "plus3", "followup", "naive", "floor"):
        f = figures[step]
        extra = f"  (timed on {f['files_timed']:,} files, scaled)" if f.get("extrapolated") else ""
        print(f"   {step:<10}{f['files_per_s']:>10,.0f}{f['wall_s']:>10.1f}{f['cpu_s']:>10.1f}{f['peak_mb']:>10.0f}{extra}")
    print(f"   perfxl merge is {figures['speedup_vs_naive']}× faster than the naive way; "
          f"{rows:,} indicator rows; {figures['cpu_ms_per_form_merge']} ms CPU per form for the whole merge, "
          f"{figures['cpu_ms_read_validate_one_form']} ms to read and validate one form")
    print(f"   the floor (calamine and sheet XML): {figures['cpu_ms_per_form_floor']} ms CPU per form; perfxl merge "
          f"takes {figures['merge_over_floor_wall']}× its wall time")
    print(f"   merge again after 3 corrected forms: {figures['plus3_over_fresh_wall']} of the fresh merge's wall time; "
          f"generating forms: {figures['cpu_ms_per_form_blank_generate']} ms CPU per blank form, "
          f"{figures['cpu_ms_per_form_followup_generate']} ms per self-evaluation form prefilled from the ledger "
          f"({followup_forms:,} forms)")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--naive-limit", type=int, default=None)
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    compile_perfxl()
    report = {"date": datetime.now().isoformat(timespec="seconds"), "machine": {
        "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "runs": [run(n, args.work, args.jobs, args.naive_limit) for n in args.units]}
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"bench-{datetime.now():%Y%m%d-%H%M}.json"
    target.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    (args.out / "latest.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"\nfigures → {target}")


if __name__ == "__main__":
    main()

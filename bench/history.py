"""What comparing targets with history costs a merge (#22): the same campaign merged with and without
`--history`, pair by pair.

    python bench/history.py --units 10000 [--pairs 5] [--work bench/work/history]

It builds bench/run.py's campaign three times for the same units and projects: this year's forms and those of
one and two years before (national/project 2022, 2021, 2020; shanghai/project-2020 2020, 2019, 2018), and merges
the two earlier years into their ledgers (setup, not timed). Then, alternating, each in its own process tree
with a fresh ledger:
  plain  — `perfxl merge` of this year's forms;
  warm   — the same with `--history` of both ledgers, in a perfxl folder that read them once before (what it
           kept is taken);
  cold   — the same, in a perfxl folder that has never read them (the history ledgers' forms are checked
           again).
It prints the median wall and CPU time of each, the median of its ratios to plain pair by pair, and the peak
memory (PSS) of the process tree, from one more run of each with memory sampled (sampling slows what it
samples, so the timed runs are not).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from run import build_campaign, measure  # noqa: E402


def _prepare(n: int, work: Path) -> dict:
    """The three years' campaigns and the two history ledgers, made once and kept in `work`."""
    perfxl = [sys.executable, "-m", "perfxl"]
    years = {}
    for back in (2, 1, 0):
        root = work / f"years_back{back}"
        if not (root / "roster.csv").is_file():
            shutil.rmtree(root, ignore_errors=True)
            build_campaign(n, root, years_back=back)
        years[back] = root
    ledgers = []
    home = work / "setup-home"
    for back in (2, 1):
        ledger = work / f"history{back}.sqlite"
        if not ledger.is_file():
            env_home = os.environ.get("PERFXL_HOME")
            os.environ["PERFXL_HOME"] = str(home)
            try:
                measure(perfxl + ["merge", str(years[back] / "inbox"), "--roster", str(years[back] / "roster.csv"),
                                  "-o", str(work / f"history{back}.xlsx"), "--db", str(ledger)])
            finally:
                if env_home is None:
                    os.environ.pop("PERFXL_HOME", None)
                else:
                    os.environ["PERFXL_HOME"] = env_home
        ledgers.append(ledger)
    return {"inbox": years[0] / "inbox", "roster": years[0] / "roster.csv", "ledgers": ledgers}


def _merge(campaign: dict, home: Path, history: bool, sample_memory: bool = False) -> dict:
    out = Path(tempfile.mkdtemp(prefix="history-bench-"))
    os.environ["PERFXL_HOME"] = str(home)
    command = [sys.executable, "-m", "perfxl", "merge", str(campaign["inbox"]), "--roster", str(campaign["roster"]),
               "-o", str(out / "汇总.xlsx"), "--db", str(out / "台账.sqlite")]
    if history:
        command += [a for ledger in campaign["ledgers"] for a in ("--history", str(ledger))]
    try:
        return measure(command, sample_memory=sample_memory)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=10000)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--work", type=Path, default=HERE / "work" / "history")
    args = parser.parse_args()
    work = args.work / f"n{args.units}"
    work.mkdir(parents=True, exist_ok=True)
    campaign = _prepare(args.units, work)
    warm_home = work / "warm-home"
    _merge(campaign, warm_home, history=True)  # reads the history once: what "warm" finds kept
    runs: dict[str, list[dict]] = {"plain": [], "cold": [], "warm": []}
    peaks: dict[str, float] = {}

    def run(kind: str, sample_memory: bool = False) -> dict:
        home = warm_home if kind == "warm" else Path(tempfile.mkdtemp(prefix="history-home-"))
        try:
            return _merge(campaign, home, history=kind != "plain", sample_memory=sample_memory)
        finally:
            if kind != "warm":
                shutil.rmtree(home, ignore_errors=True)

    for i in range(args.pairs):
        for kind in ("plain", "warm", "cold"):  # warm beside plain: the machine's speed drifts
            r = run(kind)
            runs[kind].append(r)
            print(f"pair {i + 1} {kind:5}: wall {r['wall_s']:6.1f} s, cpu {r['cpu_s']:6.1f} s", flush=True)
    for kind in runs:  # memory in runs of their own: sampling it slows what is timed (bench/run.py, measure)
        peaks[kind] = run(kind, sample_memory=True)["peak_pss_mb"] or 0
    print(f"\n{args.units:,} forms, two years of history ({args.pairs} runs each; medians, and the median of the"
          " ratios to plain pair by pair, which holds when the machine's speed drifts):")
    for kind, rs in runs.items():
        wall = statistics.median(r["wall_s"] for r in rs)
        cpu = statistics.median(r["cpu_s"] for r in rs)
        wall_ratio = statistics.median(r["wall_s"] / p["wall_s"] for r, p in zip(rs, runs["plain"]))
        cpu_ratio = statistics.median(r["cpu_s"] / p["cpu_s"] for r, p in zip(rs, runs["plain"]))
        peak = peaks[kind]
        print(f"  {kind:5}  wall {wall:6.1f} s ({wall_ratio:.2f}×)  cpu {cpu:6.1f} s ({cpu_ratio:.2f}×)"
              f"  peak PSS {peak:.0f} MB")


if __name__ == "__main__":
    main()

"""A designed template's texts (cells, defaults, prompts) are rendered within the limits a YAML template
gets: a bomb in any of them is exit 2 in seconds and a bounded amount of memory, naming sheet and cell, from
every command that renders the template; the commands that only read forms never render those texts."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openpyxl
import pytest

from perfxl.spec import RENDER_SECONDS

from .conftest import write_roster
from .designs import FIELDS, make_design

pytestmark = pytest.mark.skipif(not hasattr(os, "wait4"), reason="measures the child's peak memory with wait4")

YEAR = 2025
# The probe measured 12 s and 910 MB (nested loops) and 433 MB ('a' * 100000000) before the limits applied.
PEAK_MB = 400
SECONDS = RENDER_SECONDS + 20  # the render's own limit, plus starting Python on a busy two-core machine

BOMBS = {
    "nested-loops": "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    "nested-loops-quiet": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "nested-loops-kept": "{% set s %}{% for i in range(100000) %}{% for j in range(100000) %}xy{% endfor %}"
                         "{% endfor %}{% endset %}{{ s|length }}",
    "string-repetition": "{{ 'a' * 100000000 }}",
    "range-over-the-bound": "{{ range(100000000)|list|length }}",
    "exponent": "{{ 10 ** 100000 }}",
    "exponent-of-a-big-base": "{{ ((2 ** 60) ** 60) ** 60 }}",
    "padding-in-one-call": "{{ 'a'|center(400000000) }}",
}
EXPECT = {"nested-loops": "过大", "nested-loops-quiet": "秒", "nested-loops-kept": "内存", "string-repetition": "重复",
          "range-over-the-bound": "range", "exponent": "指数", "exponent-of-a-big-base": "数值过大",
          "padding-in-one-call": "内存"}


def _run(*args: str) -> tuple[int, str, float, float]:
    """perfxl in a child process: exit code, output, seconds, and the child's own peak memory in MB (wait4
    reports that child alone; RUSAGE_CHILDREN would report the biggest child this test run ever had)."""
    started = time.monotonic()
    deadline = started + 120
    with open(os.devnull, "rb") as stdin, tempfile.TemporaryFile() as out:
        child = subprocess.Popen([sys.executable, "-m", "perfxl", *args], stdin=stdin, stdout=out,
                                 stderr=subprocess.STDOUT)
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                child.kill()
                os.wait4(child.pid, 0)
                pytest.fail(f"perfxl {' '.join(args)} still running after 120 s")
            time.sleep(0.05)
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
        out.seek(0)
        output = out.read().decode("utf-8", "replace")
    return child.returncode, output, time.monotonic() - started, usage.ru_maxrss / 1024


def _with_text(design: Path, cell: str, text: str) -> Path:
    wb = openpyxl.load_workbook(design)
    wb["目标表"][cell] = text
    wb.save(design)
    return design


def _assert_refused(code: int, output: str, seconds: float, peak: float, where: str, expect: str) -> None:
    assert code == 2, output
    assert "Traceback" not in output, output
    assert where in output and expect in output, output
    assert seconds < SECONDS, f"{seconds:.1f} s"
    assert peak < PEAK_MB, f"peak {peak:.0f} MB"


@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_a_bomb_in_a_designed_cell_is_exit_2_within_the_limits(tmp_path, bomb):
    if EXPECT[bomb] == "内存" and sys.platform != "linux":
        pytest.skip("the address-space allowance (RLIMIT_AS) is enforced on Linux only")
    design = _with_text(make_design(tmp_path / "表样.xlsx"), "A21", BOMBS[bomb])
    code, output, seconds, peak = _run("template", "import", str(design), "-o", str(tmp_path / "模板"))
    _assert_refused(code, output, seconds, peak, "「目标表」A21", EXPECT[bomb])
    assert "未导入" in output
    assert not list((tmp_path / "模板").rglob("*.yaml"))


@pytest.mark.parametrize("column, where", [(7, "默认值"), (6, "输入提示")])
def test_a_bomb_in_a_fields_default_or_prompt_names_its_cell(tmp_path, column, where):
    fields = [list(row) for row in FIELDS]
    fields[1][column] = BOMBS["nested-loops"]  # a prompt is cut to Excel's 255 characters: the bomb fits
    design = make_design(tmp_path / "表样.xlsx", fields=[tuple(r) for r in fields])
    code, output, seconds, peak = _run("template", "import", str(design), "-o", str(tmp_path / "模板"))
    _assert_refused(code, output, seconds, peak, f"「目标表」B4（字段 project_name 的{where}）", "过大")


def test_the_limits_hold_for_all_the_texts_of_a_form_together(tmp_path):
    """Forty cells of nine seconds each would be six minutes: one budget covers the whole form."""
    quiet = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    design = make_design(tmp_path / "表样.xlsx")
    wb = openpyxl.load_workbook(design)
    for r in range(22, 62):
        wb["目标表"][f"A{r}"] = quiet
    wb.save(design)
    code, output, seconds, peak = _run("template", "import", str(design), "-o", str(tmp_path / "模板"))
    _assert_refused(code, output, seconds, peak, "「目标表」A22", "秒")


@pytest.fixture
def imported_then_edited(tmp_path):
    """A template imported cleanly and its forms generated; then someone puts a bomb into its workbook."""
    design = make_design(tmp_path / "表样.xlsx")
    code, output, _, _ = _run("template", "import", str(design), "-o", str(tmp_path / "模板"))
    assert code == 0, output
    roster = write_roster(tmp_path / "名单.csv", [("101001", "第一中学", "教育局")])
    code, output, _, _ = _run("generate", "acme/fund", "--templates", str(tmp_path / "模板"), "--year", str(YEAR),
                              "--roster", str(roster), "-o", str(tmp_path / "空白表"))
    assert code == 0, output
    _with_text(tmp_path / "模板" / "acme" / "fund.xlsx", "A21", BOMBS["string-repetition"])
    return tmp_path, roster


def test_template_check_and_generate_refuse_a_bomb_put_into_an_imported_workbook(imported_then_edited):
    base, roster = imported_then_edited
    code, output, seconds, peak = _run("template", "check", str(base / "模板"), "--year", str(YEAR))
    _assert_refused(code, output, seconds, peak, "「目标表」A21", "重复")
    assert "✗ acme/fund" in output
    code, output, seconds, peak = _run("generate", "acme/fund", "--templates", str(base / "模板"), "--year", str(YEAR),
                                       "--roster", str(roster), "-o", str(base / "再生成"))
    _assert_refused(code, output, seconds, peak, "「目标表」A21", "重复")


def test_describe_validate_and_merge_never_render_a_designed_workbooks_texts(imported_then_edited):
    """Reading forms needs the fields and tables, not the printed texts: a bomb there costs them nothing."""
    base, roster = imported_then_edited
    templates = str(base / "模板")
    code, output, _, _ = _run("describe", "acme/fund", "--templates", templates, "--year", str(YEAR))
    assert code == 0 and "project_name" in output, output
    forms = sorted((base / "空白表").glob("*.xlsx"))
    forms = [f for f in forms if f.name.startswith("101001")]
    assert forms, list((base / "空白表").iterdir())
    code, output, seconds, peak = _run("validate", str(forms[0]), "--templates", templates)
    assert code in (0, 1) and "Traceback" not in output, output
    assert seconds < 60 and peak < PEAK_MB
    out = base / "汇总.xlsx"
    code, output, seconds, peak = _run("merge", str(forms[0]), "--templates", templates, "--roster", str(roster),
                                       "-o", str(out))
    assert code in (0, 1) and "Traceback" not in output and out.exists(), output
    assert seconds < 60 and peak < PEAK_MB

"""Shared fixtures: real workbooks generated from the templates and filled with the seeds' values."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from perfxl import fill
from perfxl import generator as generate
from perfxl.spec import load_spec

TESTS = Path(__file__).parent
IN_CI = os.environ.get("CI") == "true"


@pytest.fixture(scope="session", autouse=True)
def perfxl_home(tmp_path_factory):
    """What perfxl remembers per user (the rounds of follow-up forms it issued) goes to a folder of the test
    session's, never to the home of whoever runs the tests; subprocesses inherit it."""
    home = tmp_path_factory.mktemp("perfxl-home")
    previous = os.environ.get("PERFXL_HOME")
    os.environ["PERFXL_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("PERFXL_HOME", None)
    else:
        os.environ["PERFXL_HOME"] = previous


def _soffice() -> str | None:
    return shutil.which("soffice") or shutil.which("libreoffice")


def _uno_python() -> str | None:
    for candidate in ("/usr/bin/python3",):
        if Path(candidate).exists() and subprocess.run([candidate, "-c", "import uno"], capture_output=True).returncode == 0:
            return candidate
    return None


@pytest.fixture(scope="session")
def soffice():
    exe = _soffice()
    if exe is None:
        if IN_CI:
            pytest.fail("LibreOffice (soffice) is required in CI; .ci/run installs libreoffice-calc-nogui")
        pytest.skip("LibreOffice not installed")
    return exe


@pytest.fixture(scope="session")
def lo_edit(soffice):
    """Run tests/lo_edit.py (UNO) to edit a workbook as a clerk would in LibreOffice."""
    python = _uno_python()
    if python is None:
        if IN_CI:
            pytest.fail("python3-uno is required in CI")
        pytest.skip("python3-uno not installed")

    def run(src: Path, dst: Path, *ops: str) -> Path:
        result = subprocess.run([python, str(TESTS / "lo_edit.py"), str(src), str(dst), *map(str, ops)],
                                capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stderr
        return dst

    return run


@pytest.fixture(scope="session")
def convert(soffice, tmp_path_factory):
    """libreoffice --headless --convert-to EXT: a re-save by another office suite."""

    def run(src: Path, ext: str) -> Path:
        out = tmp_path_factory.mktemp("converted")
        profile = tmp_path_factory.mktemp("profile")
        subprocess.run([soffice, f"-env:UserInstallation=file://{profile}", "--headless", "--convert-to", ext,
                        "--outdir", str(out), str(src)], check=True, capture_output=True, timeout=180)
        produced = out / (src.stem + "." + ext.split(":")[0])
        assert produced.exists(), f"LibreOffice produced nothing for {src}"
        return produced

    return run


class FilledSeed:
    def __init__(self, key, template, year, unit, projects, blank, filled, spec):
        self.key, self.template, self.year, self.unit = key, template, year, unit
        self.projects, self.blank, self.filled, self.spec = projects, blank, filled, spec


@pytest.fixture(scope="session")
def seeds(tmp_path_factory) -> dict[str, FilledSeed]:
    """Every workbook of every seed: generated blank, filled through its defined names."""
    out = tmp_path_factory.mktemp("seeds")
    result = {}
    for sample in fill.sample_files():
        doc = fill.load_sample(sample)
        for i, wb in enumerate(doc["workbooks"]):
            key = f"{sample.stem.split('-', 2)[1]}-{i}"
            spec = load_spec(doc["template"], doc["year"], unit=wb["unit"])
            blank = out / f"{key}-blank.xlsx"
            blank.write_bytes(generate.build_workbook(spec, wb["unit"], len(wb["projects"])))
            filled = fill.fill_workbook(spec, blank, out / f"{key}.xlsx", wb["projects"])
            result[key] = FilledSeed(key, doc["template"], doc["year"], wb["unit"], wb["projects"], blank, filled, spec)
    return result


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_roster(path: Path, rows: list[tuple], header=("code", "name", "department")) -> Path:
    lines = [",".join(header)] + [",".join(map(str, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    return path

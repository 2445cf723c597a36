"""A portal set up as README shows: a roster, `perfxl generate` for it (blank forms and access codes), and
filled forms for the first unit (one good, one with mistakes) made from the 盐城 seed's values; and
`perfxl serve` run as a real process, with its password in a file, as README shows."""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import openpyxl
from click.testing import CliRunner

from perfxl.cli import cli
from perfxl.fill import fill_workbook, load_sample, sample_files
from perfxl.spec import load_spec

from .conftest import write_roster

TEMPLATE, YEAR = "yancheng/project", 2022
UNITS = [("320900101", "盐城市住房公积金管理中心", "住房公积金中心"), ("320900102", "盐城市档案馆", "档案局"),
         ("320900103", "盐城市图书馆", "文广旅局")]
ADMIN_PASSWORD = "bureau-pass-2022"
START_SECONDS = 90  # a portal that has not answered by then has failed to start (2 shared cores, a busy suite)


def set_up(base: Path) -> dict:
    roster = write_roster(base / "名单.csv", UNITS)
    forms = base / "空白表"
    r = CliRunner().invoke(cli, ["generate", TEMPLATE, "--year", str(YEAR), "--roster", str(roster), "-o", str(forms)])
    assert r.exit_code == 0, r.output
    manifest = json.loads((forms / "manifest.json").read_text(encoding="utf-8"))
    entries = {m["unit_code"]: m for m in manifest["forms"]}
    doc = load_sample(next(p for p in sample_files() if "seed-000" in p.name))
    projects = doc["workbooks"][0]["projects"]
    files = {}
    for code, _, _ in UNITS[:2]:
        spec = load_spec(TEMPLATE, YEAR, unit={"code": code})
        blank = forms / entries[code]["file"]
        files[(code, "good")] = fill_workbook(spec, blank, base / "filled" / f"{code}-好.xlsx", projects)
        broken = copy.deepcopy(projects)
        broken[0]["fields"]["project_name"] = ""  # required
        broken[0]["fields"]["funding_total_budget"] = 99999  # no longer the sum of its parts
        files[(code, "bad")] = fill_workbook(spec, blank, base / "filled" / f"{code}-有错.xlsx", broken)
    return {"roster": roster, "forms": forms, "codes": {c: entries[c]["access_code"] for c, _, _ in UNITS},
            "files": files, "store": base / "报送库"}


def without_stamp(source: Path, target: Path, unit_name: str | None = None) -> Path:
    """A form as a unit may hand it in after deleting the hidden stamp sheet and the custom properties
    (recognised by its title and labels); `unit_name` retypes its 实施单位 (None keeps it)."""
    wb = openpyxl.load_workbook(source)
    del wb["_perfxl"]
    wb.custom_doc_props.props.clear()
    if unit_name is not None:
        for ws in wb.worksheets:
            for row in ws.iter_rows():
                for cell in row:
                    if cell.value == "实施单位":
                        ws.cell(cell.row, cell.column + 1).value = unit_name or None
    target.parent.mkdir(parents=True, exist_ok=True)
    wb.save(target)
    return target


def followup_forms(base: Path, setup: dict, template: str = "national/selfeval") -> Path:
    """A follow-up round as README shows it: the first two units' good forms merged into a ledger, then
    `perfxl generate national/selfeval --from LEDGER` (the third unit declared nothing, so gets no form)."""
    from perfxl.merging import MergeOptions, run_merge

    inbox = base / "申报"
    inbox.mkdir(parents=True, exist_ok=True)
    for code, _, _ in UNITS[:2]:
        shutil.copy(setup["files"][(code, "good")], inbox / f"{code}.xlsx")
    run_merge([inbox], base / "申报汇总.xlsx", MergeOptions(roster=setup["roster"], jobs=1))
    out = base / template.split("/")[-1]
    r = CliRunner().invoke(cli, ["generate", template, "--year", str(YEAR), "--roster", str(setup["roster"]),
                                 "--from", str(base / "申报汇总_报送台账.sqlite"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    return out


def password_file(folder: Path, password: str = ADMIN_PASSWORD, ending: str = "\n") -> Path:
    path = folder / "admin-password.txt"
    path.write_text(password + ending, encoding="utf-8", newline="")
    if os.name == "posix":
        path.chmod(0o600)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(setup: dict, base: Path, *options: str, password: str = ADMIN_PASSWORD):
    """`perfxl serve` as a process of its own (uvicorn, its checker workers), its password in a file; yields
    (process, base url) once it answers, and stops it (its whole process group) afterwards."""

    port = free_port()
    command = [sys.executable, "-m", "perfxl", "serve", str(setup["store"]), "--roster", str(setup["roster"]),
               "--forms", str(setup["forms"]), "--admin-password-file", str(password_file(base, password)),
               "--port", str(port), "--jobs", "1", *options]
    log = base / f"serve-{port}.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, start_new_session=os.name == "posix")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(proc, url, log)
        yield proc, url
    finally:
        stop(proc)


def wait_until_answering(proc, url: str, log: Path | None = None) -> None:
    import httpx

    deadline = time.monotonic() + START_SECONDS
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"perfxl serve exited with {proc.returncode}: "
                                 f"{log.read_text(errors='replace')[-2000:] if log else ''}")
        try:
            if httpx.get(url + "/", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"perfxl serve did not answer within {START_SECONDS} s")
        time.sleep(0.1)


def stop(proc, sig=None) -> None:
    """End the server and its workers; fails the test if they outlive a deadline."""
    if proc.poll() is None:
        if os.name == "posix":
            os.killpg(proc.pid, sig or signal.SIGTERM)
        else:
            proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.wait(30)
        raise AssertionError("perfxl serve did not stop within 30 s of SIGTERM") from None


def check_beside_a_crash(path: str):
    """The portal's check, in a checker worker, as a test that one upload killing its worker costs only that
    upload needs it: unit A's first check holds its worker until the pool breaks (marks/ under the store says
    it is under way); any check of unit B's kills its worker once A's is under way. Everything else is the
    real check."""
    from perfxl.merging.worker import check_upload

    store = Path(path).parents[2]  # STORE/files/<unit>/<sha>.xlsx
    under_way = store / "marks" / "a-under-way"
    deadline = time.monotonic() + 60
    if Path(path).parent.name == UNITS[1][0]:
        while not under_way.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        os._exit(1)
    if Path(path).parent.name == UNITS[0][0] and not under_way.exists():
        under_way.parent.mkdir(exist_ok=True)
        under_way.touch()
        while time.monotonic() < deadline:  # ended by the pool's breaking, which stops its workers
            time.sleep(0.01)
    return check_upload(path)


def check_crashing_once_others_wait(path: str):
    """The portal's check, in a checker worker: any check of unit B's kills its worker once marks/others-wait
    exists under the store (the test makes it when other checks are waiting); everything else is the real
    check."""
    from perfxl.merging.worker import check_upload

    if Path(path).parent.name == UNITS[1][0]:
        others_wait = Path(path).parents[2] / "marks" / "others-wait"
        deadline = time.monotonic() + 60
        while not others_wait.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        os._exit(1)
    return check_upload(path)

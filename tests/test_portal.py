"""The submission portal through its JSON API (Starlette's test client, the real app and worker pool):
sign-in, uploads checked by the merge's engine, per-unit authorization, limits, returns, restarts, and the
board agreeing with `perfxl merge` over the same store."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient  # noqa: E402

from perfxl.merger import MergeOptions, run_merge  # noqa: E402
from perfxl.portal.app import PortalConfig, create_app  # noqa: E402
from perfxl.portal.store import LEDGER_NAME  # noqa: E402
from perfxl.roster import read_roster  # noqa: E402

from .portal_setup import ADMIN_PASSWORD, UNITS, set_up  # noqa: E402

A, B, C = (u[0] for u in UNITS)


@pytest.fixture()
def site(tmp_path):
    setup = set_up(tmp_path)
    config = PortalConfig(setup["store"], read_roster(setup["roster"]), setup["roster"], setup["forms"],
                          ADMIN_PASSWORD, max_upload_mb=1, jobs=1)
    with TestClient(create_app(config)) as client:
        yield client, setup, config


def _login(client, **body) -> str:
    r = client.post("/api/login", json=body)
    assert r.status_code == 200, r.text
    return r.json()["token"]


def _bearer(token):
    return {"Authorization": f"Bearer {token}"}


def _upload(client, token, *paths):
    files = [("file", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]
    return client.post("/api/submissions", files=files, headers=_bearer(token))


def test_a_unit_hands_in_sees_its_problems_at_their_cells_and_fixes_them(site):
    client, setup, _ = site
    token = _login(client, unit=A, code=setup["codes"][A])
    r = _upload(client, token, setup["files"][(A, "bad")])
    assert r.status_code == 200 and r.json()["message"] == "已收到"
    bad = r.json()["submissions"][0]
    assert bad["status"] == "errors" and bad["errors"] >= 2
    cells = {(p["code"], p["cell"]) for p in bad["problems"]}
    assert any(code == "required" and cell for code, cell in cells)
    assert all({"severity", "sheet", "cell", "label", "message", "code"} <= set(p) for p in bad["problems"])
    annotated = client.get(f"/api/submissions/{bad['id']}/annotated", headers=_bearer(token))
    assert annotated.status_code == 200 and annotated.content[:2] == b"PK"
    good = _upload(client, token, setup["files"][(A, "good")]).json()["submissions"][0]
    assert good["status"] == "valid"
    history = client.get("/api/submissions", headers=_bearer(token)).json()["submissions"]
    assert [s["id"] for s in history] == [good["id"], bad["id"]]


def test_one_unit_cannot_read_list_or_annotate_another_units_submissions(site):
    client, setup, _ = site
    mine = _upload(client, _login(client, unit=A, code=setup["codes"][A]), setup["files"][(A, "good")]).json()
    sid = mine["submissions"][0]["id"]
    other = _login(client, unit=B, code=setup["codes"][B])
    assert client.get(f"/api/submissions/{sid}", headers=_bearer(other)).status_code == 404
    assert client.get(f"/api/submissions/{sid}/annotated", headers=_bearer(other)).status_code == 404
    assert client.get("/api/submissions", headers=_bearer(other)).json()["submissions"] == []
    for admin_only in ("/api/status", "/api/summary.xlsx", "/api/files.zip"):
        assert client.get(admin_only, headers=_bearer(other)).status_code == 403
    assert client.post(f"/api/units/{A}/return", json={"comment": "x"}, headers=_bearer(other)).status_code == 403
    client.cookies.clear()
    assert client.get("/api/submissions").status_code == 401


def test_a_unit_handing_in_another_units_form_is_refused_and_kept_out_of_the_merge(site):
    client, setup, config = site
    r = _upload(client, _login(client, unit=B, code=setup["codes"][B]), setup["files"][(A, "good")])
    sub = r.json()["submissions"][0]
    assert sub["problems"][0]["code"] == "portal-other-unit" and sub["status"] == "errors"
    assert not list((config.store_dir / "files").rglob("*.xlsx"))


def test_wrong_codes_are_throttled_and_oversized_or_hostile_uploads_get_a_clear_answer(site):
    client, setup, _ = site
    for _ in range(5):
        assert client.post("/api/login", json={"unit": A, "code": "WRONG"}).status_code == 401
    r = client.post("/api/login", json={"unit": A, "code": setup["codes"][A]})
    assert r.status_code == 429 and "5 分钟" in r.json()["error"]
    token = _login(client, unit=B, code=setup["codes"][B])
    big = client.post("/api/submissions", files=[("file", ("big.xlsx", b"PK" + b"0" * (2 * 1024 * 1024), "x"))],
                      headers=_bearer(token))
    assert big.status_code == 413 and "MB" in big.json()["error"]
    text = _upload_bytes(client, token, "申报表.xlsx", "这不是表格".encode())
    assert text["status"] == "rejected" and text["problems"][0]["code"] == "not-a-workbook"
    bomb = _upload_bytes(client, token, "bomb.xlsx", b"PK\x03\x04" + b"\x00" * 100)
    assert bomb["status"] == "rejected"
    assert client.get("/api/submissions", headers=_bearer(token)).status_code == 200  # still serving


def _upload_bytes(client, token, name, data):
    r = client.post("/api/submissions", files=[("file", (name, data, "application/octet-stream"))],
                    headers=_bearer(token))
    assert r.status_code == 200, r.text
    return r.json()["submissions"][0]


def test_page_forms_need_their_csrf_token(site):
    client, setup, _ = site
    client.get("/")  # the browser cookie the login page sets
    r = client.post("/login", data={"unit": A, "code": setup["codes"][A]})  # no csrf field
    assert "页面已过期" in r.text and "perfxl_session" not in r.cookies
    _login(client, unit=A, code=setup["codes"][A])  # the JSON API sets the session cookie
    r = client.post("/unit", files=[("file", ("x.xlsx", setup["files"][(A, "good")].read_bytes(), "x"))])
    assert "页面已过期" in r.text


def test_a_chinese_admin_password_signs_in_and_a_wrong_one_is_refused(tmp_path):
    setup = set_up(tmp_path)
    config = PortalConfig(setup["store"], read_roster(setup["roster"]), setup["roster"], setup["forms"],
                          "财政局汇总密码2022", jobs=1)
    with TestClient(create_app(config)) as client:
        assert client.post("/api/login", json={"admin_password": "财政局汇总密码2022"}).status_code == 200
        assert client.post("/api/login", json={"admin_password": "财政局"}).status_code == 401


def test_security_headers_are_set(site):
    client, _, _ = site
    headers = client.get("/").headers
    assert headers["x-frame-options"] == "DENY" and "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


def test_the_board_agrees_with_perfxl_merge_over_the_store(site, tmp_path):
    client, setup, config = site
    _upload(client, _login(client, unit=A, code=setup["codes"][A]), setup["files"][(A, "good")])
    _upload(client, _login(client, unit=B, code=setup["codes"][B]), setup["files"][(B, "bad")])
    admin = _login(client, admin_password=ADMIN_PASSWORD)
    status = client.get("/api/status", headers=_bearer(admin)).json()
    assert {k: v["status"] for k, v in status["units"].items()} == {A: "valid", B: "errors", C: "missing"}
    result = run_merge([config.store_dir / "files"], tmp_path / "汇总.xlsx",
                       MergeOptions(roster=setup["roster"], db=config.store_dir / LEDGER_NAME, jobs=1))
    assert result.counts["merged"] == status["counts"]["handed_in"] == 2
    assert result.counts["missing"] == status["counts"]["missing"] == 1
    merged = {s.unit_code: ("errors" if s.status == "errors" else "valid") for s in result.files
              if s.outcome == "merged"}
    assert merged == {k: v["status"] for k, v in status["units"].items() if v["status"] != "missing"}
    summary = client.get("/api/summary.xlsx", headers=_bearer(admin))
    assert summary.status_code == 200 and summary.content[:2] == b"PK"
    r = client.post(f"/api/units/{B}/return", json={"comment": "项目名称未填，请补充后重报"}, headers=_bearer(admin))
    assert r.json()["status"] == "returned"
    assert client.get("/api/status", headers=_bearer(admin)).json()["units"][B]["status"] == "returned"
    returns = client.get("/api/submissions", headers=_bearer(_login(client, unit=B, code=setup["codes"][B]))).json()
    assert returns["returns"][0]["comment"] == "项目名称未填，请补充后重报"


def test_an_upload_answered_before_a_crash_is_checked_after_the_restart(tmp_path):
    setup = set_up(tmp_path)
    config = PortalConfig(setup["store"], read_roster(setup["roster"]), setup["roster"], setup["forms"],
                          ADMIN_PASSWORD, jobs=1)
    from perfxl.portal.store import Store

    store = Store(config.store_dir, config.units, config.roster_path, jobs=1)
    sid = store.receive(A, "好.xlsx", setup["files"][(A, "good")].read_bytes())  # on disk and in the ledger
    store.close()  # the server dies before checking it
    with TestClient(create_app(config)) as client:
        token = _login(client, unit=A, code=setup["codes"][A])
        sub = client.get(f"/api/submissions/{sid}", headers=_bearer(token)).json()
        assert sub["status"] == "valid"


def test_killing_the_server_mid_upload_loses_no_upload_it_answered(tmp_path):
    """kill -9 while uploads are in flight; every submission answered 已收到 is in the ledger after the
    restart, its file on disk, and none is left unchecked."""
    import signal
    import socket
    import subprocess
    import sys
    import threading
    import time

    import httpx

    setup = set_up(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "perfxl", "serve", str(setup["store"]), "--roster", str(setup["roster"]),
               "--forms", str(setup["forms"]), "--admin-password", ADMIN_PASSWORD, "--port", str(port), "--jobs", "1"]

    def start():
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return proc
            except OSError:
                time.sleep(0.1)
        raise AssertionError("the portal did not start")

    url = f"http://127.0.0.1:{port}"
    server = start()
    answered: list[int] = []

    def hand_in(unit, path):
        try:
            with httpx.Client(base_url=url, timeout=60) as http:
                token = http.post("/api/login", json={"unit": unit, "code": setup["codes"][unit]}).json()["token"]
                for _ in range(6):
                    r = http.post("/api/submissions", files=[("file", (path.name, path.read_bytes()))],
                                  headers={"Authorization": f"Bearer {token}"})
                    if r.status_code == 200 and r.json()["message"] == "已收到":
                        answered.extend(s["id"] for s in r.json()["submissions"])
        except httpx.HTTPError:
            pass  # the server died under this client

    threads = [threading.Thread(target=hand_in, args=(u, setup["files"][(u, kind)]))
               for u in (A, B) for kind in ("good", "bad")]
    for t in threads:
        t.start()
    while len(answered) < 3:
        time.sleep(0.05)
    os.killpg(server.pid, signal.SIGKILL)
    server.wait()
    for t in threads:
        t.join()
    server = start()  # checks what the crash left 'checking'
    try:
        admin = httpx.post(f"{url}/api/login", json={"admin_password": ADMIN_PASSWORD}).json()["token"]
        for sid in answered:
            r = httpx.get(f"{url}/api/submissions/{sid}", headers=_bearer(admin))
            assert r.status_code == 200 and r.json()["status"] in {"valid", "errors"}, (sid, r.text)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


def test_serve_refuses_a_forms_folder_without_a_manifest_and_a_short_password(tmp_path):
    from click.testing import CliRunner

    from perfxl.cli import cli

    setup = set_up(tmp_path)
    (tmp_path / "空").mkdir()
    r = CliRunner().invoke(cli, ["serve", str(tmp_path / "库"), "--roster", str(setup["roster"]), "--forms",
                                 str(tmp_path / "空"), "--admin-password", ADMIN_PASSWORD])
    assert r.exit_code == 2 and "manifest.json" in r.output
    r = CliRunner().invoke(cli, ["serve", str(tmp_path / "库"), "--roster", str(setup["roster"]), "--forms",
                                 str(setup["forms"]), "--admin-password", "short"])
    assert r.exit_code == 2 and "8 个字符" in r.output


def test_a_unit_downloads_its_blank_form_and_the_admin_a_zip_of_current_files(site):
    import io
    import zipfile

    client, setup, _ = site
    token = _login(client, unit=A, code=setup["codes"][A])
    blank = client.get("/api/blank", headers=_bearer(token))
    assert blank.status_code == 200 and blank.content == next(setup["forms"].glob(f"{A}_*.xlsx")).read_bytes()
    _upload(client, token, setup["files"][(A, "good")])
    admin = _login(client, admin_password=ADMIN_PASSWORD)
    archive = zipfile.ZipFile(io.BytesIO(client.get("/api/files.zip", headers=_bearer(admin)).content))
    assert [n.split("_")[0] for n in archive.namelist()] == [A]
    assert archive.read(archive.namelist()[0]) == setup["files"][(A, "good")].read_bytes()

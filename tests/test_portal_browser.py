"""The portal in a real browser: Playwright driving Debian's Chromium against `perfxl serve`'s app on
loopback. A unit signs in, hands in a file with mistakes, sees them with their cells, downloads the
annotated copy, hands in the fixed file; the board moves from 未报送 to 已报送 / 有错误; another unit cannot
open the first unit's submission. With PERFXL_SCREENSHOTS=1 the screenshots go to docs/ (committed)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette")
playwright_api = pytest.importorskip("playwright.sync_api")
uvicorn = pytest.importorskip("uvicorn")

from perfxl.portal.app import PortalConfig, create_app  # noqa: E402
from perfxl.roster import read_roster  # noqa: E402

from .conftest import IN_CI  # noqa: E402
from .portal_setup import ADMIN_PASSWORD, UNITS, set_up  # noqa: E402

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
DOCS = Path(__file__).resolve().parents[1] / "docs"
A, B, C = (u[0] for u in UNITS)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _portal(setup: dict):
    """The portal's app served on loopback in a thread of this process; yields its address."""
    config = PortalConfig(setup["store"], read_roster(setup["roster"]), setup["roster"], setup["forms"],
                          ADMIN_PASSWORD, jobs=1)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "the portal did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail("Chromium is required in CI; .ci/run installs it")
        pytest.skip("Chromium not installed")
    setup = set_up(tmp_path_factory.mktemp("portal"))
    with _portal(setup) as url, playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield {"url": url, "setup": setup, "browser": browser}
        browser.close()


@contextlib.contextmanager
def _a_merge_holding_the_ledger(setup: dict):
    """The portal's ledger held as a merge writing its rows holds it (its write lock), until the block ends."""
    import sqlite3

    from perfxl.portal.store import LEDGER_NAME

    merge = sqlite3.connect(setup["store"] / LEDGER_NAME)
    try:
        merge.execute("BEGIN IMMEDIATE")
        yield
    finally:
        merge.rollback()
        merge.close()


def _shot(page, name: str, tmp_path: Path, docs: bool = True) -> None:
    """A full-page screenshot, to look at: in tmp_path, or with PERFXL_SCREENSHOTS=1 in docs/ (those README shows)."""
    target = DOCS / name if docs and os.environ.get("PERFXL_SCREENSHOTS") == "1" else tmp_path / name
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000


def _sign_in(browser, url, unit, code):
    page = browser.new_context(accept_downloads=True, locale="zh-CN").new_page()
    page.goto(url + "/")
    page.fill("#unit", unit)
    page.fill("#code", code)
    page.click("#unit-login")
    page.wait_for_url(url + "/unit")
    return page


def test_a_unit_hands_in_sees_its_mistakes_downloads_the_annotated_copy_and_resubmits(served, tmp_path):
    url, setup, browser = served["url"], served["setup"], served["browser"]
    admin = browser.new_context(locale="zh-CN").new_page()
    admin.goto(url + "/")
    admin.click("summary")
    admin.fill("#admin_password", ADMIN_PASSWORD)
    admin.click("#admin-login")
    admin.wait_for_url(url + "/admin")
    assert admin.locator(f"#u{A} .status").inner_text() == "未报送"

    page = _sign_in(browser, url, A, setup["codes"][A])
    page.set_input_files("#file", str(setup["files"][(A, "bad")]))
    page.click("#upload")
    page.wait_for_selector("#problems")
    assert page.locator("#latest-status").inner_text() == "有错误"
    cells = [c for c in page.locator("#problems td.cell").all_inner_texts() if c.strip()]
    assert cells, "every problem row names its cell"
    assert "必填" in page.locator("#problems").inner_text()
    assert "还没有无错误的版本" in page.locator("#counts").inner_text()  # never "the version without errors"
    _shot(page, "portal-unit.png", tmp_path)
    with page.expect_download() as download:
        page.click("#annotated")
    saved = tmp_path / "批注.xlsx"
    download.value.save_as(saved)
    assert saved.read_bytes()[:2] == b"PK"

    admin.reload()
    assert admin.locator(f"#u{A} .status").inner_text() == "有错误"

    page.set_input_files("#file", str(setup["files"][(A, "good")]))
    page.click("#upload")
    page.wait_for_selector("#latest-status.s-valid")
    assert page.locator("#latest-status").inner_text() == "已报送"
    admin.reload()
    assert admin.locator(f"#u{A} .status").inner_text() == "已报送"
    assert admin.locator(f"#u{B} .status").inner_text() == "未报送"
    _shot(admin, "portal-board.png", tmp_path)


def test_another_unit_cannot_open_the_first_units_submission(served):
    url, setup, browser = served["url"], served["setup"], served["browser"]
    first = _sign_in(browser, url, C, setup["codes"][C])
    first.set_input_files("#file", str(setup["files"][(A, "good")]))  # C hands in A's form: refused as not its own
    first.click("#upload")
    first.wait_for_selector("#refused")  # whose form it is, not its cell-by-cell problems
    assert first.locator("#problems").count() == 0
    sid = first.locator("#history tbody tr td").first.inner_text()
    second = _sign_in(browser, url, B, setup["codes"][B])
    response = second.goto(f"{url}/api/submissions/{sid}")
    assert response.status == 404
    response = second.goto(f"{url}/api/submissions/{sid}/annotated")
    assert response.status == 404


def test_the_logout_button_signs_out_and_the_old_cookie_is_refused(served, tmp_path):
    url, setup, browser = served["url"], served["setup"], served["browser"]
    page = _sign_in(browser, url, B, setup["codes"][B])
    button = page.locator("#logout")
    assert button.inner_text() == "退出登录" and button.is_visible()
    kept = page.context.cookies()  # what a copy of the cookie would hold
    page.goto(url + "/logout")  # a link or a prefetch: GET changes nothing
    assert page.locator("h1").inner_text() == "退出登录" and "盐城市档案馆" in page.locator("main").inner_text()
    _shot(page, "portal-logout.png", tmp_path)
    assert page.goto(url + "/unit").status == 200  # still signed in
    page.click("#logout")
    page.wait_for_url(url + "/")
    assert page.locator("#unit-login").is_visible()
    page.context.add_cookies(kept)  # the old session cookie, put back
    response = page.goto(url + "/unit")
    assert response.status == 401 and "已退出登录" in page.locator(".alert").inner_text()


def _oversized(tmp_path: Path) -> Path:
    big = tmp_path / "扫描件太大.xlsx"
    with open(big, "wb") as fh:
        fh.truncate(60 * 1024 * 1024)  # over the 50 MB the portal takes by default; sparse, so cheap
    return big


def test_the_upload_page_refuses_an_oversized_file_before_sending_it(served, tmp_path):
    url, setup, browser = served["url"], served["setup"], served["browser"]
    page = _sign_in(browser, url, C, setup["codes"][C])
    posted = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)
    page.set_input_files("#file", str(_oversized(tmp_path)))
    state = page.locator("#upload-state")
    assert "所选文件合计 60.0 MB，超过每次上传的上限 50 MB，没有上传" in state.inner_text()
    page.click("#upload")
    assert state.get_attribute("role") == "alert" and "没有上传" in state.inner_text()
    assert posted == [] and page.url == url + "/unit"
    _shot(page, "portal-too-big.png", tmp_path)


def test_without_javascript_an_oversized_upload_gets_the_servers_chinese_413_page(served, tmp_path):
    url, setup, browser = served["url"], served["setup"], served["browser"]
    page = browser.new_context(java_script_enabled=False, locale="zh-CN").new_page()
    page.goto(url + "/")
    page.fill("#unit", C)
    page.fill("#code", setup["codes"][C])
    page.click("#unit-login")
    page.wait_for_url(url + "/unit")
    page.set_input_files("#file", str(_oversized(tmp_path)))
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click("#upload")
    assert answer.value.status == 413
    assert "上传的文件过大（60.0 MB），每次合计不能超过 50 MB，文件未收下" in page.locator(".alert").first.inner_text()


# -- what a person sees: whole names on the board, a page that fits a phone, Chinese error pages -------------

LINES_OF = """cells => cells.map(cell => {
    const range = document.createRange();
    range.selectNodeContents(cell);
    return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size;
})"""
OVERFLOWING = """width => [...document.querySelectorAll("main *")]
    .filter(e => e.getBoundingClientRect().right > width + 0.5)
    .map(e => e.tagName + "#" + e.id + "." + e.className + ": " + e.textContent.trim().slice(0, 30))"""


def _admin(browser, url, width=1280):
    page = browser.new_context(locale="zh-CN", viewport={"width": width, "height": 800}).new_page()
    page.goto(url + "/")
    page.click("summary")
    page.fill("#admin_password", ADMIN_PASSWORD)
    page.click("#admin-login")
    page.wait_for_url(url + "/admin")
    return page


@pytest.mark.parametrize("width", [1280, 1366, 1920])
def test_after_a_return_every_unit_name_on_the_board_stays_on_one_line(served, tmp_path, width):
    url, setup, browser = served["url"], served["setup"], served["browser"]
    unit = _sign_in(browser, url, A, setup["codes"][A])
    unit.set_input_files("#file", str(setup["files"][(A, "good")]))
    with unit.expect_navigation(url=re.compile(r".*/unit\?got=\d+$")):
        unit.click("#upload")
    admin = _admin(browser, url, width)
    comment = "绩效指标过于笼统：产出指标请写明数量和完成时限，效益指标请写明可衡量的目标值，修改后重新报送"
    admin.fill(f"#u{A} input[name=comment]", comment)
    admin.click(f"#u{A} button")
    admin.wait_for_url(url + f"/admin#u{A}")
    assert admin.locator(f"#u{A} .status").inner_text() == "已退回"
    assert comment in admin.locator("#board").inner_text()
    names = admin.locator("#board tr[id^=u] td:nth-child(3)").all()  # 单位名称
    assert len(names) == len(UNITS)
    lines = admin.evaluate(LINES_OF, [n.element_handle() for n in names])
    assert lines == [1] * len(UNITS), f"unit names over {lines} lines at {width} px"
    headers = admin.evaluate(LINES_OF, [h.element_handle() for h in admin.locator("#board th").all()])
    assert headers == [1] * len(headers), f"column headings over {headers} lines"
    assert admin.evaluate(OVERFLOWING, width) == []
    if width == 1280:
        _shot(admin, "portal-returned.png", tmp_path)


def test_the_unit_page_fits_a_phone_screen(served, tmp_path):
    url, setup, browser = served["url"], served["setup"], served["browser"]
    page = browser.new_context(locale="zh-CN", viewport={"width": 375, "height": 812}).new_page()
    page.goto(url + "/")
    page.fill("#unit", B)
    page.fill("#code", setup["codes"][B])
    page.click("#unit-login")
    page.wait_for_url(url + "/unit")
    wrong = tmp_path / "填报说明.xlsx"  # the wrong file first, as happens: 无法读取 is the widest status
    wrong.write_bytes("请各单位于3月31日前报送".encode())
    for path in (wrong, setup["files"][(B, "bad")], setup["files"][(B, "good")], setup["files"][(B, "bad")]):
        page.set_input_files("#file", str(path))
        with page.expect_navigation(url=re.compile(r".*/unit\?got=\d+$")):
            page.click("#upload")
    assert page.locator("#history tbody tr").count() >= 4 and page.locator("#problems tbody tr").count() >= 2
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert page.evaluate(OVERFLOWING, 375) == []
    sheets = page.evaluate(LINES_OF, [c.element_handle() for c in page.locator("#problems tbody td:nth-child(2)").all()])
    assert set(sheets) == {1}, f"a problem's sheet name over {sheets} lines"  # not one character a line
    first = page.locator("#history tbody tr").first.inner_text()
    assert f"{B}-有错.xlsx" in first and "有错误" in first and "错误 3" in first  # each count says what it counts
    _shot(page, "portal-unit-phone.png", tmp_path)


@pytest.mark.parametrize("width", [1280, 375])
def test_a_mistyped_address_gets_a_chinese_page_styled_like_the_others(served, tmp_path, width):
    url, browser = served["url"], served["browser"]
    page = browser.new_context(locale="zh-CN", viewport={"width": width, "height": 800}).new_page()
    response = page.goto(url + "/unit/blank.xlsx")
    assert response.status == 404
    assert page.locator("h1").inner_text() == "找不到这个页面" and "Not Found" not in page.content()
    assert page.evaluate("getComputedStyle(document.querySelector('header.top')).backgroundColor") == "rgb(139, 26, 26)"
    page.click("#home")
    page.wait_for_url(url + "/")
    assert page.locator("#unit-login").is_visible()
    response = page.goto(url + "/logout/now")
    assert response.status == 404
    response = page.goto(url + "/login")  # a form's address typed into the bar: only POST is allowed
    assert response.status == 405 and page.locator("h1").inner_text() == "不能这样打开这个地址"
    assert page.evaluate(OVERFLOWING, width) == []
    _shot(page, f"portal-405-{width}.png", tmp_path, docs=False)


def test_a_unit_uploading_while_a_merge_holds_the_ledger_reads_why_on_its_page(served, tmp_path, monkeypatch):
    """The unit's page in a real browser when a merge holds the portal's ledger past the wait: the page says,
    in Chinese, that the bureau is merging and the file was not received, and to upload again later. (Its own
    portal, whose wait is cut short; the module's browser.)"""
    from perfxl import ledger

    monkeypatch.setattr(ledger, "BUSY_SECONDS", 0.2)
    setup = set_up(tmp_path)
    with _portal(setup) as url:
        page = _sign_in(served["browser"], url, A, setup["codes"][A])
        with _a_merge_holding_the_ledger(setup):
            page.set_input_files("#file", str(setup["files"][(A, "good")]))
            page.click("#upload")
            page.wait_for_selector("text=正在汇总")
            said = page.inner_text("body")
            assert "文件未收下。请过几分钟再上传。" in said and "其余" not in said  # nothing was received
            _shot(page, "portal-busy.png", tmp_path, docs=False)
        page.goto(url + "/unit")
        page.set_input_files("#file", str(setup["files"][(A, "good")]))
        page.click("#upload")
        page.wait_for_selector("#latest-status.s-valid")


def test_signing_out_while_a_merge_holds_the_ledger_says_it_did_not_happen(served, tmp_path, monkeypatch):
    """退出登录 while a merge holds the portal's ledger past the wait: the page says the unit is not signed
    out yet and to try again (the session still works: its revocation is not recorded), and the same button
    signs out once the merge lets go."""
    from perfxl.portal import store as store_module

    monkeypatch.setattr(store_module, "PORTAL_BUSY_SECONDS", 0.2)
    setup = set_up(tmp_path)
    with _portal(setup) as url:
        page = _sign_in(served["browser"], url, A, setup["codes"][A])
        with _a_merge_holding_the_ledger(setup):
            page.click("#logout")
            page.wait_for_selector("text=尚未退出登录")
            assert "请过几分钟再点“退出登录”" in page.inner_text(".alert")
            _shot(page, "portal-logout-busy.png", tmp_path, docs=False)
        assert page.goto(url + "/unit").status == 200  # still signed in
        page.goto(url + "/logout")
        page.click("#logout")
        page.wait_for_url(url + "/")
        assert page.goto(url + "/unit").status == 401

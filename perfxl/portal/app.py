"""The portal's web application: Starlette, served by uvicorn. Server-rendered Chinese pages (Jinja2, one
small shipped script for drag and drop) and the JSON API the pages use too.

Security, in one place: sessions are signed tokens (HttpOnly SameSite=Strict cookie, or Bearer) that a
logout revokes in the store; every state-changing request a browser could forge (form-encoded or
multipart with a cookie) carries a CSRF token; sign-in is throttled per connection address and account;
a unit reaches only its own submissions (others' are 404); admin endpoints refuse unit sessions; uploads
are capped and sniffed, and a refused body is read before the answer so every client gets it; nothing
from a request is used as a path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import math
import secrets
import sys
import tempfile
import time
import zipfile
from contextlib import asynccontextmanager
from datetime import date, datetime
from pathlib import Path
from urllib.parse import quote

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from perfxl.errors import PerfxlError
from perfxl.files import safe_filename
from perfxl.issued import RECORD_FILE
from perfxl.manifest import read_manifest
from perfxl.portal.auth import AccessCodes, Session, Throttle, Tokens, client_key, load_secret
from perfxl.portal.store import (
    STATUS_ZH,
    CheckerDown,
    LedgerBusy,
    Store,
    checked_form,
    counts_for_unit,
    shown_status,
)
from perfxl.report import annotate_workbook
from perfxl.roster import Unit

HERE = Path(__file__).parent
COOKIE = "perfxl_session"
CSRF_COOKIE = "perfxl_browser"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'",
    "Cache-Control": "no-store",
}
LOGOUT_BUSY = "财政局正在汇总，报送台账暂时被占用，尚未退出登录。请过几分钟再点“退出登录”。"
RETURN_BUSY = "财政局正在汇总，报送台账暂时被占用，退回未记下。请过几分钟再退回。"
# What the board says after a form of its own was sent back to it (by key: no text of the request is shown)
ADMIN_NOTICES = {"return-busy": RETURN_BUSY}
RETURNED_UNCHANGED = "已收到，但这份文件与财政局退回的版本内容相同（没有修改），本单位仍为“已退回”：请按退回意见修改后再上传"
FORM_OVERHEAD = 64 * 1024  # multipart headers and the CSRF field on top of the files the page lets through
DRAIN_FLOOR = 256 * 1024 * 1024  # a refused body up to this size (or 4 × the upload cap) is read, then answered
MAX_FILES = 20  # files in one upload
# What a page or API call that went wrong says, by status: (title, what to do, JSON error, JSON error_en).
HTTP_ERRORS = {
    400: ("请求无法处理", "请求的格式不正确。请回到首页，从页面上重新操作。", "请求格式不正确", "bad request"),
    404: ("找不到这个页面", "地址可能输错了，或者这个页面已经不存在。请从首页进入。", "没有这个地址", "not found"),
    405: ("不能这样打开这个地址", "这个地址不接受这种请求方式。请从首页进入，用页面上的按钮操作。",
          "这个地址不接受这种请求方式", "method not allowed"),
    500: ("服务器出错了", "这次操作没有完成，已记在服务器的日志里。请稍后再试；一直出错时，请把出错的时间告诉财政局。",
          "服务器内部错误，这次操作没有完成，请稍后再试", "internal server error"),
}


class PortalConfig:
    def __init__(self, store: Path, units: list[Unit], roster_path: Path | None, forms: Path, admin_password: str,
                 deadline: date | None = None, max_upload_mb: int = 50, jobs: int = 2,
                 templates_dir: Path | None = None, year: int | None = None, access_log: bool = True):
        self.store_dir, self.units, self.roster_path = Path(store), units, roster_path
        self.forms, self.admin_password, self.deadline = Path(forms), admin_password, deadline
        self.max_upload = max_upload_mb * 1024 * 1024
        self.max_upload_mb = max_upload_mb
        self.drain_limit = max(4 * self.max_upload, DRAIN_FLOOR)
        self.jobs, self.templates_dir, self.year = jobs, templates_dir, year
        self.access_log = access_log  # one line per request on stderr (uvicorn's own access log stays off)
        # A folder of follow-up forms holds the record of what they were issued with: uploads are checked
        # against it on any machine, whatever the rounds this machine registered.
        self.issued = tuple(p for p in [self.forms / RECORD_FILE] if p.is_file())


class _AccessLog:
    """One plain line on stderr per request, once it is answered, that a bureau's IT staff can read and grep:

        2022-03-31 16:05:12  10.12.0.31  POST  /unit  303  812 ms

    time, client address, method, path, status, duration. Never what signs in: tokens and cookies travel in
    headers and codes and passwords in bodies, which are not logged; of the query only the board's filters
    keep their values (a script that puts a code in the URL logs `code=…`). The path is shown decoded, so
    Chinese stays readable, with spaces and control characters escaped so one request is one line."""

    SHOWN_QUERY = frozenset({"department", "status", "q", "got"})

    def __init__(self, app, enabled: bool = True):
        self.app, self.enabled = app, enabled

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.enabled:
            return await self.app(scope, receive, send)
        started, answered = time.monotonic(), {"status": None}

        async def noting_status(message):
            if message["type"] == "http.response.start":
                answered["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        except BaseException:
            answered["status"] = answered["status"] or 500  # what ServerErrorMiddleware answers with
            raise
        finally:
            _log_line(scope, answered["status"], time.monotonic() - started, self.SHOWN_QUERY)


def _log_line(scope, status: int | None, seconds: float, shown_query: frozenset) -> None:
    client = scope.get("client")
    path = _printable(scope.get("path", ""), 300)
    query = scope.get("query_string", b"").decode("latin-1")
    if query:
        from urllib.parse import parse_qsl

        pairs = parse_qsl(query, keep_blank_values=True)
        path += "?" + "&".join(f"{_printable(k, 40)}={_printable(v, 60) if k in shown_query else '…'}"
                               for k, v in pairs[:10]) + ("&…" if len(pairs) > 10 else "")
    line = (f"{datetime.now():%Y-%m-%d %H:%M:%S}  {client[0] if client else '-'}  {_printable(scope.get('method', ''), 10)}"
            f"  {path}  {status or '-'}  {seconds * 1000:.0f} ms")
    stream = sys.stderr
    if stream is None:  # pythonw on Windows: no console to write to
        return
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:  # a console in the Chinese code page cannot show every character: those become "?"
        stream.write(line.encode(encoding, "replace").decode(encoding) + "\n")
        stream.flush()
    except (OSError, ValueError):
        pass  # a closed or broken stderr never fails a request


def _printable(text: str, limit: int) -> str:
    """`text` on one line: spaces as %20, control and other unprintable characters escaped, at most `limit`."""
    out = "".join(c if c.isprintable() and c != " " else ("%20" if c == " " else repr(c)[1:-1]) for c in text[:limit])
    return out + ("…" if len(text) > limit else "")


class _Headers:
    """Security headers on every response (pure ASGI, so streaming bodies pass untouched)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])]
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


class _BodyBeforeAnswer:
    """Read what is left of a request's body before answering it (up to `limit` bytes), when the app answers
    without reading it all: a 413 for an oversized upload, a 401 for an upload after logout. A client that
    sends its whole body before reading (a browser, `Connection: close`, HTTP/1.0) otherwise has the server
    close the connection on unread data, which the operating system turns into a reset that can take the
    answer with it. A client that asked `Expect: 100-continue` and has not been told to send is answered at
    once: it sends nothing more. A body beyond `limit` is not waited for: the answer says the connection
    closes."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        declared = int(length) if length.isdigit() else None
        state = {"done": not chunked and not declared, "read": 0}
        waits_to_send = b"100-continue" in headers.get(b"expect", b"").lower()

        async def tracked():
            message = await receive()
            if message["type"] == "http.request":
                state["read"] += len(message.get("body", b""))
                state["done"] = not message.get("more_body", False)
            else:  # http.disconnect
                state["done"] = True
            return message

        async def answer(message):
            if message["type"] == "http.response.start" and not state["done"]:
                if not (waits_to_send and state["read"] == 0) and not await self._drain(tracked, state, declared):
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, tracked, answer)

    async def _drain(self, tracked, state, declared: int | None) -> bool:
        """Read and drop the rest of the body; False when it is larger than the limit (nothing is read then)."""
        if declared is not None and declared > self.limit:
            return False
        while not state["done"]:
            if state["read"] > self.limit:
                return False
            await tracked()
        return True


def create_app(config: PortalConfig) -> Starlette:
    manifest = read_manifest(config.forms)
    handed_out = manifest.by_unit()  # unit code → the form it downloads (blank, or a prefilled follow-up)
    # An adjustment round (绩效目标调整): the board approves a unit's adjustment into the declaration's ledger
    # the forms were generated from (perfxl.versions), as `perfxl approve` does
    declarations = _adjusted_ledger(manifest, config)
    secret = load_secret(config.store_dir) if config.store_dir.exists() else None
    state: dict = {}
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    throttle = Throttle()

    @asynccontextmanager
    async def lifespan(app):
        store = Store(config.store_dir, config.units, config.roster_path, jobs=config.jobs,
                      templates_dir=config.templates_dir, year=config.year, issued=config.issued)
        state["store"] = store
        state["tokens"] = Tokens(secret or load_secret(config.store_dir))
        state["codes"] = await asyncio.get_running_loop().run_in_executor(
            None, AccessCodes, config.store_dir, manifest.forms)
        await store.recheck_interrupted()
        try:
            yield
        finally:
            store.close()

    def store() -> Store:
        return state["store"]

    def tokens() -> Tokens:
        return state["tokens"]

    # -- sessions ---------------------------------------------------------------------------------

    def session_of(request: Request) -> tuple[Session | None, bool]:
        """(session, came by cookie); a session revoked at logout is none."""
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            session, by_cookie = tokens().read(header[7:].strip()), False
        else:
            session, by_cookie = tokens().read(request.cookies.get(COOKIE)), True
        if session is not None and store().revoked(session.nonce):
            session = None
        return session, by_cookie

    def csrf_ok(request: Request, by_cookie: bool, submitted: str | None) -> bool:
        content_type = request.headers.get("content-type", "")
        if not by_cookie or content_type.startswith("application/json") and request.url.path.startswith("/api/"):
            return True  # a Bearer token is no ambient credential; cross-site JSON needs a preflight
        browser = request.cookies.get(CSRF_COOKIE, "")
        token = submitted or request.headers.get("x-csrf-token", "")
        return bool(browser) and _same(token, tokens().csrf_for(browser))

    def error(status: int, zh: str, en: str = "") -> JSONResponse:
        return JSONResponse({"error": zh, "error_en": en or zh}, status_code=status)

    def need(request: Request, role: str | None = None):
        session, by_cookie = session_of(request)
        if session is None:
            return None, by_cookie, error(401, "请先登录", "sign in first")
        if role and session.role != role:
            return None, by_cookie, error(403, "无权访问", "forbidden")
        return session, by_cookie, None

    def page(name: str, request: Request, status_code: int = 200, **context) -> HTMLResponse:
        browser = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(16)
        html = env.get_template(name).render(csrf=tokens().csrf_for(browser), deadline=config.deadline,
                                             status_zh=STATUS_ZH, max_upload=config.max_upload,
                                             max_upload_mb=config.max_upload_mb, **context)
        response = HTMLResponse(html, status_code=status_code)
        if CSRF_COOKIE not in request.cookies:
            response.set_cookie(CSRF_COOKIE, browser, httponly=True, samesite="strict")
        return response

    def failed(request: Request, status: int, headers: dict | None = None) -> Response:
        """A 404, 405, 500 (or another error Starlette raises) in Chinese: JSON under /api/, else a page like
        the others, which says what to do next."""
        title, advice, zh, en = HTTP_ERRORS.get(status, HTTP_ERRORS[400 if status < 500 else 500])
        if status == 405:
            zh = f"这个地址不接受 {_printable(request.method, 10)} 请求"
        if request.url.path.startswith("/api/"):
            response = error(status, zh, en)
        else:
            try:
                response = page("error.html", request, status_code=status, title=title, advice=advice,
                                 status=status, when=f"{datetime.now():%Y-%m-%d %H:%M:%S}")
            except Exception:  # the page itself failed (the store is gone): the words still reach the user
                response = HTMLResponse(f"<!doctype html><meta charset=utf-8><title>{title}</title>"
                                        f"<h1>{title}</h1><p>{advice}</p><p><a href=\"/\">回到首页</a></p>",
                                        status_code=status)
        for name, value in (headers or {}).items():
            response.headers[name] = value
        return response

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return failed(request, exc.status_code, exc.headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        # Starlette logs the traceback to the server's stderr after this answer; the user gets no traceback.
        return failed(request, 500)

    def signed_out(request: Request) -> HTMLResponse:
        """A page that needs a session, asked without one (never signed in, logged out, expired): 401 with
        the sign-in form, which leads back here."""
        message = "请先登录" if COOKIE not in request.cookies else "已退出登录或登录已过期，请重新登录"
        return page("login.html", request, status_code=401, message=message, units=len(store().units))

    def client(request: Request) -> str:
        """The throttle's key: the connection's address (uvicorn replaces it with X-Forwarded-For only from
        the proxy `perfxl serve --proxy` names)."""
        return client_key(request.client.host) if request.client else "?"

    def too_many(wait: float) -> JSONResponse:
        minutes = max(1, math.ceil(wait / 60))
        response = error(429, f"尝试次数过多，请 {minutes} 分钟后再试", f"too many attempts; wait {minutes} minutes")
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response

    # -- signing in ---------------------------------------------------------------------------------

    def sign_in(request: Request, body: dict) -> tuple[str | None, JSONResponse | None]:
        """A throttled client is refused before its password or code is looked at, right or wrong."""
        address = client(request)
        if "admin_password" in body:
            account = "admin"
            if wait := throttle.wait(address, account):
                return None, too_many(wait)
            if _same(str(body["admin_password"]), config.admin_password):
                throttle.succeeded(address, account)
                return tokens().issue("admin"), None
        else:
            unit = str(body.get("unit", "")).strip()[:64]
            account = unit if unit in store().units else "?"  # names off the roster share one key
            if wait := throttle.wait(address, account):
                return None, too_many(wait)
            if state["codes"].check(unit, str(body.get("code", ""))[:64]) and account != "?":
                throttle.succeeded(address, account)
                return tokens().issue("unit", unit), None
        throttle.failed(address, account)
        return None, error(401, "单位编码或访问码不正确", "wrong unit code or access code")

    def with_cookie(response: Response, token: str) -> Response:
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", max_age=12 * 3600)
        return response

    def without_cookie(response: Response) -> Response:
        response.delete_cookie(COOKIE, httponly=True, samesite="strict")
        return response

    async def api_login(request: Request):
        try:
            body = await request.json()
        except ValueError:
            return error(400, "请求应为 JSON", "the body must be JSON")
        if not isinstance(body, dict):
            return error(400, "请求应为 JSON 对象", "the body must be a JSON object")
        token, failed = sign_in(request, body)
        if failed:
            return failed
        return with_cookie(JSONResponse({"token": token, "role": tokens().read(token).role}), token)

    async def login_form(request: Request):
        form = await request.form()
        if not csrf_ok(request, True, form.get("csrf")):
            return page("login.html", request, message="页面已过期，请重新登录", units=len(store().units))
        body = ({"admin_password": form.get("admin_password", "")} if form.get("admin_password") is not None
                else {"unit": form.get("unit", ""), "code": form.get("code", "")})
        token, failed = sign_in(request, body)
        if failed:
            return page("login.html", request, message=json.loads(failed.body)["error"], units=len(store().units))
        role = tokens().read(token).role
        return with_cookie(RedirectResponse("/admin" if role == "admin" else "/unit", status_code=303), token)

    # -- signing out: the token is revoked in the store, so a copy of it (a script's, a stolen cookie) is
    # refused as well, after a restart too ----------------------------------------------------------------

    def leaving(session: Session) -> dict:
        """What the logout page says: who is signed in, and where 返回 goes."""
        if session.role == "admin":
            return {"who": "财政局 · 汇总", "admin": True, "back": "/admin"}
        unit = store().units.get(session.unit)
        return {"who": f"{unit.name}（{unit.code}）" if unit else session.unit, "admin": False, "back": "/unit"}

    async def logout_page(request: Request):
        """GET /logout changes nothing: it shows the button that signs out (a POST with the CSRF token)."""
        session, _ = session_of(request)
        if session is None:
            return without_cookie(RedirectResponse("/", status_code=303))
        return page("logout.html", request, **leaving(session), message="")

    async def logout(request: Request):
        session, by_cookie = session_of(request)
        form = await request.form()
        if session is None:
            return without_cookie(RedirectResponse("/", status_code=303))
        if not csrf_ok(request, by_cookie, form.get("csrf")):
            return page("logout.html", request, status_code=403, **leaving(session),
                        message="页面已过期，请再点一次“退出登录”")
        if not await revoke_session(session):
            return page("logout.html", request, status_code=503, **leaving(session), message=LOGOUT_BUSY)
        return without_cookie(RedirectResponse("/", status_code=303))

    async def api_logout(request: Request):
        session, by_cookie, refused = need(request)
        if refused:
            return refused
        if not csrf_ok(request, by_cookie, None):
            return error(403, "缺少 CSRF 令牌（X-CSRF-Token）", "CSRF token missing or wrong")
        if not await revoke_session(session):
            return error(503, LOGOUT_BUSY, "the ledger is busy (a merge is writing into it): not signed out; try again")
        return without_cookie(JSONResponse({"message": "已退出登录", "message_en": "signed out"}))

    async def revoke_session(session: Session) -> bool:
        """The session revoked in the ledger, on its writing thread (a merge's lock may keep it waiting): False
        when a merge held the ledger past the wait. Until it is recorded the token still works, so the user is
        not told they are signed out."""
        try:
            await store().write(store().revoke, session.nonce, session.expires)
        except LedgerBusy:
            return False
        return True

    # -- units --------------------------------------------------------------------------------------

    async def receive(request: Request, session: Session, by_cookie: bool):
        length = request.headers.get("content-length")
        if length is None:
            return None, error(411, "请求缺少长度 (Content-Length)", "length required")
        if not length.isdigit():
            return None, error(400, "请求长度 (Content-Length) 无效", "bad Content-Length")
        if int(length) > config.max_upload + FORM_OVERHEAD:  # _BodyBeforeAnswer reads the body: every client gets this
            limit, size = config.max_upload_mb, int(length) / 1024 / 1024
            return None, error(413, f"上传的文件过大（{size:.1f} MB），每次合计不能超过 {limit} MB，文件未收下",
                               f"upload of {size:.1f} MB larger than {limit} MB")
        out = []
        busy = False
        try:
            form = await request.form(max_files=MAX_FILES, max_fields=10)
        except HTTPException as exc:  # Starlette's parser refuses the body (too many files, no boundary, ...)
            if "files" in str(exc.detail):
                return None, error(400, f"一次最多上传 {MAX_FILES} 个文件，文件未收下，请分几次上传",
                                   f"at most {MAX_FILES} files at a time")
            return None, error(400, "上传的内容无法识别，文件未收下；请在页面上重新选择文件上传",
                               f"the upload cannot be parsed: {exc.detail}")
        try:
            if not csrf_ok(request, by_cookie, form.get("csrf")):
                return None, error(403, "页面已过期，请刷新后重新上传", "CSRF token missing or wrong")
            files = [f for f in form.getlist("file") if hasattr(f, "read")]
            if not files:
                return None, error(400, "没有收到文件（表单字段名应为 file）", "no file part named 'file'")
            for f in files:
                data = await f.read()
                if not data:
                    continue
                try:
                    sid = await store().hand_in(session.unit, f.filename or "", data)
                except LedgerBusy:  # a merge is writing into the ledger: what is not recorded is not received
                    busy = True
                    break
                out.append(sid)
        finally:
            await form.close()
        checked = [await store().check(sid) for sid in out]
        if busy:
            said = (f"：已收到的 {len(out)} 个文件照常检查，其余文件未收下。请过几分钟再上传其余文件。" if out
                    else "，文件未收下。请过几分钟再上传。")
            return None, error(503, f"财政局正在汇总，报送台账暂时被占用{said}",
                               f"the ledger is busy (a merge is writing into it): {len(out)} file(s) received, "
                               f"the others not; upload them again in a few minutes")
        unchanged = store().unchanged_since_return(session.unit)
        return [_public(c.submission, unchanged) for c in checked], None

    async def api_submissions(request: Request):
        session, by_cookie, refused = need(request, "unit")
        if refused:
            return refused
        if request.method == "GET":
            with store().snapshot():
                unchanged = store().unchanged_since_return(session.unit)
                return JSONResponse({"submissions": [_public(s, unchanged) for s in store().history(session.unit)],
                                     "returns": _returns(store().returns(session.unit))})
        result, failed = await receive(request, session, by_cookie)
        if failed:
            return failed
        if any(s["same_as_returned"] for s in result):
            return JSONResponse({"submissions": result, "message": RETURNED_UNCHANGED,
                                 "message_en": "received; the file is the returned one, unchanged: still returned"})
        return JSONResponse({"submissions": result, "message": "已收到"})

    def own(request: Request, session: Session) -> dict | None:
        try:
            sid = int(request.path_params["sid"])
        except ValueError:
            return None
        sub = store().submission(sid)
        return sub if sub and (session.role == "admin" or sub["unit_code"] == session.unit) else None

    async def api_submission(request: Request):
        session, _, refused = need(request)
        if refused:
            return refused
        with store().snapshot():
            sub = own(request, session)
            if not sub:
                return error(404, "没有这份报送", "no such submission")
            return JSONResponse(_public(sub, store().unchanged_since_return(sub["unit_code"])))

    async def api_annotated(request: Request):
        session, _, refused = need(request)
        if refused:
            return refused
        sub = own(request, session)
        if not sub:
            return error(404, "没有这份报送", "no such submission")
        try:
            data = await annotated(sub)
        except CheckerDown:
            return error(503, "检查程序暂时无法启动，批注副本未生成。请过几分钟再试。",
                         "no checker could be started: try again in a few minutes")
        if data is None:
            return error(404, "此文件无法生成批注副本（无法读取或为 .xls）", "no annotated copy for this file")
        return _download(data, f"{Path(sub['file_name']).stem}_校验批注.xlsx")

    async def annotated(sub: dict) -> bytes | None:
        if not counts_for_unit(sub):  # refused or unreadable: no annotated copy of another unit's form
            return None
        path = store().folder / sub["stored"]
        checked = await store().in_checker(checked_form, path)  # None too when the file kills its checker
        if checked is None:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            out = await asyncio.get_running_loop().run_in_executor(None, annotate_workbook, checked, Path(tmp))
            return out.read_bytes() if out else None

    async def blank(request: Request):
        session, _, refused = need(request, "unit")
        if refused:
            return refused
        entry = handed_out.get(session.unit)
        path = (config.forms / str(entry["file"])).resolve() if entry else None
        if not path or not path.is_relative_to(config.forms.resolve()) or not path.is_file():
            return error(404, "没有找到本单位的表，请联系财政局", "no form for this unit")
        return _download(path.read_bytes(), path.name)

    async def unit_page(request: Request):
        session, _, refused = need(request, "unit")
        if refused:
            return signed_out(request) if refused.status_code == 401 else RedirectResponse("/", status_code=303)
        if request.method == "POST":
            result, failed = await receive(request, session, True)
            if failed:
                return page("unit.html", request, status_code=failed.status_code, **unit_context(session),
                            message=json.loads(failed.body)["error"])
            return RedirectResponse(f"/unit?got={','.join(str(s['id']) for s in result)}", status_code=303)
        return page("unit.html", request, **unit_context(session), message="")

    def unit_context(session: Session) -> dict:
        """What the unit page shows. `current` is the version the summary takes now (the merge's rule) and
        the page says what is true of it: without errors, with errors (none without yet), or returned."""
        with store().snapshot():
            return _unit_context(session)

    def _unit_context(session: Session) -> dict:
        unchanged = store().unchanged_since_return(session.unit)
        history = [_public(s, unchanged) for s in store().history(session.unit)]
        for s in history[:1]:  # errors first, then warnings, each in sheet and cell order as found
            s["problems"].sort(key=lambda p: p.get("severity") != "error")
        unit = store().units[session.unit]
        row = store().row(session.unit)
        current = next((s for s in history if s["id"] == row["current"]), None)
        returns = _returns(store().returns(session.unit))
        return {"unit": unit, "history": history, "latest": history[0] if history else None,
                "current": current, "returns": returns, "returned": row["status"] == "returned",
                "returned_ids": {r["submission"] for r in returns if r["submission"] is not None},
                "has_form": session.unit in handed_out, "followup": manifest.kind == "followup",
                "form_title": manifest.title or "申报表"}

    # -- the consolidator ---------------------------------------------------------------------------

    async def api_status(request: Request):
        _, _, refused = need(request, "admin")
        if refused:
            return refused
        rows = store().board()
        return JSONResponse({"units": {r["unit_code"]: {k: r[k] for k in ("unit_name", "department", "status",
                                                                          "last_time", "errors", "warnings",
                                                                          "submissions", "comment")}
                                       for r in rows},
                             "counts": _counts(rows)})

    async def api_summary(request: Request):
        _, _, refused = need(request, "admin")
        if refused:
            return refused
        data = await asyncio.get_running_loop().run_in_executor(None, _summary, store(), config)
        return _download(data, f"汇总_{datetime.now():%Y%m%d_%H%M}.xlsx")

    async def api_zip(request: Request):
        _, _, refused = need(request, "admin")
        if refused:
            return refused
        # hundreds of files read and compressed: not on the event loop
        data = await asyncio.get_running_loop().run_in_executor(None, _zipped, store())
        return _download(data, f"各单位最新报送_{datetime.now():%Y%m%d_%H%M}.zip")

    async def api_return(request: Request):
        _, by_cookie, refused = need(request, "admin")
        if refused:
            return refused
        code = request.path_params["code"]
        if code not in store().units:
            return error(404, "名单中没有这个单位", "no such unit")
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                body = await request.json()
            except ValueError:
                return error(400, "请求应为 JSON", "the body must be JSON")
            comment = str(body.get("comment", "")) if isinstance(body, dict) else ""
        else:
            form = await request.form()
            if not csrf_ok(request, by_cookie, form.get("csrf")):
                return error(403, "页面已过期，请刷新", "CSRF token missing or wrong")
            comment = str(form.get("comment", ""))
        comment = comment.strip()[:1000]
        if not comment:
            return error(400, "请写明退回原因", "give a comment")
        try:
            await store().write(store().add_return, code, comment)
        except LedgerBusy:
            if "application/json" in request.headers.get("accept", "") or not by_cookie:
                return error(503, RETURN_BUSY,
                             "the ledger is busy (a merge is writing into it): the return is not recorded; try again")
            return RedirectResponse(f"/admin?notice=return-busy#u{quote(code)}", status_code=303)  # the board says why
        if declarations is not None:  # an adjustment sent back is also a decision the ledger keeps, with its comment
            await asyncio.get_running_loop().run_in_executor(None, _reject, store(), config, declarations, code,
                                                             comment)
        if "application/json" in request.headers.get("accept", "") or not by_cookie:
            return JSONResponse({"unit": code, "status": "returned", "comment": comment})
        return RedirectResponse(f"/admin#u{quote(code)}", status_code=303)

    async def api_approve(request: Request):
        _, by_cookie, refused = need(request, "admin")
        if refused:
            return refused
        code = request.path_params["code"]
        if declarations is None:
            return error(404, "这一轮不是绩效目标调整，没有批准", "not an adjustment round")
        if code not in store().units:
            return error(404, "名单中没有这个单位", "no such unit")
        if by_cookie and not request.headers.get("content-type", "").startswith("application/json"):
            form = await request.form()
            if not csrf_ok(request, by_cookie, form.get("csrf")):
                return error(403, "页面已过期，请刷新", "CSRF token missing or wrong")
        try:
            decided = await asyncio.get_running_loop().run_in_executor(
                None, _approve, store(), config, declarations, code)
        except PerfxlError as exc:
            return error(409, str(exc), "cannot approve")
        if "application/json" in request.headers.get("accept", "") or not by_cookie:
            return JSONResponse({"unit": code, "approved": [{"version": v.id, "project": v.project} for v in decided]})
        return RedirectResponse(f"/admin#u{quote(code)}", status_code=303)

    async def admin_page(request: Request):
        _, _, refused = need(request, "admin")
        if refused:
            return signed_out(request) if refused.status_code == 401 else RedirectResponse("/", status_code=303)
        rows = store().board()
        department = request.query_params.get("department", "")
        status = request.query_params.get("status", "")
        q = request.query_params.get("q", "").strip()
        shown = [r for r in rows if (not department or r["department"] == department)
                 and (not status or r["status"] == status)
                 and (not q or q in r["unit_code"] or q in r["unit_name"])]
        departments = sorted({r["department"] for r in rows})
        per_department = []
        for d in departments:
            mine = [r for r in rows if r["department"] == d]
            per_department.append({"department": d, **_counts(mine)})
        decisions = _decisions(declarations)
        for r in shown:
            r["decision"] = decisions.get(r["unit_code"], "")
        return page("admin.html", request, rows=shown, counts=_counts(rows), per_department=per_department,
                    departments=departments, department=department, status=status, q=q,
                    adjusting=declarations is not None,
                    message=ADMIN_NOTICES.get(request.query_params.get("notice", ""), ""))

    async def home(request: Request):
        session, _ = session_of(request)
        if session:
            return RedirectResponse("/admin" if session.role == "admin" else "/unit", status_code=303)
        return page("login.html", request, message="", units=len(store().units))

    routes = [
        Route("/", home),
        Route("/login", login_form, methods=["POST"]),
        Route("/logout", logout_page, methods=["GET"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/unit", unit_page, methods=["GET", "POST"]),
        Route("/unit/blank", blank),
        Route("/admin", admin_page),
        Route("/api/login", api_login, methods=["POST"]),
        Route("/api/logout", api_logout, methods=["POST"]),
        Route("/api/submissions", api_submissions, methods=["GET", "POST"]),
        Route("/api/submissions/{sid}", api_submission),
        Route("/api/submissions/{sid}/annotated", api_annotated),
        Route("/api/blank", blank),
        Route("/api/status", api_status),
        Route("/api/summary.xlsx", api_summary),
        Route("/api/files.zip", api_zip),
        Route("/api/units/{code}/return", api_return, methods=["POST"]),
        Route("/api/units/{code}/approve", api_approve, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={HTTPException: http_error, Exception: server_error},
                     middleware=[Middleware(_AccessLog, enabled=config.access_log), Middleware(_Headers),
                                 Middleware(_BodyBeforeAnswer, limit=config.drain_limit)])


def _adjusted_ledger(manifest, config: PortalConfig) -> Path | None:
    """The declaration ledger an adjustment round's forms were generated from, or None for any other round."""
    from perfxl.rounds import ADJUST
    from perfxl.spec import load_spec

    if manifest.kind != "followup" or not manifest.template or not manifest.source:
        return None
    try:
        spec = load_spec(manifest.template, manifest.year, templates_dir=config.templates_dir)
    except PerfxlError:
        return None
    return Path(manifest.source) if spec.round.stage == ADJUST else None


def _zipped(store: Store) -> bytes:
    """Every unit's current version in one zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, path in store.current_files():
            zf.write(path, name)
    return buffer.getvalue()


def _approve(store: Store, config: PortalConfig, declarations: Path, code: str) -> list:
    """Merge the store as it stands (the unit's current adjustment form, checked as the summary checks it) and
    approve that unit's adjustment into the declaration's ledger."""
    from perfxl.merging import run_merge
    from perfxl.versions import decide

    with tempfile.TemporaryDirectory() as tmp:
        run_merge([store.files], Path(tmp) / "汇总.xlsx", dataclasses.replace(store.options, db=store.ledger_path, jobs=1))
    return decide(declarations, store.ledger_path, [code], approve=True, by="报送网页管理员",
                  templates_dir=config.templates_dir)


def _reject(store: Store, config: PortalConfig, declarations: Path, code: str, comment: str) -> None:
    """A 退回 of an adjustment, recorded as a rejected version (as `perfxl approve --reject`); nothing to record
    (no adjustment merged, or already rejected) is not an error: the 退回 itself stands and the unit sees it."""
    from perfxl.merging import run_merge
    from perfxl.versions import decide

    with tempfile.TemporaryDirectory() as tmp:
        run_merge([store.files], Path(tmp) / "汇总.xlsx", dataclasses.replace(store.options, db=store.ledger_path, jobs=1))
    try:
        decide(declarations, store.ledger_path, [code], approve=False, comment=comment, by="报送网页管理员",
               templates_dir=config.templates_dir)
    except PerfxlError:
        pass


def _decisions(declarations: Path | None) -> dict[str, str]:
    """Unit code → the newest decision on its adjustment, as the board shows it (已批准 第 3 版)."""
    if declarations is None or not declarations.is_file():
        return {}
    from perfxl.ledger import Ledger
    from perfxl.versions import STATUS_ZH, all_versions

    try:
        ledger = Ledger(declarations, readonly=True)
    except PerfxlError:
        return {}
    try:
        return {v.unit_code: f"{STATUS_ZH[v.status]} 第 {v.id} 版" for v in all_versions(ledger.db)}
    finally:
        ledger.close()


def _summary(store: Store, config: PortalConfig) -> bytes:
    """The summary merged now from the store, with the options its uploads were checked with."""
    from perfxl.merging import run_merge

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "汇总.xlsx"
        run_merge([store.files], out, dataclasses.replace(store.options, db=store.ledger_path, jobs=1))
        return out.read_bytes()


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison of texts that may hold any characters (a Chinese password)."""
    return secrets.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


def _counts(rows: list[dict]) -> dict:
    statuses = [r["status"] for r in rows]
    handed = sum(1 for s in statuses if s in {"valid", "errors", "returned"})
    return {"expected": len(rows), "handed_in": handed, "valid": statuses.count("valid"),
            "errors": statuses.count("errors"), "returned": statuses.count("returned"),
            "rejected": statuses.count("rejected"), "refused": statuses.count("refused"),
            "missing": statuses.count("missing") + statuses.count("rejected") + statuses.count("refused")}


def _public(sub: dict, unchanged: set[int] = frozenset()) -> dict:
    """A submission as the API and the pages show it: the same problem objects as `validate --json`;
    `same_as_returned` when it was handed in after a 退回 with the returned version's content (`unchanged`),
    so the unit is still 已退回."""
    problems = json.loads(sub["problems"]) if isinstance(sub["problems"], str) else sub["problems"]
    status = shown_status(sub)
    return {"id": sub["id"], "file": sub["file_name"], "status": status, "status_zh": STATUS_ZH[status],
            "received": sub["received"], "errors": sub["errors"], "warnings": sub["warnings"], "problems": problems,
            "annotated": counts_for_unit(sub), "same_as_returned": sub["id"] in unchanged}


def _returns(rows: list[dict]) -> list[dict]:
    return [{"comment": r["comment"], "returned": r["returned"], "submission": r["submission"]} for r in rows]


def _download(data: bytes, name: str) -> Response:
    name = safe_filename(name)
    return Response(data, media_type="application/octet-stream",
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"})


"""Who is asking: units sign in with their code and the access code `perfxl generate` gave them, the
consolidator with the password the server was started with. Access codes are kept only as salted
PBKDF2 hashes; sessions are HMAC-signed tokens (a cookie for pages, `Authorization: Bearer` for
scripts); failed sign-ins are throttled."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

SESSION_SECONDS = 12 * 3600
PBKDF2_ROUNDS = 20_000  # with 49-bit codes and throttled sign-in, enough; 1,000 units hash in ~10 s once
THROTTLE_FAILURES = 5
THROTTLE_WINDOW = 300.0


@dataclass(frozen=True)
class Session:
    role: str  # "unit" | "admin"
    unit: str  # the unit code; "" for the admin
    expires: float


def load_secret(store: Path) -> bytes:
    """The server's signing key, made once per store and readable by its owner only."""
    path = store / ".secret"
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    data = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return data


def hash_code(code: str, salt: bytes) -> str:
    return hashlib.pbkdf2_hmac("sha256", code.strip().upper().encode(), salt, PBKDF2_ROUNDS).hex()


class AccessCodes:
    """unit code → salted hash of its access code, kept in the store; rebuilt when manifest.json changes."""

    def __init__(self, store: Path, manifest: list[dict]):
        path = store / "access-codes.json"
        source = hashlib.sha256(json.dumps(manifest, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            saved = {}
        if saved.get("source") == source:
            self.hashes = {k: (bytes.fromhex(v[0]), v[1]) for k, v in saved["units"].items()}
            return
        self.hashes = {}
        for entry in manifest:
            code = str(entry.get("access_code") or "")
            if code:
                salt = secrets.token_bytes(16)
                self.hashes[str(entry["unit_code"])] = (salt, hash_code(code, salt))
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"source": source, "units": {k: [s.hex(), h] for k, (s, h) in self.hashes.items()}}, fh)
        os.replace(tmp, path)

    def check(self, unit: str, code: str) -> bool:
        entry = self.hashes.get(unit)
        if entry is None:
            hash_code(code, b"0" * 16)  # the same work for an unknown unit: no timing tells which units exist
            return False
        return hmac.compare_digest(entry[1], hash_code(code, entry[0]))


class Tokens:
    def __init__(self, secret: bytes):
        self.key = hashlib.sha256(b"session:" + secret).digest()
        self.csrf_key = hashlib.sha256(b"csrf:" + secret).digest()

    def issue(self, role: str, unit: str = "") -> str:
        body = json.dumps({"r": role, "u": unit, "e": int(time.time() + SESSION_SECONDS), "n": secrets.token_hex(8)},
                          separators=(",", ":")).encode()
        payload = base64.urlsafe_b64encode(body).decode().rstrip("=")
        return payload + "." + self._sign(payload)

    def read(self, token: str | None) -> Session | None:
        if not token or token.count(".") != 1 or len(token) > 2048:
            return None
        payload, signature = token.split(".")
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            return None
        if not isinstance(body, dict) or body.get("e", 0) < time.time() or body.get("r") not in {"unit", "admin"}:
            return None
        return Session(body["r"], str(body.get("u", "")), float(body["e"]))

    def csrf_for(self, browser_id: str) -> str:
        return hmac.new(self.csrf_key, browser_id.encode(), hashlib.sha256).hexdigest()[:32]

    def _sign(self, payload: str) -> str:
        return hmac.new(self.key, payload.encode(), hashlib.sha256).hexdigest()


class Throttle:
    """At most THROTTLE_FAILURES failed sign-ins per client and account in THROTTLE_WINDOW seconds."""

    def __init__(self):
        self.failures: dict[tuple[str, str], deque] = defaultdict(deque)

    def blocked(self, client: str, account: str) -> bool:
        q = self.failures[(client, account)]
        now = time.monotonic()
        while q and now - q[0] > THROTTLE_WINDOW:
            q.popleft()
        return len(q) >= THROTTLE_FAILURES

    def failed(self, client: str, account: str) -> None:
        self.failures[(client, account)].append(time.monotonic())

    def succeeded(self, client: str, account: str) -> None:
        self.failures.pop((client, account), None)

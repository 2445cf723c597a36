"""Who is asking: units sign in with their code and the access code `perfxl generate` gave them, the
consolidator with the password the server was started with. Access codes are kept only as salted
PBKDF2 hashes; sessions are HMAC-signed tokens (a cookie for pages, `Authorization: Bearer` for
scripts), each with a nonce the store can revoke at logout; failed sign-ins are throttled per client
address and account."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path

SESSION_SECONDS = 12 * 3600
PBKDF2_ROUNDS = 20_000  # with 49-bit codes and throttled sign-in, enough; 1,000 units hash in ~10 s once
THROTTLE_FAILURES = 5
THROTTLE_WINDOW = 300.0  # failures older than this are forgotten; a throttled client waits this long
THROTTLE_CAP = 10_000  # entries in the throttle table: (client address, account) pairs


@dataclass(frozen=True)
class Session:
    role: str  # "unit" | "admin"
    unit: str  # the unit code; "" for the admin
    expires: float
    nonce: str = ""  # what a logout revokes (Store.revoke)


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
        return Session(body["r"], str(body.get("u", "")), float(body["e"]), str(body.get("n", "")))

    def csrf_for(self, browser_id: str) -> str:
        return hmac.new(self.csrf_key, browser_id.encode(), hashlib.sha256).hexdigest()[:32]

    def _sign(self, payload: str) -> str:
        return hmac.new(self.key, payload.encode(), hashlib.sha256).hexdigest()


def client_key(host: str) -> str:
    """The throttle's key for a connection's address: the address itself, or for IPv6 its /64, which one
    machine may hold whole (privacy addresses) and so could otherwise step through for fresh keys."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if address.version == 6:
        if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d, an IPv4 client on a dual-stack socket
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


@dataclass
class _Failures:
    times: deque = field(default_factory=deque)  # monotonic times of recent failures
    until: float = 0.0  # throttled until then: refused even with the right code


class Throttle:
    """Failed sign-ins per (client, account): after THROTTLE_FAILURES of them within THROTTLE_WINDOW
    seconds, that client waits THROTTLE_WINDOW seconds before it may try that account again, and is refused
    meanwhile even with the right code. The client is the connection's address (`client_key`), never
    something the request says, so a client cannot pick a fresh key; the account is part of the key, so an
    attacker failing from one address does not lock the admin or a unit out from another. The caller maps
    names not on the roster to one account, so a client cannot make keys up either.

    The table is ordered by each entry's last failure, so the expired entries are at its front: every failure
    prunes them from there, and evicts the least recently failed once the table holds more than `cap`."""

    def __init__(self, failures: int = THROTTLE_FAILURES, window: float = THROTTLE_WINDOW, cap: int = THROTTLE_CAP,
                 clock=time.monotonic):
        self.limit, self.window, self.cap, self.clock = failures, window, cap, clock
        self.entries: OrderedDict[tuple[str, str], _Failures] = OrderedDict()

    def wait(self, client: str, account: str) -> float:
        """Seconds this client must still wait before trying this account; 0 when it may try now."""
        entry = self.entries.get((client, account))
        if entry is None:
            return 0.0
        now = self.clock()
        if entry.until > now:
            return entry.until - now
        if self._expired(entry, now):
            del self.entries[(client, account)]
        return 0.0

    def failed(self, client: str, account: str) -> None:
        now = self.clock()
        key = (client, account)
        entry = self.entries.pop(key, None) or _Failures()
        self.entries[key] = entry  # the most recently failed last: eviction takes from the front
        while entry.times and now - entry.times[0] > self.window:
            entry.times.popleft()
        entry.times.append(now)
        if len(entry.times) >= self.limit:
            entry.until = now + self.window
            entry.times.clear()
        self._shrink(now)

    def succeeded(self, client: str, account: str) -> None:
        self.entries.pop((client, account), None)

    def _expired(self, entry: _Failures, now: float) -> bool:
        return entry.until <= now and (not entry.times or now - entry.times[-1] > self.window)

    def _shrink(self, now: float) -> None:
        while self.entries:
            oldest = next(iter(self.entries.values()))
            if len(self.entries) <= self.cap and not self._expired(oldest, now):
                return
            self.entries.popitem(last=False)

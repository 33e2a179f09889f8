# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Users (a JSON file of salted scrypt hashes and roles), CSRF tokens and the login rate limit."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections import deque

ROLES = ("viewer", "operator")
# scrypt cost: 2**14 x 8 x 1 (16 MiB, ~50 ms here): slow enough for a stolen file, fast enough for a login
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1


def hash_password(password: str, salt: bytes | None = None, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$n$r$p$<salt b64>$<hash b64>`` with a random 16-byte salt."""
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32)
    return "scrypt$%d$%d$%d$%s$%s" % (n, r, p, base64.b64encode(salt).decode(), base64.b64encode(digest).decode())


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        computed = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed, base64.b64decode(digest))


# A hash to check a password against when the user does not exist: the answer takes as long either way.
_DUMMY = hash_password(secrets.token_hex(8))


class Users:
    """The users file: ``{"users": {"alice": {"role": "operator", "hash": "scrypt$..."}}}``, re-read when it changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._mtime = None
        self._users: dict = {}

    def _load(self) -> dict:
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            return {}
        if mtime != self._mtime:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
            users = data.get("users") if isinstance(data, dict) else None
            if not isinstance(users, dict):
                raise ValueError("%s: not a users file (expected {\"users\": {...}}); create it with: python -m dashboard adduser" % self.path)
            self._users, self._mtime = users, mtime
        return self._users

    def authenticate(self, name: str, password: str) -> str | None:
        """The user's role when the password is right, else None."""
        entry = self._load().get(name)
        if not isinstance(entry, dict) or entry.get("role") not in ROLES:
            verify_password(password, _DUMMY)
            return None
        return entry["role"] if verify_password(password, str(entry.get("hash", ""))) else None

    def role(self, name: str) -> str | None:
        entry = self._load().get(name)
        return entry.get("role") if isinstance(entry, dict) and entry.get("role") in ROLES else None


def user_matches(path: str, name: str, password: str, role: str) -> bool:
    """True when the users file already has ``name`` with ``role`` and ``password`` (nothing to write)."""
    try:
        users = Users(path)
        return users.role(name) == role and users.authenticate(name, password) == role
    except (OSError, ValueError):
        return False


def add_user(path: str, name: str, password: str, role: str) -> None:
    """Add or replace one user in the users file (created mode 0600)."""
    if role not in ROLES:
        raise ValueError("role must be one of %s, got %r" % (", ".join(ROLES), role))
    if not name or any(c.isspace() for c in name) or len(name) > 64:
        raise ValueError("user name %r: give 1-64 characters without spaces" % name)
    if len(password) < 8:
        raise ValueError("the password of %s is too short: give at least 8 characters" % name)
    data = {"users": {}}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    data.setdefault("users", {})[name] = {"role": role, "hash": hash_password(password)}
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


class RateLimiter:
    """At most ``limit`` failed logins per ``window`` seconds per key (client address, user name)."""

    def __init__(self, limit: int = 5, window: float = 60.0) -> None:
        self.limit, self.window = limit, window
        self._failures: dict = {}
        self._lock = threading.Lock()
        self.refused = 0

    def _recent(self, key: str, now: float) -> deque:
        entries = self._failures.setdefault(key, deque())
        while entries and entries[0] < now - self.window:
            entries.popleft()
        return entries

    def blocked(self, *keys: str) -> float:
        """Seconds to wait before the next try (0 when allowed)."""
        now = time.monotonic()
        with self._lock:
            waits = [self._recent(k, now)[0] + self.window - now for k in keys if len(self._recent(k, now)) >= self.limit]
        return max(waits) if waits else 0.0

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

"""Bearer tokens of the REST API: created by `mlsysops api token create`, stored hashed.

A token is 32 random bytes (URL-safe base64, prefixed `mls_` so a leaked one is easy to grep
for); only its SHA-256 is written, in a JSON file of mode 0600 that the API re-reads when it
changes, so `token create` and `token revoke` take effect without restarting the daemon. The
token itself is shown once, at creation. Each record has a role, an optional expiry and a
revoked flag: a revoked token stays listed (who had access, and until when) but is refused.

Roles are ordered: viewer (reads) < operator (writes apps and devices) < admin (policies,
mode, tokens). A route names the least role it needs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

ROLES = ("viewer", "operator", "admin")
PREFIX = "mls_"


def role_rank(role: str) -> int:
    """Position of `role` in ROLES; ValueError naming the choices for an unknown one."""
    try:
        return ROLES.index(role)
    except ValueError:
        raise ValueError(f"role {role!r}: expected one of {', '.join(ROLES)}") from None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenRecord:
    id: str  # the first 12 hex digits of the hash: what `token list` shows and `revoke` takes
    name: str
    role: str
    sha256: str
    created: float
    expires: float | None = None  # epoch seconds; None: never
    revoked: bool = False

    def usable(self, now: float) -> bool:
        return not self.revoked and (self.expires is None or now < self.expires)

    def public(self) -> dict[str, Any]:
        """What listing shows (never the hash)."""
        out = asdict(self)
        out.pop("sha256")
        return out


class TokenError(Exception):
    """A token operation that cannot be done (unknown id, bad file)."""


class TokenStore:
    """The token file. Reads are cached until the file's mtime/size change; writes replace the
    file atomically with mode 0600 (never readable by others, even for an instant)."""

    def __init__(self, path: Path, clock: Any = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._by_hash: dict[str, TokenRecord] = {}

    # ------------------------------------------------------------------ reads

    def records(self) -> list[TokenRecord]:
        with self._lock:
            self._refresh()
            return sorted(self._by_hash.values(), key=lambda r: r.created)

    def authenticate(self, token: str) -> TokenRecord | None:
        """The usable record of `token`, or None (unknown, expired or revoked)."""
        with self._lock:
            self._refresh()
            record = self._by_hash.get(digest(token))
        if record is None or not record.usable(self.clock()):
            return None
        return record

    # ------------------------------------------------------------------ writes

    def create(self, role: str, name: str = "", ttl_seconds: float | None = None) -> tuple[str, TokenRecord]:
        """A new token (shown once) and its record."""
        role_rank(role)
        if ttl_seconds is not None and ttl_seconds <= 0:
            raise ValueError(f"ttl: expected a positive duration (got {ttl_seconds})")
        token = PREFIX + secrets.token_urlsafe(32)
        now = self.clock()
        hashed = digest(token)
        record = TokenRecord(
            hashed[:12],
            name or f"token-{hashed[:6]}",
            role,
            hashed,
            now,
            now + ttl_seconds if ttl_seconds else None,
        )
        with self._lock:
            self._refresh()
            self._by_hash[hashed] = record
            self._write()
        return token, record

    def revoke(self, id_or_name: str) -> TokenRecord:
        with self._lock:
            self._refresh()
            matches = [r for r in self._by_hash.values() if id_or_name in (r.id, r.name)]
            if len(matches) != 1:
                what = "no token" if not matches else f"{len(matches)} tokens"
                raise TokenError(f"{what} with id or name {id_or_name!r} (see `mlsysops api token list`)")
            revoked = replace(matches[0], revoked=True)
            self._by_hash[revoked.sha256] = revoked
            self._write()
            return revoked

    # ------------------------------------------------------------------ file

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._by_hash = None, {}
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            data = json.loads(self.path.read_text() or "{}")
            records = [TokenRecord(**r) for r in data.get("tokens", [])]
        except (ValueError, TypeError, AttributeError) as exc:
            raise TokenError(f"{self.path}: not a token file: {exc}") from None
        self._by_hash = {r.sha256: r for r in records}
        self._stamp = stamp

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"tokens": [asdict(r) for r in self._by_hash.values()]}, indent=1)
        fd, tmp = tempfile.mkstemp(prefix=".tokens-", dir=self.path.parent)  # mkstemp: mode 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        self._stamp = None  # re-read our own write on the next call (cheap, and always consistent)

"""Browser sessions of the web console: a random id in the cookie, the token behind it here.

Why a server-side id rather than the token in the cookie: the bearer token is a long-lived
credential that also works against /api/v1 from anywhere; keeping it out of the browser's
cookie jar means a stolen cookie is worth one console session (logout or a restart ends it),
never the token. The token is kept in memory beside the id and re-checked against the token
store on every request, so revoking or expiring a token ends its console sessions at once.

Each session also holds its CSRF token, which write forms carry in a hidden field.
Sessions live in memory only: a daemon restart logs everyone out (they log in again).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_TTL = 8 * 3600.0  # seconds a session lasts after login, whatever the token's own expiry


@dataclass(frozen=True)
class Session:
    id: str
    token: str  # the bearer token it was opened with (re-authenticated on every request)
    csrf: str
    expires: float

    def csrf_ok(self, given: str) -> bool:
        return hmac.compare_digest(self.csrf.encode(), given.encode())


class ConsoleSessions:
    """Open, find and close sessions; thread-safe (routes run in the threadpool)."""

    def __init__(self, ttl: float = DEFAULT_TTL, clock: Callable[[], float] = time.time) -> None:
        self.ttl, self.clock = ttl, clock
        self._lock = threading.Lock()
        self._by_id: dict[str, Session] = {}

    def open(self, token: str) -> Session:
        expires = self.clock() + self.ttl
        session = Session(secrets.token_urlsafe(32), token, secrets.token_urlsafe(32), expires)
        with self._lock:
            self._drop_expired()
            self._by_id[session.id] = session
        return session

    def find(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            session = self._by_id.get(session_id)
            if session is not None and session.expires <= self.clock():
                del self._by_id[session_id]
                return None
            return session

    def close(self, session_id: str | None) -> None:
        with self._lock:
            self._by_id.pop(session_id or "", None)

    def _drop_expired(self) -> None:
        now = self.clock()
        for sid in [sid for sid, s in self._by_id.items() if s.expires <= now]:
            del self._by_id[sid]

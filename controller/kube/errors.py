"""Kubernetes API failures as a few domain errors, translated in exactly one place.

The reconcile loop only needs to know what to do next: re-read and retry (Conflict), relist
(Gone), back off and retry (Unavailable), or give up on this object until it changes
(Invalid, Forbidden). Everything the client can raise is mapped here by `translate`.
"""

from __future__ import annotations

import json
from typing import Any


class KubeError(Exception):
    """A failed API request; `code` is the HTTP status (0 when the server was unreachable)."""

    temporary = False

    def __init__(self, message: str, code: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.message, self.code, self.reason = message, code, reason


class NotFound(KubeError):
    """The object (or its kind) does not exist."""


class Conflict(KubeError):
    """Stale resourceVersion, existing name, or a server-side-apply field conflict: re-read."""

    temporary = True


class Gone(KubeError):
    """The resourceVersion a watch started from was compacted away: list again."""

    temporary = True


class Unavailable(KubeError):
    """Unreachable, timed out, throttled or a 5xx: the same request may work later."""

    temporary = True


class NotReady(KubeError):
    """Written, but what must come first (a dependency, a relocation's new instance) is not
    Available yet: try again later without rewriting anything."""

    temporary = True


class Invalid(KubeError):
    """The server rejected the object (400/422/415): retrying the same object cannot help."""


class Forbidden(KubeError):
    """Not authenticated or not allowed (401/403)."""


_BY_CODE: dict[int, type[KubeError]] = {
    400: Invalid, 401: Forbidden, 403: Forbidden, 404: NotFound, 405: Invalid, 409: Conflict,
    410: Gone, 415: Invalid, 422: Invalid, 429: Unavailable,
}


def from_status(code: int, body: Any, fallback: str = "") -> KubeError:
    """Build the error for an HTTP status and its (Status-object) body."""
    message, reason = fallback or f"HTTP {code}", ""
    if isinstance(body, (bytes, str)):
        try:
            body = json.loads(body)
        except ValueError:
            body = {"message": body.decode(errors="replace") if isinstance(body, bytes) else body}
    if isinstance(body, dict):
        message = body.get("message") or message
        reason = body.get("reason") or ""
    cls = _BY_CODE.get(code, Unavailable if code >= 500 else KubeError)
    return cls(message, code, reason)


def translate(exc: BaseException) -> KubeError:
    """Any exception raised by the kubernetes client or urllib3 → a domain error."""
    if isinstance(exc, KubeError):
        return exc
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status:
        return from_status(status, getattr(exc, "body", None), str(getattr(exc, "reason", "")) or str(exc))
    return Unavailable(f"API server unreachable: {exc}")

"""Who is asking, and may they: bearer tokens and roles, checked per route.

Each route declares the least role it needs (`Depends(require("operator"))`). No token is 401
(unless `anonymous_loopback_role` is set and the client is on 127.0.0.1 or ::1: then it acts
with that role), an unknown, expired or revoked token is 401, a role below the route's is 403.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from controller.api.context import ApiContext
from controller.api.tokens import role_rank

LOOPBACK = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})

bearer = HTTPBearer(auto_error=False, description="A token from `mlsysops api token create --role ...`.")


@dataclass(frozen=True)
class Principal:
    name: str
    role: str


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.context
    return ctx


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


def require(role: str) -> Callable[..., Principal]:
    needed = role_rank(role)

    def check(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> Principal:
        ctx = context(request)
        if credentials is None:
            anonymous = ctx.settings.anonymous_loopback_role
            host = request.client.host if request.client else ""
            if anonymous is None or host not in LOOPBACK:
                raise _unauthorized(
                    "authentication required: send 'Authorization: Bearer <token>' "
                    "(create one with `mlsysops api token create`)"
                )
            principal = Principal("anonymous-loopback", anonymous)
        else:
            record = ctx.tokens.authenticate(credentials.credentials)
            if record is None:
                raise _unauthorized("token refused: unknown, expired or revoked")
            principal = Principal(record.name, record.role)
        if role_rank(principal.role) < needed:
            raise HTTPException(
                403, f"{principal.name} has role {principal.role}; this needs {role} or above"
            )
        return principal

    return check


VIEWER = [Depends(require("viewer"))]
OPERATOR = [Depends(require("operator"))]
ADMIN = [Depends(require("admin"))]

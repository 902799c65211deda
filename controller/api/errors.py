"""The one table from domain errors to HTTP answers.

Every failure a route can meet is one of: a bad description (DescriptionError, 422, with each
problem's field path), an object-store error (controller.kube.errors), or a port's PortError.
The body is always `{"detail": "<message>", ...}`, so the reference's clients, which print
`detail`, show the reason; `field` (and `problems` for descriptions) name what to fix.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from controller.api.ports import PortError
from controller.api.tokens import TokenError
from controller.kube.errors import Conflict, Forbidden, Gone, Invalid, KubeError, NotFound, Unavailable
from controller.model import DescriptionError

_KUBE_STATUS: tuple[tuple[type[KubeError], int], ...] = (
    (NotFound, 404),
    (Conflict, 409),
    (Gone, 410),
    (Invalid, 422),
    (Forbidden, 502),
    (Unavailable, 503),
)


class ApiError(Exception):
    """A refusal decided by a route itself (a name that does not match, an exists-already)."""

    def __init__(self, status: int, message: str, field: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


def _answer(status: int, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"detail": message, **{k: v for k, v in extra.items() if v}}, status_code=status)


def install(app: FastAPI) -> None:
    @app.exception_handler(DescriptionError)
    async def description(_: Request, exc: DescriptionError) -> JSONResponse:
        problems = [{"path": p.path, "expected": p.expected, "got": p.got} for p in exc.problems]
        return _answer(422, f"invalid description: {exc}", field=exc.path, problems=problems)

    @app.exception_handler(KubeError)
    async def store(_: Request, exc: KubeError) -> JSONResponse:
        status = next((s for cls, s in _KUBE_STATUS if isinstance(exc, cls)), 502)
        return _answer(status, f"object store: {exc.message}")

    @app.exception_handler(PortError)
    async def port(_: Request, exc: PortError) -> JSONResponse:
        return _answer(exc.status, exc.message, field=exc.field)

    @app.exception_handler(ApiError)
    async def refused(_: Request, exc: ApiError) -> JSONResponse:
        return _answer(exc.status, exc.message, field=exc.field)

    @app.exception_handler(TokenError)
    async def tokens(_: Request, exc: TokenError) -> JSONResponse:
        return _answer(500, f"token store: {exc}")

"""The one table from domain errors to gRPC status codes.

Servicer methods raise domain errors (nodeagent.errors, CorruptState, TooManyWatchers) and never
pick status codes themselves; `grpc_errors` applies this table at the edge. An unexpected
exception becomes INTERNAL with a generic message (the details go to the log, not the caller).
"""

from __future__ import annotations

import errno
import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import grpc

from nodeagent.errors import Forbidden, HostError, InvalidSpec, NodeAgentError, Unsupported, bounded
from nodeagent.service.store import CorruptState

log = logging.getLogger(__name__)

#: errno values after which the same call may well succeed: the caller should retry. ENOENT is a
#: file or group that vanished between the plan and its write (removed by someone else): the
#: next apply plans it anew.
TRANSIENT_ERRNOS = frozenset({errno.EBUSY, errno.EAGAIN, errno.EINTR, errno.ETIMEDOUT, errno.ENOENT})

#: Characters of a status message at most: gRPC sends it as trailing metadata (16 KiB in all).
MAX_STATUS_CHARS = 2048


class TooManyWatchers(NodeAgentError):
    """Every WatchEvents slot is taken (listen.max_watchers)."""


@dataclass(frozen=True)
class Row:
    error: type[Exception]
    code: grpc.StatusCode
    when: Callable[[Any], bool] = lambda _exc: True


#: First matching row wins: specific before general.
STATUS_TABLE: tuple[Row, ...] = (
    Row(InvalidSpec, grpc.StatusCode.INVALID_ARGUMENT),  # "field.path: reason"; nothing was written
    Row(Forbidden, grpc.StatusCode.PERMISSION_DENIED),  # authz.policy: the caller's role is not enough
    Row(Unsupported, grpc.StatusCode.FAILED_PRECONDITION),  # this node cannot do it (no cpufreq ...)
    Row(TooManyWatchers, grpc.StatusCode.RESOURCE_EXHAUSTED),
    Row(HostError, grpc.StatusCode.UNAVAILABLE, lambda exc: exc.errno in TRANSIENT_ERRNOS),
    Row(HostError, grpc.StatusCode.INTERNAL),  # a kernel write failed; what this call wrote was undone
    Row(CorruptState, grpc.StatusCode.DATA_LOSS),
    Row(NodeAgentError, grpc.StatusCode.INTERNAL),
)


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    for row in STATUS_TABLE:
        if isinstance(exc, row.error) and row.when(exc):
            return row.code, bounded(str(exc), MAX_STATUS_CHARS)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see the agent's log"


def _abort(context: grpc.ServicerContext, method: str, exc: Exception) -> NoReturn:
    code, message = status_for(exc)
    if isinstance(exc, NodeAgentError):
        log.info("rpc=%s status=%s error=%s", method, code.name, message)
    else:
        log.exception("rpc=%s status=%s unexpected error", method, code.name)
    context.abort(code, message)
    raise AssertionError("unreachable: context.abort raises")


F = TypeVar("F", bound=Callable[..., Any])


def grpc_errors(method: F) -> F:
    """Map exceptions of a unary servicer method through STATUS_TABLE."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as exc:
            _abort(context, method.__name__, exc)

    return wrapper  # type: ignore[return-value]


def grpc_stream_errors(method: F) -> F:
    """The same for a server-streaming method (a generator)."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from method(self, request, context)
        except Exception as exc:
            _abort(context, method.__name__, exc)

    return wrapper  # type: ignore[return-value]

"""What every call of the node API passes before a servicer method sees it.

A gRPC server interceptor, so it covers every method (those of other engineers' servicers
too) in one place:

- the request is decoded here, not by gRPC: a body that is not the method's message (garbage
  bytes, a Struct nested past protobuf's recursion limit) is INVALID_ARGUMENT naming the
  message, where gRPC's own decoder would answer INTERNAL ("Exception deserializing request!");
- the decoded request's lists and strings are checked against the limits (service/limits.py)
  before it is converted to anything, so a 50,000-entry list costs no 50,000 dicts;
- the message size limit is the server's (`grpc.max_receive_message_length`, set from the same
  RequestLimits in server.py), so an oversized body is refused before it is decoded;
- the caller is identified from what its transport proved (the unix socket's SO_PEERCRED via
  peercred.PeerTable, the TLS client certificate's CN and SANs) and authorised by the policy
  (service/authz.py) before the request is even decoded: PERMISSION_DENIED otherwise. The
  identity is available to the servicer through `caller()` (events name it as `requester`);
- after a large request (LARGE_REQUEST_BYTES) the memory it took is handed back to the kernel
  (glibc's malloc_trim): otherwise one hostile megabyte-sized burst leaves the agent's RSS high
  for good, as glibc keeps freed pages in its arenas.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import gc
import logging
import threading
from collections.abc import Callable
from typing import Any

import grpc

from nodeagent.api.errors import status_for
from nodeagent.api.peercred import PeerTable
from nodeagent.errors import InvalidSpec, NodeAgentError
from nodeagent.service.authz import ANONYMOUS, Identity, Policy
from nodeagent.service.limits import RequestLimits, check_message

log = logging.getLogger(__name__)

Behaviour = Callable[[Any, grpc.ServicerContext], Any]

#: Methods whose decoded request is checked against the limits field by field (the others are
#: small by shape, or belong to services that bound their own requests).
BOUNDED_METHODS = frozenset({"Apply", "ReportDevices", "SetTelemetryConfig", "WatchEvents"})

#: Requests at least this large are followed by a collection and a malloc_trim.
LARGE_REQUEST_BYTES = 256 * 1024

_CALLER: contextvars.ContextVar[Identity] = contextvars.ContextVar("caller", default=ANONYMOUS)


def caller() -> Identity:
    """The authenticated identity of the call this thread is serving."""
    return _CALLER.get()


def identify(context: grpc.ServicerContext, peers: PeerTable | None) -> Identity:
    """What the transport proved about the caller: a client certificate's names, else the
    uid/gid of a connection relayed from the unix socket, else anonymous."""
    auth: dict[str, Any] = dict(context.auth_context())  # grpc's stub types the values as bytes: lists
    names = [f"cn:{v.decode(errors='replace')}" for v in auth.get("x509_common_name", ())]
    names += [f"san:{v.decode(errors='replace')}" for v in auth.get("x509_subject_alternative_name", ())]
    if names:
        return Identity(names=tuple(names))
    if peers is not None and (relayed := peers.identity(context.peer())) is not None:
        return relayed
    return ANONYMOUS


def trim_heap() -> None:
    """Collect, then hand glibc's free pages back to the kernel (it keeps them otherwise)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: its allocator decides
        ctypes.CDLL(None).malloc_trim(0)


class Trimmer:
    """Runs `action` `delay_s` after a request for it, and again after the last one of a burst.

    The delay lets gRPC free the request's buffers first. A request that comes while a run is
    pending sets it to run once more afterwards (a trailing edge): otherwise the memory of
    the burst's last large request, freed after the pending run, would stay until the next."""

    def __init__(self, delay_s: float, action: Callable[[], None] = trim_heap) -> None:
        self._delay_s = delay_s
        self._action = action
        self._lock = threading.Lock()
        self._pending = False
        self._again = False

    def request(self) -> None:
        with self._lock:
            if self._pending:
                self._again = True
                return
            self._pending = True
        self._arm()

    def _arm(self) -> None:
        timer = threading.Timer(self._delay_s, self._run)
        timer.daemon = True
        timer.start()

    def _run(self) -> None:
        try:
            self._action()
        finally:
            with self._lock:
                again, self._again = self._again, False
                self._pending = again
            if again:
                self._arm()


_TRIMMER = Trimmer(0.2)


def release_memory() -> None:
    """Give what a large request allocated back to the kernel, shortly after the call (once
    gRPC has freed the request's buffers too), once for a burst and after its last request."""
    _TRIMMER.request()


class RequestGuard(grpc.ServerInterceptor):
    """Decode each request itself (see the module docstring) for methods below `prefix`."""

    def __init__(
        self,
        prefix: str,
        policy: Policy | None = None,
        peers: PeerTable | None = None,
        limits: RequestLimits | None = None,
    ) -> None:
        self._prefix = prefix
        self._policy = policy
        self._peers = peers
        self._limits = limits or RequestLimits()
        # method -> the guarded handler, built on its first call: gRPC asks on every call, and
        # building two closures and a handler each time was a tenth of a one-knob Apply. Only
        # registered methods are kept (an unknown name is not: callers could invent any number).
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if not method.startswith(self._prefix):
            return continuation(handler_call_details)
        if (known := self._handlers.get(method)) is not None:
            return known
        guarded = self._guard(continuation(handler_call_details), method)
        if guarded is not None:
            self._handlers[method] = guarded
        return guarded

    def _guard(self, handler: grpc.RpcMethodHandler | None, method: str) -> grpc.RpcMethodHandler | None:
        if handler is None or handler.request_deserializer is None:
            return handler
        decode = handler.request_deserializer
        name = method.rpartition("/")[2]
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._guarded(handler.unary_unary, decode, name),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._guarded(handler.unary_stream, decode, name),
                response_serializer=handler.response_serializer,
            )
        return handler  # no client-streaming methods in this API


    def _guarded(self, behaviour: Behaviour, decode: Callable[[bytes], Any], name: str) -> Behaviour:
        def call(raw: bytes, context: grpc.ServicerContext) -> Any:
            identity = identify(context, self._peers)
            try:
                if self._policy is not None:
                    self._policy.check(name, identity)
                try:
                    request = decode(raw)
                except Exception as exc:  # DecodeError, RecursionError: either way not our message
                    reason = f"is not a valid {name} request ({type(exc).__name__})"
                    raise InvalidSpec("request", reason) from None
                if name in BOUNDED_METHODS:
                    check_message(request, self._limits)
            except NodeAgentError as error:
                if len(raw) >= LARGE_REQUEST_BYTES:
                    release_memory()
                code, message = status_for(error)
                log.info("rpc=%s caller=%s status=%s error=%s", name, identity.label, code.name, message)
                context.abort(code, message)
            token = _CALLER.set(identity)
            try:
                return behaviour(request, context)
            finally:
                _CALLER.reset(token)
                if len(raw) >= LARGE_REQUEST_BYTES:
                    del request
                    release_memory()

        return call

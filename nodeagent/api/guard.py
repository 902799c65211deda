"""What every call of the node API passes before a servicer method sees it.

A gRPC server interceptor, so it covers every method (those of other engineers' servicers
too) in one place:

- the request is decoded here, not by gRPC: a body that is not the method's message (garbage
  bytes, a Struct nested past protobuf's recursion limit) is INVALID_ARGUMENT naming the
  message, where gRPC's own decoder would answer INTERNAL ("Exception deserializing request!");
- the message size limit is the server's (`grpc.max_receive_message_length`, set from the same
  RequestLimits in server.py), so an oversized body is refused before it is decoded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc

from nodeagent.api.errors import status_for
from nodeagent.errors import InvalidSpec

log = logging.getLogger(__name__)

Behaviour = Callable[[Any, grpc.ServicerContext], Any]


class RequestGuard(grpc.ServerInterceptor):
    """Decode each request itself (see the module docstring) for methods below `prefix`."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(self._prefix) or handler.request_deserializer is None:
            return handler
        decode = handler.request_deserializer
        name = method.rpartition("/")[2]
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _decoded(handler.unary_unary, decode, name),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _decoded(handler.unary_stream, decode, name),
                response_serializer=handler.response_serializer,
            )
        return handler  # no client-streaming methods in this API


def _decoded(behaviour: Behaviour, decode: Callable[[bytes], Any], name: str) -> Behaviour:
    def call(raw: bytes, context: grpc.ServicerContext) -> Any:
        try:
            request = decode(raw)
        except Exception as exc:  # DecodeError, RecursionError: either way not our message
            error = InvalidSpec("request", f"is not a valid {name} request ({type(exc).__name__})")
            code, message = status_for(error)
            log.info("rpc=%s status=%s error=%s", name, code.name, message)
            context.abort(code, message)
        return behaviour(request, context)

    return call

"""What can go wrong in a call to a node agent, as a few domain errors, from one table.

`STATUS_ERRORS` is the only mapping from gRPC status codes (by name, so this module needs no
grpc) to errors: each error says who should act (the caller's input was rejected, the agent is
unreachable or busy and a retry may succeed, the node cannot do it, we were refused, the agent
failed) and carries the message a person reads. The CLI turns the class into an exit code,
the controller into a retry decision; neither looks at status codes.
"""

from __future__ import annotations

from typing import ClassVar


class NodeApiError(Exception):
    """A node agent call failed. `temporary`: retrying later may succeed."""

    temporary: ClassVar[bool] = False

    def __init__(self, message: str, *, target: str, method: str, code: str, details: str) -> None:
        super().__init__(message)
        self.target = target
        self.method = method
        self.code = code
        self.details = details


class Rejected(NodeApiError):
    """The agent refused the request as invalid; nothing was changed."""


class Unreachable(NodeApiError):
    """The agent could not be reached or did not answer in time."""

    temporary = True


class Busy(NodeApiError):
    """The agent is overloaded or the call collided with another; retry later."""

    temporary = True


class NotPossible(NodeApiError):
    """The node cannot do this (missing feature, precondition, call not implemented)."""


class Refused(NodeApiError):
    """The agent did not accept our identity or our role."""


class AgentFailed(NodeApiError):
    """The agent failed while doing what was asked."""


STATUS_ERRORS: dict[str, tuple[type[NodeApiError], str]] = {
    "INVALID_ARGUMENT": (Rejected, "rejected by the agent, nothing was changed: {details}"),
    "OUT_OF_RANGE": (Rejected, "rejected by the agent, nothing was changed: {details}"),
    "UNAVAILABLE": (Unreachable, "the node agent is not reachable at {target} ({details})"),
    "DEADLINE_EXCEEDED": (Unreachable, "the node agent at {target} did not answer in time"),
    "RESOURCE_EXHAUSTED": (Busy, "the node agent at {target} is busy: {details}"),
    "ABORTED": (Busy, "the node agent at {target} aborted the call, retry: {details}"),
    "FAILED_PRECONDITION": (NotPossible, "not possible on this node: {details}"),
    "UNIMPLEMENTED": (NotPossible, "the agent at {target} does not implement this call: {details}"),
    "PERMISSION_DENIED": (Refused, "permission denied by the agent at {target}: {details}"),
    "UNAUTHENTICATED": (Refused, "the agent at {target} refused our credentials: {details}"),
}
_OTHER = (AgentFailed, "the agent failed ({code}): {details}")


def error_for_status(code: str, details: str, *, target: str, method: str) -> NodeApiError:
    """The domain error for a gRPC status code name (e.g. "UNAVAILABLE") and its details."""
    details = details or code.lower()
    kind, template = STATUS_ERRORS.get(code, _OTHER)
    message = template.format(target=target, details=details, code=code)
    return kind(message, target=target, method=method, code=code, details=details)

"""The few domain errors of the node agent.

Adapters translate errno / netlink / subprocess failures into these at their edge; the gRPC
layer maps them to status codes in exactly one table (nodeagent/api), the CLI to messages.
"""

from __future__ import annotations


class NodeAgentError(Exception):
    """Base of every error the agent reports to a caller."""


class InvalidSpec(NodeAgentError):
    """The request is wrong; nothing was written. Maps to INVALID_ARGUMENT.

    `field` is the path of the offending field in the profile, e.g.
    `cgroups.groups[2].cpu_quota_us`, so a user can find it in a file of hundreds of lines.
    """

    def __init__(self, field: str, reason: str) -> None:
        field, reason = bounded(field), bounded(reason, 2 * QUOTE_CHARS)  # input quoted may be huge
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class Unsupported(NodeAgentError):
    """This node cannot do what was asked (no cpufreq, no such qdisc). Maps to FAILED_PRECONDITION."""


class HostError(NodeAgentError):
    """A read or write of a host object failed (errno, netlink error). Maps to INTERNAL/UNAVAILABLE.

    `key` names the knob, `errno` is kept so callers can tell EINVAL from EACCES.
    """

    def __init__(self, key: str, message: str, errno: int | None = None) -> None:
        key, message = bounded(key), bounded(message, 2 * QUOTE_CHARS)
        super().__init__(f"{key}: {message}")
        self.key = key
        self.errno = errno


#: How much of a caller's input an error or log line quotes at most.
QUOTE_CHARS = 200


def bounded(text: str, limit: int = QUOTE_CHARS) -> str:
    """`text`, cut to a prefix of `limit` characters that says how long the whole was: errors
    and logs quote input, and input may be megabytes."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


class Forbidden(NodeAgentError):
    """The caller is authenticated but its role does not allow the call. Maps to PERMISSION_DENIED."""

"""The one client of the node agent's API (`mlsysops.nodeconfig.v1`), shared by every caller.

The node CLI, the controller (node settings, inventory) and the far-edge bridge (device
inventory) all reach node agents through `NodeAgentClient`: one target syntax, one TLS set-up,
one mapping of gRPC failures to the domain errors in `errors`. Callers never import grpc.

`NodeAgentClient` (and with it grpc, ~60 ms and 10 MiB) loads when first asked for: the
target syntax and errors are all that command-line tools such as `mlsysops devices flash`
need of this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlsysops.nodeapi.errors import (
    AgentFailed,
    Busy,
    NodeApiError,
    NotPossible,
    Refused,
    Rejected,
    Unreachable,
)
from mlsysops.nodeapi.target import DEFAULT_TARGET, TARGET_ENV, TargetError, TlsFiles, check_target

if TYPE_CHECKING:
    from mlsysops.nodeapi.client import NodeAgentClient

__all__ = [
    "DEFAULT_TARGET",
    "TARGET_ENV",
    "AgentFailed",
    "Busy",
    "NodeAgentClient",
    "NodeApiError",
    "NotPossible",
    "Refused",
    "Rejected",
    "TargetError",
    "TlsFiles",
    "Unreachable",
    "check_target",
]


def __getattr__(name: str) -> Any:
    if name == "NodeAgentClient":
        from mlsysops.nodeapi.client import NodeAgentClient

        return NodeAgentClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

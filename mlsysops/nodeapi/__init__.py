"""The one client of the node agent's API (`mlsysops.nodeconfig.v1`), shared by every caller.

The node CLI, the controller (node settings, inventory) and the far-edge bridge (device
inventory) all reach node agents through `NodeAgentClient`: one target syntax, one TLS set-up,
one mapping of gRPC failures to the domain errors in `errors`. Callers never import grpc.
"""

from mlsysops.nodeapi.client import NodeAgentClient
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

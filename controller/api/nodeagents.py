"""NodeStates over the node agents' gRPC API (mlsysops.nodeapi's client): where each setting
stands on the node, for the console's nodes page (desired, actual, drifted).

Reachable only where the API reaches the agents' sockets (one machine: the embedded mode); a
short timeout, so a page with a dead agent still renders, saying so.
"""

from __future__ import annotations

from typing import Any

from controller.api.ports import PortError
from mlsysops.nodeapi import NodeAgentClient, NodeApiError

TIMEOUT_S = 2.0


class AgentStates:
    def __init__(self, timeout_s: float = TIMEOUT_S) -> None:
        self.timeout_s = timeout_s

    def knobs(self, target: str) -> list[dict[str, Any]]:
        try:
            with NodeAgentClient(target, timeout=self.timeout_s) as client:
                state = client.state()
        except NodeApiError as exc:
            raise PortError(f"node agent at {target}: {exc.code}: {exc.details}", 503) from None
        return [
            {
                "mechanism": k.mechanism,
                "key": k.key,
                "desired": k.desired if k.HasField("desired") else None,
                "actual": k.actual if k.HasField("actual") else None,
                "drifted": k.drifted,
            }
            for k in state.knobs
        ]

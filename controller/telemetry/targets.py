"""What a private Prometheus scrapes: each node agent's /metrics, as the agent itself reports it.

An agent knows where it serves /metrics (GetTelemetryConfig's metrics_endpoint) and its node
name (GetInventory); asking it avoids a second copy of every agent's config in the
controller's. An agent that serves no /metrics, or does not answer, is left out and reported
(the caller logs or prints why), never fatal: performance then lacks that node's workloads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from controller.telemetry.prometheus import PrometheusProcess
from controller.telemetry.scrape import ScrapeTarget
from mlsysops.nodeapi import NodeAgentClient
from mlsysops.nodeapi.errors import NodeApiError


@dataclass(frozen=True)
class Discovered:
    targets: tuple[ScrapeTarget, ...]
    skipped: tuple[str, ...]  # "<agent target>: <why>"


def agent_scrape_targets(agents: Sequence[str], timeout: float = 5.0) -> Discovered:
    """One `nodeagent` target per agent that serves /metrics, labelled with its node name."""
    found: list[ScrapeTarget] = []
    skipped: list[str] = []
    for target in agents:
        try:
            with NodeAgentClient(target, timeout=timeout) as client:
                endpoint = client.telemetry_config().metrics_endpoint
                node = client.inventory().node_name
        except NodeApiError as exc:
            skipped.append(f"{target}: {exc}")
            continue
        if not endpoint:
            skipped.append(f"{target}: serves no /metrics (telemetry.metrics_listen is '')")
            continue
        found.append(ScrapeTarget("nodeagent", endpoint, {"node": node, "agent": target}))
    return Discovered(tuple(found), tuple(skipped))


def start_for_agents(
    process: PrometheusProcess, agents: Sequence[str], extra: Sequence[ScrapeTarget] = ()
) -> Discovered:
    """Start `process` scraping every agent that serves /metrics, plus `extra` targets (the
    bridges'); what was left out is in the answer."""
    discovered = agent_scrape_targets(agents)
    process.start([*discovered.targets, *extra])
    return discovered

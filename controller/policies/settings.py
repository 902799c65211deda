"""Node-level settings a placement implies, as node-agent Profile sections (proto-JSON form).

- `qos_metrics[].system_metrics_hints: [cpu_frequency]` → the node's cpufreq governor set to
  `performance`, when the node allows the `cpu_frequency` action and its agent can drive
  cpufreq. The reference stores this hint and ignores it; we act on it.
- cpu/memory limits of the containers → a cgroup `<namespace>/<app>/<component>` (relative to
  the agent's cgroup root) with cpu.max and memory.max, so the node agent enforces them for
  workloads it runs (the `local` mechanism) and reports drift.

Each returned note says what was decided and why, for the explanation.

Telemetry is declared the same way (`telemetry_needs`): what a placement relies on, per node
agent collector, with the freshness it needs (the collector's interval). The nodeagent
mechanism merges every app's needs per node (the freshest wins) and re-times the agent's
collectors live with SetTelemetryConfig.
"""

from __future__ import annotations

from typing import Any

from controller.inventory import NodeInfo
from controller.model import App, Component

CPU_PERIOD_US = 100_000


def node_settings(app: App, comp: Component, node: NodeInfo) -> tuple[dict[str, Any], list[str]]:
    if node.agent_target is None:  # nothing could apply node settings there
        hinted = "cpu_frequency" in comp.system_metrics_hints
        return {}, [f"cpu_frequency hint not applied: node {node.name} has no node agent"] if hinted else []
    sections: dict[str, Any] = {}
    notes: list[str] = []
    if "cpu_frequency" in comp.system_metrics_hints:
        if not node.permits("cpu_frequency"):
            notes.append(f"cpu_frequency hint not applied: node {node.name} does not permit cpu_frequency")
        elif not node.cpufreq_available:
            notes.append(f"cpu_frequency hint not applied: no cpufreq on node {node.name}")
        else:
            sections["cpufreq"] = {"settings": [{"cpus": "", "governor": "performance"}]}
            notes.append("cpufreq governor performance (qos_metrics hint cpu_frequency)")
    limits = comp.resources
    group: dict[str, Any] = {}
    if limits.cpu_limit_millis is not None:
        group["cpu_quota_us"] = limits.cpu_limit_millis * CPU_PERIOD_US // 1000
        group["cpu_period_us"] = CPU_PERIOD_US
    if limits.memory_limit_bytes is not None:
        group["memory_max_bytes"] = limits.memory_limit_bytes
    if group:
        sections["cgroups"] = {"groups": [{"path": f"{app.namespace}/{app.name}/{comp.name}", **group}]}
        notes.append("cgroup limits from platform_requirements")
    return sections, notes


#: collector -> interval (ms) a placement needs, by what the component asks for (knobs as data)
QOS_COLLECTORS = {"cpu": 5_000, "memory": 5_000}  # QoS targets: relocation reads node load
CPUFREQ_COLLECTOR = {"cpufreq": 2_000}  # a governor the controller set: watch it hold
CGROUP_COLLECTOR = {"cgroups": 10_000}  # limits the controller set: their usage and drift


def telemetry_needs(comp: Component, node: NodeInfo, settings: dict[str, Any]) -> dict[str, int]:
    """The node agent collectors (name -> interval ms) this placement needs; {} without an agent."""
    if node.agent_target is None:
        return {}
    needs: dict[str, int] = {}
    parts = [QOS_COLLECTORS if comp.qos_metrics else {}, CPUFREQ_COLLECTOR if "cpufreq" in settings else {},
             CGROUP_COLLECTOR if "cgroups" in settings else {}]
    for part in parts:
        for name, interval in part.items():
            needs[name] = min(interval, needs.get(name, interval))
    return needs

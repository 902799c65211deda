"""The tables `mlsysops node` prints: pure functions from API messages to text."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.message import Message

from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb
from mlsysops.output import table


def _opt(message: Message, field: str) -> str:
    return str(getattr(message, field)) if message.HasField(field) else "-"


def render_writes(response: pb.ApplyResponse | pb.ResetResponse, dry_run: bool, done: str) -> str:
    rows = [(w.mechanism, w.key, _opt(w, "before"), _opt(w, "after")) for w in response.writes]
    summary = f"dry run: {len(rows)} writes planned, nothing written" if dry_run else done
    body = table(rows, ["mechanism", "key", "before", "after"]) + "\n" if rows else ""
    return body + summary


def render_state(s: pb.NodeState) -> str:
    rows = [
        (
            k.mechanism,
            k.key,
            _opt(k, "desired"),
            _opt(k, "actual"),
            _opt(k, "original"),
            "yes" if k.drifted else "",
        )
        for k in s.knobs
    ]
    last = s.last_apply.ToDatetime().isoformat(timespec="seconds") if s.HasField("last_apply") else "never"
    head = f"generation {s.generation}, {s.drifted} drifted, last apply {last}"
    if not rows:
        return head + "\nno desired profile: nothing is managed"
    return head + "\n" + table(rows, ["mechanism", "key", "desired", "actual", "original", "drifted"])


def render_telemetry(config: pb.TelemetryConfig) -> str:
    rows = [(c.name, "on" if c.enabled else "off", _duration(c.interval_ms)) for c in config.collectors]
    endpoint = config.metrics_endpoint or "off"
    return table(rows, ["collector", "enabled", "interval"]) + f"\nmetrics endpoint: {endpoint}"


def _duration(ms: int) -> str:
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _khz(value: int) -> str:
    return f"{value / 1e6:g} GHz" if value >= 1_000_000 else f"{value / 1e3:g} MHz"


def render_inventory(inv: pb.Inventory) -> str:
    sections = [
        table(
            [
                (
                    inv.node_name,
                    inv.architecture,
                    f"{inv.memory_bytes / 2**30:.1f} GiB",
                    inv.agent_version,
                    inv.api_version,
                )
            ],
            ["node", "arch", "memory", "agent", "api"],
        )
    ]
    cpus = [
        (
            c.id,
            c.governor,
            _khz(c.scaling_min_khz),
            _khz(c.scaling_max_khz),
            _khz(c.current_khz),
            " ".join(c.available_governors),
        )
        if c.cpufreq_available
        else (c.id, "no cpufreq", "", "", "", "")
        for c in inv.cpus
    ]
    sections.append(table(cpus, ["cpu", "governor", "min", "max", "current", "governors"]))
    controllers = [(c.name, c.version, c.mount) for c in inv.cgroup.controllers]
    sections.append(
        f"cgroup {inv.cgroup.version or '-'}, root {inv.cgroup.root or '-'}\n"
        + table(controllers, ["controller", "version", "mount"])
    )
    interfaces = [
        (i.name, i.netns or "-", i.state, i.mtu, i.root_qdisc or "-") for i in inv.network.interfaces
    ]
    sections.append(table(interfaces, ["interface", "netns", "state", "mtu", "qdisc"]))
    features = [(f.name, "yes" if f.supported else "no", f.reason) for f in inv.network.features]
    mechanisms = [(m.name, "yes" if m.available else "no", m.reason) for m in inv.mechanisms]
    sections.append(table(mechanisms, ["mechanism", "available", "reason"]))
    sections.append(table(features, ["feature", "supported", "reason"]))
    if inv.runtimes:
        sections.append(render_runtimes(inv.runtimes))
    if inv.devices:
        devices = [
            (d.id, d.kind, d.transport, "yes" if d.online else "no", ",".join(d.sensors)) for d in inv.devices
        ]
        sections.append(table(devices, ["device", "kind", "transport", "online", "sensors"]))
    return "\n\n".join(sections)


def render_runtimes(runtimes: Sequence[pb.Runtime]) -> str:
    rows = [
        (r.handler, "yes" if r.available else "no", r.runtime_class_name, r.version, r.reason)
        for r in runtimes
    ]
    return table(rows, ["runtime", "available", "runtimeclass", "version", "reason"])


def render_workloads(workloads: Sequence[pb.Workload]) -> str:
    rows = [
        (w.spec.name, w.spec.handler, w.status, w.pid or "-", w.spec.image, " ".join(w.spec.args))
        for w in workloads
    ]
    return (
        table(rows, ["workload", "handler", "status", "pid", "image", "command"]) if rows else "no workloads"
    )


def render_switch(result: pb.SwitchRuntimeResponse) -> str:
    lines = [f"{result.outcome}: now on {result.handler or 'nothing (down)'}"]
    lines += [f"  {step}" for step in result.steps]
    return "\n".join(lines + ([f"error: {result.error}"] if result.error else []))

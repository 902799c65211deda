"""The Grafana dashboards (fleet, node, devices, app) from one declaration.

Each dashboard is a few frozen values (its variables and panels, each panel a title, a unit
and PromQL queries); `render` turns one into the JSON Grafana imports, the same way for every
panel: one Prometheus datasource variable, `All` for every label variable, panels laid out
two to a row. Hand-edited JSON drifts apart (ids, datasources, units); this file is the only
source, and tests/packaging/test_observability.py checks the committed JSON equals its output
and runs every query against a Prometheus scraping the real daemons.

    python deploy/observability/dashboards.py          # rewrite dashboards/*.json
    python deploy/observability/dashboards.py --check  # exit 1 when a committed file differs

Queries may use `$__rate_interval` and the dashboard's variables as `=~"$name"` matchers
(Grafana substitutes a regex; `All` is `.*`). Metric names are the daemons' own (nodeagent/
telemetry, faredge/metrics.py, controller/reconcile/metrics.py) and the recording rules'
(rules/mlsysops.rules.yml).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39
WIDTH, HEIGHT = 12, 8  # a half-row panel (Grafana's grid is 24 wide)


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str  # a Grafana unit id: short, bytes, s, Bps, hertz, percentunit, ...
    queries: tuple[Query, ...]
    description: str
    kind: str = "timeseries"  # or stat, table


@dataclass(frozen=True)
class Variable:
    """A label variable filled from `label_values(metric, label)`; `regex` extracts the value."""

    name: str  # as queries use it: $name
    title: str
    metric: str
    source_label: str  # the label whose values it offers
    regex: str = ""


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    variables: tuple[Variable, ...]
    panels: tuple[Panel, ...]


def q(expr: str, legend: str = "") -> tuple[Query, ...]:
    return (Query(expr, legend),)


NODE = 'node=~"$node"'
BRIDGE_DEVICE = 'bridge=~"$bridge",device=~"$device"'
APP = 'workload=~"$app\\\\..*"'  # workloads are named <app>.<component>.<replica>
RATE = "[$__rate_interval]"
WORKLOAD_CPU = "mlsysops_nodeagent_workload_cpu_usage_seconds_total"
WORKLOAD_MEMORY = "mlsysops_nodeagent_workload_memory_usage_bytes"

FLEET = Dashboard(
    "mlsysops-fleet",
    "MLSysOps / Fleet",
    "The continuum at a glance: agents and bridges up, devices online and in sync, applies, drift, OTA,"
    " apps.",
    (),
    (
        Panel("Node agents up", "short", q('sum(up{job="nodeagent"})'), "Agents Prometheus scraped.", "stat"),
        Panel(
            "Node agents down",
            "short",
            q('count(up{job="nodeagent"} == 0) or vector(0)'),
            "Agents whose last scrape failed (MlsysopsNodeAgentDown after 2 minutes).",
            "stat",
        ),
        Panel("Bridges up", "short", q('sum(up{job="faredge"})'), "Bridges Prometheus scraped.", "stat"),
        Panel(
            "Devices online",
            "short",
            q("sum(bridge:faredge_devices_online:sum)"),
            "Far-edge devices online over every bridge.",
            "stat",
        ),
        Panel(
            "Devices out of sync",
            "short",
            q("sum(bridge:faredge_devices_out_of_sync:sum)"),
            "Devices whose twin has not reported the desired version.",
            "stat",
        ),
        Panel(
            "Firing alerts",
            "short",
            q('count(ALERTS{alertstate="firing",alertname=~"Mlsysops.*"}) or vector(0)'),
            "MLSysOps alerts firing now (rules/mlsysops.rules.yml).",
            "stat",
        ),
        Panel(
            "Applies per second",
            "reqps",
            q("node:mlsysops_nodeagent_applies:rate5m", "{{node}}"),
            "Apply requests per node, every outcome.",
        ),
        Panel(
            "Failed applies per second",
            "reqps",
            q("node:mlsysops_nodeagent_apply_failures:rate5m", "{{node}}"),
            "Applies the host or a plugin refused (invalid profiles are not failures).",
        ),
        Panel(
            "Drifted knobs",
            "short",
            q("node:mlsysops_nodeagent_drifted_knobs:sum", "{{node}}"),
            "Knobs whose actual value differs from the desired one, per node.",
        ),
        Panel(
            "OTA updates ended (1 h)",
            "short",
            q("bridge_outcome:faredge_ota_updates:increase1h", "{{bridge}} {{outcome}}"),
            "Over-the-air updates that ended in the last hour, per bridge and outcome.",
        ),
        Panel(
            "Apps by phase",
            "short",
            q("sum by (phase) (mlsysops_controller_app_phase)", "{{phase}}"),
            "The controller's apps per status phase (Deployed, Degraded, Failed, ...).",
        ),
        Panel(
            "Apps not placed or missing QoS",
            "short",
            (
                Query("mlsysops_controller_app_components_unplaced > 0", "{{namespace}}/{{app}} unplaced"),
                Query(
                    "sum by (namespace, app, component, metric) (mlsysops_controller_app_qos_violations)",
                    "{{namespace}}/{{app}} {{component}} {{metric}}",
                ),
            ),
            "Components no node fits, and QoS violations monitoring reports, per app"
            " (MlsysopsPlacementImpossible, MlsysopsAppQosTargetMissed).",
            "table",
        ),
    ),
)

NODE_DASHBOARD = Dashboard(
    "mlsysops-node",
    "MLSysOps / Node",
    "One node as its agent sees it: CPU, memory, network, cgroups, applies, drift and the agent itself.",
    (Variable("node", "Node", 'up{job="nodeagent"}', "node"),),
    (
        Panel(
            "CPU busy",
            "percentunit",
            q(
                f'1 - avg by (node) (rate(mlsysops_nodeagent_cpu_seconds_total{{{NODE},mode="idle"}}{RATE}))',
                "{{node}}",
            ),
            "Share of CPU time not idle, over all CPUs.",
        ),
        Panel(
            "Load average (1 min)",
            "short",
            q(f"mlsysops_nodeagent_load1{{{NODE}}}", "{{node}}"),
            "The kernel's 1-minute load average.",
        ),
        Panel(
            "Memory",
            "bytes",
            (
                Query(f"mlsysops_nodeagent_memory_total_bytes{{{NODE}}}", "{{node}} total"),
                Query(f"mlsysops_nodeagent_memory_available_bytes{{{NODE}}}", "{{node}} available"),
            ),
            "Physical memory, total and available.",
        ),
        Panel(
            "Network traffic",
            "Bps",
            (
                Query(
                    f"rate(mlsysops_nodeagent_network_receive_bytes_total{{{NODE}}}{RATE})",
                    "{{node}} {{device}} in",
                ),
                Query(
                    f"rate(mlsysops_nodeagent_network_transmit_bytes_total{{{NODE}}}{RATE})",
                    "{{node}} {{device}} out",
                ),
            ),
            "Bytes per second per interface of the agent's network namespace.",
        ),
        Panel(
            "CPU frequency",
            "hertz",
            q(f"mlsysops_nodeagent_cpu_scaling_frequency_hertz{{{NODE}}}", "{{node}} cpu{{cpu}}"),
            "Current scaling frequency per CPU (cpufreq).",
        ),
        Panel(
            "Cgroup CPU usage",
            "short",
            q(
                f"rate(mlsysops_nodeagent_cgroup_cpu_usage_seconds_total{{{NODE}}}{RATE})",
                "{{node}} {{cgroup}}",
            ),
            "CPU cores used per managed cgroup.",
        ),
        Panel(
            "Cgroup memory",
            "bytes",
            q(f"mlsysops_nodeagent_cgroup_memory_usage_bytes{{{NODE}}}", "{{node}} {{cgroup}}"),
            "Memory charged per managed cgroup.",
        ),
        Panel(
            "Apply duration (p99)",
            "s",
            q(
                "histogram_quantile(0.99, sum by (node, le) ("
                f'rate(mlsysops_nodeagent_apply_duration_seconds_bucket{{{NODE},dry_run="false"}}{RATE})))',
                "{{node}}",
            ),
            "99th percentile of Apply requests, validation to last write.",
        ),
        Panel(
            "Knob writes per second",
            "wps",
            q(f"rate(mlsysops_nodeagent_writes_total{{{NODE}}}{RATE})", "{{node}}"),
            "Writes the agent made on the host (dry runs excluded).",
        ),
        Panel(
            "Drifted knobs",
            "short",
            q(f"mlsysops_nodeagent_drifted_knobs{{{NODE}}}", "{{node}} {{mechanism}}"),
            "Knobs differing from the desired value at the last drift check, per mechanism.",
        ),
        Panel(
            "Drift events",
            "short",
            q(
                f"increase(mlsysops_nodeagent_drift_events_total{{{NODE}}}{RATE})",
                "{{node}} {{mechanism}}",
            ),
            "Knobs found drifted (one per knob and check).",
        ),
        Panel(
            "Agent errors",
            "short",
            q(f"increase(mlsysops_nodeagent_errors_total{{{NODE}}}{RATE})", "{{node}} {{kind}}"),
            "Errors the agent reported, by kind.",
        ),
        Panel(
            "Agent memory",
            "bytes",
            q(f"mlsysops_nodeagent_process_resident_memory_bytes{{{NODE}}}", "{{node}}"),
            "Resident memory of the agent process.",
        ),
        Panel(
            "Agent CPU",
            "short",
            q(f"rate(mlsysops_nodeagent_process_cpu_seconds_total{{{NODE}}}{RATE})", "{{node}}"),
            "CPU cores the agent process uses.",
        ),
        Panel(
            "Collectors failing",
            "short",
            q(f"mlsysops_nodeagent_collector_success{{{NODE}}} == 0", "{{node}} {{collector}}"),
            "Telemetry collectors whose last sample failed.",
            "table",
        ),
        Panel(
            "Collector duration",
            "s",
            q(f"mlsysops_nodeagent_collector_duration_seconds{{{NODE}}}", "{{node}} {{collector}}"),
            "How long each collector's last sample took.",
        ),
    ),
)

DEVICES = Dashboard(
    "mlsysops-devices",
    "MLSysOps / Devices",
    "Far-edge devices behind their bridges: online, twin in sync, readings, health, OTA and the links.",
    (
        Variable("bridge", "Bridge", 'up{job="faredge"}', "bridge"),
        Variable("device", "Device", "faredge_device_online", "device"),
    ),
    (
        Panel(
            "Online",
            "short",
            q(f"faredge_device_online{{{BRIDGE_DEVICE}}}", "{{device}}"),
            "1 while the device is online (a count for 'other', the devices past the label cap).",
            "table",
        ),
        Panel(
            "Twin in sync",
            "short",
            q(f"faredge_device_twin_in_sync{{{BRIDGE_DEVICE}}}", "{{device}}"),
            "1 when the device reported the desired settings version.",
            "table",
        ),
        Panel(
            "Messages per second",
            "short",
            q(
                f"sum by (device, kind) (rate(faredge_messages_total{{{BRIDGE_DEVICE}}}{RATE}))",
                "{{device}} {{kind}}",
            ),
            "Valid messages processed per device and kind.",
        ),
        Panel(
            "Sensor readings",
            "short",
            q(f"faredge_device_reading{{{BRIDGE_DEVICE}}}", "{{device}} {{sensor}}"),
            "Latest reading of each sensor.",
        ),
        Panel(
            "Free heap",
            "bytes",
            q(f"faredge_device_mem_free_bytes{{{BRIDGE_DEVICE}}}", "{{device}}"),
            "Free heap the device reports.",
        ),
        Panel(
            "CPU frequency",
            "hertz",
            q(f"faredge_device_cpu_frequency_hz{{{BRIDGE_DEVICE}}}", "{{device}}"),
            "CPU frequency the device reports.",
        ),
        Panel(
            "Uptime",
            "s",
            q(f"faredge_device_uptime_seconds{{{BRIDGE_DEVICE}}}", "{{device}}"),
            "Uptime the device reports.",
        ),
        Panel(
            "Boots and lost telemetry",
            "short",
            (
                Query(f"faredge_device_boots{{{BRIDGE_DEVICE}}}", "{{device}} boots"),
                Query(f"faredge_device_telemetry_lost{{{BRIDGE_DEVICE}}}", "{{device}} lost"),
            ),
            "Boot counter and QoS 1 telemetry the device's ring dropped since boot (from its last birth).",
        ),
        Panel(
            "OTA state",
            "short",
            q(f"faredge_device_ota_state{{{BRIDGE_DEVICE}}} == 1", "{{device}} {{state}}"),
            "State of each device's latest over-the-air update.",
            "table",
        ),
        Panel(
            "OTA release",
            "short",
            q(f"faredge_device_ota_release{{{BRIDGE_DEVICE}}}", "{{device}}"),
            "Release number of each device's latest over-the-air update.",
            "table",
        ),
        Panel(
            "OTA traffic",
            "Bps",
            q(f'rate(faredge_ota_bytes_total{{bridge=~"$bridge"}}{RATE})', "{{bridge}}"),
            "File bytes per second served to updating devices.",
        ),
        Panel(
            "Twin reports",
            "short",
            q(
                'sum by (bridge, outcome) (increase(faredge_twin_reports_total{bridge=~"$bridge"}'
                + RATE
                + "))",
                "{{bridge}} {{outcome}}",
            ),
            "twin/reported messages by outcome.",
        ),
        Panel(
            "Identity denials",
            "short",
            q(
                "sum by (bridge, transport, reason) ("
                f'increase(faredge_identity_denials_total{{bridge=~"$bridge"}}{RATE}))',
                "{{bridge}} {{transport}} {{reason}}",
            ),
            "Messages refused because they spoke for another device, or came before a serial birth.",
        ),
        Panel(
            "Broker connected",
            "short",
            q('faredge_broker_connected{bridge=~"$bridge"}', "{{bridge}}"),
            "1 while the bridge's MQTT session is connected.",
            "stat",
        ),
        Panel(
            "Serial ports",
            "short",
            q('faredge_serial_port_state{bridge=~"$bridge"} == 1', "{{bridge}} {{port}} {{state}}"),
            "State of each configured serial port (absent, open, identified).",
            "table",
        ),
        Panel(
            "Serial frames",
            "short",
            (
                Query(
                    "sum by (bridge, direction) ("
                    f'rate(faredge_serial_frames_total{{bridge=~"$bridge"}}{RATE}))',
                    "{{bridge}} {{direction}}",
                ),
                Query(
                    f'rate(faredge_serial_retransmits_total{{bridge=~"$bridge"}}{RATE})',
                    "{{bridge}} retransmitted",
                ),
            ),
            "Serial frames per second by direction, and reliable frames sent again.",
        ),
        Panel(
            "Inbound queue",
            "short",
            q('faredge_queue_depth{bridge=~"$bridge"}', "{{bridge}}"),
            "Messages waiting for the bridge's worker.",
        ),
    ),
)

APP_DASHBOARD = Dashboard(
    "mlsysops-app",
    "MLSysOps / App",
    "One app's workloads (<app>.<component>.<replica>) on the nodes they were placed on: CPU and memory.",
    (Variable("app", "App", WORKLOAD_MEMORY, "workload", r"/^([^.]+)\./"),),
    (
        Panel(
            "Placement",
            "short",
            q(f"count by (workload, node, handler) ({WORKLOAD_MEMORY}{{{APP}}})"),
            "Where each replica runs, and under which runtime handler.",
            "table",
        ),
        Panel(
            "CPU by replica",
            "short",
            q(
                f"sum by (workload) (rate({WORKLOAD_CPU}{{{APP}}}{RATE}))",
                "{{workload}}",
            ),
            "CPU cores each replica uses.",
        ),
        Panel(
            "Memory by replica",
            "bytes",
            q(f"sum by (workload) ({WORKLOAD_MEMORY}{{{APP}}})", "{{workload}}"),
            "Memory charged to each replica's cgroup.",
        ),
        Panel(
            "App CPU",
            "short",
            q(f"sum(rate({WORKLOAD_CPU}{{{APP}}}{RATE}))", "$app"),
            "CPU cores the whole app uses.",
            "stat",
        ),
        Panel(
            "App memory",
            "bytes",
            q(f"sum({WORKLOAD_MEMORY}{{{APP}}})", "$app"),
            "Memory the whole app uses.",
            "stat",
        ),
    ),
)

DASHBOARDS = (FLEET, NODE_DASHBOARD, DEVICES, APP_DASHBOARD)


def _variable(v: Variable) -> dict[str, Any]:
    query = f"label_values({v.metric}, {v.source_label})"
    return {
        "name": v.name,
        "label": v.title,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{v.name}-values"},
        "definition": query,
        "regex": v.regex,
        "refresh": 2,  # on time range change
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "current": {"text": "All", "value": "$__all"},
        "sort": 1,
    }


def _panel(index: int, p: Panel) -> dict[str, Any]:
    return {
        "id": index + 1,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": HEIGHT, "w": WIDTH, "x": (index % 2) * WIDTH, "y": (index // 2) * HEIGHT},
        "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
        "options": {},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": t.expr, "legendFormat": t.legend}
            for i, t in enumerate(p.queries)
        ],
    }


def render(d: Dashboard) -> dict[str, Any]:
    datasource = {
        "name": "datasource",
        "label": "Prometheus",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
    }
    return {
        "uid": d.uid,
        "title": d.title,
        "description": d.description,
        "tags": ["mlsysops"],
        "schemaVersion": SCHEMA_VERSION,
        "editable": False,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {"list": [datasource, *(_variable(v) for v in d.variables)]},
        "panels": [_panel(i, p) for i, p in enumerate(d.panels)],
    }


def rendered() -> dict[str, str]:
    """File name -> JSON text, for every dashboard."""
    return {
        f"{d.uid.removeprefix('mlsysops-')}.json": json.dumps(render(d), indent=2, sort_keys=True) + "\n"
        for d in DASHBOARDS
    }


def main(argv: list[str] | None = None, out: Path = OUT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 when a committed file differs")
    args = parser.parse_args(argv)
    stale = []
    for name, text in rendered().items():
        path = out / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            out.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale: {', '.join(stale)} (run python {Path(__file__).name})", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())

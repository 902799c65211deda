"""Performance end to end on real parts: the controller's local mechanism runs an app's two
components on a real node agent (private containerd; one on runc, one under gVisor), a private
Debian Prometheus scrapes the agent's /metrics with the generated (promtool-checked) config, and
PrometheusPerformance answers per component: CPU of the busy one, memory of both, and the QoS
metric the description names (served by a stand-in for the app's own exporter)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from agentproc import IMAGE, NAMESPACE, Agent
from privated import PrivateContainerd
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from controller.kube.errors import NotFound
from controller.kube.resources import Resource
from controller.mechanisms.local import GrpcWorkloadAgents, LocalMechanism
from controller.model import App, parse_document
from controller.policies.base import Decision, Plan
from controller.telemetry.performance import CPU_SERIES, PrometheusPerformance
from controller.telemetry.prometheus import PrometheusProcess, PrometheusSettings
from controller.telemetry.scrape import ScrapeSettings, ScrapeTarget
from controller.telemetry.targets import start_for_agents
from mlsysops.testing import wait_for
from nodeagent.service.workloads import WorkloadService

BUSY = ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do :; done"]
IDLE = ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"]
DESCRIPTION: dict[str, Any] = {
    "MLSysOpsApp": {
        "name": "perf",
        "components": [
            {
                "metadata": {"name": "web"},
                "containers": [{"image": IMAGE, "command": BUSY}],
                "qos_metrics": [
                    {"application_metric_id": "latency_ms", "target": 30, "relation": "lower_or_equal"}
                ],
            },
            {
                "metadata": {"name": "db"},
                "runtime_class_name": "runsc",
                "containers": [{"image": IMAGE, "command": IDLE}],
            },
        ],
    }
}
PLAN = Plan(
    "perf",
    "default",
    "test",
    (Decision("web", "node-1", None, "t"), Decision("db", "node-1", None, "t")),
    ("web", "db"),
)


class OneApp:
    """The object store as PrometheusPerformance reads it: one app in Kubernetes form."""

    def __init__(self, app: App) -> None:
        self.app = app

    def get(self, res: Resource, namespace: str, name: str) -> dict[str, Any]:
        if name != self.app.name:
            raise NotFound(name)
        return dict(self.app.raw)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def metrics_agent(containerd: PrivateContainerd, workdir: Path) -> Agent:
    agent = Agent(containerd, workdir)
    text = agent.config.read_text().replace(
        'metrics_listen: ""',
        f"metrics_listen: 127.0.0.1:{free_port()}\n  collectors:\n    workloads: {{interval_ms: 1000}}",
    )
    agent.config.write_text(text)
    return agent


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian prometheus is not installed")
def test_per_component_cpu_memory_and_qos_from_a_real_prometheus_scraping_a_real_agent(
    containerd: PrivateContainerd, service: WorkloadService, tmp_path: Path
) -> None:
    """`service` imports the test image into the private containerd."""
    app = parse_document(DESCRIPTION)
    assert isinstance(app, App)
    registry = CollectorRegistry()
    Gauge("latency_ms", "The app's own QoS metric.", ["component"], registry=registry).labels("web").set(12)
    exporter, exporter_thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    agent = metrics_agent(containerd, tmp_path / "agent")
    prometheus = PrometheusProcess(
        PrometheusSettings(tmp_path / "prometheus", scrape=ScrapeSettings(interval_s=1, timeout_s=0.9))
    )
    agents = GrpcWorkloadAgents()
    mechanism = LocalMechanism(agents, lambda node: f"unix:{agent.socket}")
    agent.start()
    try:
        result = mechanism.realize(app, PLAN)
        assert not result.pending, result.pending
        exporter_url = f"http://127.0.0.1:{exporter.server_address[1]}/metrics"
        discovered = start_for_agents(
            prometheus, [f"unix:{agent.socket}"], [ScrapeTarget("app", exporter_url)]
        )
        assert not discovered.skipped
        (scraped,) = discovered.targets  # where the agent says it serves /metrics, and its node name
        assert scraped.url.startswith("http://127.0.0.1:") and scraped.labels["node"]
        check = subprocess.run(
            ["promtool", "check", "config", str(prometheus.config_path)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
        source = PrometheusPerformance(prometheus.http, OneApp(app))  # type: ignore[arg-type]

        def measured() -> dict[str, Any] | None:
            got = source.app_performance("default", "perf")
            web, db = got["components"]["web"], got["components"]["db"]
            # a busy loop: at least a tenth of a core on this shared machine, once two samples are in
            ready = (web["cpu_cores"] or 0) > 0.1 and db["memory_bytes"] and web["latency_ms"] is not None
            return got if ready else None

        got = wait_for(measured, 60, "per-component metrics in Prometheus")
        web, db = got["components"]["web"], got["components"]["db"]
        assert web["cpu_seconds_total"] > 0  # a busy loop (on a shared 2-core machine)
        assert web["memory_bytes"] > 0 and db["memory_bytes"] > 0  # db: gVisor's sandbox
        assert got["app"]["memory_bytes"] == web["memory_bytes"] + db["memory_bytes"]
        handlers = {s.labels["workload"]: s.labels["handler"] for s in prometheus.http.query(CPU_SERIES)}  # type: ignore[union-attr]
        assert handlers == {"perf.web.0": "runc", "perf.db.0": "runsc"}
        assert got["qos"]["web"]["latency_ms"] == {
            "value": 12.0,
            "target": 30,
            "relation": "lower_or_equal",
            "met": True,
        }
        health = {t["labels"]["job"]: t["health"] for t in prometheus.http.active_targets()}  # type: ignore[union-attr]
        assert health == {"nodeagent": "up", "app": "up"}
    finally:
        pid = prometheus.pid
        prometheus.stop()
        try:
            mechanism.remove("perf", "default")
        finally:
            agents.close()
            agent.stop()
            exporter.shutdown()
            exporter.server_close()
            exporter_thread.join(5)
    assert pid and not Path(f"/proc/{pid}").exists()
    assert "perf." not in containerd.ctr("containers", "ls", namespace=NAMESPACE).stdout

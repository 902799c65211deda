"""The API daemon running its own Prometheus (`--prometheus-dir`): it scrapes the agent the daemon
is given (a real node agent process), the performance routes read it, and stopping the daemon
stops it; giving both a Prometheus to read and one to run is refused before anything opens."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_harness import reference_app
from test_api_daemon import free_port, run_daemon, stop, wait_listening

from controller.api.daemon import main as daemon_main
from controller.api.tokens import TokenStore
from mlsysops.nodeapi import NodeAgentClient
from mlsysops.testing import wait_for
from nodeagent.host import simulated

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="Debian prometheus is not installed"
)
AGENT_CONFIG = """\
mechanisms:
  network: {enabled: false}
telemetry:
  metrics_listen: "127.0.0.1:0"
"""


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[str]:
    """A node agent process on a simulated node, serving /metrics on a free port."""
    root = tmp_path / "agent"
    simulated.build_simulated_host(root / "fs", cpus=2)
    (root / "agent.yaml").write_text(AGENT_CONFIG)
    target = f"unix:{root}/agent.sock"
    with open(root / "agent.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nodeagent", "--config", str(root / "agent.yaml"),
             "--socket", str(root / "agent.sock"), "--runtime-dir", str(root / "run"),
             "--fs-root", str(root / "fs"), "--simulate", "all", "--node-name", "edge-1"],
            stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    try:
        with NodeAgentClient(target) as client:
            client.wait_ready(60)
        yield target
    finally:
        proc.terminate()
        proc.wait(30)


def running_from(directory: Path) -> list[int]:
    """PIDs of processes whose command line names `directory` (the private Prometheus)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(directory).encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def test_the_daemon_runs_a_prometheus_that_scrapes_its_agents(tmp_path: Path, agent: str) -> None:
    secret, _ = TokenStore(tmp_path / "tokens.json").create("viewer", name="t")
    operator, _ = TokenStore(tmp_path / "tokens.json").create("operator", name="o")
    port = free_port()
    prom_dir = tmp_path / "prometheus"
    proc = run_daemon(
        tmp_path, "--listen", f"127.0.0.1:{port}", "--prometheus-dir", str(prom_dir), "--agent", agent
    )
    try:
        wait_listening(port, proc)
        url = f"http://127.0.0.1:{port}"
        assert (
            httpx.post(
                url + "/apps/deploy", json=reference_app(), headers={"Authorization": f"Bearer {operator}"}
            ).status_code
            == 200
        )
        perf = httpx.get(
            url + "/api/v1/apps/test-application/performance", headers={"Authorization": f"Bearer {secret}"}
        )
        assert perf.status_code == 200, perf.text
        body = perf.json()
        assert body["app"] == {
            "cpu_cores": None,
            "cpu_seconds_total": None,
            "memory_bytes": None,
        }  # nothing runs
        source = body["source"]
        assert source.startswith("http://127.0.0.1:") and running_from(prom_dir)

        def scraped() -> bool:
            targets = httpx.get(source + "/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            return [(t["labels"]["job"], t["labels"]["node"], t["health"]) for t in targets] == [
                ("nodeagent", "edge-1", "up")
            ]

        wait_for(scraped, timeout=30, what="the agent scraped by the daemon's Prometheus")
        assert "prometheus.yml" in {p.name for p in prom_dir.iterdir()}
    finally:
        stop(proc)
    wait_for(lambda: not running_from(prom_dir), timeout=15, what="the daemon's Prometheus gone")


def test_a_prometheus_to_read_and_one_to_run_is_refused_before_anything_opens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "--store",
        str(tmp_path / "db"),
        "--prometheus",
        "http://127.0.0.1:9090",
        "--prometheus-dir",
        str(tmp_path / "p"),
    ]
    assert daemon_main(argv) == 2
    assert "give one" in capsys.readouterr().err
    assert not (tmp_path / "db").exists() and not (tmp_path / "p").exists()

"""Issue 11, defect 8: an idle agent does not load the network mechanism's profile model (tc
units and trees, fractions and decimal under them); a network request does. pyroute2 (4-10
MiB) never enters the agent: its one use, the kernel feature probe, runs in a child."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nodeagent.host.lazynetlink import sysfs_links


def test_the_profile_model_loads_with_the_first_network_request_pyroute2_never(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys
        from tests.nodeagent.hostile.conftest import start_agent
        from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb
        from nodeagent.api.convert import dict_to_profile
        from pathlib import Path
        live = start_agent(  # no named namespaces: listing their interfaces would need netlink
            Path({str(tmp_path)!r}), mechanisms={{"network": {{"enabled": True}}}},
            host={{"netns_dir": {str(tmp_path / "netns")!r}}},
        )
        inventory = live.stub.GetInventory(pb.GetInventoryRequest(), timeout=30)
        network = next(m for m in inventory.mechanisms if m.name == "network")
        names = [i.name for i in inventory.network.interfaces]
        model = "nodeagent.mechanisms.tcmodel"
        print("idle", "pyroute2" in sys.modules, model in sys.modules, network.available, "lo" in names)
        profile = dict_to_profile({{"network": {{"interfaces": [{{"name": "lo", "tbf": {{
            "rate": "1gbit", "burst": "256kb", "latency": "10ms"}}}}]}}}})
        live.stub.Apply(pb.ApplyRequest(profile=profile, dry_run=True), timeout=30)
        print("shaping", "pyroute2" in sys.modules, model in sys.modules)
        live.agent.stop()
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=Path.cwd()
    )
    expected = ["idle False False True True", "shaping False True"]
    assert done.stdout.split("\n")[:2] == expected, done.stderr[-3000:]


def test_own_namespace_interfaces_come_from_sysfs(tmp_path: Path) -> None:
    lo = tmp_path / "lo"
    lo.mkdir()
    for name, value in (("ifindex", "1\n"), ("mtu", "65536\n"), ("operstate", "unknown\n")):
        (lo / name).write_text(value)
    (link,) = sysfs_links(tmp_path)
    assert (link.name, link.netns, link.index, link.mtu, link.state, link.root_qdisc) == (
        "lo", "", 1, 65536, "unknown", ""
    )


def test_mechanisms_are_found_without_scanning_every_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from importlib.metadata import entry_points

    from nodeagent.bootstrap import MECHANISM_GROUP, mechanism_plugins

    declared = {(e.name, e.value) for e in entry_points(group=MECHANISM_GROUP)}
    assert {(e.name, e.value) for e in mechanism_plugins()} == declared  # built-ins as pyproject says
    info = tmp_path / "extra_plugin-1.0.dist-info"
    info.mkdir()
    text = f"[console_scripts]\nx = a:b\n\n[{MECHANISM_GROUP}]\ngpu = gpu_mod:Gpu\n"
    (info / "entry_points.txt").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    found = {(e.name, e.value) for e in mechanism_plugins()}
    assert found == declared | {("gpu", "gpu_mod:Gpu")}



def test_memory_is_trimmed_after_the_last_large_request_of_a_burst() -> None:
    """A trim is pending when the burst's last large request ends: it runs once more after it,
    so that request's memory is handed back too (not only what was freed before the first run)."""
    import threading
    import time

    from nodeagent.api.guard import Trimmer

    runs: list[float] = []
    done = threading.Event()

    def action() -> None:
        runs.append(time.monotonic())
        if len(runs) == 2:
            done.set()

    trimmer = Trimmer(0.05, action)
    trimmer.request()  # the burst's first large request
    trimmer.request()  # its last one, while the first run is still pending
    last = time.monotonic()
    assert done.wait(5), f"ran {len(runs)} times"
    assert runs[1] >= last + 0.05
    time.sleep(0.15)
    assert len(runs) == 2  # nothing more was asked for


def test_the_daemon_serves_metrics_without_client_pythons_http_stack(tmp_path: Path) -> None:
    """python -m nodeagent's main(): client_python's package __init__ (HTTP server, push
    client, WSGI app: urllib, email, http.server, 3 MiB) never runs, a scrape included."""
    config = tmp_path / "nodeagent.json"
    config.write_text(json.dumps({
        "runtime_dir": str(tmp_path / "run"), "listen": {"socket": str(tmp_path / "agent.sock")},
        "host": {"fs_root": str(tmp_path / "root"), "simulate": "all", "netns_dir": str(tmp_path / "netns")},
        "telemetry": {"metrics_listen": "127.0.0.1:0"},
    }))
    (tmp_path / "netns").mkdir()
    log = str(tmp_path / "agent.log")
    script = textwrap.dedent(f"""
        import os, signal, sys, threading, time
        from nodeagent import daemon

        def probe():
            try:
                log = {log!r}
                deadline = time.monotonic() + 60
                while "ready" not in open(log).read() and time.monotonic() < deadline:
                    time.sleep(0.05)
                url = open(log).read().split("metrics=")[1].split()[0]
                host, port = url.split("//")[1].split("/")[0].rsplit(":", 1)
                import socket
                with socket.create_connection((host, int(port)), timeout=10) as conn:
                    conn.sendall(b"GET /metrics HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
                    answer = b""
                    while chunk := conn.recv(65536):
                        answer += chunk
                heavy = [m for m in ("http.server", "urllib.request", "email.parser", "wsgiref",
                                     "prometheus_client.exposition") if m in sys.modules]
                print("scraped", answer.startswith(b"HTTP/1.1 200"), b"mlsysops_nodeagent" in answer, heavy)
            finally:
                sys.stdout.flush()
                os.kill(os.getpid(), signal.SIGTERM)

        sys.stderr = open({log!r}, "w", buffering=1)
        threading.Thread(target=probe, daemon=True).start()
        sys.exit(daemon.main(["--config", {str(config)!r}, "--log-level", "info"]))
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=Path.cwd()
    )
    output = done.stdout + done.stderr[-2000:] + Path(log).read_text()[-2000:]
    assert done.stdout.split("\n")[0] == "scraped True True []", output
    assert done.returncode == 0, output

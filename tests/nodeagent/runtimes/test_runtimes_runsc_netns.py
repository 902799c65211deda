"""gVisor in a named network namespace: the runsc wrapper's `--network` decision, made at
`create` (the only command the runc shim gives `--bundle`), must reach `start`, where gVisor
sets up the sandbox's network. Unit tests drive the rendered wrapper with a fake runsc; the real
test runs a gVisor workload through the agent's service on the private containerd."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlsysops.testing import wait_for
from nodeagent.mechanisms.runtime_handlers import runsc_wrapper
from nodeagent.service.workloads import WorkloadService

from .conftest import IMAGE

# ---------------------------------------------------------------- the wrapper with a fake runsc


@pytest.fixture
def wrapper(tmp_path: Path) -> Path:
    fake = tmp_path / "runsc"
    fake.write_text('#!/bin/sh\necho "$@"\n')
    fake.chmod(0o755)
    path = tmp_path / "wrapper"
    path.write_text(runsc_wrapper(str(fake)))
    path.chmod(0o755)
    return path


def bundle_with(tmp_path: Path, name: str, namespaces: list[dict[str, str]]) -> Path:
    bundle = tmp_path / name
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"linux": {"namespaces": namespaces}}, indent=2))
    return bundle


def call(wrapper: Path, *args: str) -> str:
    return subprocess.run([str(wrapper), *args], capture_output=True, text=True, check=True).stdout


def test_start_without_bundle_keeps_the_network_of_a_container_created_in_a_netns(
    wrapper: Path, tmp_path: Path
) -> None:
    root = str(tmp_path / "root")
    joined = bundle_with(tmp_path, "joined", [{"type": "network", "path": "/run/netns/x"}])
    private = bundle_with(tmp_path, "private", [{"type": "network"}])
    assert "--network=host" in call(wrapper, "--root", root, "create", "--bundle", str(joined), "a")
    assert "--network=none" in call(wrapper, "--root", root, "create", "--bundle", str(private), "b")
    out_a = call(wrapper, "--root", root, "--log-format", "json", "start", "a")
    assert "--network=host" in out_a and "--network=none" not in out_a and out_a.rstrip().endswith("start a")
    assert "--network=none" in call(wrapper, "--root", root, "start", "b")
    # another root (another containerd namespace) does not see the mark
    assert "--network=none" in call(wrapper, "--root", str(tmp_path / "other"), "start", "a")
    call(wrapper, "--root", root, "delete", "--force", "a")
    assert "--network=none" in call(wrapper, "--root", root, "start", "a")
    assert not list((tmp_path / "root").rglob("a")), "delete leaves no mark"


def test_a_reused_id_created_without_a_netns_loses_the_old_mark(wrapper: Path, tmp_path: Path) -> None:
    root = str(tmp_path / "root")
    joined = bundle_with(tmp_path, "joined", [{"type": "network", "path": "/run/netns/x"}])
    private = bundle_with(tmp_path, "private", [{"type": "network"}])
    call(wrapper, "--root", root, "create", "--bundle", str(joined), "c")
    call(wrapper, "--root", root, "create", "--bundle", str(private), "c")
    assert "--network=none" in call(wrapper, "--root", root, "start", "c")


# ---------------------------------------------------------------- real gVisor in a named netns

ADDRESS = "10.213.7.2"
PEER = "10.213.7.1"
PORT = 8087
CONNECT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as s:
    print(s.recv(100).decode())
"""


@pytest.fixture
def veth_netns(workload_name: str) -> Iterator[tuple[str, str]]:
    """(workload netns, peer netns): a veth pair between two private named namespaces, addressed."""
    base = f"gv-{workload_name}"[:12]
    inner, outer = f"{base}-i", f"{base}-o"
    for name in (inner, outer):
        subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        commands = [
            ["-n", inner, "link", "set", "lo", "up"],
            ["-n", outer, "link", "set", "lo", "up"],
            ["-n", inner, "link", "add", "gv0", "type", "veth", "peer", "name", "gv1", "netns", outer],
            ["-n", inner, "addr", "add", f"{ADDRESS}/24", "dev", "gv0"],
            ["-n", outer, "addr", "add", f"{PEER}/24", "dev", "gv1"],
            ["-n", inner, "link", "set", "gv0", "up"],
            ["-n", outer, "link", "set", "gv1", "up"],
        ]
        for command in commands:
            subprocess.run(["ip", *command], check=True)
        yield inner, outer
    finally:
        for name in (inner, outer):
            subprocess.run(["ip", "netns", "del", name], check=False)


def test_a_gvisor_workload_in_a_named_netns_sees_and_serves_on_its_veth(
    service: WorkloadService, workload_name: str, veth_netns: tuple[str, str]
) -> None:
    inner, outer = veth_netns
    script = f"ip addr; echo listening; while true; do echo hello-from-gvisor | nc -l -p {PORT}; done"
    service.run(
        {
            "name": workload_name,
            "image": IMAGE,
            "handler": "runsc",
            "netns": inner,
            "args": ["/bin/sh", "-c", script],
        }
    )
    logs = wait_for(
        lambda: (text := service.logs(workload_name)) and "listening" in text and text, 15, "ip addr"
    )
    assert f"inet {ADDRESS}/24" in logs, logs

    def reply() -> str:
        done = subprocess.run(
            ["ip", "netns", "exec", outer, sys.executable, "-c", CONNECT, ADDRESS, str(PORT)],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return done.stdout if "hello-from-gvisor" in done.stdout else ""

    assert "hello-from-gvisor" in wait_for(reply, 15, "a TCP reply from the gVisor workload over the veth")
    service.stop(workload_name)

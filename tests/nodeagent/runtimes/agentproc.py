"""A real agent process (`python -m nodeagent`, runtimes enabled) on the private containerd,
and the `mlsysops node` CLI pointed at it."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from pathlib import Path

from privated import PrivateContainerd

from mlsysops.nodeapi import NodeAgentClient

IMAGE = "mlsysops.test/busybox:1"
#: Per test session: containerd namespace, runc/runsc state root and cgroup root of our tasks, so
#: two sessions on one machine (or a full run beside a focused one) never share an id.
NAMESPACE = f"mlsysops-test-{uuid.uuid4().hex[:8]}"
MLSYSOPS = str(Path(sys.executable).with_name("mlsysops"))
COMMAND = [
    "/bin/sh",
    "-c",
    "echo kernel=$(uname -r); trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done",
]


class Agent:
    def __init__(self, daemon: PrivateContainerd, workdir: Path) -> None:
        self.workdir = workdir
        self.socket = workdir / "agent.sock"
        self.config = workdir / "nodeagent.yaml"
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            f"""mechanisms:
  network: {{enabled: false}}
host:
  cgroup_root: {NAMESPACE}
telemetry:
  metrics_listen: ""
runtimes:
  enabled: true
  containerd_socket: {daemon.address}
  containerd_config: {daemon.config}
  dropin: {daemon.dropin_dir / "mlsysops-runtimes.toml"}
  runsc_wrapper: {daemon.base / "runsc-wrapper"}
  namespace: {NAMESPACE}
  probe_image: {IMAGE}
  allowed_mount_roots: {workdir / "data"}
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.workdir / "agent.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nodeagent",
                "--config",
                str(self.config),
                "--socket",
                str(self.socket),
                "--runtime-dir",
                str(self.workdir / "run"),
                "--fs-root",
                str(self.workdir / "fs"),
                "--simulate",
                "all",
            ],
            stdout=log,
            stderr=log,
        )
        log.close()
        with NodeAgentClient(f"unix:{self.socket}") as client:
            client.wait_ready(60)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        self.proc = None

    def cli(self, *args: str, expect: int = 0) -> str:
        done = subprocess.run(
            [MLSYSOPS, "node", "--target", f"unix:{self.socket}", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == expect, (args, done.returncode, done.stdout, done.stderr)
        return done.stdout + done.stderr

"""A real node agent process (`python -m nodeagent`) on the real cgroupfs and the private
containerd, and the calls the testbed makes through its gRPC API (mlsysops.nodeapi)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from mlsysops.nodeapi import NodeAgentClient
from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb

PERIOD_US = 100_000


def config_text(*, cgroup_root: str, daemon: Any, namespace: str, image: str, data: Path) -> str:
    """The agent's configuration: real cgroups below `cgroup_root`, runtimes on the private
    containerd `daemon` (a PrivateContainerd), network mechanism off (the testbed makes its netns)."""
    base = Path(daemon.base)
    return f"""mechanisms:
  network: {{enabled: false}}
host:
  cgroup_root: {cgroup_root}
restore_on_shutdown: true
telemetry:
  metrics_listen: ""
runtimes:
  enabled: true
  containerd_socket: {daemon.address}
  containerd_config: {daemon.config}
  dropin: {base / "conf.d" / "mlsysops-runtimes.toml"}
  runsc_wrapper: {base / "runsc-wrapper"}
  namespace: {namespace}
  probe_image: {image}
  allowed_mount_roots: {data}
"""


class AgentProcess:
    def __init__(self, workdir: Path, config: str) -> None:
        self.workdir = workdir
        self.socket = workdir / "agent.sock"
        self.config = workdir / "nodeagent.yaml"
        self.config.write_text(config, encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = NodeAgentClient(f"unix:{self.socket}", timeout=120)

    def start(self) -> None:
        with open(self.workdir / "agent.log", "ab") as log:
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
                    "/",
                    "--simulate",
                    "cpufreq",
                ],
                stdout=log,
                stderr=log,
            )
        self.client.wait_ready(60)

    def stop(self) -> None:
        self.client.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def set_limits(self, group: str, task: str, *, quota_cores: float, cpus: int) -> None:
        """CFS quota (cores x period) and cpuset (CPUs 0..cpus-1) of `group`, through Apply; the
        task's own group `group/task` gets the same cpuset (cgroup v1 keeps a parent's cpuset a
        superset of its children's, so narrowing the parent alone is refused)."""
        cpuset = "0" if cpus == 1 else f"0-{cpus - 1}"
        parent = pb.CgroupSetting(
            path=group,
            cpu_quota_us=round(quota_cores * PERIOD_US),
            cpu_period_us=PERIOD_US,
            cpuset_cpus=cpuset,
            cpuset_mems="0",
        )
        child = pb.CgroupSetting(path=f"{group}/{task}", cpuset_cpus=cpuset, cpuset_mems="0")
        profile = pb.Profile(cgroups=pb.CgroupsProfile(groups=[parent, child]))
        self.client.apply(profile, requester="experiment")

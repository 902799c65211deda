"""A real agent process (`python -m nodeagent`) on a private socket and a private host tree.

`agent_env` lays out a simulated node (cpufreq + cgroup v2, from nodeagent.host.simulated) as
the agent's fs root and installs the test-only `e2efiles` mechanism plugin through a temporary
dist-info on PYTHONPATH, so the agent discovers it through the same entry-point group as the
real plugins. `start()` waits (with mlsysops.testing.wait_for) for the agent's "ready" log line.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from mlsysops.nodeconfig.v1 import nodeconfig_pb2_grpc as pb_grpc
from mlsysops.testing import files_below, wait_for
from nodeagent.host.simulated import build_simulated_host

HERE = Path(__file__).resolve().parent
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
CPUS = 2

BASE_CONFIG = """\
mechanisms:
  network: {enabled: false}   # netlink shaping has its own suite; here it would only slow start-up
telemetry:
  metrics_listen: "127.0.0.1:0"
"""


@dataclass
class AgentProcess:
    proc: subprocess.Popen[bytes]
    log: Path
    addresses: list[str]

    @property
    def target(self) -> str:
        return self.addresses[0]

    def stub(self, channel: grpc.Channel | None = None) -> pb_grpc.NodeConfigStub:
        return pb_grpc.NodeConfigStub(channel or grpc.insecure_channel(self.target))

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR1)  # the agent dumps its threads' stacks to the log
            time.sleep(1.0)
            pytest.fail(f"agent still running {STOP_TIMEOUT_S}s after SIGTERM:\n{self.log_text()[-6000:]}")

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=STOP_TIMEOUT_S)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
        """wait_for(predicate), with this agent's log in the failure message."""
        try:
            return wait_for(predicate, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; agent log:\n{self.log_text()}") from None


@dataclass
class AgentEnv:
    """One private node: fs root, runtime dir, socket, config; start() any number of agents on it."""

    workdir: Path
    started: list[AgentProcess] = field(default_factory=list)

    @property
    def fs_root(self) -> Path:
        return self.workdir / "root"

    @property
    def runtime(self) -> Path:
        return self.workdir / "run"

    @property
    def socket(self) -> Path:
        return self.workdir / "sock" / "agent.sock"

    def write_config(self, text: str) -> Path:
        path = self.workdir / "nodeagent.yaml"
        path.write_text(BASE_CONFIG + text)
        return path

    def command(self, *extra: str) -> list[str]:
        config = self.workdir / "nodeagent.yaml"
        if not config.exists():
            self.write_config("")
        return [
            sys.executable, "-m", "nodeagent", "--config", str(config), "--socket", str(self.socket),
            "--runtime-dir", str(self.runtime), "--fs-root", str(self.fs_root), "--simulate", "all", *extra,
        ]

    def env(self, **extra: str) -> dict[str, str]:
        plugins = self.workdir / "plugins"
        if not plugins.exists():
            install_test_plugin(plugins)
        path = os.pathsep.join(p for p in (str(plugins), os.environ.get("PYTHONPATH", "")) if p)
        inherited = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        return {**inherited, "PYTHONPATH": path, **extra}

    def run(self, *extra: str) -> subprocess.CompletedProcess[str]:
        """Run an agent expected to refuse to start; returns its exit status and output."""
        return subprocess.run(
            self.command(*extra), env=self.env(), capture_output=True, text=True, timeout=START_TIMEOUT_S
        )

    def start(self, *extra: str, env: dict[str, str] | None = None) -> AgentProcess:
        log = self.workdir / f"agent-{len(self.started)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                self.command(*extra), env=self.env(**(env or {})), stdout=subprocess.DEVNULL, stderr=out
            )
        agent = AgentProcess(proc, log, [])
        self.started.append(agent)

        def ready() -> re.Match[str] | None:
            if proc.poll() is not None:
                pytest.fail(f"agent exited with {proc.returncode}:\n{agent.log_text()}")
            return re.search(r"logger=nodeagent ready .* listen=(.*) metrics=", agent.log_text())

        match = agent.wait(ready, f"the agent's ready line ({START_TIMEOUT_S}s)", START_TIMEOUT_S)
        agent.addresses = match.group(1).split()
        return agent

    def stop_all(self) -> None:
        for agent in self.started:
            if agent.proc.poll() is None:
                agent.kill9()


def install_test_plugin(directory: Path) -> None:
    """Make e2e_hang_plugin discoverable in the `mlsysops.nodeagent.mechanisms` group."""
    directory.mkdir(parents=True)
    (directory / "e2e_hang_plugin.py").write_text((HERE / "e2e_hang_plugin.py").read_text())
    info = directory / "mlsysops_e2e_plugin-0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mlsysops-e2e-plugin\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text(
        "[mlsysops.nodeagent.mechanisms]\ne2efiles = e2e_hang_plugin:HangFilesMechanism\n"
    )


@pytest.fixture
def agent_env() -> Iterator[AgentEnv]:
    # A private directory, not pytest's tmp_path: concurrent pytest sessions on this machine prune
    # each other's numbered base directories, which must not happen under a running agent.
    workdir = Path(tempfile.mkdtemp(prefix="mlsysops-e2e-"))
    env = AgentEnv(workdir)
    build_simulated_host(env.fs_root, cpus=CPUS)
    files = env.fs_root / "files"
    files.mkdir()
    for name, value in (("a", "a0"), ("b", "b0"), ("c", "c0"), (".hanging", "")):
        (files / name).write_text(value)
    try:
        yield env
    finally:
        env.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def snap() -> Callable[[Path], dict[str, str]]:
    return files_below

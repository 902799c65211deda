"""A real agent in this process (bootstrap → start) on a private socket over a simulated host
tree (cpufreq + cgroup v2), for requests an attacker or a careless script would send."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from mlsysops.nodeconfig.v1 import nodeconfig_pb2_grpc as pb_grpc
from nodeagent.bootstrap import Agent, build_agent
from nodeagent.config import parse_config
from nodeagent.host.simulated import build_simulated_host


@dataclass
class LiveAgent:
    agent: Agent
    root: Path  # the simulated host's fs root
    runtime: Path
    channel: grpc.Channel

    @property
    def stub(self) -> pb_grpc.NodeConfigStub:
        return pb_grpc.NodeConfigStub(self.channel)


def start_agent(workdir: Path, **overrides: Any) -> LiveAgent:
    root = workdir / "host"
    if not root.exists():
        build_simulated_host(root, cpus=2)
    socket = workdir / "agent.sock"
    config: dict[str, Any] = {
        "runtime_dir": str(workdir / "run"),
        "listen": {"socket": str(socket)},
        "host": {"fs_root": str(root), "simulate": "all"},  # files behave like the kernel's
        "mechanisms": {"network": {"enabled": False}},
        "telemetry": {"metrics_listen": ""},
        "drift": {"interval_s": 3600},
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            config.setdefault(key, {}).update(value)
        else:
            config[key] = value
    agent = build_agent(parse_config(config))
    agent.start()
    return LiveAgent(agent, root, workdir / "run", grpc.insecure_channel(f"unix:{socket}"))


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mlsysops-hostile-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def live(workdir: Path) -> Iterator[LiveAgent]:
    agent = start_agent(workdir)
    try:
        yield agent
    finally:
        agent.channel.close()
        agent.agent.stop()

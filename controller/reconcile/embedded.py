"""The embedded controller: the same reconcile loop on one machine, without Kubernetes.

Instead of an API server the loop reads and writes the embedded SQLite store
(controller.store), and realises apps on node agents: containers through the `local`
mechanism (containerd workloads on the runtime the description names), node settings through
`nodeagent`, far-edge components through `faredge` (over-the-air updates through the bridge's
control socket, `bridge_socket`; Ready only once the device confirmed the release). The
informers, work queue, reconciler and node sync are bootstrap.build's, unchanged: only the
store and the mechanism defaults differ.

In process (the REST API does this):

    from controller import store
    from controller.reconcile.embedded import build_embedded, default_store_path, embedded_config
    api = store.open(default_store_path())
    controller = build_embedded(embedded_config(agents=(AgentTarget("unix:/run/agent.sock"),)), api)
    controller.start(stop_event)  # threads; controller.shutdown() after stop_event is set

Status reflects what runs: an app is Progressing from its first reconcile until every local
workload runs (the agent verified it) and its node settings were applied; then Ready.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from controller.kube.objectapi import ObjectApi
from controller.reconcile.bootstrap import Config, build
from controller.reconcile.loop import Controller
from controller.reconcile.nodesync import AgentTarget
from mlsysops.nodeapi.target import DEFAULT_TARGET

EMBEDDED_MECHANISMS = ("local", "nodeagent", "faredge")
#: Mechanisms that need a Kubernetes API server to act on what they write: refused in embedded mode.
NEEDS_KUBERNETES = ("kubernetes", "karmada")
STORE_FILE = "controller.db"


def default_store_path(euid: int | None = None, env: Mapping[str, str] | None = None) -> Path:
    """/var/lib/mlsysops/controller.db for root (the system daemon), else the user's XDG state
    directory ($XDG_STATE_HOME, or ~/.local/state)/mlsysops/controller.db."""
    euid = os.geteuid() if euid is None else euid
    env = os.environ if env is None else env
    if euid == 0:
        return Path("/var/lib/mlsysops") / STORE_FILE
    state = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "state")
    return Path(state) / "mlsysops" / STORE_FILE


def embedded_config(**overrides: Any) -> Config:
    """A Config with the embedded defaults (mechanisms; the local node agent when no agents are
    given), any field overridden."""
    values: dict[str, Any] = {"mechanisms": EMBEDDED_MECHANISMS, "agents": (AgentTarget(DEFAULT_TARGET),)}
    values.update(overrides)
    return Config(**values)


def check_embedded(config: Config) -> None:
    """ValueError naming what cannot work without Kubernetes (before anything is started)."""
    wrong = [m for m in config.mechanisms if m in NEEDS_KUBERNETES]
    if wrong:
        raise ValueError(f"mechanism {', '.join(wrong)}: needs a Kubernetes API server (give --kubeconfig); "
                         f"the embedded mode realises apps with {', '.join(EMBEDDED_MECHANISMS)}")
    if not config.agents:
        raise ValueError("the embedded mode needs at least one node agent (--agent TARGET)")


def build_embedded(config: Config, api: ObjectApi, **kwargs: Any) -> Controller:
    """The controller over an embedded store `api` (controller.store.open); `kwargs` are
    bootstrap.build's (agents gateway, registries), for tests and the REST API."""
    check_embedded(config)
    return build(config, api, **kwargs)

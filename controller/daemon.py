"""`python -m controller`: the controller daemon, embedded on one machine or against Kubernetes.

    python -m controller --agent unix:/run/mlsysops/nodeagent.sock      # embedded (no kubeconfig)
    python -m controller --kubeconfig ~/.kube/config --namespace apps \\
        --mechanism kubernetes --mechanism nodeagent --agent unix:/run/mlsysops/nodeagent.sock=edge
    python -m controller --metrics-listen 127.0.0.1:9467 ...            # Prometheus /metrics

Without a kubeconfig (no --kubeconfig, no $KUBECONFIG, not in a pod) the controller keeps its
objects in the embedded SQLite store (--store; controller.reconcile.embedded) and realises apps
with the local, nodeagent and faredge mechanisms on the local node agent (or the --agent ones);
with one, it drives the API server exactly as before. Flags → Config → build → run until
SIGINT/SIGTERM. With --leader-elect (Kubernetes only) replicas share a Lease and only its
holder reconciles; a replica that loses it exits 1 and comes back as a standby. With
--metrics-listen the controller's metrics (controller.reconcile.metrics) are served there,
unauthenticated like the node agent's and the bridge's: listen on loopback (the default
suggestion) unless the network in between is trusted.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server

from controller import store
from controller.kube.api import KubeApi
from controller.kube.client import load_api_client
from controller.kube.errors import KubeError
from controller.mechanisms import MechanismRegistry
from controller.policies import DEFAULT_CHAIN
from controller.reconcile.bootstrap import DEFAULT_MECHANISMS, USER_AGENT, Config, build
from controller.reconcile.embedded import (
    EMBEDDED_MECHANISMS,
    build_embedded,
    check_embedded,
    default_store_path,
    embedded_config,
)
from controller.reconcile.leader import DEFAULT_LEASE, Ended, LeaderElector, LeaseSettings
from controller.reconcile.loop import Controller
from controller.reconcile.metrics import ControllerMetrics, ReconcileObserver
from controller.reconcile.nodesync import AgentTarget


class MetricsServer:
    """The Prometheus endpoint: bound by `start()` (not at construction), shut down by `stop()`
    (the bridge's, faredge.bootstrap.MetricsServer: client_python's HTTP server)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        self.host, self.port = host, port
        self._registry = registry
        self._shutdown: Callable[[], None] | None = None

    def start(self) -> None:
        server, _thread = start_http_server(self.port, self.host, registry=self._registry)
        self._shutdown = server.shutdown

    def stop(self) -> None:
        if self._shutdown is not None:
            self._shutdown()
            self._shutdown = None


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT (an IPv6 host in brackets)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def parse_agent(text: str) -> AgentTarget:
    """TARGET or TARGET=LAYER (the layer is what the agent cannot know about itself)."""
    target, sep, layer = text.rpartition("=") if "=" in text else (text, "", "")
    if not sep:
        return AgentTarget(text)
    if layer not in ("cloud", "edge_infrastructure", "edge", "far_edge"):
        raise argparse.ArgumentTypeError(
            f"--agent {text}: layer {layer!r}: expected cloud, edge_infrastructure, edge or far_edge"
        )
    return AgentTarget(target, layer)


def parser(mechanisms: Sequence[str] = DEFAULT_MECHANISMS) -> argparse.ArgumentParser:
    """The daemon's flags; `mechanisms` are the names --mechanism accepts (the registry's)."""
    p = argparse.ArgumentParser(prog="python -m controller", description=__doc__.split("\n\n")[0])
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in a pod its service account, else "
                   "$KUBECONFIG; without either the controller runs embedded)")
    p.add_argument("--store", help=f"embedded mode: the SQLite store (default: {default_store_path()})")
    p.add_argument("--namespace", default="default", help="namespace of the MLSysOps objects")
    p.add_argument(
        "--mechanism",
        action="append",
        choices=mechanisms,
        dest="mechanisms",
        help=f"realization mechanism (repeatable; default: {' '.join(DEFAULT_MECHANISMS)} with a "
        f"kubeconfig, {' '.join(EMBEDDED_MECHANISMS)} embedded)",
    )
    p.add_argument(
        "--policy",
        action="append",
        dest="policies",
        help=f"placement policy, by priority (repeatable; default: {' '.join(DEFAULT_CHAIN)})",
    )
    p.add_argument(
        "--agent",
        action="append",
        type=parse_agent,
        default=[],
        help="node agent to inventory, TARGET[=LAYER] (repeatable; embedded default: the local agent)",
    )
    p.add_argument("--bridge-socket", type=Path, metavar="PATH",
                   help="the far-edge bridge's control socket: the faredge mechanism hands far-edge "
                   "components to it as over-the-air updates (default: none, they stay pending)")
    p.add_argument("--metrics-listen", type=parse_listen, metavar="HOST:PORT",
                   help="serve Prometheus metrics there (default: none)")
    p.add_argument("--leader-elect", action="store_true",
                   help="with Kubernetes: reconcile only while holding the Lease (--leader-elect-lease, "
                   "in --namespace), so more replicas can wait as standbys (controller.reconcile.leader)")
    p.add_argument("--leader-elect-lease", default=DEFAULT_LEASE, metavar="NAME")
    p.add_argument("--leader-elect-lease-duration", type=float, default=15.0, metavar="SECONDS")
    p.add_argument("--leader-elect-renew-deadline", type=float, default=10.0, metavar="SECONDS")
    p.add_argument("--leader-elect-retry-period", type=float, default=2.0, metavar="SECONDS")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--resync", type=float, default=300.0, help="seconds between full resyncs")
    p.add_argument("--inventory-interval", type=float, default=30.0, help="seconds between agent polls")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def kubernetes_mode(kubeconfig: str | None, env: Mapping[str, str] | None = None) -> bool:
    """A kubeconfig was given (flag or $KUBECONFIG) or we run in a pod: drive that API server."""
    env = os.environ if env is None else env
    return bool(kubeconfig or env.get("KUBECONFIG") or env.get("KUBERNETES_SERVICE_HOST"))


def controller_for(args: argparse.Namespace, registry: MechanismRegistry,
                   metrics: ReconcileObserver | None = None) -> tuple[Controller, store.SqliteStore | None]:
    """The controller the flags ask for, and the embedded store it opened (None with Kubernetes)."""
    common = {"namespace": args.namespace, "policies": tuple(args.policies or DEFAULT_CHAIN),
              "workers": args.workers, "resync_period": args.resync,
              "inventory_period": args.inventory_interval, "bridge_socket": args.bridge_socket}
    if kubernetes_mode(args.kubeconfig):
        if args.store:
            raise ValueError("--store: the embedded store is used without a kubeconfig only")
        config = Config(mechanisms=tuple(args.mechanisms or DEFAULT_MECHANISMS), agents=tuple(args.agent),
                        **common)
        return build(config, load_api_client(args.kubeconfig), mechanisms=registry, metrics=metrics), None
    config = embedded_config(**common, **({"mechanisms": tuple(args.mechanisms)} if args.mechanisms else {}),
                             **({"agents": tuple(args.agent)} if args.agent else {}))
    check_embedded(config)  # before the store file is created
    api = store.open(args.store or default_store_path())
    try:
        return build_embedded(config, api, mechanisms=registry, metrics=metrics), api
    except BaseException:
        api.close()
        raise


def elector_for(args: argparse.Namespace) -> LeaderElector | None:
    """The Lease candidate --leader-elect asks for (ValueError when it cannot work); its
    identity is the host name (the pod's name) and a random suffix, as client-go's."""
    if not args.leader_elect:
        return None
    if not kubernetes_mode(args.kubeconfig):
        raise ValueError("--leader-elect needs a Kubernetes API server (the embedded store's lock already "
                         "lets one controller run)")
    settings = LeaseSettings(
        f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}", args.leader_elect_lease, args.namespace,
        args.leader_elect_lease_duration, args.leader_elect_renew_deadline, args.leader_elect_retry_period,
    )
    return LeaderElector(KubeApi(load_api_client(args.kubeconfig), user_agent=USER_AGENT), settings)


def run(controller: Controller, embedded: store.SqliteStore | None,
        elector: LeaderElector | None = None) -> int:
    """Until SIGINT/SIGTERM (0); embedded, holding the store's controller lock (one per store);
    with an elector, reconciling only while leading, and 1 when the Lease was lost (the process
    ends: its Deployment starts it again, as a standby)."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if elector is not None:
        ended = elector.run(stop, lambda: controller.start(stop), controller.shutdown)
        return 1 if ended is Ended.LOST else 0
    if embedded is None:
        controller.run(stop)
        return 0
    try:
        with store.ControllerLock(embedded.path):
            controller.run(stop)
    finally:
        embedded.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    registry = MechanismRegistry.from_entry_points()
    args = parser(registry.names()).parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    metrics = ControllerMetrics() if args.metrics_listen else None
    server = None
    if metrics is not None:
        host, port = args.metrics_listen
        server = MetricsServer(host, port, metrics.registry)
        try:
            server.start()
        except OSError as exc:  # the port is taken, the address is not ours
            print(f"controller: --metrics-listen {host}:{port}: {exc}", file=sys.stderr)
            return 2
    try:
        elector = elector_for(args)
        return run(*controller_for(args, registry, metrics), elector)
    except (KubeError, ValueError, KeyError) as exc:
        print(f"controller: {exc}", file=sys.stderr)
        return 2
    finally:
        if server is not None:
            server.stop()

"""`python -m controller`: the controller daemon against a Kubernetes (or Karmada) API server.

    python -m controller --kubeconfig ~/.kube/config --namespace apps \\
        --mechanism kubernetes --mechanism nodeagent --agent unix:/run/mlsysops/nodeagent.sock=edge

Flags → Config → bootstrap.build → run until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from controller.kube.client import load_api_client
from controller.kube.errors import KubeError
from controller.mechanisms import MechanismRegistry
from controller.policies import DEFAULT_CHAIN
from controller.reconcile.bootstrap import DEFAULT_MECHANISMS, Config, build
from controller.reconcile.nodesync import AgentTarget


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
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, $KUBECONFIG, ~/.kube/config)")
    p.add_argument("--namespace", default="default", help="namespace of the MLSysOps objects")
    p.add_argument(
        "--mechanism",
        action="append",
        choices=mechanisms,
        dest="mechanisms",
        help=f"realization mechanism (repeatable; default: {' '.join(DEFAULT_MECHANISMS)})",
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
        help="node agent to inventory, TARGET[=LAYER] (repeatable)",
    )
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--resync", type=float, default=300.0, help="seconds between full resyncs")
    p.add_argument("--inventory-interval", type=float, default=30.0, help="seconds between agent polls")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def main(argv: list[str] | None = None) -> int:
    registry = MechanismRegistry.from_entry_points()
    args = parser(registry.names()).parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = Config(
        namespace=args.namespace,
        mechanisms=tuple(args.mechanisms or DEFAULT_MECHANISMS),
        policies=tuple(args.policies or DEFAULT_CHAIN),
        agents=tuple(args.agent),
        workers=args.workers,
        resync_period=args.resync,
        inventory_period=args.inventory_interval,
    )
    try:
        controller = build(config, load_api_client(args.kubeconfig), mechanisms=registry)
    except (KubeError, ValueError, KeyError) as exc:
        print(f"controller: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    controller.run(stop)
    return 0


"""The composition root of the controller daemon: configuration in, a wired Controller out.

Nothing is global: the API client, the policy and mechanism registries, the mechanisms and the
node-agent gateway are built here from the Config and passed down, so tests build the same
graph against the stand-in API server with their own knobs. The pieces are built in the order
they need each other: informers, the inventory over their caches, the mechanisms (the
nodeagent one asks the inventory where each node's agent is), the reconciler, the loop.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from controller.bridgesocket import BridgeSocket
from controller.inventory import Inventory
from controller.kube.api import KubeApi
from controller.kube.client import ApiClient
from controller.kube.objectapi import ObjectApi
from controller.mechanisms import MechanismContext, MechanismRegistry
from controller.mechanisms.kubernetes import OWNED
from controller.mechanisms.nodeagent import AgentGateway, GrpcAgents
from controller.model import App
from controller.policies import DEFAULT_CHAIN, Plan, Policy, PolicyRegistry, Telemetry, combine
from controller.policies.chain import Outcome as PolicyOutcome
from controller.policies.pools import Ledger
from controller.reconcile.cached import CachedLists
from controller.reconcile.informer import Informers
from controller.reconcile.loop import Controller
from controller.reconcile.metrics import ReconcileObserver
from controller.reconcile.nodesync import AgentTarget, NodeSync
from controller.reconcile.qos import ANNOTATION_QOS, AnnotationQos, NoQos, QosSource
from controller.reconcile.queue import Backoff, WorkQueue
from controller.reconcile.reconciler import InventoryCache, Planner, Reconciler

DEFAULT_MECHANISMS = ("kubernetes", "nodeagent")
USER_AGENT = "mlsysops-controller"  # how the API server's audit log names us


@dataclass(frozen=True)
class Config:
    namespace: str = "default"
    mechanisms: tuple[str, ...] = DEFAULT_MECHANISMS  # names in the mechanism registry
    policies: tuple[str, ...] = DEFAULT_CHAIN
    agents: tuple[AgentTarget, ...] = ()
    workers: int = 2
    resync_period: float = 300.0
    inventory_period: float = 30.0
    watch_timeout: int = 300
    availability_timeout: float = 30.0
    backoff: Backoff = field(default_factory=Backoff)
    qos_annotation: str | None = ANNOTATION_QOS  # where monitoring reports QoS violations; None: ignore
    bridge_socket: Path | None = None  # the far-edge bridge's control socket (the faredge mechanism)


def policy_planner(policies: Sequence[Policy]) -> Planner:
    """Run the policy chain against the capacity other apps hold (each policy on its own copy of
    the ledger: their plans are alternatives); conflicts between policies go to the status."""
    takes_ledger = [_accepts_ledger(p) for p in policies]

    def plan(app: App, inventory: Inventory, telemetry: Telemetry, previous: Plan | None,
             ledger: Ledger) -> PolicyOutcome:
        plans = []
        for policy, shared in zip(policies, takes_ledger, strict=True):
            extra = {"ledger": _copy(ledger)} if shared else {}
            plans.append(policy.plan(app, inventory, telemetry, previous=previous, **extra))
        return combine(plans)

    return plan


def _accepts_ledger(policy: Policy) -> bool:
    """Shipped policies take a shared Ledger; a third-party one may not (it plans each app alone)."""
    return "ledger" in inspect.signature(policy.plan).parameters


def _copy(ledger: Ledger) -> Ledger:
    return Ledger(ledger.inventory, dict(ledger.cpu), dict(ledger.memory), dict(ledger.gpus))


def build(config: Config, store: ObjectApi | ApiClient, agents: AgentGateway | None = None,
          registry: PolicyRegistry | None = None, mechanisms: MechanismRegistry | None = None,
          metrics: ReconcileObserver | None = None) -> Controller:
    """The daemon for `config` over `store`: any ObjectApi (the embedded SQLite store, or a
    KubeApi), or a kubernetes ApiClient, wrapped in a KubeApi that names us in audit logs.
    The registries default to the installed entry points; `metrics` (none by default) is fed
    by the loop (controller.reconcile.metrics.ControllerMetrics behind a /metrics endpoint)."""
    api = KubeApi(store, user_agent=USER_AGENT) if isinstance(store, ApiClient) else store
    agents = agents if agents is not None else GrpcAgents()
    registry = registry if registry is not None else PolicyRegistry.from_entry_points()
    mechanisms = mechanisms if mechanisms is not None else MechanismRegistry.from_entry_points()
    informers = Informers(api, config.namespace, config.backoff, config.watch_timeout,
                          member_clusters="karmada" in config.mechanisms,
                          owned=OWNED if {"kubernetes", "karmada"} & set(config.mechanisms) else ())
    inventory = InventoryCache(informers.world, config.namespace)
    writes = CachedLists(api, informers.owned, config.namespace)
    context = MechanismContext(writes, agents, inventory.agent_target, inventory.agent_targets,
                               config.availability_timeout, config.namespace, informers.nodes.get,
                               BridgeSocket(config.bridge_socket) if config.bridge_socket else None)
    qos: QosSource = AnnotationQos(config.qos_annotation) if config.qos_annotation else NoQos()
    reconciler = Reconciler(api, config.namespace, mechanisms.build(config.mechanisms, context),
                            policy_planner(registry.chain(config.policies)), inventory, qos=qos,
                            cached_app=informers.apps.get)
    node_sync = NodeSync(api, agents, list(config.agents), config.namespace) if config.agents else None
    return Controller(reconciler, inventory, informers, WorkQueue(config.backoff), node_sync, config.workers,
                      config.resync_period, config.inventory_period, metrics)

"""The composition root of the controller daemon: configuration in, a wired Controller out.

Nothing is global: the API client, the policy registry, the mechanisms and the node-agent
gateway are built here from the Config and passed down, so tests build the same graph against
the stand-in API server with their own knobs.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from controller.inventory import Inventory
from controller.kube.api import KubeApi
from controller.mechanisms.base import Mechanism
from controller.mechanisms.karmada import KarmadaMechanism
from controller.mechanisms.kubernetes import KubernetesMechanism
from controller.mechanisms.nodeagent import AgentGateway, GrpcAgents, NodeAgentMechanism
from controller.model import App
from controller.policies import DEFAULT_CHAIN, Plan, Policy, PolicyRegistry, Telemetry, combine
from controller.policies.chain import Outcome as PolicyOutcome
from controller.policies.pools import Ledger
from controller.reconcile.loop import Controller
from controller.reconcile.nodesync import AgentTarget, NodeSync
from controller.reconcile.qos import ANNOTATION_QOS, AnnotationQos, NoQos
from controller.reconcile.queue import Backoff, WorkQueue
from controller.reconcile.reconciler import InventoryCache, Planner, Reconciler

MECHANISMS = ("kubernetes", "karmada", "nodeagent")
USER_AGENT = "mlsysops-controller"  # how the API server's audit log names us


@dataclass(frozen=True)
class Config:
    namespace: str = "default"
    mechanisms: tuple[str, ...] = ("kubernetes", "nodeagent")
    policies: tuple[str, ...] = DEFAULT_CHAIN
    agents: tuple[AgentTarget, ...] = ()
    workers: int = 2
    resync_period: float = 300.0
    inventory_period: float = 30.0
    watch_timeout: int = 300
    availability_timeout: float = 30.0
    backoff: Backoff = field(default_factory=Backoff)
    qos_annotation: str | None = ANNOTATION_QOS  # where monitoring reports QoS violations; None: ignore


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


def build_mechanisms(names: Sequence[str], api: KubeApi, agents: AgentGateway, inventory: InventoryCache,
                     availability_timeout: float) -> list[Mechanism]:
    def agent_target(node: str) -> str | None:
        info = inventory.get()[0].node(node)
        return info.agent_target if info is not None else None

    factories: dict[str, Any] = {
        "kubernetes": lambda: KubernetesMechanism(api, availability_timeout=availability_timeout),
        "karmada": lambda: KarmadaMechanism(api),
        "nodeagent": lambda: NodeAgentMechanism(agents, agent_target),
    }
    unknown = [n for n in names if n not in factories]
    if unknown:
        raise ValueError(f"mechanisms: unknown {', '.join(unknown)} "
                         f"(expected some of {', '.join(MECHANISMS)})")
    return [factories[n]() for n in names]


def build(config: Config, api_client: client.ApiClient, agents: AgentGateway | None = None,
          registry: PolicyRegistry | None = None) -> Controller:
    api_client.user_agent = USER_AGENT
    api = KubeApi(api_client)
    agents = agents if agents is not None else GrpcAgents()
    registry = registry if registry is not None else PolicyRegistry.from_entry_points()
    planner = policy_planner(registry.chain(config.policies))
    holder: list[Controller] = []
    inventory = InventoryCache(lambda: holder[0].world(), config.namespace)
    mechanisms = build_mechanisms(config.mechanisms, api, agents, inventory, config.availability_timeout)
    qos = AnnotationQos(config.qos_annotation) if config.qos_annotation else NoQos()
    reconciler = Reconciler(api, config.namespace, mechanisms, planner, inventory, qos=qos)
    node_sync = NodeSync(api, agents, list(config.agents), config.namespace) if config.agents else None
    controller = Controller(api, config.namespace, reconciler, inventory, WorkQueue(config.backoff),
                            node_sync, config.workers, config.resync_period, config.inventory_period,
                            config.watch_timeout, config.backoff)
    holder.append(controller)
    return controller

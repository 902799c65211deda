"""One reconcile of one MLSysOpsApp: read → plan → realize with every mechanism → status.

Idempotent by construction: everything is recomputed from the app object and the inventory,
the mechanisms write only what differs, and names are deterministic, so a controller killed
mid-reconcile converges on restart without duplicates. What to do after a failure is decided
from the error alone (see `Outcome`): temporary errors (API outage, conflicts, a dependency
not Available yet) are retried with backoff, permanent ones (an invalid description, an object
the server rejects) are reported in the status and wait for the app to change.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from controller.inventory import Inventory, cluster_readiness
from controller.kube import resources
from controller.kube.errors import Conflict, KubeError, NotFound
from controller.kube.objectapi import Obj, ObjectApi
from controller.mechanisms.base import Mechanism, RealizeResult
from controller.model import App, DescriptionError, Resources, collection_paused, parse_document
from controller.plan import status_for
from controller.policies.base import KEEP, Decision, Plan, Telemetry
from controller.policies.chain import Outcome as PolicyOutcome
from controller.policies.pools import Ledger
from controller.reconcile.qos import NoQos, QosSource, current
from controller.reconcile.status import Condition, app_status

log = logging.getLogger(__name__)


class Planner(Protocol):
    """The policy chain as the loop sees it: plans plus the conflicts between policies.
    `ledger` holds what the other apps already take, so apps are planned against each other."""

    def __call__(self, app: App, inventory: Inventory, telemetry: Telemetry,
                 previous: Plan | None, ledger: Ledger) -> PolicyOutcome: ...


class Reservations:
    """The capacity each app's realized plan holds per node (requests, once per replica).

    Kept per app so that replanning one app releases its own share first; turned into a fresh
    Ledger over the current inventory for every plan. After a restart it is seeded from the
    apps' statuses (Reconciler.seed) before the first reconcile."""

    def __init__(self) -> None:
        self._by_app: dict[str, list[tuple[str, Resources]]] = {}
        self._lock = threading.Lock()

    def record(self, app: App, plan: Plan) -> None:
        held: list[tuple[str, Resources]] = []
        for d in plan.decisions:
            comp = app.component(d.component)
            per_replica = d.nodes or ((d.node,) * comp.replicas if d.node else ())
            held.extend((node, comp.resources) for node in per_replica)
        with self._lock:
            self._by_app[app.name] = held

    def forget(self, name: str) -> None:
        with self._lock:
            self._by_app.pop(name, None)

    def ledger(self, inventory: Inventory, excluding: str) -> Ledger:
        ledger = Ledger(inventory)
        with self._lock:
            for name, held in self._by_app.items():
                if name != excluding:
                    for node, need in held:
                        ledger.reserve_node(node, need)
        return ledger


@dataclass(frozen=True)
class Outcome:
    """How a reconcile ended: `retry` asks the loop to requeue the key with backoff."""

    phase: str
    retry: bool = False
    message: str = ""
    results: tuple[RealizeResult, ...] = field(default_factory=tuple)


class InventoryCache:
    """The Inventory built from the MLSysOpsNode/Cluster objects, rebuilt only after they change
    (at 10,000 nodes a rebuild per reconcile would dominate). A rebuild parses only the objects
    whose description changed since they were last parsed: the parsed description is kept per
    object and `metadata.generation` (which status writes, such as the agents' node sync or the
    settings record, do not bump), so after one node changes, 100,000 nodes cost one parse and
    the index build, not 100,000 validations."""

    def __init__(self, sources: Callable[[], tuple[Sequence[Obj], ...]], namespace: str) -> None:
        """`sources` returns the node and MLSysOpsCluster objects, and optionally Karmada's
        member Cluster objects (whose Ready condition decides which clusters get placements)."""
        self.sources = sources
        self.namespace = namespace
        self._lock = threading.Lock()
        self._cached: tuple[Inventory, Telemetry] | None = None
        self._parsed: dict[tuple[str, str], tuple[Any, Any]] = {}  # (kind, name) → (version, description)

    def invalidate(self) -> None:
        with self._lock:
            self._cached = None

    def get(self) -> tuple[Inventory, Telemetry]:
        with self._lock:
            if self._cached is None:
                self._cached = self._build()
            return self._cached

    def agent_target(self, node: str) -> str | None:
        """Where the node's agent answers (its MLSysOpsNode `agent.target`); None without one."""
        info = self.get()[0].node(node)
        return info.agent_target if info is not None else None

    def agent_targets(self) -> list[str]:
        """Every node agent the inventory knows (where an app's workloads may be, after a restart)."""
        return sorted({n.agent_target for n in self.get()[0].nodes if n.agent_target})

    def _build(self) -> tuple[Inventory, Telemetry]:
        nodes, clusters, *members = self.sources()
        descriptions = []
        parsed: dict[tuple[str, str], tuple[Any, Any]] = {}
        with collection_paused():  # a first build parses every node: 100,000 at scale
            for obj in [*nodes, *clusters]:
                key = (str(obj.get("kind")), obj["metadata"]["name"])
                version = _description_version(obj)
                known = self._parsed.get(key)
                if version is not None and known is not None and known[0] == version:
                    description = known[1]
                else:
                    try:
                        description = parse_document(_without_status(obj), self.namespace)
                    except DescriptionError as exc:  # one bad node description must not stop placement
                        log.warning("ignoring %s %s: %s", obj.get("kind"), obj["metadata"].get("name"), exc)
                        description = None
                parsed[key] = (version, description)
                if description is not None:
                    descriptions.append(description)
            inventory = Inventory.from_descriptions(descriptions)
            if members:
                inventory = dataclasses.replace(inventory, unready_clusters=cluster_readiness(members[0]))
            inventory.index  # noqa: B018 - built here, while collection is paused, not by the first placement
        self._parsed = parsed  # what vanished is forgotten
        unavailable = frozenset(o["metadata"]["name"] for o in nodes if _condition(o, "Ready") == "False")
        return inventory, Telemetry(unavailable_nodes=unavailable)


def _description_version(obj: Obj) -> tuple[str, int] | None:
    """What identifies the description an object holds: its uid and generation (bumped by every
    change but the status's); None when the store does not say (then it is parsed every time)."""
    meta = obj["metadata"]
    generation = meta.get("generation")
    return (str(meta.get("uid", "")), int(generation)) if generation is not None else None


def _without_status(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k != "status"}


def _condition(obj: Obj, kind: str) -> str | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond.get("status")
    return None


def plan_from_status(app: App, status: Mapping[str, Any]) -> Plan | None:
    """The last placement the controller wrote, as a Plan (after a restart: keep, don't churn)."""
    entries = status.get("placement") or []
    if not entries:
        return None
    decisions = tuple(Decision(e["component"], e.get("node"), e.get("cluster"), "previous placement",
                               action=KEEP) for e in entries)
    return Plan(app.name, app.namespace, status.get("policy", ""), decisions,
                tuple(status.get("order") or [e["component"] for e in entries]))


class Reconciler:
    def __init__(self, api: ObjectApi, namespace: str, mechanisms: Sequence[Mechanism], planner: Planner,
                 inventory: InventoryCache, status_retries: int = 5, qos: QosSource | None = None,
                 cached_app: Callable[[str], Obj | None] | None = None) -> None:
        """`cached_app` reads an app from the apps informer's cache (the event that queued the
        reconcile put it there): no GET per reconcile. A stale copy costs a 409 on the status
        write, which re-reads from the API server. Without it every reconcile GETs the app."""
        self.api = api
        self.cached_app = cached_app
        self.namespace = namespace
        self.mechanisms = list(mechanisms)
        self.planner = planner
        self.inventory = inventory
        self.qos: QosSource = qos if qos is not None else NoQos()
        self.status_retries = status_retries
        self._plans: dict[str, Plan] = {}
        self.reservations = Reservations()

    def seed(self, apps: Sequence[Obj]) -> None:
        """After a (re)start, before the first reconcile: every app's last placement (from its
        status) holds its capacity again, so no app is planned into room another one occupies;
        mechanisms with durable state (`seed(live_apps)`: node settings) recover it, dropping
        what apps deleted while the controller was down contributed."""
        live = [f"{o['metadata'].get('namespace') or self.namespace}/{o['metadata']['name']}" for o in apps
                if not o["metadata"].get("deletionTimestamp")]
        for mechanism in self.mechanisms:
            seed = getattr(mechanism, "seed", None)
            if callable(seed):
                try:
                    seed(live)
                except Exception as exc:  # recovered later: each app's reconcile pushes its nodes
                    log.warning("seeding %s: %s", mechanism.name, exc)
        for obj in apps:
            try:
                app = parse_document(_without_status(obj), self.namespace)
            except DescriptionError:
                continue  # its own reconcile reports it
            plan = plan_from_status(app, obj.get("status") or {}) if isinstance(app, App) else None
            if isinstance(app, App) and plan is not None:
                self.reservations.record(app, plan)

    def reconcile(self, name: str) -> Outcome:
        try:
            obj = self._read(name)
        except NotFound:
            return self._removed(name)
        except KubeError as exc:
            return Outcome("Unknown", retry=exc.temporary, message=str(exc))
        if obj["metadata"].get("deletionTimestamp"):
            return Outcome("Deleting")
        try:
            app = parse_document(_without_status(obj), self.namespace)
        except DescriptionError as exc:
            return self._finish(obj, None, Outcome("Failed", message=str(exc)),
                                [Condition("Planned", False, "InvalidDescription", str(exc))])
        if not isinstance(app, App):
            return Outcome("Failed", message=f"{name} is a {type(app).__name__}, not an MLSysOpsApp")
        inventory, telemetry = self.inventory.get()
        previous = self._plans.get(name) or plan_from_status(app, obj.get("status") or {})
        violations = current(self.qos.violations(obj), previous)  # only where components run now
        if violations:
            telemetry = dataclasses.replace(telemetry, qos_violations=violations)
        planned = self.planner(app, inventory, telemetry, previous, self.reservations.ledger(inventory, name))
        plan = planned.plan
        unplaced = [d for d in plan.decisions if not (d.node or d.cluster)]
        planned_cond = (Condition("Planned", True, "AllPlaced", f"{len(plan.decisions)} component(s) placed")
                        if not unplaced else
                        Condition("Planned", False, "Unplaceable",
                                  "not placed: " + "; ".join(_unplaced(d) for d in unplaced)))
        obj = self._progressing(obj, planned, planned_cond)
        outcome = self._realize(app, plan)
        if not outcome.retry and outcome.phase == "Deployed":
            self._plans[name] = plan
            self.reservations.record(app, plan)
        pending = [p for r in outcome.results for p in r.pending]  # e.g. a device unknown to the bridge
        if not outcome.retry and outcome.phase == "Deployed" and (unplaced or pending):
            message = "; ".join([planned_cond.message] * bool(unplaced) + pending)
            outcome = Outcome("Degraded", message=message, results=outcome.results)
        realized = Condition("Realized", outcome.phase in ("Deployed", "Degraded"),
                             _reason(outcome), outcome.message or "all mechanisms applied the plan")
        ready_reason = "Ready" if outcome.phase == "Deployed" else outcome.phase
        if outcome.phase == "Degraded" and pending and not unplaced:
            ready_reason = "AwaitingDeployment"
        ready = Condition("Ready", outcome.phase == "Deployed", ready_reason, outcome.message)
        conds = [planned_cond, realized, ready]
        if outcome.phase == "Deploying" or _has_condition(obj, "Progressing"):
            rolling = outcome.phase == "Deploying"
            if rolling or outcome.phase == "Failed":  # a failed rollout is not "realized"
                reason = "Rollout" if rolling else "Failed"
                conds.append(Condition("Progressing", rolling, reason, outcome.message))
            else:
                conds.append(Condition("Progressing", False, "Available", "the placement is realized"))
        return self._finish(obj, planned, outcome, conds)

    def _read(self, name: str) -> Obj:
        if self.cached_app is None:
            return self.api.get(resources.APP, self.namespace, name)
        obj = self.cached_app(name)
        if obj is None:
            raise NotFound(f'mlsysopsapps.mlsysops.eu "{name}" not found (informer cache)', 404, "NotFound")
        return obj

    def _progressing(self, obj: Obj, planned: PolicyOutcome, planned_cond: Condition) -> Obj:
        """Before realizing a placement that differs from the one in the status (or the first
        one), say so: the status is Progressing (not Ready) until the workloads are available,
        instead of showing the old Ready=True meanwhile, or nothing while a new app's workloads
        start. Returns the object as written (or as read, when the write failed: the final
        status write re-reads on conflict)."""
        previous = obj.get("status") or {}
        placement = previous.get("placement")
        if placement and _where(placement) == _where(status_for(planned)["placement"]):
            return obj
        message = "realizing a new placement; Ready once its workloads are available"
        conds = [planned_cond, Condition("Realized", False, "Progressing", message),
                 Condition("Ready", False, "Progressing", message),
                 Condition("Progressing", True, "Rollout", message)]
        body = copy.deepcopy(obj)
        generation = obj["metadata"].get("generation", 0)
        body["status"] = app_status(generation, previous, planned, conds, "Deploying")
        try:
            return self.api.replace_status(resources.APP, body)
        except KubeError:
            return obj

    # ------------------------------------------------------------------ steps

    def _realize(self, app: App, plan: Plan) -> Outcome:
        results: list[RealizeResult] = []
        for mechanism in self.mechanisms:
            try:
                results.append(mechanism.realize(app, plan))
            except (DescriptionError, ValueError) as exc:
                return Outcome("Failed", message=f"{mechanism.name}: {exc}", results=tuple(results))
            except Exception as exc:  # adapters raise typed errors; `temporary` decides retrying
                temporary = bool(getattr(exc, "temporary", False))
                log.warning("%s/%s: %s: %s", app.namespace, app.name, mechanism.name, exc)
                return Outcome("Deploying" if temporary else "Failed", retry=temporary,
                               message=f"{mechanism.name}: {exc}", results=tuple(results))
        return Outcome("Deployed", results=tuple(results))

    def _removed(self, name: str) -> Outcome:
        """The app is gone: the GC removes owned objects; node settings need their mechanism."""
        self._plans.pop(name, None)
        self.reservations.forget(name)
        for mechanism in self.mechanisms:
            try:
                mechanism.remove(name, self.namespace)
            except Exception as exc:
                temporary = bool(getattr(exc, "temporary", False))
                log.warning("remove %s: %s: %s", name, mechanism.name, exc)
                if temporary:
                    return Outcome("Deleting", retry=True, message=str(exc))
        return Outcome("Deleted")

    def _finish(self, obj: Obj, planned: PolicyOutcome | None, outcome: Outcome,
                conds: list[Condition]) -> Outcome:
        """Write the status, re-reading and retrying on 409 (someone else updated the app).

        observedGeneration is the generation this reconcile read; if the app changed meanwhile
        the status is not written (it would describe the old spec) and the key is retried."""
        generation = obj["metadata"].get("generation", 0)
        for _attempt in range(self.status_retries):
            if obj["metadata"].get("generation", 0) != generation:
                return Outcome(outcome.phase, retry=True, message="the app changed while reconciling",
                               results=outcome.results)
            previous = obj.get("status") or {}
            status = app_status(generation, previous, planned, conds, outcome.phase)
            if status == previous:
                return outcome
            body = copy.deepcopy(obj)
            body["status"] = status
            try:
                self.api.replace_status(resources.APP, body)
                return outcome
            except Conflict:
                try:
                    obj = self.api.get(resources.APP, self.namespace, obj["metadata"]["name"])
                except NotFound:
                    return outcome
                except KubeError as exc:
                    return Outcome(outcome.phase, retry=True, message=str(exc), results=outcome.results)
            except KubeError as exc:
                return Outcome(outcome.phase, retry=exc.temporary or outcome.retry, message=str(exc),
                               results=outcome.results)
        return Outcome(outcome.phase, retry=True, message="status kept conflicting", results=outcome.results)


def _where(placement: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """Where each component runs (not how it got there: keep vs relocate is no change)."""
    return [(p.get("component"), p.get("node"), p.get("cluster"), p.get("replicas")) for p in placement]


def _has_condition(obj: Obj, kind: str) -> bool:
    return any(c.get("type") == kind for c in (obj.get("status") or {}).get("conditions") or [])


def _unplaced(d: Decision) -> str:
    """`camera (no node fits: architecture 3, labels 1)`: the per-filter counts of a no-fit."""
    if not d.rejected_counts:
        return d.component
    counts = ", ".join(f"{reason} {n}" for reason, n in d.rejected_counts.items())
    return f"{d.component} (no node fits: {counts})"


def _reason(outcome: Outcome) -> str:
    if outcome.phase in ("Deployed", "Degraded"):
        return "Applied"
    return "Retrying" if outcome.retry else "RealizeFailed"

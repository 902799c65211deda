"""The `faredge` mechanism: far-edge components go to their device's bridge, never into a Pod.

A far-edge component (`Component.far_edge`: its only `continuum_layer` is `far_edge`, or a
container declares `platform_requirements.mcu`) is code for a microcontroller behind the
far-edge bridge, not a container image: the kubernetes and karmada renderers skip it, and this
mechanism hands it to the bridge of the device it was placed on, as an over-the-air update
(the bridge's control-socket `update` op: signed manifest, A/B slots, confirmed only once the
device reconnects healthy; see docs/firmware.md, "Over-the-air updates").

- **The code** is the component's container `image`, naming an app directory on the bridge's
  host: `file:///srv/sensor` or `/srv/sensor` (MicroPython modules, as `mlsysops devices update
  --app` takes). Anything else (an OCI reference, a relative path, two images) is refused by the
  description's check (controller/model/build.py), with the others, before anything is planned.
- **The device** is the node it was placed on: the MLSysOpsNode's `device.id` (the node sync
  publishes one such node per device an agent reports), else its name, is the id the bridge
  knows.
- **Idempotent across restarts:** what was handed over is recorded in the device's MLSysOpsNode
  `status.code` (`{app, component, code, release, version}`) once the bridge accepted it; a
  reconcile that finds the bridge's rollout of that release (the device view's `ota`) starts
  nothing. A new code reference, or a device whose last rollout is not the recorded one (the
  operator updated it by hand), gets a new rollout.
- **Status from the rollout:** while the bridge reports it pending, downloading, verifying or
  rebooting, realize raises NotReady (the app is Progressing and the reconcile is retried with
  backoff); `confirmed` is done; `rolled_back` or `failed` by the device (a refused signature,
  a wrong hash, a trial boot that did not confirm) fails the app with that reason, and is not
  retried until the code reference changes (a broken release is not pushed at a device again
  and again). A rollout the bridge itself ended (`bridge restarted`, `timeout`, `stopped` by
  the fleet's failure limit) is started again.
- **One code per device:** a device whose record names another app's component is not
  touched; the component is pending with that reason.
- **Unrealisable for now** (pending, with why, so the app is Degraded and not Ready): no bridge
  configured, the device unknown to the bridge.

`remove` forgets the app's records (the device keeps running its last confirmed release: there
is no "stopped" state for a microcontroller's firmware; the next app placed there replaces it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from controller.bridgesocket import BridgeError
from controller.kube import resources
from controller.kube.api import Obj
from controller.kube.errors import NotReady
from controller.mechanisms.base import MechanismContext, RealizeResult
from controller.mechanisms.kubernetes_render import LABEL_PART_OF, dns_name
from controller.mechanisms.node_status import StatusWriter, read_node, write_node_status
from controller.model import App
from controller.policies.base import Plan

API_VERSION = "faredge.mlsysops.eu/v1"
KIND = "FarEdgeDeployment"
FIELD = "code"  # the MLSysOpsNode status field holding what the device was given
NO_BRIDGE = "no far-edge bridge configured (the controller's bridge_socket)"
IN_PROGRESS = ("pending", "downloading", "verifying", "rebooting")
CONFIRMED = "confirmed"
# Rollouts the bridge ended for reasons of its own, not the release's: started again.
RETRIED = frozenset({"bridge restarted", "timeout", "stopped"})


class FarEdgeBridge(Protocol):
    """What the mechanism needs from a bridge (controller.bridgesocket.BridgeSocket)."""

    def get_device(self, device_id: str) -> dict[str, Any]: ...
    def update(self, device_ids: Sequence[str], app_dir: str) -> dict[str, Any]: ...


class RolloutFailed(ValueError):
    """The device refused or rolled back the release: not retried until the code changes
    (a ValueError: the reconciler fails the app with this message)."""


def render(app: App, plan: Plan) -> list[Obj]:
    """One hand-off record per far-edge component placed on a node, in plan order (pure: plan
    mode shows what the bridge would be given)."""
    out: list[Obj] = []
    for decision in plan.decisions:
        comp = app.component(decision.component)
        if not comp.far_edge or decision.node is None:
            continue  # not far-edge, or unplaced (the status says why)
        code = comp.far_edge_code
        if code is None:  # the description's check refuses such an app before it is planned
            raise ValueError(f"far-edge component {comp.name}: its image names no app directory")
        for node in decision.hosts:
            out.append(
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "metadata": {
                        "name": dns_name(app.name, comp.name, node),
                        "namespace": app.namespace,
                        "labels": {LABEL_PART_OF: dns_name(app.name)},
                    },
                    "node": node,
                    "component": comp.name,
                    "code": code,
                }
            )
    return out


@dataclass(frozen=True)
class Handover:
    """What a device was given (its MLSysOpsNode's `status.code`)."""

    app: str  # namespace/name
    component: str
    code: str
    release: int
    version: str

    def to_json(self) -> Obj:
        return {"app": self.app, "component": self.component, "code": self.code,
                "release": self.release, "version": self.version}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Handover:
        return cls(str(data["app"]), str(data["component"]), str(data["code"]),
                   int(data["release"]), str(data.get("version", "")))


class FarEdgeMechanism:
    """Hands far-edge components to their device's bridge (see the module docstring)."""

    name = "faredge"

    def __init__(self, bridge: FarEdgeBridge | None, api: StatusWriter | None, namespace: str) -> None:
        self.bridge = bridge
        self.api = api
        self.namespace = namespace
        self._held: dict[str, set[str]] = {}  # app (namespace/name) -> the device nodes it holds

    @classmethod
    def from_context(cls, context: MechanismContext) -> FarEdgeMechanism:
        api = context.api if isinstance(context.api, StatusWriter) else None
        return cls(context.bridge, api, context.namespace)

    def render(self, app: App, plan: Plan) -> list[Obj]:
        return render(app, plan)

    def realize(self, app: App, plan: Plan) -> RealizeResult:
        records = self.render(app, plan)
        if records and (self.bridge is None or self.api is None):
            return RealizeResult(self.name, (), (), tuple(f"{_what(r)}: {NO_BRIDGE}" for r in records))
        written: list[str] = []
        unchanged: list[str] = []
        pending: list[str] = []
        waiting: list[str] = []
        for record in records:
            ref = f"{KIND}/{app.namespace}/{record['metadata']['name']}"
            state = self._converge(f"{app.namespace}/{app.name}", record, pending, waiting)
            (written if state == "started" else unchanged if state == CONFIRMED else []).append(ref)
        if waiting:
            raise NotReady("far-edge update in progress: " + "; ".join(waiting))
        return RealizeResult(self.name, tuple(written), tuple(unchanged), tuple(pending))

    def _converge(self, app_key: str, record: Obj, pending: list[str], waiting: list[str]) -> str:
        """One device towards its record: "started", "confirmed", or "" (pending or waiting,
        the reason appended to that list). RolloutFailed when the device refused it."""
        assert self.bridge is not None and self.api is not None
        node, what = str(record["node"]), _what(record)
        obj = read_node(self.api, self.namespace, node)
        if obj is None:
            pending.append(f"{what}: no MLSysOpsNode {node}")
            return ""
        device_id = str((obj.get("device") or {}).get("id") or node)
        try:
            device = self.bridge.get_device(device_id)
        except BridgeError as exc:
            if exc.kind == "not_found":
                pending.append(f"{what}: the far-edge bridge does not know device {device_id}")
                return ""
            raise
        held_raw = (obj.get("status") or {}).get(FIELD)
        held = Handover.from_json(held_raw) if held_raw else None
        if held is not None and held.app == app_key:
            self._held.setdefault(app_key, set()).add(node)
        if held is not None and held.app != app_key:
            pending.append(f"{what}: the device runs {held.component} of app {held.app}")
            return ""
        ota = device.get("ota") or {}
        ours = held is not None and held.component == record["component"] and held.code == record["code"]
        if ours and held is not None and ota.get("release") == held.release:
            state = str(ota.get("state", ""))
            if state == CONFIRMED:
                return CONFIRMED
            if state in IN_PROGRESS:
                waiting.append(f"{what}: {_progress(ota)}")
                return ""
            if ota.get("reason") not in RETRIED:
                raise RolloutFailed(f"{what}: release {held.release} {state}"
                                    + (f": {ota['reason']}" if ota.get("reason") else ""))
        if ota.get("state") in IN_PROGRESS:
            waiting.append(f"{what}: another update (release {ota.get('release')}) is running on the device")
            return ""
        try:
            plan = self.bridge.update([device_id], str(record["code"]))
        except BridgeError as exc:
            if exc.temporary:
                raise
            raise RolloutFailed(f"{what}: the bridge refused the update: {exc.message}") from None
        started = plan["devices"][0]
        handover = Handover(app_key, str(record["component"]), str(record["code"]),
                            int(started["release"]), str(started.get("version", "")))
        self._held.setdefault(app_key, set()).add(node)
        if not write_node_status(self.api, self.namespace, node, FIELD, handover.to_json()):
            pending.append(f"{what}: no MLSysOpsNode {node} to record the update in")
            return ""
        waiting.append(f"{what}: release {handover.release} ({handover.version}) handed to the bridge")
        return "started"

    def seed(self, live_apps: Sequence[str]) -> None:
        """After a (re)start: which devices each live app holds (one list of the nodes), and
        forget what apps deleted while the controller was down held."""
        if self.api is None:
            return
        live = set(live_apps)
        for node in self.api.list(resources.NODE, self.namespace)[0]:
            app = ((node.get("status") or {}).get(FIELD) or {}).get("app")
            if app is None:
                continue
            name = node["metadata"]["name"]
            if app in live:
                self._held.setdefault(app, set()).add(name)
            else:
                write_node_status(self.api, self.namespace, name, FIELD, None)

    def remove(self, app_name: str, namespace: str) -> None:
        """Forget the app's devices (each keeps running its last confirmed release): the nodes
        it was seen holding, not a list of every node per removal."""
        key = f"{namespace}/{app_name}"
        if self.api is None:
            return
        for name in sorted(self._held.get(key, ())):
            obj = read_node(self.api, self.namespace, name)
            if obj is not None and ((obj.get("status") or {}).get(FIELD) or {}).get("app") == key:
                write_node_status(self.api, self.namespace, name, FIELD, None)
        self._held.pop(key, None)


def _what(record: Obj) -> str:
    return f"{record['component']} on {record['node']}"


def _progress(ota: Mapping[str, Any]) -> str:
    state = str(ota.get("state"))
    total = int(ota.get("total_bytes") or 0)
    if state == "downloading" and total:
        return f"release {ota.get('release')} downloading {int(ota.get('done_bytes') or 0)}/{total} B"
    return f"release {ota.get('release')} {state}"

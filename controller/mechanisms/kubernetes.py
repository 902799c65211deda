"""The `kubernetes` mechanism: a plan becomes Deployments or Jobs, Services and RuntimeClasses.

This module is the executor: it applies what `kubernetes_render` (pure) renders, through the
`controller.kube` adapter (any `ObjectWriter`), and waits for availability.

What it writes, and why:

- one Deployment per placed component *and placement*: its name carries a short hash of the
  node (or cluster), so relocating a component creates a new Deployment next to the old one;
  the old one is deleted only once the new one is Available (make-before-break, no gap in
  service). Static placements (`node_placement.node`) bind with `nodeName`, like the
  reference; policy choices use required node affinity on `metadata.name`, so the
  scheduler still checks resources and taints.
- a batch/v1 Job instead of the Deployment for a component whose `restart_policy` is
  `OnFailure` or `Never` (a Deployment's pods can only restart Always): same placement,
  labels, runtime class and owner reference, `restartPolicy` as given, one pod per replica
  (`parallelism` = `completions` = replicas). A Job's pod template is immutable and finished
  work cannot be "kept serving", so make-before-break does not apply: the Job's name carries a
  hash of its placement *and* its spec, any change creates a new Job under a new name and the
  old one is deleted (with its pods) in the same pass, right after the new one is written.
  A finished Job is left as it is (no TTL: a Job that disappeared would be rerun on the next
  resync); deleting it by hand reruns it. For `depends_on`, a Job counts as up once one of its
  pods is ready or it has completed.
- one Service per component that has ports or is the destination of a
  `component_interactions` entry (headless when it has no ports). It selects on part-of +
  component, not on the instance, so it spans the old and new Deployment during a relocation.
- the RuntimeClass of each `runtime_class_name` used (cluster-scoped, shared between apps).
  When an app stops using one (its workloads moved on, or it was removed), it is deleted if no
  workload the controller wrote in any namespace still names it (one list per workload kind,
  only then).
- the `app.kubernetes.io/{name,instance,component,part-of,managed-by}` labels, and owner
  references to the MLSysOpsApp (when it has a uid, i.e. it is on a server), so deleting the
  app deletes everything through the garbage collector.

Writes are server-side apply under the field manager `mlsysops-controller`; each object
carries the hash of what was rendered, so "read, compare, write only if different" costs one
list per kind and an unchanged plan writes nothing. Components are applied in `depends_on`
order and a component is only applied once what it depends on is Available.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, runtime_checkable

from controller.kube import resources
from controller.kube.api import Obj, WatchEvent
from controller.kube.errors import KubeError, NotFound, NotReady
from controller.mechanisms.base import MechanismContext, ObjectWriter, RealizeResult
from controller.mechanisms.kubernetes_objects import Rendered, Workload
from controller.mechanisms.kubernetes_render import (
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    app_selector,
    dns_name,
    render,
    rendered_hash,
)
from controller.model import App
from controller.policies.base import Plan

WORKLOADS = (resources.DEPLOYMENT, resources.JOB)
OWNED = (resources.DEPLOYMENT, resources.JOB, resources.SERVICE)
_RESOURCE = {r.kind: r for r in OWNED}

Owned = dict[tuple[str, str], Obj]  # the app's objects on the server by (kind, name)


def ident(obj: Mapping[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def list_owned(api: ObjectWriter, kinds: Iterable[resources.Resource], app: App) -> Owned:
    """The app's objects of these kinds on the server, keyed by (kind, name): one list per kind."""
    return {
        (o["kind"], o["metadata"]["name"]): o
        for res in kinds
        for o in api.list(res, app.namespace, app_selector(app.name))[0]
    }


def apply_if_changed(
    api: ObjectWriter, obj: Mapping[str, Any], current: Obj | None, written: list[str], unchanged: list[str]
) -> None:
    """Read, compare, write only if different: the rendered hash says whether it changed."""
    if current is not None and rendered_hash(current) == rendered_hash(obj):
        unchanged.append(ident(obj))
    else:
        api.apply(obj)
        written.append(ident(obj))


# ---------------------------------------------------------------------- availability


def is_available(deployment: Obj) -> bool:
    """Available as `kubectl rollout status` sees it: the current generation observed and all
    desired replicas updated and available."""
    status = deployment.get("status") or {}
    want = (deployment.get("spec") or {}).get("replicas", 1)
    return bool(
        status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
        and status.get("updatedReplicas", 0) >= want
        and status.get("availableReplicas", 0) >= want
    )


def job_started(job: Obj) -> bool:
    """Up, for what depends on it: a pod of the Job is ready, or the Job already completed."""
    status = job.get("status") or {}
    complete = any(
        c.get("type") == "Complete" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    return bool(complete or status.get("ready", 0) >= 1 or status.get("succeeded", 0) >= 1)


def is_up(workload: Obj) -> bool:
    return job_started(workload) if workload.get("kind") == "Job" else is_available(workload)


@runtime_checkable
class Watcher(Protocol):
    """An API server that can watch (controller.kube.api.KubeApi): availability waits on events."""

    def watch(self, res: resources.Resource, namespace: str, resource_version: str,
              timeout_seconds: int = 60) -> Iterator[WatchEvent]: ...


class Availability:
    """Waits until workloads are up: one list of the app's Deployments (or Jobs), then a watch
    from that list's resourceVersion until they are up, NotReady after `timeout` seconds (the
    loop retries later instead of blocking a worker). An API without watch (a test double) is
    polled every `poll_interval` seconds instead."""

    def __init__(
        self,
        api: ObjectWriter,
        timeout: float = 30.0,
        poll_interval: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api, self.timeout, self.poll_interval = api, timeout, poll_interval
        self.clock, self.sleep = clock, sleep

    def wait(self, app: App, workloads: Sequence[Workload], what: str) -> None:
        deadline = self.clock() + self.timeout
        for res in WORKLOADS:
            of_kind = [w for w in workloads if w["kind"] == res.kind]
            if of_kind:
                self._wait_kind(app, res, of_kind, what, deadline)

    def _wait_kind(self, app: App, res: resources.Resource, workloads: Sequence[Workload], what: str,
                   deadline: float) -> None:
        wanted = {w["metadata"]["name"] for w in workloads}
        while True:
            listed, version = self.api.list(res, app.namespace, app_selector(app.name))
            up = {o["metadata"]["name"] for o in listed if o["metadata"]["name"] in wanted and is_up(o)}
            if up == wanted:
                return
            if isinstance(self.api, Watcher):
                if self._watch(app, res, wanted, up, version, deadline):
                    return
            elif self.clock() < deadline:
                self.sleep(self.poll_interval)
                continue
            if self.clock() >= deadline:
                pending = ", ".join(sorted(wanted - up))
                raise NotReady(f"{what}: not available yet: {pending}")

    def _watch(self, app: App, res: resources.Resource, wanted: set[str], up: set[str], version: str,
               deadline: float) -> bool:
        """True once every wanted workload is up; False when the deadline passed or the watch
        ended early (the caller lists again)."""
        assert isinstance(self.api, Watcher)
        remaining = deadline - self.clock()
        if remaining <= 0:
            return False
        try:
            for event in self.api.watch(res, app.namespace, version, max(1, math.ceil(remaining))):
                name = event.object.get("metadata", {}).get("name")
                if name not in wanted or event.type == "BOOKMARK":
                    continue
                if event.type != "DELETED" and is_up(event.object):
                    up.add(name)
                else:
                    up.discard(name)
                if up == wanted:
                    return True
                if self.clock() >= deadline:
                    return False
        except KubeError:  # compacted or broken: list again (until the deadline)
            return False
        return False


# ---------------------------------------------------------------------- the mechanism


class KubernetesMechanism:
    """Realizes plans on one Kubernetes API server (see the module docstring).

    Writes go out in waves along `depends_on`: everything without a pending dependency at
    once (up to `parallelism` requests in flight, as client-go's QPS allows), then, once one
    list shows the wave's Deployments Available (Jobs started), the components that depend on
    them."""

    name = "kubernetes"

    def __init__(
        self,
        api: ObjectWriter | None = None,
        availability_timeout: float = 30.0,
        poll_interval: float = 0.05,
        parallelism: int = 8,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api = api
        self.availability = (
            Availability(api, availability_timeout, poll_interval, clock, sleep) if api is not None else None
        )
        self.parallelism = parallelism
        self._pool: ThreadPoolExecutor | None = None  # made on the first parallel apply

    @classmethod
    def from_context(cls, context: MechanismContext) -> KubernetesMechanism:
        return cls(context.api, availability_timeout=context.availability_timeout)

    def render(self, app: App, plan: Plan) -> list[Rendered]:
        return render(app, plan)

    def realize(self, app: App, plan: Plan) -> RealizeResult:
        api = self._require_api()
        desired = self.render(app, plan)
        existing = list_owned(api, OWNED, app)
        changed: list[Rendered] = []
        unchanged: list[str] = []
        for obj in desired:  # read, compare, write only if different
            if rendered_hash(self._current(api, obj, existing)) == rendered_hash(obj):
                unchanged.append(ident(obj))
            else:
                changed.append(obj)
        by_component = workloads_by_component(desired)
        written = self._apply_in_waves(app, changed, by_component)
        wanted = {(o["kind"], o["metadata"]["name"]) for o in desired}
        stale = [o for key, o in existing.items() if key not in wanted]
        self._retire(app, stale, by_component)
        written.extend(f"{ident(o)} (deleted)" for o in stale)
        still = {o["metadata"]["name"] for o in desired if o["kind"] == "RuntimeClass"}
        released = self._release_runtime_classes(api, runtime_classes_of(existing.values()) - still)
        written.extend(f"RuntimeClass/{name} (deleted)" for name in released)
        return RealizeResult(mechanism=self.name, written=tuple(written), unchanged=tuple(unchanged))

    def close(self) -> None:
        """Stop the apply threads (the daemon's shutdown calls it)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def remove(self, app_name: str, namespace: str) -> None:
        """Delete everything this mechanism made for the app (the GC does too, through owner
        references; this also covers objects written before the app had a uid)."""
        api = self._require_api()
        for res in OWNED:
            for obj in api.list(res, namespace, app_selector(app_name))[0]:
                api.delete(res, namespace, obj["metadata"]["name"])
        # the garbage collector may have deleted the app's workloads already: every RuntimeClass
        # we wrote is a candidate, kept while any workload of ours still names it
        ours = api.list(resources.RUNTIME_CLASS, "", f"{LABEL_MANAGED_BY}={MANAGED_BY}")[0]
        self._release_runtime_classes(api, {o["metadata"]["name"] for o in ours})

    @staticmethod
    def _release_runtime_classes(api: ObjectWriter, candidates: set[str]) -> list[str]:
        """Delete the RuntimeClasses among `candidates` that we wrote and no workload of ours (in
        any namespace) still names; the names deleted."""
        if not candidates:
            return []
        selector = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
        in_use = runtime_classes_of(o for res in WORKLOADS for o in api.list(res, "", selector)[0])
        released = []
        for name in sorted(candidates - in_use):
            try:
                current = api.get(resources.RUNTIME_CLASS, "", name)
            except NotFound:
                continue
            if (current["metadata"].get("labels") or {}).get(LABEL_MANAGED_BY) == MANAGED_BY:
                api.delete(resources.RUNTIME_CLASS, "", name)
                released.append(name)
        return released

    # ------------------------------------------------------------------ internals

    def _require_api(self) -> ObjectWriter:
        if self.api is None:
            raise RuntimeError("the kubernetes mechanism was built without an API server (plan mode)")
        return self.api

    def _wait(self, app: App, workloads: Sequence[Workload], what: str) -> None:
        if self.availability is None:
            raise RuntimeError("the kubernetes mechanism was built without an API server (plan mode)")
        self.availability.wait(app, workloads, what)

    def _apply_in_waves(
        self, app: App, changed: list[Rendered], by_component: Mapping[str, list[Workload]]
    ) -> list[str]:
        """Apply wave by wave; before a wave, wait for what its components depend on."""
        written: list[str] = []
        for wave, objs in sorted(waves(app, changed).items()):
            if wave:
                components = {component_of(app, o) for o in objs}
                deps = sorted({dns_name(d) for c in components for d in app.component(c).depends_on})
                self._wait(app, [w for c in deps for w in by_component.get(c, [])], "dependencies")
            self._apply_all(objs)
            written.extend(ident(o) for o in objs)
        return written

    def _apply_all(self, objs: Sequence[Rendered]) -> None:
        api = self._require_api()
        if len(objs) <= 1 or self.parallelism <= 1:
            for obj in objs:
                api.apply(obj)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.parallelism, thread_name_prefix="k8s-apply")
        for future in [self._pool.submit(api.apply, obj) for obj in objs]:
            future.result()  # the first failure propagates; the rest were written or failed alike

    @staticmethod
    def _current(api: ObjectWriter, obj: Rendered, existing: Owned) -> Obj | None:
        if obj["kind"] != "RuntimeClass":
            return existing.get((obj["kind"], obj["metadata"]["name"]))
        try:  # cluster-scoped and shared between apps: not among the app's listed objects
            return api.get(resources.RUNTIME_CLASS, "", obj["metadata"]["name"])
        except NotFound:
            return None

    def _retire(self, app: App, stale: Iterable[Obj], by_component: Mapping[str, list[Workload]]) -> None:
        """Delete what is no longer wanted. A relocated component's old Deployment goes only
        after its replacement is up; an old Job goes at once (its replacement was written
        earlier in this pass: finished or half-done work is not worth keeping alive)."""
        api = self._require_api()
        for obj in stale:
            if obj["kind"] == "Deployment":
                replacements = by_component.get(obj["metadata"]["labels"].get(LABEL_COMPONENT, ""), [])
                self._wait(app, replacements, f"the replacement of {obj['metadata']['name']}")
            api.delete(_RESOURCE[obj["kind"]], app.namespace, obj["metadata"]["name"])


# ---------------------------------------------------------------------- ordering (pure)


def workloads_by_component(objs: Iterable[Rendered]) -> dict[str, list[Workload]]:
    out: dict[str, list[Workload]] = {}
    for obj in objs:
        if obj["kind"] == "Deployment" or obj["kind"] == "Job":
            out.setdefault(obj["metadata"]["labels"][LABEL_COMPONENT], []).append(obj)
    return out


def waves(app: App, objs: Iterable[Rendered]) -> dict[int, list[Rendered]]:
    """Objects by depends_on depth: 0 for everything but the workloads of dependent components."""
    depth: dict[str, int] = {}

    def level(name: str, seen: frozenset[str] = frozenset()) -> int:
        if name not in depth:
            deps = [d for d in app.component(name).depends_on if d not in seen]
            depth[name] = 1 + max((level(d, seen | {name}) for d in deps), default=-1)
        return depth[name]

    out: dict[int, list[Rendered]] = {}
    for obj in objs:
        wave = level(component_of(app, obj)) if obj["kind"] in ("Deployment", "Job") else 0
        out.setdefault(wave, []).append(obj)
    return out


def runtime_classes_of(workloads: Iterable[Mapping[str, Any]]) -> set[str]:
    """The runtimeClassName each Deployment/Job's pod template names."""
    names = set()
    for w in workloads:
        pod = ((w.get("spec") or {}).get("template") or {}).get("spec") or {}
        if pod.get("runtimeClassName"):
            names.add(str(pod["runtimeClassName"]))
    return names


def component_of(app: App, workload: Rendered) -> str:
    label = workload["metadata"]["labels"][LABEL_COMPONENT]
    return next(c.name for c in app.components if dns_name(c.name) == label)

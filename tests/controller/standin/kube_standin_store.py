"""The object store of the Kubernetes API stand-in: resources, versions, events, ownership.

Pure in-memory state behind one lock, with no HTTP in it, so its semantics (what a real
kube-apiserver does on create/update/patch/apply/delete) read in one place:

- every write bumps one global resourceVersion; every change is an event kept in a bounded
  history, and a watch from a resourceVersion older than the history gets 410 Gone;
- `generation` increases when anything but metadata/status changes; uid and
  creationTimestamp are set once;
- updates carrying a stale resourceVersion and creates of an existing name are 409s;
- kinds with a status subresource ignore `status` on main-resource writes, and the status
  endpoint changes only `status`;
- deleting an owner deletes its dependents (ownerReferences.uid), like the garbage
  collector with background propagation; `Orphan` strips the references instead; an object
  written with owner references none of which exists is collected at once, as the GC would;
- fields a kind declares immutable (a Job's pod template and selector) cannot change once
  created: such an update, patch or apply is a 422, as kube-apiserver's validation answers;
- server-side apply tracks each field manager's fields (lists are atomic here: the stand-in
  simplifies associative lists, which is enough when one manager owns a list) and reports
  conflicts with other managers unless forced; the field-path helpers are the embedded
  store's (controller.store.apply), which implements the same rules.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controller.store.apply import clone, delete_path, field_paths, fields_v1, get_path, paths_of_fields_v1

Obj = dict[str, Any]
Path = tuple[str, ...]


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status: bool = False  # has a status subresource
    builtin: bool = True  # strategic merge patch is only served for built-in kinds
    short_names: tuple[str, ...] = ()
    immutable: tuple[Path, ...] = ()  # fields fixed at creation (422 "field is immutable" after)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()


DEFAULT_TYPES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "services", "Service", status=True, short_names=("svc",)),
    ResourceType("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    ResourceType("apps", "v1", "deployments", "Deployment", status=True, short_names=("deploy",)),
    ResourceType("batch", "v1", "jobs", "Job", status=True,
                 immutable=(("spec", "template"), ("spec", "selector"))),
    ResourceType("node.k8s.io", "v1", "runtimeclasses", "RuntimeClass", namespaced=False),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease"),
    ResourceType("mlsysops.eu", "v1", "mlsysopsapps", "MLSysOpsApp", status=True, builtin=False,
                 short_names=("mlsapp",)),
    ResourceType("mlsysops.eu", "v1", "mlsysopsnodes", "MLSysOpsNode", status=True, builtin=False,
                 short_names=("mlsnode",)),
    ResourceType("mlsysops.eu", "v1", "mlsysopsclusters", "MLSysOpsCluster", status=True, builtin=False,
                 short_names=("mlscluster",)),
    ResourceType("mlsysops.eu", "v1", "mlsysopscontinuums", "MLSysOpsContinuum", status=True,
                 builtin=False, short_names=("mlscontinuum",)),
    ResourceType("policy.karmada.io", "v1alpha1", "propagationpolicies", "PropagationPolicy",
                 builtin=False, short_names=("pp",)),
    ResourceType("policy.karmada.io", "v1alpha1", "overridepolicies", "OverridePolicy", builtin=False,
                 short_names=("op",)),
    ResourceType("policy.karmada.io", "v1alpha1", "clusterpropagationpolicies",
                 "ClusterPropagationPolicy", namespaced=False, builtin=False, short_names=("cpp",)),
    ResourceType("policy.karmada.io", "v1alpha1", "clusteroverridepolicies", "ClusterOverridePolicy",
                 namespaced=False, builtin=False, short_names=("cop",)),
    ResourceType("cluster.karmada.io", "v1alpha1", "clusters", "Cluster", namespaced=False, status=True,
                 builtin=False),
)


class ApiError(Exception):
    """A failed request, rendered by the HTTP layer as a v1 Status object."""

    def __init__(self, code: int, reason: str, message: str, causes: list[Obj] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.causes = code, reason, message, causes or []

    def status(self) -> Obj:
        details = {"causes": self.causes} if self.causes else {}
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code, "details": details}


@dataclass(frozen=True)
class Event:
    rv: int
    rtype: ResourceType
    type: str  # ADDED | MODIFIED | DELETED
    obj: Obj


Validator = Callable[[Obj], list[str]]
Key = tuple[str, str, str]  # (plural.group, namespace, name)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any, strategic: bool = False) -> Any:
    """RFC 7386 JSON merge patch: maps merge, null deletes, everything else replaces.

    With `strategic`, as far as the stand-in needs strategic merge: lists of maps keyed by
    `name` merge by that key (containers, env, ports) instead of being replaced."""
    if strategic and isinstance(patch, list) and isinstance(target, list) and _named_list(patch) \
            and _named_list(target):
        merged = {item["name"]: item for item in target}
        for item in patch:
            merged[item["name"]] = merge_patch(merged.get(item["name"]), item, strategic)
        return list(merged.values())
    if not isinstance(patch, dict):
        return clone(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value, strategic)
    return result


def _named_list(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(i, dict) and "name" in i for i in items)


def _spec_view(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


class Store:
    """All objects, the resourceVersion counter and the bounded event history."""

    def __init__(self, types: tuple[ResourceType, ...] = DEFAULT_TYPES, history: int = 1000,
                 validator: Validator | None = None) -> None:
        self.types = types
        self.validator = validator
        self.cond = threading.Condition()
        self.rv = 0
        self.objects: dict[Key, Obj] = {}
        self.by_type: dict[str, dict[Key, Obj]] = {}  # plural.group -> its objects (fast lists)
        self.uids: set[str] = set()  # of live objects: dependents of a missing owner are collected
        self.events: deque[Event] = deque(maxlen=history)
        self.compacted_rv = 0  # watches from a resourceVersion below this get 410 Gone
        self.received: list[Obj] = []  # every object body a client sent, for tests to inspect
        self.stopping = False
        self.on_write: list[Callable[[ResourceType, str, Obj], None]] = []

    # ------------------------------------------------------------------ lookup

    def type_for(self, group: str, version: str, plural: str) -> ResourceType:
        for rtype in self.types:
            if (rtype.group, rtype.version, rtype.plural) == (group, version, plural):
                return rtype
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({plural})")

    @staticmethod
    def key(rtype: ResourceType, namespace: str, name: str) -> Key:
        return (f"{rtype.plural}.{rtype.group}", namespace if rtype.namespaced else "", name)

    def get(self, rtype: ResourceType, namespace: str, name: str) -> Obj:
        with self.cond:
            obj = self.objects.get(self.key(rtype, namespace, name))
            if obj is None:
                raise ApiError(404, "NotFound", f'{rtype.plural}.{rtype.group} "{name}" not found')
            return clone(obj)

    def list(self, rtype: ResourceType, namespace: str,
             match: Callable[[Obj], bool] = lambda _o: True) -> tuple[list[Obj], int]:
        with self.cond:
            prefix = f"{rtype.plural}.{rtype.group}"
            items = [clone(o) for (_, ns, _), o in sorted(self.by_type.get(prefix, {}).items())
                     if (not namespace or ns == namespace) and match(o)]
            return items, self.rv

    # ------------------------------------------------------------------ writes

    def create(self, rtype: ResourceType, namespace: str, body: Obj, manager: str = "") -> Obj:
        with self.cond:
            obj = self._checked_body(rtype, namespace, body)
            name = obj["metadata"].get("name") or self._generate_name(obj)
            key = self.key(rtype, namespace, name)
            if key in self.objects:
                raise ApiError(409, "AlreadyExists", f'{rtype.plural}.{rtype.group} "{name}" already exists')
            if rtype.status:
                obj.pop("status", None)
            meta = obj["metadata"]
            meta.update(name=name, uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
            if rtype.namespaced:
                meta["namespace"] = namespace
            self._own(obj, manager or "unknown", field_paths(obj), "Update")
            return self._commit(rtype, key, obj, "ADDED")

    def update(self, rtype: ResourceType, namespace: str, name: str, body: Obj, manager: str = "",
               subresource: str = "") -> Obj:
        with self.cond:
            old = self._existing(rtype, namespace, name)
            obj = self._checked_body(rtype, namespace, body, name)
            sent_rv = obj["metadata"].get("resourceVersion")
            if sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", f"Operation cannot be fulfilled on {rtype.plural}."
                               f'{rtype.group} "{name}": the object has been modified; please apply your '
                               "changes to the latest version and try again")
            if subresource == "status":
                new = clone(old)
                new["status"] = obj.get("status", {})
            else:
                new = obj
                if rtype.status:
                    new["status"] = clone(old.get("status", {}))
                    if not new["status"]:
                        new.pop("status")
            return self._replace(rtype, old, new, manager or "unknown", "Update")

    def patch(self, rtype: ResourceType, namespace: str, name: str, patch: Obj, strategic: bool,
              manager: str = "", subresource: str = "") -> Obj:
        with self.cond:
            old = self._existing(rtype, namespace, name)
            self.received.append(clone(patch))
            if subresource == "status":
                new = clone(old)
                new["status"] = merge_patch(old.get("status", {}), patch.get("status", {}), strategic)
            else:
                body = {k: v for k, v in patch.items() if not (rtype.status and k == "status")}
                new = merge_patch(clone(old), body, strategic)
            sent_rv = get_path(patch, ("metadata", "resourceVersion"))
            if sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", f'the object "{name}" has been modified')
            return self._replace(rtype, old, new, manager or "unknown", "Update")

    def apply(self, rtype: ResourceType, namespace: str, name: str, config: Obj, manager: str,
              force: bool) -> Obj:
        """Server-side apply: create or merge, removing fields this manager no longer sets."""
        if not manager:
            raise ApiError(400, "BadRequest", "fieldManager is required for apply requests")
        with self.cond:
            config = self._checked_body(rtype, namespace, config, name)
            if rtype.status:
                config.pop("status", None)
            wanted = field_paths(config)
            key = self.key(rtype, namespace, name)
            if key not in self.objects:
                obj = clone(config)
                meta = obj["metadata"]
                meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
                if rtype.namespaced:
                    meta["namespace"] = namespace
                self._own(obj, manager, wanted, "Apply")
                return self._commit(rtype, key, obj, "ADDED")
            old = self.objects[key]
            owners = self._owners(old)
            conflicts = sorted(
                f".{'.'.join(p)} (owned by {m})" for m, ps in owners.items() if m != manager
                for p in ps & wanted if get_path(old, p) != get_path(config, p))
            if conflicts and not force:
                raise ApiError(409, "Conflict", f"Apply failed with {len(conflicts)} conflicts: "
                               + ", ".join(conflicts))
            others = set().union(*(ps for m, ps in owners.items() if m != manager))
            new = clone(old)
            for path in owners.get(manager, set()) - wanted - others:
                delete_path(new, path)
            new = merge_patch(new, config)
            return self._replace(rtype, old, new, manager, "Apply", owned=wanted)

    def delete(self, rtype: ResourceType, namespace: str, name: str, propagation: str = "Background") -> Obj:
        with self.cond:
            old = self._existing(rtype, namespace, name)
            self._delete_key(rtype, self.key(rtype, namespace, name), propagation)
            return old

    # ------------------------------------------------------------------ watch

    def events_since(self, rtype: ResourceType, namespace: str, rv: int) -> list[Event]:
        """Events after rv for one resource (caller holds cond); 410 when rv was compacted."""
        if rv < self.compacted_rv:
            raise ApiError(410, "Expired", f"too old resource version: {rv} ({self.compacted_rv})")
        return [e for e in self.events if e.rv > rv and e.rtype == rtype
                and (not namespace or e.obj["metadata"].get("namespace", "") == namespace)]

    def compact(self) -> None:
        """Forget the whole event history, like etcd compaction: older watches get 410."""
        with self.cond:
            self.events.clear()
            self.compacted_rv = self.rv

    def iter_watch(self, rtype: ResourceType, namespace: str, rv: int, deadline: float,
                   clock: Callable[[], float]) -> Iterator[Event]:
        cursor = rv
        while True:
            with self.cond:
                pending = self.events_since(rtype, namespace, cursor)
                while not pending and not self.stopping and clock() < deadline:
                    cursor = self.rv  # nothing for this watcher up to here: it stays current, as
                    # with the real watch cache (an idle watch must not expire under others' writes)
                    self.cond.wait(min(0.5, max(0.0, deadline - clock())))
                    pending = self.events_since(rtype, namespace, cursor)
                if not pending:
                    return
            for event in pending:
                cursor = event.rv
                yield event

    # ------------------------------------------------------------------ internals

    def _existing(self, rtype: ResourceType, namespace: str, name: str) -> Obj:
        obj = self.objects.get(self.key(rtype, namespace, name))
        if obj is None:
            raise ApiError(404, "NotFound", f'{rtype.plural}.{rtype.group} "{name}" not found')
        return obj

    def _checked_body(self, rtype: ResourceType, namespace: str, body: Obj, name: str = "") -> Obj:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the request body must be a JSON object")
        self.received.append(body)
        obj = clone(body)
        sent = (obj.get("apiVersion", rtype.api_version), obj.get("kind", rtype.kind))
        if sent != (rtype.api_version, rtype.kind):
            raise ApiError(400, "BadRequest", f"body is {obj.get('apiVersion')}/{obj.get('kind')}, "
                           f"the URL is {rtype.api_version}/{rtype.kind}")
        obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
        meta = obj.setdefault("metadata", {})
        if name and meta.setdefault("name", name) != name:
            raise ApiError(400, "BadRequest", f"metadata.name {meta['name']!r} is not the URL's {name!r}")
        if rtype.namespaced and meta.get("namespace", namespace) != namespace:
            raise ApiError(400, "BadRequest", "metadata.namespace does not match the URL")
        for field in ("uid", "creationTimestamp", "generation", "managedFields"):
            meta.pop(field, None)
        return obj

    @staticmethod
    def _generate_name(obj: Obj) -> str:
        prefix = obj["metadata"].get("generateName")
        if not prefix:
            raise ApiError(422, "Invalid", "metadata.name: Required value: name or generateName is required")
        return prefix + uuid.uuid4().hex[:5]

    def _owners(self, obj: Obj) -> dict[str, set[Path]]:
        return {e["manager"]: paths_of_fields_v1(e.get("fieldsV1", {}))
                for e in obj["metadata"].get("managedFields", [])}

    def _own(self, obj: Obj, manager: str, paths: set[Path], operation: str,
             previous: dict[str, set[Path]] | None = None) -> None:
        owners = {m: ps - paths for m, ps in (previous or {}).items() if m != manager}
        owners[manager] = paths | (set() if operation == "Apply" else (previous or {}).get(manager, set()))
        obj["metadata"]["managedFields"] = [
            {"manager": m, "operation": "Apply" if (m == manager and operation == "Apply") else "Update",
             "apiVersion": obj["apiVersion"], "time": now(), "fieldsType": "FieldsV1",
             "fieldsV1": fields_v1(ps)}
            for m, ps in owners.items() if ps]

    def _replace(self, rtype: ResourceType, old: Obj, new: Obj, manager: str, operation: str,
                 owned: set[Path] | None = None) -> Obj:
        for path in rtype.immutable:
            if get_path(new, path) != get_path(old, path):
                field = ".".join(path)
                raise ApiError(422, "Invalid", f'{rtype.kind}.{rtype.group} "{old["metadata"]["name"]}" is '
                               f"invalid: {field}: Invalid value: field is immutable",
                               [{"reason": "FieldValueInvalid", "message": "field is immutable",
                                 "field": field}])
        meta, old_meta = new["metadata"], old["metadata"]
        for field in ("uid", "creationTimestamp", "namespace", "name"):
            if field in old_meta:
                meta[field] = old_meta[field]
        meta["generation"] = old_meta["generation"] + (_spec_view(new) != _spec_view(old))
        meta["resourceVersion"] = old_meta["resourceVersion"]
        meta.pop("managedFields", None)
        if owned is None:  # an Update owns what it changed
            new_paths, old_paths = field_paths(new), field_paths(old)
            owned = {p for p in new_paths if p not in old_paths or get_path(new, p) != get_path(old, p)}
        unchanged = new == {**old, "metadata": {k: v for k, v in old_meta.items() if k != "managedFields"}}
        self._own(new, manager, owned, operation, self._owners(old))
        if unchanged and self._owners(new) == self._owners(old):
            return clone(old)  # a no-op write does not bump the resourceVersion
        return self._commit(rtype, self.key(rtype, meta.get("namespace", ""), meta["name"]), new, "MODIFIED")

    def _commit(self, rtype: ResourceType, key: Key, obj: Obj, event_type: str) -> Obj:
        if self.validator is not None:
            errors = self.validator(obj)
            if errors:
                raise ApiError(422, "Invalid", f"{rtype.kind} {obj['metadata'].get('name')!r} is invalid: "
                               + "; ".join(errors), [{"message": e} for e in errors])
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[key] = obj
        self.by_type.setdefault(key[0], {})[key] = obj
        self.uids.add(obj["metadata"]["uid"])
        self.events.append(Event(self.rv, rtype, event_type, obj))  # stored objects are never mutated
        if len(self.events) == self.events.maxlen:
            self.compacted_rv = self.events[0].rv - 1
        self.cond.notify_all()
        for hook in self.on_write:
            hook(rtype, event_type, obj)
        refs = obj["metadata"].get("ownerReferences") or []
        if refs and key in self.objects and not any(r.get("uid") in self.uids for r in refs):
            self._delete_key(rtype, key, "Background")  # its owner is gone: the GC collects it
        return clone(obj)

    def _delete_key(self, rtype: ResourceType, key: Key, propagation: str) -> None:
        obj = self.objects.pop(key)
        self.by_type[key[0]].pop(key, None)
        self.uids.discard(obj["metadata"]["uid"])
        self.rv += 1
        gone = clone(obj)
        gone["metadata"]["resourceVersion"] = str(self.rv)
        self.events.append(Event(self.rv, rtype, "DELETED", gone))
        self.cond.notify_all()
        uid = obj["metadata"]["uid"]
        for dep_key, dep in list(self.objects.items()):
            refs = dep["metadata"].get("ownerReferences", [])
            if dep_key not in self.objects or not any(r.get("uid") == uid for r in refs):
                continue
            dep_type = next(t for t in self.types if f"{t.plural}.{t.group}" == dep_key[0])
            if propagation == "Orphan":
                new = clone(dep)
                remaining = [r for r in refs if r.get("uid") != uid]
                if remaining:
                    new["metadata"]["ownerReferences"] = remaining
                else:
                    new["metadata"].pop("ownerReferences")
                self._commit(dep_type, dep_key, new, "MODIFIED")
            else:
                self._delete_key(dep_type, dep_key, propagation)

"""ObjectApi: what the controller needs from an object store, whichever store it is.

Two stores satisfy it: `controller.kube.api.KubeApi` (a Kubernetes or Karmada API server) and
`controller.store.SqliteStore` (the embedded SQLite store of the single-machine mode, opened
with `controller.store.open(path)`). The reconcile loop (informers, reconciler, node sync),
the mechanisms, the CLI's AppStore and the REST API are written against this protocol only,
so the same loop runs on both and a new store is one adapter.

The semantics are the Kubernetes API's, because the loop depends on them:
- objects are plain dicts in Kubernetes form; every write bumps one global, monotonically
  increasing `metadata.resourceVersion` (a string; compare for equality only);
- `apply` is server-side apply: create or update the fields `field_manager` sets, never
  `status`; an apply that changes nothing writes nothing and keeps the resourceVersion;
- `replace_status` writes only `status`, and raises Conflict when the object's
  resourceVersion is stale (optimistic concurrency);
- `delete` removes the object and, in the background, whatever names it in ownerReferences;
- `watch` yields the changes after a resourceVersion in order (ADDED, MODIFIED, DELETED, and
  BOOKMARKs carrying only a newer resourceVersion) until `timeout_seconds`, and raises Gone
  when that version is older than the store's history (the caller lists again).
Errors are those of controller.kube.errors. This module imports no client library, so code
typed against it does not pull in `kubernetes`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from controller.kube.resources import Resource

Obj = dict[str, Any]

FIELD_MANAGER = "mlsysops-controller"


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED | MODIFIED | DELETED | BOOKMARK
    object: Obj


@runtime_checkable
class ObjectApi(Protocol):
    """The store operations the controller, the CLI and the REST API use (see the module docstring)."""

    def get(self, res: Resource, namespace: str, name: str) -> Obj:
        """The object; NotFound when there is none."""
        ...

    def list(self, res: Resource, namespace: str = "", label_selector: str = "") -> tuple[list[Obj], str]:
        """Items (all namespaces when namespace is "") and the resourceVersion a watch continues from."""
        ...

    def apply(self, obj: Mapping[str, Any], field_manager: str = FIELD_MANAGER, force: bool = True) -> Obj:
        """Server-side apply of the fields this manager owns; returns the stored object."""
        ...

    def replace_status(self, res: Resource, obj: Obj) -> Obj:
        """Replace `status` only; Conflict when obj's metadata.resourceVersion is stale."""
        ...

    def delete(self, res: Resource, namespace: str, name: str, propagation: str = "Background") -> bool:
        """Delete (idempotent): False when it was already gone."""
        ...

    def watch(self, res: Resource, namespace: str, resource_version: str,
              timeout_seconds: int = 60) -> Iterator[WatchEvent]:
        """Changes after resource_version until the timeout; Gone when it was compacted."""
        ...

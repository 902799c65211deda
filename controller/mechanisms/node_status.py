"""Fields the mechanisms record in an MLSysOpsNode's status (settings, far-edge code).

The status subresource is written with the resourceVersion read (a Conflict re-reads), so the
node sync's conditions and each mechanism's field never overwrite each other. The first read
may be the nodes informer's cached copy (no GET per write); a stale copy costs a 409, and every
retry reads from the API server.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from controller.kube import resources
from controller.kube.api import Obj
from controller.kube.errors import Conflict, NotFound
from controller.mechanisms.base import ObjectWriter

ATTEMPTS = 5


@runtime_checkable
class StatusWriter(ObjectWriter, Protocol):
    def replace_status(self, res: resources.Resource, obj: Obj) -> Obj: ...


def read_node(api: ObjectWriter, namespace: str, node: str) -> Obj | None:
    """The MLSysOpsNode as the API server has it now (None when there is none)."""
    try:
        return api.get(resources.NODE, namespace, node)
    except NotFound:
        return None


def write_node_status(api: StatusWriter, namespace: str, node: str, field: str, value: Any,
                      cached: Callable[[str], Obj | None] | None = None) -> bool:
    """Set (or, with a falsy value, remove) one field of the node's status; False when there is
    no MLSysOpsNode. Writes only when it differs from what is there."""
    for attempt in range(ATTEMPTS):
        obj = cached(node) if cached is not None and not attempt else None
        if obj is None:
            try:
                obj = api.get(resources.NODE, namespace, node)
            except NotFound:
                return False
        else:
            obj = copy.deepcopy(obj)  # the cache's copy is shared: never modified
        status = dict(obj.get("status") or {})
        if (status.get(field) or None) == (value or None):
            return True
        if value:
            status[field] = value
        else:
            status.pop(field, None)
        obj["status"] = status
        try:
            api.replace_status(resources.NODE, obj)
            return True
        except Conflict:
            continue
    raise Conflict(f"MLSysOpsNode {node}: its status.{field} kept conflicting")

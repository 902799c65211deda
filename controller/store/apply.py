"""Server-side apply as the embedded store does it: pure functions over plain dicts.

What the reconcile loop relies on, and nothing more:
- each field manager owns the leaf paths it last applied (recorded in metadata.managedFields,
  in the API server's FieldsV1 encoding, so `kubectl`-style readers understand it); lists are
  atomic (one manager owns a whole list), maps merge key by key;
- an apply sets the fields it names and removes those its manager applied before and no
  longer names (unless another manager owns them too); fields of other managers stay;
- a field another manager owns with a different value is a conflict unless `force`;
- `status`, identity and server-set metadata are never applied (the status subresource owns
  `status`);
- `generation` counts changes of anything but metadata and status.
The SQLite adapter (controller.store.sqlite) decides whether anything changed and writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]
Path = tuple[str, ...]

SERVER_SET = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields",
              "deletionTimestamp", "selfLink")
_META_OWNED = ("labels", "annotations", "ownerReferences", "finalizers")


@dataclass(frozen=True)
class ApplyConflict(Exception):
    """Fields owned by other managers that this apply would change (without force)."""

    fields: tuple[str, ...]

    def __str__(self) -> str:
        return f"Apply failed with {len(self.fields)} conflicts: " + ", ".join(self.fields)


def clone(value: Any) -> Any:
    """A deep copy of JSON data, several times faster than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


def field_paths(obj: Mapping[str, Any]) -> set[Path]:
    """The leaf paths a manager owns for this object: spec-like fields and the user-settable
    metadata maps; never apiVersion/kind/status or server-set metadata."""
    paths: set[Path] = set()
    for key, value in obj.items():
        if key in ("apiVersion", "kind", "status"):
            continue
        if key == "metadata":
            for mkey in _META_OWNED:
                if mkey in value:
                    _collect(value[mkey], ("metadata", mkey), paths)
            continue
        _collect(value, (key,), paths)
    return paths


def _collect(value: Any, prefix: Path, out: set[Path]) -> None:
    if isinstance(value, dict) and value:
        for key, sub in value.items():
            _collect(sub, (*prefix, key), out)
    else:
        out.add(prefix)


def get_path(obj: Any, path: Path) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def delete_path(obj: Obj, path: Path) -> None:
    parents = [obj]
    for key in path[:-1]:
        nxt = parents[-1].get(key)
        if not isinstance(nxt, dict):
            return
        parents.append(nxt)
    parents[-1].pop(path[-1], None)
    for depth in range(len(path) - 2, -1, -1):  # prune maps the removal left empty
        if parents[depth + 1] == {}:
            parents[depth].pop(path[depth], None)


def _merge(target: Any, patch: Any) -> Any:
    """Maps merge key by key; anything else (lists included) replaces."""
    if not isinstance(patch, dict) or not isinstance(target, dict):
        return clone(patch)
    out = dict(target)
    for key, value in patch.items():
        out[key] = _merge(out.get(key), value)
    return out


def fields_v1(paths: set[Path]) -> Obj:
    """The managedFields encoding of a set of paths ({"f:spec": {"f:replicas": {}}})."""
    root: Obj = {}
    for path in sorted(paths):
        node = root
        for key in path:
            node = node.setdefault(f"f:{key}", {})
    return root


def paths_of_fields_v1(tree: Mapping[str, Any], prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for key, sub in tree.items():
        path = (*prefix, key[2:])
        if sub:
            out |= paths_of_fields_v1(sub, path)
        else:
            out.add(path)
    return out


def owners(obj: Mapping[str, Any]) -> dict[str, set[Path]]:
    """manager → the paths it owns, from metadata.managedFields."""
    return {e["manager"]: paths_of_fields_v1(e.get("fieldsV1") or {})
            for e in (obj.get("metadata") or {}).get("managedFields") or []}


def _managed(api_version: str, by_manager: Mapping[str, set[Path]], time: str) -> list[Obj]:
    return [{"manager": m, "operation": "Apply", "apiVersion": api_version, "time": time,
             "fieldsType": "FieldsV1", "fieldsV1": fields_v1(ps)}
            for m, ps in sorted(by_manager.items()) if ps]


def without_server_fields(config: Mapping[str, Any]) -> Obj:
    """What an apply may set: the config minus status and server-set metadata."""
    out = {k: clone(v) for k, v in config.items() if k != "status"}
    meta = out.setdefault("metadata", {})
    for key in SERVER_SET:
        meta.pop(key, None)
    return out


def applied(old: Obj | None, config: Mapping[str, Any], manager: str, force: bool, time: str) -> Obj:
    """The object after `manager` applies `config` to `old` (None: create). Server-set metadata
    is carried over from old (the caller sets uid/creation/resourceVersion on create).
    Raises ApplyConflict when another manager owns a changed field and not force."""
    config = without_server_fields(config)
    wanted = field_paths(config)
    if old is None:
        new = clone(config)
        new["metadata"]["managedFields"] = _managed(new["apiVersion"], {manager: wanted}, time)
        return new
    by_manager = owners(old)
    contested = {m: {p for p in ps & wanted if get_path(old, p) != get_path(config, p)}
                 for m, ps in by_manager.items() if m != manager}
    conflicts = sorted(f".{'.'.join(p)} (owned by {m})" for m, ps in contested.items() for p in ps)
    if conflicts and not force:
        raise ApplyConflict(tuple(conflicts))
    others = set().union(*(ps for m, ps in by_manager.items() if m != manager))
    new = clone(old)
    for path in by_manager.get(manager, set()) - wanted - others:
        delete_path(new, path)
    new = _merge(new, config)
    by_manager = {m: ps - contested[m] for m, ps in by_manager.items() if m != manager}  # forced away
    by_manager[manager] = wanted
    new["metadata"]["managedFields"] = _managed(new["apiVersion"], by_manager, time)
    return new


def same_object(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal but for the managedFields' timestamps: writing b over a would change nothing."""
    def untimed(o: Mapping[str, Any]) -> Any:
        meta = dict(o.get("metadata") or {})
        meta["managedFields"] = [{k: v for k, v in e.items() if k != "time"}
                                 for e in meta.get("managedFields") or []]
        return {**o, "metadata": meta}
    return bool(untimed(a) == untimed(b))


def spec_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether anything but metadata and status differs (what bumps metadata.generation)."""
    def view(o: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in o.items() if k not in ("metadata", "status")}
    return view(old) != view(new)

"""`kustomize build` for the subset of Kustomize deploy/kubernetes uses (no kustomize or kubectl
binary is installed here): `resources` (files and directories with their own kustomization),
`patches` (strategic-merge patches from files, each naming its target by apiVersion, kind, name
and namespace) and nothing else. Anything outside that subset is refused by name, so a
kustomization the tests would render differently from kustomize fails here instead.

Where kustomize refuses, this refuses too: a resource file outside the kustomization's
directory (kustomize's default load restrictor, LoadRestrictionsRootOnly), the same object
twice, a patch whose target is not among the resources. Strategic merge follows the API's
patch strategies for the fields the patches touch: lists of containers, init containers,
volumes, volume mounts and env merge by `name`, other lists are replaced, maps merge.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]
SUPPORTED = {"apiVersion", "kind", "resources", "patches"}
MERGE_BY_NAME = {"containers", "initContainers", "ephemeralContainers", "volumes", "volumeMounts", "env"}


class KustomizeError(ValueError):
    """What kustomize would refuse, with the file and the reason."""


def build(directory: Path) -> list[Obj]:
    """The objects `kustomize build directory` prints, in resource order."""
    directory = directory.resolve()
    path = directory / "kustomization.yaml"
    spec = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(spec) - SUPPORTED)
    if unknown:
        raise KustomizeError(f"{path}: fields outside the rendered subset: {', '.join(unknown)}")
    if spec.get("kind", "Kustomization") != "Kustomization":
        raise KustomizeError(f"{path}: kind {spec['kind']!r} (a Component is not in the subset)")
    objects: list[Obj] = []
    for entry in spec.get("resources", []):
        objects.extend(_resource(directory, entry))
    seen: set[tuple[str, ...]] = set()
    for obj in objects:
        key = identity(obj)
        if key in seen:
            raise KustomizeError(f"{path}: {'/'.join(key)} is added twice")
        seen.add(key)
    for patch in spec.get("patches", []):
        if set(patch) != {"path"}:
            raise KustomizeError(f"{path}: patch {patch}: only `path` patches are in the subset")
        _apply(objects, _inside(directory, patch["path"]), path)
    return objects


def identity(obj: Obj) -> tuple[str, ...]:
    group = obj["apiVersion"].rpartition("/")[0]
    meta = obj["metadata"]
    return (group, obj["kind"], meta.get("namespace", ""), meta["name"])


def _resource(directory: Path, entry: str) -> list[Obj]:
    target = (directory / entry).resolve()
    if target.is_dir():
        return build(target)
    return _documents(_inside(directory, entry))


def _inside(directory: Path, entry: str) -> Path:
    target = (directory / entry).resolve()
    if not target.is_relative_to(directory):
        raise KustomizeError(f"{directory}: {entry} is outside the kustomization's root (load restrictor)")
    if not target.is_file():
        raise KustomizeError(f"{directory}: {entry}: no such file")
    return target


def _documents(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _apply(objects: list[Obj], patch_path: Path, where: Path) -> None:
    for patch in _documents(patch_path):
        key = identity(patch)
        matches = [i for i, obj in enumerate(objects) if identity(obj) == key]
        if not matches:
            raise KustomizeError(f"{where}: patch {patch_path.name}: no resource {'/'.join(key)}")
        (index,) = matches
        objects[index] = merge(objects[index], patch)


def merge(base: Any, patch: Any, field: str = "") -> Any:
    """`patch` strategic-merged into a copy of `base`."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for key, value in patch.items():
            out[key] = merge(base[key], value, key) if key in base else copy.deepcopy(value)
        return out
    if field in MERGE_BY_NAME and isinstance(base, list) and isinstance(patch, list):
        out_list = copy.deepcopy(base)
        names = [item.get("name") for item in out_list]
        for item in patch:
            if item.get("name") in names:
                index = names.index(item["name"])
                out_list[index] = merge(out_list[index], item)
            else:
                out_list.append(copy.deepcopy(item))
        return out_list
    return copy.deepcopy(patch)

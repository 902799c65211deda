"""Validation against our CRDs' openAPIV3Schema: one source of truth for the API server and us.

The CRD files in deploy/crds/ (packaged as controller/model/crds) are what `kubectl apply`
installs; the same schemas validate descriptions here, so a document accepted by plan mode is
accepted by the API server and the other way round. jsonschema errors are translated into
Problems with user paths (`MLSysOpsApp.components[0].restart_policy`) and plain expectations.

Valid documents (nearly all of them) take a fast path: the same schemas compiled by
jsonschema-rs (Rust), about 1 µs per node document against jsonschema's ~250 µs and
fastjsonschema's ~8 µs, which matters when 100,000 node descriptions are read at start-up. Only
a document the fast path rejects is validated again with jsonschema, whose errors carry the
paths we report (and whose verdict is the one that counts). Neither checks `format` (the API
server does not either).

Unknown fields are not errors (the API server prunes them, the reference accepts them), but
they are reported as warnings: a typo such as `restart_polcy` would otherwise vanish silently.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs
import yaml

from controller.model.errors import Problem, describe_value

GROUP = "mlsysops.eu"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
KINDS = ("MLSysOpsApp", "MLSysOpsNode", "MLSysOpsCluster", "MLSysOpsContinuum", "MLSysOpsDatacenter")

_TYPE_WORDS = {
    "array": "a list",
    "object": "a mapping",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
}


@dataclass(frozen=True)
class CrdSchemas:
    """The openAPIV3Schema of each kind, read from a directory of CRD manifests."""

    schemas: Mapping[str, Mapping[str, Any]]
    crds: Mapping[str, Mapping[str, Any]]
    validators: Mapping[str, jsonschema.protocols.Validator]  # compiled once: validation runs per reconcile
    fast: Mapping[str, Callable[[Any], bool]]  # the same schemas compiled in Rust: is it valid?

    @classmethod
    def load(cls, directory: Path | None = None) -> CrdSchemas:
        root = directory if directory is not None else Path(str(resources.files("controller.model") / "crds"))
        schemas: dict[str, Mapping[str, Any]] = {}
        crds: dict[str, Mapping[str, Any]] = {}
        for path in sorted(root.glob("*.yaml")):
            crd = yaml.safe_load(path.read_text())
            kind = crd["spec"]["names"]["kind"]
            crds[kind] = crd
            schemas[kind] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        missing = set(KINDS) - set(schemas)
        if missing:
            raise RuntimeError(f"CRDs missing in {root}: {sorted(missing)}")
        converted = {k: _openapi_to_jsonschema(s) for k, s in schemas.items()}
        validators = {k: jsonschema.Draft7Validator(s) for k, s in converted.items()}
        fast = {k: jsonschema_rs.Draft7Validator(s, validate_formats=False).is_valid
                for k, s in converted.items()}
        return cls(schemas, crds, validators, fast)

    def problems(self, kind: str, doc: Mapping[str, Any]) -> list[Problem]:
        """Every schema violation of doc (Kubernetes form) as a Problem, in document order."""
        if self.fast[kind](doc):
            return []
        # find out exactly what is wrong, with paths
        found = [_to_problem(kind, err) for err in self.validators[kind].iter_errors(doc)]
        return sorted(_dedupe(found), key=lambda p: _natural(p.path))

    def unknown_fields(self, kind: str, doc: Mapping[str, Any]) -> list[str]:
        """Paths of fields the schema does not declare (the API server would prune them)."""
        return list(_walk_unknown(self.schemas[kind], doc, kind))


def _openapi_to_jsonschema(schema: Any) -> Any:
    """OpenAPI's `nullable: true` is JSON Schema's extra "null" type (the API server accepts null)."""
    if isinstance(schema, Mapping):
        out = {k: _openapi_to_jsonschema(v) for k, v in schema.items()}
        if out.get("nullable") and isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(schema, list):
        return [_openapi_to_jsonschema(v) for v in schema]
    return schema


@functools.cache
def default_schemas() -> CrdSchemas:
    """The CRDs shipped with the package (read once: they are immutable package data)."""
    return CrdSchemas.load()


def user_path(kind: str, parts: Iterable[Any]) -> str:
    out = kind
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _listed(value: object) -> list[Any]:
    """The list an `enum` or `anyOf` keyword holds (jsonschema types it as anything or unset)."""
    return list(value) if isinstance(value, (list, tuple)) else []


def _to_problem(kind: str, err: jsonschema.ValidationError) -> Problem:
    path = user_path(kind, err.absolute_path)
    schema = err.schema if isinstance(err.schema, Mapping) else {}
    if err.validator == "required":
        missing = str(err.message).split("'")[1]
        prop = schema.get("properties", {}).get(missing, {})
        what = _TYPE_WORDS.get(prop.get("type", ""), "a value")
        return Problem(f"{path}.{missing}", f"{what} (required field is missing)")
    if err.validator == "enum":
        choices = ", ".join(str(c) for c in _listed(err.validator_value))
        hint = None
        if isinstance(err.instance, bool):  # YAML 1.1 turned on/off/yes/no into a boolean
            hint = describe_value(err.instance) + "; quote the value in YAML"
        return Problem(path, f"one of {choices}", hint or describe_value(err.instance))
    if err.validator == "type":
        return Problem(
            path,
            _TYPE_WORDS.get(str(err.validator_value), str(err.validator_value)),
            describe_value(err.instance),
        )
    if err.validator == "anyOf":
        options = [_TYPE_WORDS.get(s.get("type", ""), "a value") for s in _listed(err.validator_value)]
        return Problem(path, " or ".join(options), describe_value(err.instance))
    return Problem(path, f"{err.validator} {err.validator_value}", describe_value(err.instance))


def _natural(path: str) -> list[tuple[int, int | str]]:
    """Sort key so components[2] comes before components[10]."""
    return [(0, int(x)) if x.isdigit() else (1, x) for x in re.split(r"[.\[\]]+", path) if x]


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[str, str]] = set()
    out = []
    for p in problems:
        if (p.path, p.expected) not in seen:
            seen.add((p.path, p.expected))
            out.append(p)
    return out


def _walk_unknown(schema: Mapping[str, Any], value: Any, path: str) -> Iterator[str]:
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, Mapping) and schema.get("type") == "object":
        props = schema.get("properties")
        if props is None:  # free-form map (additionalProperties) or opaque object
            return
        for key, sub in value.items():
            if key in props:
                yield from _walk_unknown(props[key], sub, f"{path}.{key}")
            else:
                yield f"{path}.{key}"
    elif isinstance(value, list) and schema.get("type") == "array":
        for i, item in enumerate(value):
            yield from _walk_unknown(schema.get("items", {}), item, f"{path}[{i}]")

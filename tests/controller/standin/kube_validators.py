"""Validation of every object the stand-in stores, as the real API server (plus CRDs) would.

- core/apps/node.k8s.io kinds: `kubernetes-validate` (the upstream OpenAPI schemas), strict,
  so an unknown field is an error as with `kubectl --validate=strict`;
- Karmada kinds: the openAPIV3Schema of ../shared/schemas/karmada/ CRDs (beside the repository);
- our kinds: the openAPIV3Schema of deploy/crds/ (status included);
- Karmada's member Cluster: the reduced CRD in crds/ (no schema beside the repository has it).

OpenAPI's `nullable: true` is turned into a JSON-schema null type before use.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[3]
KARMADA_SCHEMAS = Path(os.environ.get("MLSYSOPS_KARMADA_SCHEMAS") or REPO.parent / "shared/schemas/karmada")
OUR_CRDS = REPO / "deploy" / "crds"
STANDIN_CRDS = Path(__file__).resolve().parent / "crds"  # kinds no schema beside the repository covers
KUBERNETES_VERSION = "1.31"
BUILTIN_GROUPS = ("v1", "apps/v1", "node.k8s.io/v1", "batch/v1", "coordination.k8s.io/v1")


def _nullable(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_nullable(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _nullable(v) for k, v in schema.items()}
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


@cache
def crd_schemas(directory: Path) -> dict[tuple[str, str], Any]:
    """(apiVersion, kind) → JSON schema, from every CRD file in a directory."""
    schemas: dict[tuple[str, str], Any] = {}
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                schema = _nullable(version["schema"]["openAPIV3Schema"])
                schemas[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = schema
    return schemas


def _schema_errors(schema: Any, obj: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
            for e in validator.iter_errors(obj)]


def validate(obj: dict[str, Any]) -> list[str]:
    """Errors for one stored object ([] when valid)."""
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    if key[0] in BUILTIN_GROUPS:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            return [f"{'.'.join(str(p) for p in exc.path)}: {exc.message}"]
        return []
    for directory in (KARMADA_SCHEMAS, OUR_CRDS, STANDIN_CRDS):
        schema = crd_schemas(directory).get(key)
        if schema is not None:
            return _schema_errors(schema, obj)
    return [f"no schema for {key[0]}/{key[1]}"]


class RecordingValidator:
    """The stand-in's validator for tests: rejects invalid objects (422) and remembers every
    rejection, so a test can also assert none happened behind a retry."""

    def __init__(self, check: Callable[[dict[str, Any]], list[str]] = validate) -> None:
        self.check = check
        self.rejected: list[tuple[str, list[str]]] = []
        self.validated = 0

    def __call__(self, obj: dict[str, Any]) -> list[str]:
        errors = self.check(obj)
        self.validated += 1
        if errors:
            self.rejected.append((f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}", errors))
        return errors

"""Our CRDs: valid manifests, a superset of the reference schema, and the source of validation."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from controller.model import KINDS, App, default_schemas, load_documents, parse_document
from controller.plan import plan_files, status_for

REPO = Path(__file__).resolve().parents[3]
REFERENCE = REPO.parent / "shared" / "schemas" / "mlsysops-reference"  # ../shared beside the clone
REFERENCE_FILES = {
    "MLSysOpsApp": "MLSysOpsApplication.yaml",
    "MLSysOpsNode": "MLSysOpsNode.yaml",
    "MLSysOpsCluster": "MLSysOpsCluster.yaml",
    "MLSysOpsContinuum": "MLSysOpsContinuum.yaml",
    "MLSysOpsDatacenter": "MLSysOpsDatacenter.yaml",
}
SHORT_NAMES = {
    "MLSysOpsApp": "mlsapp",
    "MLSysOpsNode": "mlsnode",
    "MLSysOpsCluster": "mlscluster",
    "MLSysOpsContinuum": "mlscontinuum",
    "MLSysOpsDatacenter": "mlsdatacenter",
}

needs_reference = pytest.mark.skipif(
    not REFERENCE.is_dir(), reason=f"reference CRDs not found at {REFERENCE}"
)


@functools.cache
def reference_schema(kind: str) -> dict[str, Any]:
    crd = yaml.safe_load((REFERENCE / REFERENCE_FILES[kind]).read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def our_crd(kind: str) -> Mapping[str, Any]:
    return default_schemas().crds[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_crd_manifest_is_valid_and_has_names_columns_and_scope(kind: str) -> None:
    crd = our_crd(kind)
    kubernetes_validate.validate(dict(crd), "1.30", strict=True)
    spec = crd["spec"]
    assert spec["group"] == "mlsysops.eu" and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == kind and spec["names"]["shortNames"] == [SHORT_NAMES[kind]]
    (version,) = spec["versions"]
    assert version["name"] == "v1" and version["served"] and version["storage"]
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[-1] == "Age" and len(columns) >= 2
    assert "spec" not in version["schema"]["openAPIV3Schema"]["properties"]


@pytest.mark.parametrize("kind", ["MLSysOpsApp", "MLSysOpsNode"])
def test_app_and_node_have_a_status_subresource(kind: str) -> None:
    (version,) = our_crd(kind)["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    assert "status" in version["schema"]["openAPIV3Schema"]["properties"]


def test_packaged_crds_are_the_deploy_manifests() -> None:
    for path in sorted((REPO / "deploy" / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        assert dict(our_crd(crd["spec"]["names"]["kind"])) == crd, path


def _structural(schema: Mapping[str, Any], path: str) -> Iterator[str]:
    """Kubernetes structural-schema rule: every node has a type (or int-or-string / preserve)."""
    if not (
        schema.get("type")
        or schema.get("x-kubernetes-int-or-string")
        or schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        yield path
    for name, sub in schema.get("properties", {}).items():
        yield from _structural(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), Mapping):
        yield from _structural(schema["items"], f"{path}[]")


@pytest.mark.parametrize("kind", KINDS)
def test_our_schemas_are_structural(kind: str) -> None:
    assert list(_structural(our_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"], kind)) == []


def _differences(ref: Mapping[str, Any], ours: Mapping[str, Any], path: str) -> Iterator[str]:
    """Ways in which `ours` accepts less than `ref` (types, enums, required, nested properties)."""
    if ours.get("x-kubernetes-preserve-unknown-fields") and "type" not in ours:
        return
    if ref.get("type") != ours.get("type"):
        yield f"{path}: type {ref.get('type')} -> {ours.get('type')}"
    if "enum" in ours:
        # YAML 1.1 reads the reference's unquoted on/off as booleans; no string can match those
        ref_enum = {v for v in ref.get("enum", ()) if not isinstance(v, bool)}
        if "enum" not in ref or not ref_enum <= set(ours["enum"]):
            yield f"{path}: enum narrowed"
    if not set(ours.get("required", ())) <= set(ref.get("required", ())):
        yield f"{path}: more required fields"
    for key in (
        "minItems",
        "minimum",
        "maximum",
        "pattern",
        "additionalProperties",
        "maxLength",
        "minLength",
    ):
        if key in ours and ours.get(key) != ref.get(key):
            yield f"{path}: adds {key}"
    for name, sub in ref.get("properties", {}).items():
        if name not in ours.get("properties", {}):
            yield f"{path}.{name}: missing"
        else:
            yield from _differences(sub, ours["properties"][name], f"{path}.{name}")
    if isinstance(ref.get("items"), Mapping):
        yield from _differences(ref["items"], ours.get("items", {}), f"{path}[]")


@needs_reference
@pytest.mark.parametrize("kind", KINDS)
def test_our_schema_never_accepts_less_than_the_reference(kind: str) -> None:
    ours = our_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert list(_differences(reference_schema(kind), ours, kind)) == []


@functools.cache
def reference_validator(kind: str) -> jsonschema.protocols.Validator:
    return jsonschema.Draft7Validator(reference_schema(kind))


@functools.cache
def reference_documents(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """Built once per kind: canonicalising the reference schema is the expensive part."""
    return from_schema(reference_schema(kind), allow_x00=False, codec="utf-8")


def _generated_documents_validate(kind: str, doc: dict[str, Any]) -> None:
    # Documents valid under the reference schema (as the API server sees them: with metadata)...
    reference_validator(kind).validate(doc)
    doc = {"apiVersion": "mlsysops.eu/v1", "kind": kind, "metadata": {"name": "x"}, **doc}
    # ...are valid under ours.
    assert default_schemas().problems(kind, doc) == []


@needs_reference
@pytest.mark.parametrize("kind", KINDS)
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_documents_generated_from_the_reference_schema_are_valid_under_ours(
    kind: str, data: st.DataObject
) -> None:
    _generated_documents_validate(kind, data.draw(reference_documents(kind)))


def test_shipped_examples_and_fixtures_validate(examples_dir: Path, fixtures_dir: Path) -> None:
    docs = [
        *load_documents(examples_dir),
        *load_documents(fixtures_dir / "inventory"),
        *load_documents(fixtures_dir / "reference_app.yaml"),
    ]
    assert {d.kind for d in docs} >= {"MLSysOpsApp", "MLSysOpsNode", "MLSysOpsCluster", "MLSysOpsContinuum"}


def test_the_status_the_controller_writes_validates_against_the_crd(examples_dir: Path) -> None:
    report = plan_files([examples_dir / "app.yaml"], examples_dir / "inventory")
    (result,) = report.results
    doc = {**result.app.raw, "status": status_for(result.outcome)}
    assert default_schemas().problems("MLSysOpsApp", doc) == []
    assert isinstance(parse_document(doc), App)


def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False)
    return st.recursive(
        scalars | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=12,
    )


@functools.cache
def mutated_documents(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """Documents valid under our schema with one top-level field replaced by any JSON value: mostly
    invalid, in every way the schema can reject a field."""
    schema = default_schemas().validators[kind].schema
    fields = sorted(schema.get("properties", {}))
    valid = from_schema(schema, allow_x00=False, codec="utf-8")
    return st.builds(
        lambda doc, key, value: {**doc, key: value}, valid, st.sampled_from(fields), _json_values()
    )


@pytest.mark.parametrize("kind", KINDS)
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_the_fast_validation_path_agrees_with_jsonschema(kind: str, data: st.DataObject) -> None:
    # The Rust validator only decides whether jsonschema needs to explain anything: if it ever
    # accepted what jsonschema rejects, a bad description would pass unreported.
    schemas = default_schemas()
    doc = data.draw(mutated_documents(kind))
    assert schemas.fast[kind](doc) == schemas.validators[kind].is_valid(doc)

"""Reading descriptions: YAML or JSON, one or many documents, Kubernetes or wrapper form.

Both forms end up as the Kubernetes form (fields at the top level, no `spec`):

    MLSysOpsApp:                    apiVersion: mlsysops.eu/v1
      name: demo            →       kind: MLSysOpsApp
      components: [...]             metadata: {name: demo, namespace: default}
                                    name: demo
                                    components: [...]

so the CRD schema, the API server and the policies see one shape. The wrapper form is the
one the reference framework's files use; users switching keep their files.
"""

from __future__ import annotations

import contextlib
import gc
import marshal
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from controller.model.build import build
from controller.model.descriptions import App, Description
from controller.model.errors import DescriptionError, Problem, describe_value
from controller.model.schema import API_VERSION, KINDS, CrdSchemas, default_schemas
from controller.model.semantic import app_problems, is_dns1123_subdomain, resource_problems

# Which field names the object when the wrapper form has no metadata (the reference's own ids).
_NAME_FIELDS = {
    "MLSysOpsApp": ("name",),
    "MLSysOpsNode": ("name",),
    "MLSysOpsCluster": ("name", "cluster_id"),
    "MLSysOpsContinuum": ("name", "continuum_id"),
    "MLSysOpsDatacenter": ("name", "datacenter_id"),
}
SUFFIXES = (".yaml", ".yml", ".json")
_pause_lock = threading.Lock()
_pause_depth = 0
_was_enabled = False


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused while many documents are parsed.

    Parsing allocates millions of small dicts, lists and frozen values, and none of them form
    reference cycles, so reference counting frees all of them; but each allocation burst
    triggers collections that walk everything parsed so far: a third of the time of reading
    100,000 node documents. Nested and concurrent pauses (several threads) count: collection
    resumes, if it was on, when the last one ends."""
    global _pause_depth, _was_enabled
    with _pause_lock:
        if _pause_depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pause_depth += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pause_depth -= 1
            if _pause_depth == 0 and _was_enabled:
                gc.enable()


def load_documents(
    text_or_path: str | Path,
    namespace: str = "default",
    schemas: CrdSchemas | None = None,
) -> list[Description]:
    """Parse every description in a file, a directory (its *.yaml/*.yml/*.json) or a string.

    A str is a path when it names an existing file or directory and has no newline; otherwise
    it is the text itself. Raises DescriptionError (naming the file and document) on the first
    invalid document, with every problem of that document.
    """
    out: list[Description] = []
    for source, text in _sources(text_or_path):
        out.extend(parse_text(text, source, namespace, schemas))
    return out


def parse_text(
    text: str, source: str | None = None, namespace: str = "default", schemas: CrdSchemas | None = None
) -> list[Description]:
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise DescriptionError(
            [Problem("document", "valid YAML or JSON", str(exc).splitlines()[0])], source
        ) from exc
    flat: list[Any] = []
    for d in docs:
        if isinstance(d, list):
            flat.extend(d)
        elif isinstance(d, Mapping) and d.get("kind") == "List":
            flat.extend(d.get("items", ()))
        else:
            flat.append(d)
    out = []
    for i, doc in enumerate(flat):
        where = f"{source or '<input>'}, document {i + 1}" if len(flat) > 1 else source
        try:
            out.append(parse_document(doc, namespace, schemas))
        except DescriptionError as exc:
            raise exc.with_source(where) if where else exc from None
    return out


def parse_document(doc: Any, namespace: str = "default", schemas: CrdSchemas | None = None) -> Description:
    """One document (either form) → a validated, typed description."""
    schemas = schemas or default_schemas()
    kind, k8s = _normalise(doc, namespace)
    problems = schemas.problems(kind, k8s)
    if problems:  # all problems at once: the semantic ones too, as far as the document can be read
        raise DescriptionError([*problems, *_semantic_problems(kind, k8s, problems)])
    _check_name(kind, k8s)
    built, more = build(kind, k8s)
    if isinstance(built, App):
        more += app_problems(built) + resource_problems(built)
    if more:
        raise DescriptionError(more)
    return built


def _semantic_problems(kind: str, k8s: dict[str, Any], schema: list[Problem]) -> list[Problem]:
    """The semantic problems of a document the schema rejected, on fields the schema did not
    already complain about. Building a schema-invalid document may fail anywhere; what cannot
    be built is left to the next run (the schema problems are reported either way)."""
    try:
        _check_name(kind, k8s)
        built, more = build(kind, k8s)
        if isinstance(built, App):
            more += app_problems(built) + resource_problems(built)
    except Exception:  # a shape the builder cannot read: the schema problems say why
        return []
    seen = {p.path for p in schema}
    return [p for p in more if p.path not in seen and not any(p.path.startswith(s + ".") for s in seen)]


def load_each(
    path: str | Path, namespace: str = "default", schemas: CrdSchemas | None = None
) -> tuple[list[tuple[str | None, Description]], list[DescriptionError]]:
    """Like load_documents, but a bad file does not stop the others: every description with its
    file, and one DescriptionError (naming its file and document) per file that was skipped."""
    loaded: list[tuple[str | None, Description]] = []
    skipped: list[DescriptionError] = []
    for source, text in _sources(path):
        try:
            loaded.extend((source, d) for d in parse_text(text, source, namespace, schemas))
        except DescriptionError as exc:
            skipped.append(exc if exc.source else exc.with_source(source or "<input>"))
    return loaded, skipped


def unknown_fields(doc: Any, namespace: str = "default", schemas: CrdSchemas | None = None) -> list[str]:
    """Fields the CRD does not declare (pruned by the API server): worth a warning, not an error."""
    kind, k8s = to_kubernetes_form(doc, namespace)
    return (schemas or default_schemas()).unknown_fields(kind, k8s)


def to_kubernetes_form(doc: Any, namespace: str = "default") -> tuple[str, dict[str, Any]]:
    """Either form → (kind, the document in Kubernetes form with metadata.name/namespace set)."""
    kind, body = _normalise(doc, namespace)
    _check_name(kind, body)
    return kind, body


def _normalise(doc: Any, namespace: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(doc, Mapping):
        raise DescriptionError.single(
            "document", f"a mapping with kind {' or '.join(KINDS)}", describe_value(doc)
        )
    if "kind" in doc:
        kind = doc["kind"]
        body = _copy(doc)
        _check_kind(kind, "kind")
        api_version = body.get("apiVersion")
        if api_version != API_VERSION:
            raise DescriptionError.single(f"{kind}.apiVersion", API_VERSION, describe_value(api_version))
        metadata = body.get("metadata")
        if metadata is None:
            metadata = body["metadata"] = {}
        if not isinstance(metadata, Mapping):
            raise DescriptionError.single(f"{kind}.metadata", "a mapping", describe_value(metadata))
    else:
        wrapper = [k for k in doc if k in KINDS]
        if len(doc) != 1 or len(wrapper) != 1:
            raise DescriptionError.single(
                "document",
                f"either Kubernetes form (apiVersion: {API_VERSION}, kind: ...) or wrapper form "
                f"with exactly one key of {', '.join(KINDS)}",
                f"keys {', '.join(map(str, doc)) or 'none'}",
            )
        kind = wrapper[0]
        inner = doc[kind]
        if not isinstance(inner, Mapping):
            raise DescriptionError.single(
                kind, "a mapping of the description's fields", describe_value(inner)
            )
        body = {"apiVersion": API_VERSION, "kind": kind, "metadata": {}, **_copy(inner)}
        metadata = body["metadata"]
    body["metadata"] = dict(metadata)
    body["metadata"].setdefault("namespace", namespace)
    derived = next((body[f] for f in _NAME_FIELDS[kind] if isinstance(body.get(f), str) and body[f]), None)
    if not body["metadata"].get("name") and derived is not None:
        body["metadata"]["name"] = derived
    return kind, body


def _check_name(kind: str, body: Mapping[str, Any]) -> None:
    name = body["metadata"].get("name")
    if not name:
        fields = " or ".join(["metadata.name", *_NAME_FIELDS[kind]])
        raise DescriptionError.single(f"{kind}.metadata.name", f"a name (set {fields})")
    if not isinstance(name, str) or not is_dns1123_subdomain(name):
        raise DescriptionError.single(
            f"{kind}.metadata.name",
            "a DNS-1123 name (lowercase letters, digits, '-' and '.', starting and ending alphanumeric)",
            describe_value(name),
        )


def _copy(value: Any) -> Any:
    """A private copy of parsed YAML/JSON. marshal copies plain dicts, lists and scalars in C (3x
    faster than the walk below, which matters for 100,000 node documents); anything else (a
    Mapping that is not a dict) is walked (5x faster than deepcopy on this shape of data)."""
    try:
        return marshal.loads(marshal.dumps(value))
    except ValueError:  # "unmarshallable object": not plain JSON-like data
        return _walk_copy(value)


def _walk_copy(value: Any) -> Any:
    kind = type(value)
    if kind is dict or (kind is not list and isinstance(value, Mapping)):
        return {k: _walk_copy(v) for k, v in value.items()}
    if kind is list:
        return [_walk_copy(v) for v in value]
    return value


def _check_kind(kind: Any, path: str) -> None:
    if kind not in KINDS:
        raise DescriptionError.single(path, f"one of {', '.join(KINDS)}", describe_value(kind))


def _sources(text_or_path: str | Path) -> Iterable[tuple[str | None, str]]:
    if isinstance(text_or_path, str) and ("\n" in text_or_path or not Path(text_or_path).exists()):
        yield None, text_or_path
        return
    path = Path(text_or_path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
        for f in files:
            yield str(f), f.read_text()
    elif path.exists():
        yield str(path), path.read_text()
    else:
        raise DescriptionError.single(str(path), "an existing file or directory", "nothing there")

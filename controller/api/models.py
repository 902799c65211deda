"""The model operations both `/api/v1/models` and `mlsysops models --registry URI` run: list, show,
train, promote, rollback, explain, over one contracts.ModelRegistry (the API's, MLflow by default).

What they answer is mlconnector.serve.version_json per version, so the API, the CLI and the model
server show a version the same way. Failures are ApiErrors (the API's one error table turns them
into answers, the CLI into one line): an unknown model or version is 404, a row the model cannot
read 422, a dataset the API may not read 403, what the registry refuses (RegistryError: no
previous champion, a signature that does not match) 409, and the registry being unreachable 503.
Every check runs before anything is written, so a refused request leaves the registry as it was.

Training loads the ml extra's numerical stack (scikit-learn, SHAP) only when a model is trained.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from controller.api.errors import ApiError
from mlconnector.contracts import (
    CHAMPION,
    LATENCY_TARGET,
    QOS_FEATURES,
    THROUGHPUT_TARGET,
    ModelRegistry,
    ModelVersion,
    RegistryError,
    Signature,
)
from mlconnector.serve import BadInput, feature_row, version_json

Obj = dict[str, Any]
# A new model is named after the QoS metric it predicts (the learning policy's convention).
NEW_MODEL_SIGNATURES = {t.name: Signature(QOS_FEATURES, t) for t in (LATENCY_TARGET, THROUGHPUT_TARGET)}


def unavailable() -> ApiError:
    return ApiError(503, "no model registry: the ML connector is not installed (pip install 'mlsysops[ml]')")


def _registry_call(fn: Any, *args: Any) -> Any:
    from mlconnector.registry import RegistryUnavailable

    try:
        return fn(*args)
    except RegistryUnavailable as exc:
        raise ApiError(503, f"model registry: {exc}") from None
    except RegistryError as exc:
        raise ApiError(409, f"model registry: {exc}") from None


def _known(registry: ModelRegistry, name: str) -> list[ModelVersion]:
    if name not in _registry_call(registry.models):
        raise ApiError(404, f"no model {name!r} in the registry", "name")
    versions: list[ModelVersion] = _registry_call(registry.versions, name)
    return versions


def _champion(versions: list[ModelVersion]) -> ModelVersion | None:
    return next((v for v in versions if CHAMPION in v.aliases), None)


def summary(name: str, versions: list[ModelVersion]) -> Obj:
    champion = _champion(versions)
    latest = max(versions, key=lambda v: int(v.version)) if versions else None
    shown = champion or latest
    return {
        "name": name,
        "versions": len(versions),
        "latest": latest.version if latest else None,
        "champion": champion.version if champion else None,
        "aliases": {a: v.version for v in versions for a in v.aliases},
        "target": shown.signature.target.name if shown else None,
        "holdout_mape": (champion.metrics.get("holdout_mape") if champion else None),
    }


def listed(registry: ModelRegistry) -> list[Obj]:
    names: list[str] = _registry_call(registry.models)
    return [summary(n, _registry_call(registry.versions, n)) for n in sorted(names)]


def show(registry: ModelRegistry, name: str) -> Obj:
    versions = _known(registry, name)
    ordered = sorted(versions, key=lambda v: int(v.version))
    return {**summary(name, versions), "history": [version_json(v) for v in ordered]}


def _version(versions: list[ModelVersion], name: str, version: str) -> ModelVersion:
    found = next((v for v in versions if v.version == str(version)), None)
    if found is None:
        have = ", ".join(v.version for v in versions) or "none"
        raise ApiError(404, f"model {name} has no version {version!r} (versions: {have})", "version")
    return found


def promote(registry: ModelRegistry, name: str, version: str) -> Obj:
    versions = _known(registry, name)
    _version(versions, name, version)
    return version_json(_registry_call(registry.promote, name, str(version)))


def rollback(registry: ModelRegistry, name: str) -> Obj:
    _known(registry, name)
    return version_json(_registry_call(registry.rollback, name))


def explain(registry: ModelRegistry, name: str, row: Any, ref: str = CHAMPION) -> Obj:
    versions = _known(registry, name)
    target = _champion(versions) if ref == CHAMPION else None
    if target is None:
        target = next((v for v in versions if ref in v.aliases), None) or _version(versions, name, ref)
    try:
        checked = feature_row(row, target.signature.feature_names, "row")
    except BadInput as exc:
        raise ApiError(exc.status, exc.message, exc.field) from None
    predictor = _registry_call(registry.load, name, target.version)
    explanation: Obj = predictor.explain(checked).to_json()
    return explanation


def dataset_path(given: str | None, allowed_root: Path | None) -> Path | None:
    """None: the packaged recorded dataset. A path must lie under `allowed_root` (the directory the
    API was told it may read datasets from); without one, only the recorded dataset is used."""
    if given is None:
        return None
    if allowed_root is None:
        raise ApiError(403, "this API reads no dataset paths (start it with --model-datasets DIR); "
                       "omit `dataset` to train on the recorded dataset", "dataset")
    root = allowed_root.resolve()
    path = (root / given).resolve()
    if not path.is_relative_to(root):
        raise ApiError(403, f"dataset {given!r} is outside {root}", "dataset")
    if not path.is_file():
        raise ApiError(422, f"dataset {given!r}: no such file under {root}", "dataset")
    return path


def train(
    registry: ModelRegistry,
    name: str,
    *,
    dataset: Path | None = None,
    reason: str = "operator",
    holdout_fraction: float = 0.25,
) -> Obj:
    """Retrain `name` (a new model: one named after a QoS target) on a recorded dataset: the new
    version is promoted only if it beats the champion on the recent hold-out window."""
    from mlconnector import features, training

    if not 0.0 < holdout_fraction < 1.0:
        raise ApiError(422, f"holdout_fraction {holdout_fraction}: expected a number in (0, 1)",
                       "holdout_fraction")
    names: list[str] = _registry_call(registry.models)
    if name in names:
        versions: list[ModelVersion] = _registry_call(registry.versions, name)
        current = _champion(versions) or max(versions, key=lambda v: int(v.version))
        signature = current.signature
    elif name in NEW_MODEL_SIGNATURES:
        signature = NEW_MODEL_SIGNATURES[name]
    else:
        raise ApiError(
            404,
            f"no model {name!r} in the registry; a new model is named after the QoS metric it predicts "
            f"({', '.join(NEW_MODEL_SIGNATURES)})",
            "name",
        )
    try:
        data = features.load_dataset(dataset) if dataset is not None else features.load_dataset()
        outcome = training.retrain(
            registry, name, data, signature, holdout_fraction=holdout_fraction, reason=reason
        )
    except (features.DatasetError, training.TrainingError) as exc:
        raise ApiError(422, f"cannot train {name}: {exc}", "dataset") from None
    except RegistryError as exc:
        raise ApiError(409, f"model registry: {exc}") from None
    return {
        "version": version_json(outcome.version),
        "promoted": outcome.promoted,
        "reason": outcome.reason,
        "champion_mape": outcome.champion_mape,
        "challenger_mape": outcome.challenger_mape,
    }


def body_field(
    body: Mapping[str, Any] | None, key: str, kind: type | tuple[type, ...], default: Any = None
) -> Any:
    """One field of a JSON body, of the given type (422 naming it otherwise)."""
    value = (body or {}).get(key, default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ApiError(422, f"{key}: expected {expected}, got {type(value).__name__}", key)
    return value

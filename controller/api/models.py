"""The model operations both `/api/v1/models` and `mlsysops models --registry URI` run: list, show,
train, promote, rollback, explain, over one contracts.ModelRegistry (the API's, MLflow by default).

What they answer is mlconnector.serve.version_json per version, so the API, the CLI and the model
server show a version the same way. Failures are ApiErrors (the API's one error table turns them
into answers, the CLI into one line): an unknown model or version is 404, a row the model cannot
read 422, a dataset the API may not read 403, what the registry refuses (RegistryError: no
previous champion, a signature that does not match) 409, and the registry being unreachable 503.
Every check runs before anything is written, so a refused request leaves the registry as it was.

Training loads the ml extra's numerical stack (scikit-learn, SHAP) only when a model is trained.

Training from Prometheus (`prometheus_spec`, `train(prometheus=...)`): the rows are the last
`window` of the telemetry the framework collects, one row per `row_window`, each column the mean
of its PromQL query (mlconnector.prometheus); the version's lineage names the Prometheus and the
training window, its tags the queries. Through the API only a Prometheus the API was configured
with may be read (`ModelsConfig.prometheus_urls`; otherwise 403), so an operator's token cannot
make the API fetch arbitrary URLs. Prometheus unreachable is 503, an empty or unusable window 422.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:  # the ml extra's loop, imported only when one is configured
    from mlconnector.retrainer import Retrainer, RetrainRunner

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


@dataclass(frozen=True)
class PrometheusSpec:
    """Where and what to train on from Prometheus: the last `window` before `end` (None: now)."""

    url: str
    window: str = "1h"
    queries: Mapping[str, str] = field(default_factory=dict)  # dataset column -> PromQL
    constants: Mapping[str, float] = field(default_factory=dict)  # settings telemetry lacks
    row_window: str = "30s"
    step: str = "5s"
    end: float | None = None

    def tags(self) -> dict[str, str]:
        return {
            "prometheus_url": self.url,
            "prometheus_window": self.window,
            "prometheus_row_window": self.row_window,
            "prometheus_queries": json.dumps(dict(self.queries), sort_keys=True),
            "prometheus_constants": json.dumps(dict(self.constants), sort_keys=True),
        }


@dataclass(frozen=True)
class ModelsConfig:
    """What the models routes may use beyond the registry (the API daemon sets it on app.state.ml):
    the Prometheus URLs training may read, and the retraining loop when one runs."""

    prometheus_urls: frozenset[str] = frozenset()
    runner: RetrainRunner | None = None  # started and stopped by the daemon

    @property
    def retrainer(self) -> Retrainer | None:
        return None if self.runner is None else self.runner.retrainer


def _seconds(value: str, key: str) -> float:
    from mlconnector.features import DatasetError, window_seconds

    try:
        return window_seconds(value)
    except DatasetError as exc:
        raise ApiError(422, f"{key}: {exc}", key) from None


def prometheus_spec(body: Any, allowed: frozenset[str] | None = None) -> PrometheusSpec:
    """A PrometheusSpec from a JSON object (422 naming the field at fault). `allowed`: the URLs
    the caller may read (None: any, the local CLI); without a url the only allowed one is used."""
    if not isinstance(body, Mapping):
        raise ApiError(422, "prometheus: expected an object {url, window, queries, constants}", "prometheus")
    url = body.get("url")
    if url is None and allowed is not None and len(allowed) == 1:
        url = next(iter(allowed))
    if not isinstance(url, str) or not url:
        raise ApiError(422, "prometheus.url: expected the Prometheus base URL", "prometheus.url")
    url = url.rstrip("/")
    if allowed is not None and url not in {u.rstrip("/") for u in allowed}:
        shown = ", ".join(sorted(allowed)) or "none"
        raise ApiError(403, f"prometheus.url {url!r}: this API reads only its own Prometheus ({shown})",
                       "prometheus.url")
    fields: dict[str, Any] = {}
    for key in ("window", "row_window", "step"):
        value = body.get(key, getattr(PrometheusSpec, key))
        if not isinstance(value, str):
            raise ApiError(422, f"prometheus.{key}: expected a duration like 30s, 5m, 1h",
                           f"prometheus.{key}")
        _seconds(value, f"prometheus.{key}")
        fields[key] = value
    queries = body.get("queries")
    if not isinstance(queries, Mapping) or not queries or not all(
        isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in queries.items()
    ):
        raise ApiError(422, "prometheus.queries: expected {column: PromQL, ...} (at least one)",
                       "prometheus.queries")
    constants = body.get("constants") or {}
    if not isinstance(constants, Mapping) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in constants.values()
    ):
        raise ApiError(422, "prometheus.constants: expected {column: number, ...}", "prometheus.constants")
    end = body.get("end")
    if end is not None and (isinstance(end, bool) or not isinstance(end, int | float)):
        raise ApiError(422, "prometheus.end: expected unix seconds", "prometheus.end")
    return PrometheusSpec(url, queries=dict(queries), constants={k: float(v) for k, v in constants.items()},
                          end=None if end is None else float(end), **fields)


def prometheus_rows(spec: PrometheusSpec) -> Any:
    """The Dataset of the spec's window (ApiError 503 when Prometheus is unreachable, 422 when the
    window is empty or the answer unusable)."""
    from controller.telemetry.windows import prometheus_windows
    from mlconnector.prometheus import SourceError, SourceUnavailable

    end = spec.end if spec.end is not None else time.time()
    try:
        source = prometheus_windows(
            spec.url, spec.queries, row_window=_seconds(spec.row_window, "prometheus.row_window"),
            step=_seconds(spec.step, "prometheus.step"), constants=spec.constants,
        )  # fmt: skip
        with contextlib.closing(source):
            return source.window(end - _seconds(spec.window, "prometheus.window"), end)
    except SourceUnavailable as exc:
        raise ApiError(503, str(exc), "prometheus.url") from None
    except SourceError as exc:
        raise ApiError(422, f"prometheus: {exc}", "prometheus") from None


def train(
    registry: ModelRegistry,
    name: str,
    *,
    dataset: Path | None = None,
    reason: str = "operator",
    holdout_fraction: float = 0.25,
    prometheus: PrometheusSpec | None = None,
) -> Obj:
    """Retrain `name` (a new model: one named after a QoS target) on a recorded dataset or on the
    last window of Prometheus telemetry: the new version is promoted only if it beats the champion
    on the recent hold-out window."""
    from mlconnector import features, training

    if dataset is not None and prometheus is not None:
        raise ApiError(422, "give a dataset or a Prometheus window to train on, not both", "dataset")

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
        if prometheus is not None:
            data = prometheus_rows(prometheus)
        else:
            data = features.load_dataset(dataset) if dataset is not None else features.load_dataset()
        outcome = training.retrain(
            registry, name, data, signature, holdout_fraction=holdout_fraction, reason=reason,
            tags=prometheus.tags() if prometheus is not None else None,
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


RETRAIN_MODEL_KEYS = frozenset({
    "name", "lookback", "schedule", "min_gap", "drift", "row_window", "step", "queries", "constants",
    "prometheus", "holdout_fraction",
})


def models_config(block: Mapping[str, Any] | None, registry: ModelRegistry | None,
                  prometheus_url: str | None) -> ModelsConfig:
    """The daemon's `ml` config block -> ModelsConfig (ValueError naming the key at fault). The
    retraining loop is built, not started: the daemon starts it with the server.

        ml:
          prometheus_urls: [http://prom.example:9090]   # more than the API's own, for training
          retrain:
            interval: 5m                                 # time between checks
            models:
              - name: latency_p95_ms
                lookback: 1h                             # the recent window checked and trained on
                schedule: 24h                            # or off: on drift only
                min_gap: 10m                             # no drift retrain sooner after the last one
                drift: true
                row_window: 30s
                step: 5s
                queries: {offered_rps: 'sum(rate(...[30s]))', latency_p95_ms: '...', ...}
                constants: {runtime_gvisor: 0}
                prometheus: http://...                   # default: the API's Prometheus
    """
    block = dict(block or {})
    unknown = sorted(set(block) - {"prometheus_urls", "retrain"})
    if unknown:
        raise ValueError(f"ml: unknown key(s) {unknown} (expected prometheus_urls, retrain)")
    urls = block.get("prometheus_urls") or []
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise ValueError("ml.prometheus_urls: expected a list of URLs")
    allowed = frozenset(u.rstrip("/") for u in [*urls, *([prometheus_url] if prometheus_url else [])])
    retrain = block.get("retrain")
    if not retrain:
        return ModelsConfig(allowed)
    if registry is None:
        raise ValueError("ml.retrain: no model registry (the ml extra is not installed)")
    return ModelsConfig(allowed, _retrainer(retrain, registry, prometheus_url))


def _duration(value: Any, key: str) -> float:
    from mlconnector.features import DatasetError, window_seconds

    try:
        return window_seconds(str(value))
    except DatasetError as exc:
        raise ValueError(f"{key}: {exc}") from None


def _retrainer(block: Any, registry: ModelRegistry, prometheus_url: str | None) -> RetrainRunner:
    from controller.telemetry.windows import prometheus_windows
    from mlconnector.prometheus import SourceError
    from mlconnector.retrainer import Retrainer, RetrainRunner, RetrainTarget
    from mlconnector.training import RetrainPolicy

    if not isinstance(block, Mapping) or not isinstance(block.get("models"), list) or not block["models"]:
        raise ValueError("ml.retrain: expected {interval: 5m, models: [{name, queries, ...}, ...]}")
    interval = _duration(block.get("interval", "5m"), "ml.retrain.interval")
    targets = []
    for i, item in enumerate(block["models"]):
        key = f"ml.retrain.models[{i}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise ValueError(f"{key}: expected a mapping with a name")
        unknown = sorted(set(item) - RETRAIN_MODEL_KEYS)
        if unknown:
            raise ValueError(f"{key}: unknown key(s) {unknown} (expected {sorted(RETRAIN_MODEL_KEYS)})")
        url = item.get("prometheus") or prometheus_url
        if not url:
            raise ValueError(f"{key}.prometheus: no Prometheus (the API has none: give its URL)")
        schedule = item.get("schedule", "24h")
        policy = RetrainPolicy(
            interval_s=None if schedule in ("off", None, False) else _duration(schedule, f"{key}.schedule"),
            on_drift=bool(item.get("drift", True)),
            min_gap_s=_duration(item.get("min_gap", "10m"), f"{key}.min_gap"),
        )
        try:
            source = prometheus_windows(
                str(url), dict(item.get("queries") or {}),
                row_window=_duration(item.get("row_window", "30s"), f"{key}.row_window"),
                step=_duration(item.get("step", "5s"), f"{key}.step"),
                constants=dict(item.get("constants") or {}),
            )  # fmt: skip
        except SourceError as exc:
            raise ValueError(f"{key}: {exc}") from None
        signature = NEW_MODEL_SIGNATURES.get(item["name"])
        targets.append(RetrainTarget(
            item["name"], source, _duration(item.get("lookback", "1h"), f"{key}.lookback"), policy,
            signature, float(item.get("holdout_fraction", 0.25)),
        ))  # fmt: skip
    return RetrainRunner(Retrainer(registry, targets), interval)

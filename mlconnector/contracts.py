"""The ML connector's typed vocabulary, shared by the registry, the trainers, the controller's
learning policy, the API and the CLI. Pure: no third-party import, so the controller can depend on
it without the `ml` extra installed.

The performance model the learning policy uses predicts one QoS metric of a component (by default
its p95 request latency) for a candidate setting. Its features are named here once, with their
units, so the dataset recorder, the trainer, the policy and the registry's signatures agree:

| feature           | unit   | meaning                                                      |
|-------------------|--------|--------------------------------------------------------------|
| cpu_quota_cores   | cores  | the CFS quota of the component's cgroup (quota / period)     |
| cpus              | count  | CPUs in the component's cpuset                               |
| runtime_gvisor    | 0/1    | 1 when the runtime handler is gVisor (runsc), 0 for runc     |
| offered_rps       | req/s  | the request rate offered to the component over the window    |

Targets (measured over the same window): latency_p95_ms (ms), throughput_rps (req/s).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

CHAMPION, CHALLENGER = "champion", "challenger"


@dataclass(frozen=True)
class Feature:
    """One input (or the target) of a model: a name, its unit, and the telemetry window it is
    aggregated over (e.g. "30s"; "" for a setting, which has no window)."""

    name: str
    unit: str
    window: str = ""


QOS_FEATURES: tuple[Feature, ...] = (
    Feature("cpu_quota_cores", "cores"),
    Feature("cpus", "count"),
    Feature("runtime_gvisor", "bool"),
    Feature("offered_rps", "req/s", "window"),
)
LATENCY_TARGET = Feature("latency_p95_ms", "ms", "window")
THROUGHPUT_TARGET = Feature("throughput_rps", "req/s", "window")


def ratio_metric(quantile: float) -> str:
    """The version metric holding the `quantile` of measured / predicted on the hold-out
    (`holdout_ratio_p90` for 0.9): training records it, the learning policies keep it as their
    margin, so the name is part of the contract between the two."""
    return f"holdout_ratio_p{round(quantile * 100):02d}"

# The recorded dataset (CSV, one row per measured window): settings, load, outcomes, telemetry.
DATASET_COLUMNS: tuple[str, ...] = (
    "window_start",  # unix seconds
    "window_s",  # length of the window, seconds
    "runtime",  # runc | runsc
    "cpu_quota_cores",
    "cpus",
    "runtime_gvisor",
    "offered_rps",
    "work_ms",  # the service's CPU work per request, ms of one unthrottled core
    "requests",
    "errors",
    "throughput_rps",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "cpu_usage_cores",  # the cgroup's CPU time over the window / window_s
    "throttled_fraction",  # throttled CFS periods / periods over the window
)


@dataclass(frozen=True)
class Signature:
    """What a model reads and predicts, with units and windows (stored with every version)."""

    features: tuple[Feature, ...]
    target: Feature

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)


@dataclass(frozen=True)
class Lineage:
    """Which telemetry a version was trained on: enough to find the window again."""

    source: str  # e.g. "dataset:mlconnector/data/qos_grid.csv" or "prometheus:http://...:9090"
    window_start: float  # unix seconds, first sample
    window_end: float
    rows: int
    digest: str  # sha256 of the training rows as trained on
    parent_version: str | None = None  # the champion it was retrained from


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model, as the registry reports it."""

    name: str
    version: str
    signature: Signature
    metrics: Mapping[str, float]  # e.g. {"mape": 0.08, "holdout_mape": 0.11}
    tags: Mapping[str, str]
    aliases: tuple[str, ...]
    lineage: Lineage | None
    created_at: float  # unix seconds

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version}"


@dataclass(frozen=True)
class Explanation:
    """Feature attributions of one prediction: base_value + sum(attributions) == prediction for
    SHAP (its additivity); method says how they were computed ("shap" or "permutation")."""

    model: str  # ModelVersion.ref
    prediction: float
    base_value: float
    attributions: Mapping[str, float]
    method: str
    inputs: Mapping[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "prediction": self.prediction,
            "base_value": self.base_value,
            "attributions": dict(self.attributions),
            "method": self.method,
            "inputs": dict(self.inputs),
        }


@runtime_checkable
class Predictor(Protocol):
    """A loaded model version: predictions and their explanations for rows of named features."""

    @property
    def version(self) -> ModelVersion: ...

    def predict(self, rows: Sequence[Mapping[str, float]]) -> list[float]: ...

    def explain(self, row: Mapping[str, float]) -> Explanation: ...


class RegistryError(Exception):
    """A registry operation that cannot be done (unknown model or version, no previous champion
    to roll back to, a signature that does not match): the message says which."""


class ModelRegistry(Protocol):
    """Where versions live. `model` is the trained estimator object (scikit-learn API)."""

    def register(
        self,
        name: str,
        model: Any,
        signature: Signature,
        *,
        metrics: Mapping[str, float],
        tags: Mapping[str, str] | None = None,
        lineage: Lineage | None = None,
    ) -> ModelVersion: ...

    def models(self) -> list[str]: ...

    def versions(self, name: str) -> list[ModelVersion]: ...

    def get(self, name: str, version_or_alias: str) -> ModelVersion: ...

    def load(self, name: str, version_or_alias: str = CHAMPION) -> Predictor: ...

    def set_alias(self, name: str, alias: str, version: str) -> ModelVersion: ...

    def promote(self, name: str, version: str) -> ModelVersion:
        """Make `version` the champion, remembering the champion it replaces (for rollback)."""
        ...

    def rollback(self, name: str) -> ModelVersion:
        """Make the previous champion the champion again; RegistryError when there is none."""
        ...

"""Training and retraining the performance model on recorded or collected windows.

The model predicts one target of a Signature (latency_p95_ms by default, throughput_rps as well)
from its features (contracts.QOS_FEATURES: quota, cpus, runtime, offered load). It is a
scikit-learn GradientBoostingRegressor, fitted either on the target itself or on its logarithm
(a TransformedTargetRegressor: latency grows by orders of magnitude as the offered load nears
what the quota can serve, and a log target fits a multiplicative blow-up with few trees). Which
of the two is chosen per training, by the MAPE on the most recent quarter of the training rows
(`transform="auto"`); the choice is in the metrics (`log_target` 1/0) and the version's tags.

Every judgement is on time-ordered hold-outs (`Dataset.split_recent`): a model is deployed to
predict windows after the ones it saw, so it is evaluated that way, against a mean predictor as
the baseline. The same hold-out calibrates how far to trust a prediction: `holdout_ratio_p05`,
`_p10`, `_p90` and `_p95` are quantiles of measured / predicted there (split-conformal: a new
window exceeds prediction x p90 about one time in ten), the margin a policy keeps to meet a
target with a known risk rather than a guess. `retrain` promotes a challenger only when it
beats the champion on the same recent window; otherwise the challenger keeps the alias
`challenger`. `RetrainPolicy` decides when to retrain (on a schedule, or when drift.detect finds
the inputs moved), without doing it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.compose import TransformedTargetRegressor
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.metrics import mean_absolute_percentage_error

from mlconnector.contracts import (
    CHALLENGER,
    CHAMPION,
    LATENCY_TARGET,
    QOS_FEATURES,
    Lineage,
    ModelRegistry,
    ModelVersion,
    Predictor,
    RegistryError,
    Signature,
    ratio_metric,
)
from mlconnector.drift import DriftReport
from mlconnector.features import Dataset
from mlconnector.registry import RegistryUnavailable

log = logging.getLogger(__name__)

LATENCY_SIGNATURE = Signature(QOS_FEATURES, LATENCY_TARGET)
TRANSFORMS = ("auto", "log", "none")
MIN_ROWS = 8
#: quantiles of measured / predicted on the hold-out, recorded as holdout_ratio_p05 ... _p95
RATIO_QUANTILES = (0.05, 0.1, 0.9, 0.95)
# The trees of one model: enough for a grid of a few hundred windows, small enough to fit in a
# second on one core and to explain (TreeSHAP) in milliseconds.
GBR_PARAMS: Mapping[str, Any] = {
    "n_estimators": 300,
    "learning_rate": 0.05,
    "max_depth": 3,
    "subsample": 0.8,
    "loss": "squared_error",
}


class TrainingError(ValueError):
    """The data cannot train or judge a model (too few rows, a non-positive target for a log fit)."""


@dataclass(frozen=True)
class Trained:
    """A fitted estimator, its metrics, and the rows it was fitted on (Lineage)."""

    estimator: Any
    metrics: Mapping[str, float]
    lineage: Lineage
    signature: Signature = LATENCY_SIGNATURE
    transform: str = "none"  # "log" or "none": what the estimator was fitted on


@dataclass(frozen=True)
class RetrainOutcome:
    version: ModelVersion  # the challenger, as registered
    promoted: bool
    reason: str  # why it was (not) promoted, with both MAPEs
    champion_mape: float | None  # None when there was no champion
    challenger_mape: float
    trigger: str = ""  # why the retrain ran (RetrainPolicy's reason)


def estimator(transform: str, seed: int = 0) -> Any:
    """An unfitted model: gradient-boosted trees on the target, or on its log ("log")."""
    trees = GradientBoostingRegressor(random_state=seed, **GBR_PARAMS)
    if transform == "none":
        return trees
    if transform == "log":
        return TransformedTargetRegressor(trees, func=np.log, inverse_func=np.exp, check_inverse=False)
    raise TrainingError(f"transform {transform!r} is not one of {TRANSFORMS}")


def _xy(dataset: Dataset, signature: Signature) -> tuple[np.ndarray, np.ndarray]:
    return dataset.matrix(signature.feature_names), dataset.matrix([signature.target.name])[:, 0]


def _mape(y: np.ndarray, predicted: np.ndarray) -> float:
    return float(mean_absolute_percentage_error(y, predicted))


def ratio_quantiles(y: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """holdout_ratio_pNN: the RATIO_QUANTILES of y / predicted over rows predicted > 0 (none: {})."""
    positive = predicted > 0
    if not positive.any():
        return {}
    ratios = y[positive] / predicted[positive]
    return {ratio_metric(q): float(np.quantile(ratios, q)) for q in RATIO_QUANTILES}


def holdout_metrics(model: Any, dataset: Dataset, signature: Signature) -> dict[str, float]:
    """holdout_mape and the ratio quantiles of a fitted estimator on held-out `dataset`."""
    x, y = _xy(dataset, signature)
    predicted = np.asarray(model.predict(x), dtype=np.float64)
    return {"holdout_mape": _mape(y, predicted), **ratio_quantiles(y, predicted)}


def mape(model: Any, dataset: Dataset, signature: Signature) -> float:
    """Mean absolute percentage error (a fraction: 0.1 is 10 %) of a fitted estimator on `dataset`."""
    x, y = _xy(dataset, signature)
    return _mape(y, np.asarray(model.predict(x), dtype=np.float64))


def predictor_mape(predictor: Predictor, dataset: Dataset) -> float:
    """MAPE of a loaded version (its own signature's features and target) on `dataset`."""
    sig = predictor.version.signature
    y = dataset.matrix([sig.target.name])[:, 0]
    return _mape(y, np.asarray(predictor.predict(dataset.rows(sig.feature_names)), dtype=np.float64))


def _fit_one(transform: str, x: np.ndarray, y: np.ndarray, seed: int) -> Any:
    return estimator(transform, seed).fit(x, y)


def choose_transform(dataset: Dataset, signature: Signature, seed: int = 0) -> tuple[str, dict[str, float]]:
    """Either "log" or "none", whichever predicts the most recent quarter of `dataset` better when fitted
    on the rest; with the two MAPEs."""
    older, recent = dataset.split_recent(0.25)
    xo, yo = _xy(older, signature)
    xr, yr = _xy(recent, signature)
    candidates = ("log", "none") if yo.min() > 0 else ("none",)
    scores = {t: _mape(yr, _fit_one(t, xo, yo, seed).predict(xr)) for t in candidates}
    best = min(scores, key=lambda t: scores[t])
    return best, {f"select_mape_{t}": v for t, v in scores.items()}


def fit(
    dataset: Dataset,
    signature: Signature = LATENCY_SIGNATURE,
    *,
    seed: int = 0,
    holdout_fraction: float = 0.25,
    transform: str = "auto",
    parent_version: str | None = None,
) -> Trained:
    """Fit on the older (1 - holdout_fraction) of `dataset` and measure on its most recent part.

    Metrics: `mape` (on the training rows), `holdout_mape` and `baseline_mape` (a mean predictor
    fitted on the same rows) on the hold-out, `log_target`, `train_s`. holdout_fraction=0 fits on
    every row and measures no hold-out (retrain measures on its own window). The estimator returned
    is the one measured: fitted on the training rows only, which the Lineage names.
    """
    if transform not in TRANSFORMS:
        raise TrainingError(f"transform {transform!r} is not one of {TRANSFORMS}")
    if holdout_fraction:
        train, holdout = dataset.split_recent(holdout_fraction)
    else:
        train, holdout = dataset, None
    if len(train) < MIN_ROWS:
        raise TrainingError(f"{len(train)} training rows: at least {MIN_ROWS} are needed")
    began = time.monotonic()
    x, y = _xy(train, signature)
    metrics: dict[str, float] = {}
    if transform == "auto":
        transform, scores = choose_transform(train, signature, seed)
        metrics.update(scores)
    elif transform == "log" and y.min() <= 0:
        raise TrainingError(f"{signature.target.name} has values <= 0: it cannot be fitted on its log")
    model = _fit_one(transform, x, y, seed)
    metrics["train_s"] = time.monotonic() - began
    metrics["mape"] = _mape(y, model.predict(x))
    metrics["log_target"] = 1.0 if transform == "log" else 0.0
    metrics["rows"] = float(len(train))
    if holdout is not None:
        metrics.update(holdout_metrics(model, holdout, signature))
        metrics["baseline_mape"] = mape(DummyRegressor(strategy="mean").fit(x, y), holdout, signature)
    return Trained(model, metrics, train.lineage(parent_version), signature, transform)


def _champion(registry: ModelRegistry, name: str) -> Predictor | None:
    try:
        return registry.load(name, CHAMPION)
    except RegistryUnavailable:
        raise  # not "no champion": promoting blindly over an unreachable one would be wrong
    except RegistryError:
        return None


def retrain(
    registry: ModelRegistry,
    name: str,
    dataset: Dataset,
    signature: Signature = LATENCY_SIGNATURE,
    *,
    holdout_fraction: float = 0.25,
    reason: str,
    seed: int = 0,
    tags: Mapping[str, str] | None = None,
) -> RetrainOutcome:
    """Train a challenger on the older part of `dataset`, judge it and the champion on the recent
    part, register it, and promote it only if its hold-out MAPE is lower than the champion's (or
    there is no champion); otherwise it gets the alias `challenger`. `reason` (why the retrain
    ran) is recorded as the version's tag `retrain_reason`."""
    older, recent = dataset.split_recent(holdout_fraction)
    champion = _champion(registry, name)
    trained = fit(
        older,
        signature,
        seed=seed,
        holdout_fraction=0.0,
        parent_version=champion.version.version if champion else None,
    )
    judged = holdout_metrics(trained.estimator, recent, signature)
    challenger_mape = judged["holdout_mape"]
    metrics = {
        **trained.metrics,
        **judged,
        "baseline_mape": mape(DummyRegressor().fit(*_xy(older, signature)), recent, signature),
        "holdout_rows": float(len(recent)),
    }
    champion_mape = predictor_mape(champion, recent) if champion else None
    if champion_mape is not None:
        metrics["champion_holdout_mape"] = champion_mape
    version_tags = {
        **(tags or {}),
        "retrain_reason": reason,
        "target_transform": trained.transform,
        "holdout_window": f"{recent.window_start:.0f}-{recent.window_end:.0f}",
    }
    version = registry.register(
        name, trained.estimator, signature, metrics=metrics, tags=version_tags, lineage=trained.lineage
    )
    if champion is None or champion_mape is None:
        version = registry.promote(name, version.version)
        why = f"no champion: version {version.version} (hold-out MAPE {challenger_mape:.3f}) is champion"
        promoted = True
    elif challenger_mape < champion_mape:
        version = registry.promote(name, version.version)
        why = (
            f"version {version.version} beats champion {champion.version.version} on the recent window "
            f"(hold-out MAPE {challenger_mape:.3f} < {champion_mape:.3f}): promoted"
        )
        promoted = True
    else:
        version = registry.set_alias(name, CHALLENGER, version.version)
        why = (
            f"version {version.version} does not beat champion {champion.version.version} on the recent "
            f"window (hold-out MAPE {challenger_mape:.3f} >= {champion_mape:.3f}): kept as challenger"
        )
        promoted = False
    log.info("retrain %s (%s): %s", name, reason, why)
    return RetrainOutcome(version, promoted, why, champion_mape, challenger_mape, reason)


@dataclass(frozen=True)
class RetrainPolicy:
    """When to retrain (pure: the caller supplies the clock, the last training time and a drift
    report). Scheduled every `interval_s` (None: never on a schedule); on drift when `on_drift`,
    but not sooner than `min_gap_s` after the last training, so inputs that stay shifted do not
    retrain at every check."""

    interval_s: float | None = 24 * 3600.0
    on_drift: bool = True
    min_gap_s: float = 600.0

    def decide(
        self, now: float, last_trained_at: float | None, drift: DriftReport | None = None
    ) -> str | None:
        """The reason to retrain now, or None."""
        if last_trained_at is None:
            return "no model trained yet"
        age = now - last_trained_at
        if self.interval_s is not None and age >= self.interval_s:
            return f"scheduled: {age:.0f} s since the last training (interval {self.interval_s:.0f} s)"
        if self.on_drift and drift is not None and drift.drifted and age >= self.min_gap_s:
            return f"drift: {drift.summary()}"
        return None

"""Drift of a model's inputs: is the telemetry now unlike the window the model was trained on?

Per feature, two measures of the same question:
- the two-sample Kolmogorov-Smirnov test (scipy.stats.ks_2samp): is the difference real, not noise?
  (its p-value against `ks_alpha`);
- the population stability index over quantile bins of the reference: is it large enough to matter?
  (PSI against `psi_threshold`; 0.1 "some", 0.2 "significant" by the usual rule of thumb).

A feature has drifted when both say so. Either alone misleads: on thousands of windows KS finds
any tiny shift significant, and on a few dozen windows PSI's sampling noise alone reaches about
(bins - 1) * (1/n_reference + 1/n_current), near the threshold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import ks_2samp

from mlconnector.contracts import Feature
from mlconnector.features import Dataset

PSI_BINS = 10
PSI_EPSILON = 1e-4  # the share given to an empty bin, so the log stays finite


@dataclass(frozen=True)
class FeatureDrift:
    ks_statistic: float
    ks_pvalue: float
    psi: float
    drifted: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "ks_statistic": self.ks_statistic,
            "ks_pvalue": self.ks_pvalue,
            "psi": self.psi,
            "drifted": self.drifted,
        }


@dataclass(frozen=True)
class DriftReport:
    features: Mapping[str, FeatureDrift]
    drifted: bool
    reference_rows: int = 0
    current_rows: int = 0

    @property
    def drifted_features(self) -> tuple[str, ...]:
        return tuple(name for name, d in self.features.items() if d.drifted)

    def summary(self) -> str:
        """One line naming the drifted features with their measures (for logs and retrain reasons)."""
        if not self.drifted:
            return "no feature drifted"
        return ", ".join(
            f"{n} (KS p={self.features[n].ks_pvalue:.2g}, PSI={self.features[n].psi:.2f})"
            for n in self.drifted_features
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "drifted": self.drifted,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "features": {n: d.to_json() for n, d in self.features.items()},
        }


def psi(reference: np.ndarray, current: np.ndarray, bins: int = PSI_BINS) -> float:
    """Population stability index of `current` against `reference`.

    Bins are the reference's quantiles; a feature with no more distinct reference values than
    bins (a setting such as cpus or the runtime) gets one bin per value plus one for values the
    reference never had, since quantile edges of a discrete feature collapse onto each other.
    """
    reference = np.asarray(reference, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    if reference.size == 0 or current.size == 0:
        raise ValueError("PSI needs samples in both the reference and the current window")
    values = np.unique(reference)
    if values.size <= bins:
        ref_counts = np.array([(reference == v).sum() for v in values] + [0])
        known = np.isin(current, values)
        cur_counts = np.array([(current == v).sum() for v in values] + [int((~known).sum())])
    else:
        inner = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1))[1:-1])
        ref_counts = np.bincount(np.searchsorted(inner, reference, side="right"), minlength=inner.size + 1)
        cur_counts = np.bincount(np.searchsorted(inner, current, side="right"), minlength=inner.size + 1)
    r = np.maximum(ref_counts / reference.size, PSI_EPSILON)
    c = np.maximum(cur_counts / current.size, PSI_EPSILON)
    return float(np.sum((c - r) * np.log(c / r)))


def detect(
    reference: Dataset,
    current: Dataset,
    features: Iterable[str | Feature],
    *,
    ks_alpha: float = 0.01,
    psi_threshold: float = 0.2,
) -> DriftReport:
    """Each feature of `current` against `reference` (e.g. the champion's training window); the
    report has drifted=True when any feature has."""
    names = [f.name if isinstance(f, Feature) else f for f in features]
    if not names:
        raise ValueError("no features to compare")
    if len(reference) < 2 or len(current) < 2:
        raise ValueError(
            f"drift needs at least 2 windows on each side "
            f"(reference {len(reference)}, current {len(current)})"
        )
    ref, cur = reference.matrix(names), current.matrix(names)
    out: dict[str, FeatureDrift] = {}
    for j, name in enumerate(names):
        test = ks_2samp(ref[:, j], cur[:, j])
        stat, pvalue = float(test.statistic), float(test.pvalue)
        index = psi(ref[:, j], cur[:, j])
        out[name] = FeatureDrift(stat, pvalue, index, pvalue < ks_alpha and index > psi_threshold)
    return DriftReport(out, any(d.drifted for d in out.values()), len(reference), len(current))

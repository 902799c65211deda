"""`EstimatorPredictor`: a registered version's estimator behind contracts.Predictor.

The registry loads a version's scikit-learn estimator and wraps it here; the learning policy then
asks for predictions of rows of named features (in any order: the signature fixes the order the
estimator reads) and for the explanation of the one it acts on. The explainer (SHAP's
TreeExplainer for the tree models training produces) is built on the first explain() and kept.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mlconnector.contracts import Explanation, ModelVersion
from mlconnector.explain import Explainer, explainer_for
from mlconnector.features import Dataset


class FeatureError(ValueError):
    """A row the model cannot read: a feature missing, or not a finite number."""


class EstimatorPredictor:
    """contracts.Predictor for a fitted estimator of `version`. `reference`: windows with the
    signature's features and target, needed only to explain a non-tree estimator (permutation
    importance)."""

    def __init__(self, version: ModelVersion, estimator: Any, *, reference: Dataset | None = None) -> None:
        self._version = version
        self.estimator = estimator
        self._reference = reference
        self._explainer: Explainer | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"EstimatorPredictor({self._version.ref}, {type(self.estimator).__name__})"

    @property
    def version(self) -> ModelVersion:
        return self._version

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self._version.signature.feature_names

    def matrix(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """The rows as the estimator reads them (the signature's feature order)."""
        names = self.feature_names
        out = np.empty((len(rows), len(names)), dtype=np.float64)
        for i, row in enumerate(rows):
            missing = [n for n in names if n not in row]
            if missing:
                raise FeatureError(
                    f"{self._version.ref}: row {i} lacks feature(s) {missing} (the model reads {list(names)})"
                )
            for j, n in enumerate(names):
                try:
                    value = float(row[n])
                except (TypeError, ValueError):
                    raise FeatureError(
                        f"{self._version.ref}: row {i}, {n}={row[n]!r} is not a number"
                    ) from None
                if not math.isfinite(value):
                    raise FeatureError(f"{self._version.ref}: row {i}, {n}={value} is not finite")
                out[i, j] = value
        return out

    def predict(self, rows: Sequence[Mapping[str, float]]) -> list[float]:
        if not rows:
            return []
        return [float(v) for v in np.asarray(self.estimator.predict(self.matrix(rows))).reshape(-1)]

    def _explainer_once(self) -> Explainer:
        with self._lock:
            if self._explainer is None:
                reference = None
                if self._reference is not None:
                    sig = self._version.signature
                    reference = (
                        self._reference.matrix(sig.feature_names),
                        self._reference.matrix([sig.target.name])[:, 0],
                    )
                self._explainer = explainer_for(self.estimator, reference)
            return self._explainer

    def explain(self, row: Mapping[str, float]) -> Explanation:
        x = self.matrix([row])[0]
        explainer = self._explainer_once()
        base, attributions, prediction = explainer.explain(x)
        names = self.feature_names
        return Explanation(
            model=self._version.ref,
            prediction=prediction,
            base_value=base,
            attributions={n: float(a) for n, a in zip(names, attributions, strict=True)},
            method=explainer.method,
            inputs={n: float(v) for n, v in zip(names, x, strict=True)},
        )

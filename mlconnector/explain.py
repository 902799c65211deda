"""Feature attributions of one prediction, in the units the policy reads (ms of latency, req/s).

- Tree models (gradient boosting, forests, single trees): SHAP's TreeExplainer, exact for trees and
  without background data (it uses the trees' own node counts). Additivity: base_value + the sum
  of the attributions equals the prediction (TreeExplainer checks it, and so do our tests).
- Tree models on a log target (training's TransformedTargetRegressor with log/exp): TreeExplainer
  explains the inner trees, whose output is log(prediction): log(pred) = b + sum(phi). Those log
  attributions are turned into ms by the Shapley values of the game v(S) = exp(b + sum_{i in S} phi_i)
  (what the prediction would be if only the features in S moved from the base): their efficiency
  gives exactly exp(b) + sum(attributions) == prediction, so base_value is exp(b), a latency, and
  each attribution is in ms; a feature with phi_i = 0 gets 0, and the signs are phi's. The game has
  2^n coalitions, computed exactly (n is a Signature's handful of features).
- Other estimators: permutation importance (sklearn.inspection) on reference windows: a global
  importance per feature (the hold-out MAPE lost when the feature is shuffled), not an additive
  decomposition of this prediction; base_value is the mean prediction over the reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Protocol

import numpy as np

MAX_EXACT_FEATURES = 16


class ExplainError(ValueError):
    """This estimator cannot be explained as asked (e.g. no reference data for permutation importance)."""


class Explainer(Protocol):
    method: str

    def explain(self, x: np.ndarray) -> tuple[float, np.ndarray, float]:
        """(base_value, attributions per feature, prediction) for one row `x` of shape (n_features,)."""
        ...


def _is_tree(model: Any) -> bool:
    from sklearn.ensemble import (
        ExtraTreesRegressor,
        GradientBoostingRegressor,
        HistGradientBoostingRegressor,
        RandomForestRegressor,
    )
    from sklearn.tree import DecisionTreeRegressor, ExtraTreeRegressor

    tree_types = (
        GradientBoostingRegressor,
        HistGradientBoostingRegressor,
        RandomForestRegressor,
        ExtraTreesRegressor,
        DecisionTreeRegressor,
        ExtraTreeRegressor,
    )
    return isinstance(model, tree_types)


def log_target_trees(model: Any) -> Any | None:
    """The inner tree model of a TransformedTargetRegressor fitted on log(target), else None."""
    from sklearn.compose import TransformedTargetRegressor

    if (
        isinstance(model, TransformedTargetRegressor)
        and model.func is np.log
        and model.inverse_func is np.exp
    ):
        inner = getattr(model, "regressor_", None)
        if inner is not None and _is_tree(inner):
            return inner
    return None


def _scalar(value: Any) -> float:
    return float(np.asarray(value, dtype=np.float64).reshape(-1)[0])


@dataclass
class TreeShap:
    """TreeExplainer on a tree model's own output."""

    model: Any
    method: str = "shap"

    def __post_init__(self) -> None:
        import shap

        self._explainer = shap.TreeExplainer(self.model)

    def explain(self, x: np.ndarray) -> tuple[float, np.ndarray, float]:
        row = np.asarray(x, dtype=np.float64).reshape(1, -1)
        values = np.asarray(self._explainer.shap_values(row, check_additivity=True)).reshape(-1)
        return _scalar(self._explainer.expected_value), values, _scalar(self.model.predict(row))

    def explain_raw(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        base, values, _ = self.explain(x)
        return base, values


def exp_game_shapley(base_log: float, phi: np.ndarray) -> np.ndarray:
    """Exact Shapley values of v(S) = exp(base_log + sum_{i in S} phi_i) - exp(base_log)."""
    phi = np.asarray(phi, dtype=np.float64)
    n = phi.size
    if n > MAX_EXACT_FEATURES:
        raise ExplainError(
            f"{n} features: exact Shapley values are computed for at most {MAX_EXACT_FEATURES}"
        )
    weights = [math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n) for k in range(n)]
    out = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for k in range(n):
            for subset in combinations(others, k):
                s = base_log + phi[list(subset)].sum()
                out[i] += weights[k] * (math.exp(s + phi[i]) - math.exp(s))
    return out


@dataclass
class LogTreeShap:
    """TreeExplainer on the log-target trees, mapped to the prediction's units (module docstring)."""

    model: Any  # the TransformedTargetRegressor
    method: str = "shap"

    def __post_init__(self) -> None:
        inner = log_target_trees(self.model)
        if inner is None:
            raise ExplainError(f"{type(self.model).__name__} is not a tree model on a log target")
        self.log_model = TreeShap(inner)

    def explain(self, x: np.ndarray) -> tuple[float, np.ndarray, float]:
        base_log, phi = self.log_model.explain_raw(x)
        prediction = _scalar(self.model.predict(np.asarray(x, dtype=np.float64).reshape(1, -1)))
        return math.exp(base_log), exp_game_shapley(base_log, phi), prediction


@dataclass
class PermutationImportance:
    """sklearn's permutation importance on reference windows (x, y), computed once: the same global
    attributions for every row; the prediction and the base (mean reference prediction) vary."""

    model: Any
    reference_x: np.ndarray
    reference_y: np.ndarray
    seed: int = 0
    repeats: int = 5
    method: str = "permutation"

    def __post_init__(self) -> None:
        from sklearn.inspection import permutation_importance

        if len(self.reference_x) < 2:
            raise ExplainError("permutation importance needs at least 2 reference windows")
        result = permutation_importance(
            self.model,
            self.reference_x,
            self.reference_y,
            scoring="neg_mean_absolute_percentage_error",
            n_repeats=self.repeats,
            random_state=self.seed,
        )
        self.importances = np.asarray(result.importances_mean, dtype=np.float64)
        self.base = float(np.mean(self.model.predict(self.reference_x)))

    def explain(self, x: np.ndarray) -> tuple[float, np.ndarray, float]:
        prediction = _scalar(self.model.predict(np.asarray(x, dtype=np.float64).reshape(1, -1)))
        return self.base, self.importances.copy(), prediction


def explainer_for(
    model: Any, reference: tuple[np.ndarray, np.ndarray] | None = None, seed: int = 0
) -> Explainer:
    """SHAP for trees (on a log target too), permutation importance on `reference` otherwise."""
    if log_target_trees(model) is not None:
        return LogTreeShap(model)
    if _is_tree(model):
        return TreeShap(model)
    if reference is None:
        raise ExplainError(
            f"{type(model).__name__} is not a tree model: permutation importance needs reference windows "
            "(features and target), and none were given"
        )
    return PermutationImportance(model, reference[0], reference[1], seed)

"""Explanations of the models trained on the recorded grid: SHAP's additivity (base value plus the
attributions is the prediction) in the units the policy reads, for a model on the latency and for
one on its log (where the log-space TreeSHAP values are additive in log(ms) and their mapping to ms
is additive in ms); permutation importance for a non-tree estimator; predictions of named features."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from mlconnector.contracts import Explanation, ModelVersion, Predictor
from mlconnector.explain import ExplainError, LogTreeShap, exp_game_shapley
from mlconnector.features import Dataset
from mlconnector.predictor import EstimatorPredictor, FeatureError
from mlconnector.training import LATENCY_SIGNATURE, fit

NAMES = LATENCY_SIGNATURE.feature_names


def version(n: str = "1") -> ModelVersion:
    return ModelVersion("latency_p95_ms", n, LATENCY_SIGNATURE, {}, {}, (), None, 0.0)


@pytest.fixture(scope="module")
def split(recorded: Dataset) -> tuple[Dataset, Dataset]:
    return recorded.split_recent(0.25)


def sample_rows(ds: Dataset, k: int = 25) -> list[dict[str, float]]:
    rows = ds.rows(NAMES)
    return [rows[i] for i in np.linspace(0, len(rows) - 1, min(k, len(rows))).astype(int)]


def assert_additive(e: Explanation) -> None:
    total = e.base_value + sum(e.attributions.values())
    assert abs(total - e.prediction) <= 1e-6 * abs(e.prediction), (total, e.prediction)


@pytest.mark.parametrize("transform", ["none", "log"])
def test_shap_attributions_add_up_to_the_prediction_in_ms(
    split: tuple[Dataset, Dataset], transform: str
) -> None:
    older, recent = split
    model = fit(older, LATENCY_SIGNATURE, holdout_fraction=0.0, transform=transform).estimator
    predictor = EstimatorPredictor(version(), model)
    assert isinstance(predictor, Predictor)
    rows = sample_rows(recent)
    predictions = predictor.predict(rows)
    for row, predicted in zip(rows, predictions, strict=True):
        e = predictor.explain(row)
        assert e.method == "shap" and set(e.attributions) == set(NAMES)
        assert e.inputs == row and e.model == "latency_p95_ms/1"
        assert e.prediction == pytest.approx(predicted, rel=1e-12)
        assert_additive(e)
    # the explanation is not a constant: the offered load moves latency across these windows
    spread = np.ptp([predictor.explain(r).attributions["offered_rps"] for r in rows])
    assert spread > 0


def test_log_model_is_additive_in_log_space_and_its_ms_mapping_keeps_signs(
    split: tuple[Dataset, Dataset],
) -> None:
    older, recent = split
    model = fit(older, LATENCY_SIGNATURE, holdout_fraction=0.0, transform="log").estimator
    explainer = LogTreeShap(model)
    for row in sample_rows(recent, 10):
        x = np.array([row[n] for n in NAMES])
        base_log, phi = explainer.log_model.explain_raw(x)
        prediction = float(model.predict(x.reshape(1, -1))[0])
        assert base_log + phi.sum() == pytest.approx(math.log(prediction), rel=1e-6, abs=1e-9)
        base_ms, attributions, predicted = explainer.explain(x)
        assert base_ms == pytest.approx(math.exp(base_log)) and predicted == pytest.approx(prediction)
        assert base_ms + attributions.sum() == pytest.approx(prediction, rel=1e-6)
        assert np.all(np.sign(attributions[np.abs(phi) > 1e-12]) == np.sign(phi[np.abs(phi) > 1e-12]))


def test_exp_game_shapley_values() -> None:
    # one feature: all of the change is its own
    assert exp_game_shapley(1.0, np.array([0.5]))[0] == pytest.approx(math.exp(1.5) - math.exp(1.0))
    # a feature with no log effect gets nothing; symmetric features get the same share
    values = exp_game_shapley(0.0, np.array([0.3, 0.0, 0.3]))
    assert values[1] == pytest.approx(0.0) and values[0] == pytest.approx(values[2])
    assert values.sum() == pytest.approx(math.exp(0.6) - 1.0)


def test_a_non_tree_model_is_explained_by_permutation_importance(split: tuple[Dataset, Dataset]) -> None:
    older, recent = split
    x, y = older.matrix(NAMES), older.column("latency_p95_ms")
    linear = LinearRegression().fit(x, y)
    linear.coef_[NAMES.index("cpus")] = 0.0  # the model no longer reads cpus
    with pytest.raises(ExplainError, match="needs reference windows"):
        EstimatorPredictor(version(), linear).explain(recent.rows(NAMES)[0])
    predictor = EstimatorPredictor(version(), linear, reference=recent)
    row = recent.rows(NAMES)[0]
    e = predictor.explain(row)
    assert e.method == "permutation"
    assert e.attributions["cpus"] == 0.0  # shuffling a column the model ignores changes nothing
    assert e.attributions["offered_rps"] > 0.0
    assert e.prediction == pytest.approx(predictor.predict([row])[0])
    assert e.base_value == pytest.approx(float(np.mean(linear.predict(recent.matrix(NAMES)))))


def test_predict_reads_named_features_in_any_order_and_names_a_missing_one(
    split: tuple[Dataset, Dataset],
) -> None:
    older, recent = split
    model = fit(older, LATENCY_SIGNATURE, holdout_fraction=0.0, transform="none").estimator
    predictor = EstimatorPredictor(version("7"), model)
    row = recent.rows(NAMES)[0]
    reordered = dict(reversed(list(row.items())))
    assert predictor.predict([reordered]) == predictor.predict([row])
    assert predictor.predict([row])[0] == pytest.approx(float(model.predict(recent.matrix(NAMES)[:1])[0]))
    assert predictor.predict([]) == []
    with pytest.raises(FeatureError, match=r"latency_p95_ms/7: row 1 lacks feature\(s\) \['cpus'\]"):
        predictor.predict([row, {k: v for k, v in row.items() if k != "cpus"}])
    with pytest.raises(FeatureError, match="offered_rps='many' is not a number"):
        predictor.predict([{**row, "offered_rps": "many"}])  # type: ignore[dict-item]
    with pytest.raises(FeatureError, match="not finite"):
        predictor.explain({**row, "offered_rps": math.inf})

"""The model registry on a real MLflow (SQLite + local artifacts in a temporary directory), with real
scikit-learn models: register → get → load → predict, versions, metrics/tags/signature/lineage,
aliases, promote and rollback, clear errors, and a second registry object on the same directory
(a process restart) seeing the same state. One registry per module: MLflow's first use costs seconds."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from mlconnector.contracts import (
    CHALLENGER,
    CHAMPION,
    LATENCY_TARGET,
    QOS_FEATURES,
    Lineage,
    ModelRegistry,
    Predictor,
    RegistryError,
    Signature,
)
from mlconnector.registry import PREVIOUS_CHAMPION, MlflowRegistry, RegistryUnavailable

GRID = Path(__file__).resolve().parents[3] / "mlconnector" / "data" / "qos_grid.csv"
SIGNATURE = Signature(QOS_FEATURES, LATENCY_TARGET)
LINEAGE = Lineage(
    source="dataset:mlconnector/data/qos_grid.csv",
    window_start=1_796_000_000.0,
    window_end=1_796_003_600.5,
    rows=24,
    digest="9f" * 32,
)


def training_rows() -> tuple[np.ndarray, np.ndarray]:
    """A few recorded windows of the QoS grid when it is in the tree, else a tiny array shaped like it."""
    if GRID.exists():
        with GRID.open() as f:
            rows = list(csv.DictReader(f))[:24]
        x = np.array([[float(r[n]) for n in SIGNATURE.feature_names] for r in rows])
        y = np.array([float(r[LATENCY_TARGET.name]) for r in rows])
        return x, y
    quota = np.array([0.25, 0.5, 1.0, 2.0] * 6)
    cpus = np.array([1, 1, 2, 2, 4, 4] * 4, dtype=float)
    gvisor = np.array([0, 1] * 12, dtype=float)
    rps = np.repeat([20.0, 40.0, 80.0, 160.0, 240.0, 320.0], 4)
    x = np.column_stack([quota, cpus, gvisor, rps])
    y = 5.0 + rps / (quota * 40.0) + 3.0 * gvisor
    return x, y


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return training_rows()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry")


@pytest.fixture(scope="module")
def registry(root: Path) -> MlflowRegistry:
    return MlflowRegistry.embedded(root)


@pytest.fixture(scope="module")
def trees(
    registry: MlflowRegistry, data: tuple[np.ndarray, np.ndarray]
) -> Iterator[list[GradientBoostingRegressor]]:
    """Three versions of model `latency_p95_ms` (tree ensembles, which need skops' trusted Tree type)."""
    x, y = data
    models = [
        GradientBoostingRegressor(n_estimators=10 * (i + 1), random_state=i).fit(x, y) for i in range(3)
    ]
    for i, m in enumerate(models):
        registry.register(
            "latency_p95_ms",
            m,
            SIGNATURE,
            metrics={"mape": 0.3 - 0.1 * i, "holdout_mape": 0.35 - 0.1 * i},
            tags={"trainer": "test", "round": str(i)},
            lineage=LINEAGE if i == 0 else Lineage(**{**LINEAGE.__dict__, "parent_version": str(i)}),
        )
    yield models


def test_constructing_opens_and_creates_nothing(tmp_path: Path) -> None:
    MlflowRegistry.embedded(tmp_path / "never")
    MlflowRegistry("postgresql+psycopg://mlsysops@127.0.0.1:1/none", "s3://bucket/models")
    assert not (tmp_path / "never").exists()


def test_round_trip_register_get_load_predict(
    registry: MlflowRegistry, trees: list[GradientBoostingRegressor], data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, _ = data
    v1 = registry.get("latency_p95_ms", "1")
    assert (v1.name, v1.version, v1.ref) == ("latency_p95_ms", "1", "latency_p95_ms/1")
    assert v1.signature == SIGNATURE  # units and windows included
    assert v1.metrics == {"mape": pytest.approx(0.3), "holdout_mape": pytest.approx(0.35)}
    assert v1.tags == {"trainer": "test", "round": "0"}
    assert v1.lineage == LINEAGE
    assert registry.get("latency_p95_ms", "2").lineage == Lineage(
        **{**LINEAGE.__dict__, "parent_version": "1"}
    )
    for i, model in enumerate(trees):
        version, estimator = registry.load_estimator("latency_p95_ms", str(i + 1))
        assert version.version == str(i + 1)
        assert type(estimator) is GradientBoostingRegressor
        np.testing.assert_array_equal(estimator.predict(x), model.predict(x))


def test_load_gives_the_version_as_a_predictor(
    registry: MlflowRegistry, trees: list[GradientBoostingRegressor], data: tuple[np.ndarray, np.ndarray]
) -> None:
    """load() = load_estimator() behind mlconnector.predictor.EstimatorPredictor: rows of named features."""
    x, _ = data
    predictor = registry.load("latency_p95_ms", "2")
    assert isinstance(predictor, Predictor)
    assert predictor.version == registry.get("latency_p95_ms", "2")
    rows = [dict(zip(SIGNATURE.feature_names, map(float, row), strict=True)) for row in x]
    assert predictor.predict(rows) == [float(v) for v in trees[1].predict(x)]
    explanation = predictor.explain(rows[0])
    assert explanation.model == "latency_p95_ms/2"
    assert explanation.prediction == pytest.approx(float(trees[1].predict(x[:1])[0]))


def test_versions_and_models_are_listed(
    registry: MlflowRegistry, trees: list[GradientBoostingRegressor]
) -> None:
    assert "latency_p95_ms" in registry.models()
    versions = registry.versions("latency_p95_ms")
    assert [v.version for v in versions] == ["1", "2", "3"]
    assert [v.tags["round"] for v in versions] == ["0", "1", "2"]
    assert [round(v.metrics["mape"], 6) for v in versions] == [0.3, 0.2, 0.1]
    assert versions[0].created_at <= versions[1].created_at <= versions[2].created_at


def test_mlflow_holds_the_run_the_signature_and_the_training_window(
    root: Path, registry: MlflowRegistry, trees: list[GradientBoostingRegressor]
) -> None:
    """What MLflow's own tools see: the run's params and dataset input, and the logged model's signature."""
    from mlflow import MlflowClient
    from mlflow.models import Model

    client = MlflowClient(registry.tracking_uri, registry.tracking_uri)
    mv = client.get_model_version("latency_p95_ms", "1")
    assert mv.run_id is not None and mv.source is not None
    run = client.get_run(mv.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["feature.offered_rps.unit"] == "req/s"
    assert run.data.params["feature.offered_rps.window"] == "window"
    assert run.data.params["lineage.digest"] == LINEAGE.digest
    assert run.data.params["estimator"] == "sklearn.ensemble._gb.GradientBoostingRegressor"
    assert run.data.tags["trainer"] == "test"
    assert run.inputs is not None
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.profile is not None
    assert dataset_input.dataset.source == LINEAGE.source
    assert dataset_input.dataset.digest == LINEAGE.digest[:36]
    assert json.loads(dataset_input.dataset.profile)["rows"] == LINEAGE.rows
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "training"
    assert mv.source.startswith(root.as_uri() + "/artifacts/latency_p95_ms/")
    info = Model.load(str(Path(str(urlparse(mv.source).path)) / "MLmodel"))
    assert info.signature.inputs.input_names() == list(SIGNATURE.feature_names)
    assert info.signature.outputs.input_names() == [LATENCY_TARGET.name]
    assert "sklearn.tree._tree.Tree" in info.flavors["sklearn"]["skops_trusted_types"]


def test_aliases_champion_and_challenger(
    registry: MlflowRegistry, trees: list[GradientBoostingRegressor]
) -> None:
    registry.set_alias("latency_p95_ms", CHALLENGER, "3")
    assert registry.get("latency_p95_ms", CHALLENGER).version == "3"
    registry.promote("latency_p95_ms", "2")
    assert registry.get("latency_p95_ms", CHAMPION).version == "2"
    assert CHAMPION in registry.get("latency_p95_ms", "2").aliases
    assert registry.get("latency_p95_ms", "3").aliases == (CHALLENGER,)
    with pytest.raises(RegistryError, match="not a version number"):
        registry.set_alias("latency_p95_ms", "7", "1")
    with pytest.raises(RegistryError, match="set by promote and rollback"):
        registry.set_alias("latency_p95_ms", PREVIOUS_CHAMPION, "1")


def test_setting_the_champion_alias_is_a_promote(
    registry: MlflowRegistry, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = data
    for _ in range(2):
        registry.register("by_alias", LinearRegression().fit(x, y), SIGNATURE, metrics={})
    registry.set_alias("by_alias", CHAMPION, "1")
    registry.set_alias("by_alias", CHAMPION, "2")
    assert registry.rollback("by_alias").version == "1"


def test_mlflow_registry_is_a_model_registry(registry: MlflowRegistry) -> None:
    typed: ModelRegistry = registry  # mypy checks the structural match with the contract
    assert typed is registry


def test_promote_then_rollback_twice_then_nothing_to_roll_back(
    registry: MlflowRegistry, trees: list[GradientBoostingRegressor], data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = data
    name = "throughput_rps"
    for i in range(3):
        registry.register(name, LinearRegression().fit(x, y * (i + 1)), SIGNATURE, metrics={"mape": 0.1})
    for v in ("1", "2", "3"):
        assert registry.promote(name, v).aliases == (CHAMPION,)
    assert registry.promote(name, "3").version == "3"  # already champion: the history does not grow
    assert registry.get(name, PREVIOUS_CHAMPION).version == "2"

    back = registry.rollback(name)
    assert back.version == "2" and CHAMPION in back.aliases
    assert registry.get(name, PREVIOUS_CHAMPION).version == "1"
    _, estimator = registry.load_estimator(name)  # the champion by default
    np.testing.assert_allclose(estimator.predict(x), LinearRegression().fit(x, y * 2).predict(x))

    assert registry.rollback(name).version == "1"
    with pytest.raises(RegistryError, match=f"model '{name}' has no previous champion"):
        registry.rollback(name)
    assert registry.get(name, CHAMPION).version == "1"  # the failed rollback changed nothing
    with pytest.raises(RegistryError, match=f"model '{name}' has no alias '{PREVIOUS_CHAMPION}'"):
        registry.get(name, PREVIOUS_CHAMPION)


def test_unknown_names_and_bad_input_are_clear_errors(
    registry: MlflowRegistry, trees: list[GradientBoostingRegressor]
) -> None:
    cases: dict[str, list[Callable[[], object]]] = {
        "no model 'nope' in the registry": [
            lambda: registry.get("nope", "1"),
            lambda: registry.get("nope", CHAMPION),
            lambda: registry.versions("nope"),
            lambda: registry.load_estimator("nope"),
            lambda: registry.rollback("nope"),
            lambda: registry.promote("nope", "1"),
        ],
        "model 'latency_p95_ms' has no version 42": [
            lambda: registry.get("latency_p95_ms", "42"),
            lambda: registry.promote("latency_p95_ms", "42"),
            lambda: registry.set_alias("latency_p95_ms", CHALLENGER, "42"),
        ],
        "model 'latency_p95_ms' has no alias 'canary'": [lambda: registry.get("latency_p95_ms", "canary")],
        "invalid model name": [lambda: registry.get("x' OR name LIKE '%", "1")],
        "reserved": [
            lambda: registry.register("m", trees[0], SIGNATURE, metrics={}, tags={"mlflow.user": "x"})
        ],
        "the estimator reads 4 features, the signature names 2": [
            lambda: registry.register("m", trees[0], Signature(QOS_FEATURES[:2], LATENCY_TARGET), metrics={})
        ],
    }
    for message, calls in cases.items():
        for call in calls:
            with pytest.raises(RegistryError) as caught:
                call()
            assert message in str(caught.value)
            assert not isinstance(caught.value, RegistryUnavailable)
            assert "Traceback" not in str(caught.value) and "MlflowException" not in str(caught.value)
    assert "m" not in registry.models()  # nothing half-registered


def _double(values: np.ndarray) -> np.ndarray:
    return values * 2


def test_a_model_holding_code_outside_the_trusted_packages_is_refused(
    registry: MlflowRegistry, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = data
    pipeline = make_pipeline(FunctionTransformer(_double), LinearRegression()).fit(x, y)
    with pytest.raises(RegistryError, match="_double"):
        registry.register("custom_code", pipeline, SIGNATURE, metrics={})


def test_an_unreachable_store_is_registry_unavailable() -> None:
    registry = MlflowRegistry("sqlite:////proc/mlsysops-no-such-dir/mlflow.db")
    with pytest.raises(RegistryUnavailable, match=re.escape(registry.tracking_uri)):
        registry.models()


def test_a_second_registry_on_the_same_directory_sees_the_same_state(
    root: Path,
    registry: MlflowRegistry,
    trees: list[GradientBoostingRegressor],
    data: tuple[np.ndarray, np.ndarray],
) -> None:
    x, _ = data
    registry.promote("latency_p95_ms", "3")
    again = MlflowRegistry.embedded(root)
    assert again.models() == registry.models()
    assert again.versions("latency_p95_ms") == registry.versions("latency_p95_ms")
    assert again.get("latency_p95_ms", CHAMPION).version == "3"
    _, estimator = again.load_estimator(
        "latency_p95_ms", CHAMPION
    )  # its own cache is empty: from the artifacts
    np.testing.assert_array_equal(estimator.predict(x), trees[2].predict(x))
    assert again.rollback("latency_p95_ms").version == "2"
    assert registry.get("latency_p95_ms", CHAMPION).version == "2"


def test_registry_is_quiet(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], data: tuple[np.ndarray, np.ndarray]
) -> None:
    """A fresh store (schema creation, migrations), a register and a load print nothing."""
    x, y = data
    fresh = MlflowRegistry.embedded(tmp_path / "quiet")
    fresh.register("q", GradientBoostingRegressor(n_estimators=5).fit(x, y), SIGNATURE, metrics={"mape": 1.0})
    fresh.promote("q", "1")
    fresh.load_estimator("q")
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")

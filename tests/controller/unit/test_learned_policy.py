"""qosLearnedPlacer's decision logic, with a fake Predictor computed from an analytic queueing
model (so the cheapest setting that meets the target is known exactly): least quota, margin from
the hold-out error, offered load, node choice among the heuristic's candidates, settings in the
node-agent Profile form, the explanation, and every visible fallback to the heuristic."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from controller.inventory import Inventory
from controller.model import App
from controller.policies import KEEP, PolicyRegistry, Telemetry, run_policies
from controller.policies.learned import NoModels, PredictorSource, QosLearnedPlacer, Setting
from controller.policies.placer import ConstraintAwarePlacer
from mlconnector.contracts import (
    LATENCY_TARGET,
    QOS_FEATURES,
    Explanation,
    Feature,
    ModelVersion,
    Predictor,
    Signature,
)

NodeDoc = Callable[..., dict[str, Any]]
InventoryOf = Callable[..., Inventory]
AppOf = Callable[..., App]
Comp = Callable[..., dict[str, Any]]

WORK_MS = 5.0  # CPU per request, ms of one core
GVISOR_FACTOR = 1.4  # runsc's extra CPU per request


def analytic_p95(row: Mapping[str, float]) -> float:
    """p95 latency (ms) of an M/M/1-like server: service capacity quota/work, 3x the mean sojourn."""
    work = WORK_MS * (GVISOR_FACTOR if row.get("runtime_gvisor", 0.0) >= 0.5 else 1.0)
    capacity = row["cpu_quota_cores"] * 1000.0 / work  # req/s
    rho = row["offered_rps"] / capacity
    return 3.0 * work / (1.0 - rho) if rho < 1.0 else 10_000.0


class FakePredictor:
    """A Predictor fake: predictions from `analytic_p95`, attributions by one-at-a-time deltas
    from a reference row (they sum to prediction - base_value, like SHAP's)."""

    def __init__(
        self,
        *,
        error: float | None = 0.1,
        features: Sequence[Feature] = QOS_FEATURES,
        target: Feature = LATENCY_TARGET,
        fail: bool = False,
        ratios: Mapping[str, float] | None = None,
    ) -> None:
        metrics = {"holdout_mape": error} if error is not None else {}
        metrics.update(ratios or {})
        self._version = ModelVersion(
            target.name, "3", Signature(tuple(features), target), metrics, {}, ("champion",), None, 0.0
        )
        self.fail = fail
        self.batches: list[int] = []

    @property
    def version(self) -> ModelVersion:
        return self._version

    def predict(self, rows: Sequence[Mapping[str, float]]) -> list[float]:
        if self.fail:
            raise RuntimeError("model server unreachable")
        self.batches.append(len(rows))
        return [analytic_p95(r) for r in rows]

    def explain(self, row: Mapping[str, float]) -> Explanation:
        reference = {"cpu_quota_cores": 4.0, "cpus": 4.0, "runtime_gvisor": 0.0, "offered_rps": 0.0}
        base = analytic_p95(reference)
        prediction = analytic_p95(row)
        attributions: dict[str, float] = {}
        current = dict(reference)
        for name in ("offered_rps", "runtime_gvisor", "cpus", "cpu_quota_cores"):
            before = analytic_p95(current)
            current[name] = row.get(name, current[name])
            attributions[name] = analytic_p95(current) - before
        return Explanation(self.version.ref, prediction, base, attributions, "fake", dict(row))


class Unreachable:
    def champion(self, model_name: str) -> Predictor | None:
        raise ConnectionError("registry down")


class Models:
    """A PredictorSource over a dict (what ChampionPredictors is to the registry)."""

    def __init__(self, **models: Predictor) -> None:
        self.models = models
        self.asked: list[str] = []

    def champion(self, model_name: str) -> Predictor | None:
        self.asked.append(model_name)
        return self.models.get(model_name)


def cheapest(rps: float, margin: float, *, gvisor: bool = False, target: float = 40.0) -> float:
    """The least quota (0.1-core steps) whose analytic p95 is within target / (1 + margin)."""
    for k in range(1, 200):
        q = round(k * 0.1, 6)
        row = {"cpu_quota_cores": q, "cpus": 1.0, "runtime_gvisor": float(gvisor), "offered_rps": rps}
        if analytic_p95(row) * (1 + margin) <= target:
            return q
    raise AssertionError("unreachable")


@pytest.fixture
def qos_app(app_of: AppOf, component: Comp) -> Callable[..., App]:
    def make(target: float = 40.0, **fields: Any) -> App:
        qos = [{"application_metric_id": "latency_p95_ms", "target": target, "relation": "lower_or_equal"}]
        return app_of(component("svc", qos_metrics=qos, **fields), name="shop")

    return make


@pytest.fixture
def agent_node(node_doc: NodeDoc) -> Callable[..., dict[str, Any]]:
    def make(name: str, cores: int = 4, **fields: Any) -> dict[str, Any]:
        runtimes = [{"handler": "runc", "available": True}, {"handler": "runsc", "available": True}]
        fields.setdefault("runtimes", runtimes)
        return node_doc(name, cores=cores, agent={"target": f"unix:///run/{name}.sock"}, **fields)

    return make


def test_the_cheapest_setting_predicted_to_meet_the_target_with_the_holdout_margin(
    qos_app: Callable[..., App], agent_node: Callable[..., dict[str, Any]], inventory_of: InventoryOf
) -> None:
    fake = FakePredictor(error=0.1)
    policy = QosLearnedPlacer(Models(latency_p95_ms=fake))
    plan = policy.plan(qos_app(), inventory_of(agent_node("n1")), Telemetry(offered_rps={"svc": 300.0}))
    (d,) = plan.decisions
    expected = cheapest(300.0, 0.1)
    assert expected < cheapest(300.0, 0.3)  # the margin matters at this load
    assert cheapest(300.0, 0.0) <= expected  # and costs something
    assert plan.policy == "qosLearnedPlacer" and d.node == "n1"
    (group,) = d.node_settings["cgroups"]["groups"]
    assert group == {
        "path": "default/shop/svc",
        "cpu_quota_us": round(expected * 100_000),
        "cpu_period_us": 100_000,
        "cpuset_cpus": f"0-{math.ceil(expected) - 1}",  # the fewest CPUs that hold the quota
    }
    assert d.telemetry.get("cgroups") == 10_000  # the agent watches the limits it was given
    m = d.model
    assert m["model"] == "latency_p95_ms/3" and m["method"] == "fake"
    assert m["setting"] == {"node": "n1", "cpu_quota_cores": expected, "cpus": math.ceil(expected),
                            "runtime": "runc"}  # fmt: skip
    predicted = analytic_p95({"cpu_quota_cores": expected, "runtime_gvisor": 0.0, "offered_rps": 300.0})
    assert m["prediction"] == pytest.approx(predicted)
    assert m["base_value"] + sum(m["attributions"].values()) == pytest.approx(m["prediction"])
    assert m["target"] == 40.0 and m["holdout_error"] == 0.1
    assert m["margin"] == pytest.approx(predicted * 0.1, abs=1e-3)
    assert m["offered_rps"] == 300.0 and m["offered_rps_source"] == "observed"
    # alternatives: bounded, and they show why nothing cheaper was chosen
    assert 0 < len(m["alternatives"]) <= 8 and m["evaluated"] > len(m["alternatives"])
    cheaper = [a for a in m["alternatives"] if a["cpu_quota_cores"] < expected]
    assert cheaper and not any(a["meets"] for a in cheaper)
    assert "learned: " in d.reason and "(observed)" in d.reason and "latency_p95_ms/3" in d.reason
    assert fake.batches == [m["evaluated"]]  # one batch per decision, not one call per setting
    assert json.loads(json.dumps(m)) == m  # stored with the decision (status, API) as it is


def test_a_calibrated_model_keeps_its_hold_out_ratio_quantile_as_the_margin(
    qos_app: Callable[..., App], agent_node: Callable[..., dict[str, Any]], inventory_of: InventoryOf
) -> None:
    """A version recording measured/predicted quantiles on its hold-out keeps the one of the
    policy's confidence (p90 by default, p95 at 0.95) as its margin instead of its MAPE."""
    ratios = {"holdout_ratio_p90": 1.3, "holdout_ratio_p95": 1.6, "holdout_ratio_p10": 0.8}
    inventory, telemetry = inventory_of(agent_node("n1")), Telemetry(offered_rps={"svc": 300.0})
    for confidence, margin, key in ((0.9, 0.3, "p90 1.300"), (0.95, 0.6, "p95 1.600")):
        policy = QosLearnedPlacer(Models(latency_p95_ms=FakePredictor(error=0.1, ratios=ratios)),
                                  confidence=confidence)  # fmt: skip
        (d,) = policy.plan(qos_app(), inventory, telemetry).decisions
        assert d.model["setting"]["cpu_quota_cores"] == cheapest(300.0, margin), confidence
        assert d.model["margin"] == pytest.approx(d.model["prediction"] * margin, abs=1e-3)
        assert f"hold-out measured/predicted {key}" in d.reason, d.reason
    assert cheapest(300.0, 0.3) < cheapest(300.0, 0.6)  # the two levels decide differently
    with pytest.raises(ValueError, match=r"confidence 0\.8"):
        QosLearnedPlacer(NoModels(), confidence=0.8)


def test_more_offered_load_needs_more_quota_and_a_declared_or_default_load_is_named(
    qos_app: Callable[..., App], agent_node: Callable[..., dict[str, Any]], inventory_of: InventoryOf
) -> None:
    inv = inventory_of(agent_node("n1"))
    source = Models(latency_p95_ms=FakePredictor(error=0.05))

    def quota(policy: QosLearnedPlacer, telemetry: Telemetry) -> tuple[float, str]:
        (d,) = policy.plan(qos_app(), inv, telemetry).decisions
        return d.model["setting"]["cpu_quota_cores"], d.reason

    low, _ = quota(QosLearnedPlacer(source), Telemetry(offered_rps={"svc": 100.0}))
    high, _ = quota(QosLearnedPlacer(source), Telemetry(offered_rps={"svc": 400.0}))
    assert (low, high) == (cheapest(100.0, 0.05), cheapest(400.0, 0.05)) and low < high
    declared, why = quota(QosLearnedPlacer(source, offered_rps={"svc": 400.0}), Telemetry())
    assert declared == high and "(declared)" in why
    default, why = quota(QosLearnedPlacer(source, default_offered_rps=100.0), Telemetry())
    assert default == low and "(default, none observed)" in why


def test_the_declared_runtime_is_the_one_sized_and_gvisor_needs_more_quota(
    qos_app: Callable[..., App], agent_node: Callable[..., dict[str, Any]], inventory_of: InventoryOf
) -> None:
    inv = inventory_of(agent_node("n1"))
    policy = QosLearnedPlacer(Models(latency_p95_ms=FakePredictor(error=0.1)))
    telemetry = Telemetry(offered_rps={"svc": 200.0})
    (runc,) = policy.plan(qos_app(), inv, telemetry).decisions
    (gvisor,) = policy.plan(qos_app(runtime_class_name="runsc"), inv, telemetry).decisions
    assert runc.model["setting"]["runtime"] == "runc"  # undeclared: containerd's default, runc
    assert {a["runtime"] for a in runc.model["alternatives"]} == {"runc"}
    assert gvisor.model["setting"]["runtime"] == "runsc"
    assert gvisor.model["setting"]["cpu_quota_cores"] == cheapest(200.0, 0.1, gvisor=True)
    assert gvisor.model["setting"]["cpu_quota_cores"] > runc.model["setting"]["cpu_quota_cores"]


def test_a_node_without_the_free_cpu_the_target_needs_is_passed_over_for_one_with_it(
    qos_app: Callable[..., App], agent_node: Callable[..., dict[str, Any]], inventory_of: InventoryOf
) -> None:
    # the heuristic prefers "small" (all of it free); at 500 req/s the target needs > 2 cores
    inv = inventory_of(agent_node("small", cores=2), agent_node("busy", cores=16, allocated={"cpu": 10}))
    app = qos_app()
    heuristic = ConstraintAwarePlacer().plan(app, inv, Telemetry()).decisions[0]
    assert heuristic.node == "small"
    policy = QosLearnedPlacer(Models(latency_p95_ms=FakePredictor(error=0.1)))
    (d,) = policy.plan(app, inv, Telemetry(offered_rps={"svc": 500.0})).decisions
    needed = cheapest(500.0, 0.1)
    assert needed > 2
    assert d.node == "busy" and d.model["setting"]["cpu_quota_cores"] == needed
    assert "(the heuristic chose small)" in d.reason
    # at a load "small" can serve, the heuristic's node stays (equal settings: its ranking decides)
    (light,) = policy.plan(app, inv, Telemetry(offered_rps={"svc": 100.0})).decisions
    assert light.node == "small"


def test_a_kept_component_stays_and_only_its_settings_are_tuned(
    qos_app: Callable[..., App], agent_node: Callable[..., dict[str, Any]], inventory_of: InventoryOf
) -> None:
    inv = inventory_of(agent_node("a", cores=8), agent_node("b", cores=8))
    app = qos_app()
    policy = QosLearnedPlacer(Models(latency_p95_ms=FakePredictor(error=0.1)))
    first = policy.plan(app, inv, Telemetry(offered_rps={"svc": 100.0}))
    again = policy.plan(app, inv, Telemetry(offered_rps={"svc": 400.0}), previous=first)
    (d,) = again.decisions
    assert d.action == KEEP and d.node == first.decisions[0].node
    assert d.model["setting"]["cpu_quota_cores"] == cheapest(400.0, 0.1)
    assert {a["node"] for a in d.model["alternatives"]} == {d.node}


@pytest.mark.parametrize(
    ("predictor", "why"),
    [
        (None, "no champion model 'latency_p95_ms'"),
        (FakePredictor(error=0.6), "hold-out error 0.600 is above 0.25"),
        (FakePredictor(error=None), "records no hold-out error (holdout_mape)"),
        (FakePredictor(features=[f for f in QOS_FEATURES if f.name != "offered_rps"]), "lacks offered_rps"),
        (FakePredictor(features=[*QOS_FEATURES, Feature("node_temp_c", "C")]), "node_temp_c"),
        (FakePredictor(target=Feature("throughput_rps", "req/s")), "predicts throughput_rps"),
        (FakePredictor(fail=True), "prediction failed: RuntimeError: model server unreachable"),
        (None, "model registry: ConnectionError: registry down"),
    ],
)
def test_no_trustworthy_model_falls_back_to_the_heuristic_visibly(
    qos_app: Callable[..., App],
    agent_node: Callable[..., dict[str, Any]],
    inventory_of: InventoryOf,
    predictor: Predictor | None,
    why: str,
) -> None:
    inv = inventory_of(agent_node("n1"), agent_node("n2", cores=8))
    app = qos_app()
    telemetry = Telemetry(offered_rps={"svc": 100.0})
    source: PredictorSource = Models(latency_p95_ms=predictor) if predictor is not None else NoModels()
    if why.startswith("model registry"):
        source = Unreachable()
    (d,) = QosLearnedPlacer(source).plan(app, inv, telemetry).decisions
    (h,) = ConstraintAwarePlacer().plan(app, inv, telemetry).decisions
    assert why in d.model["fallback"] and set(d.model) == {"fallback"}
    assert d.reason == f"{h.reason}; learned policy fell back to the heuristic: {d.model['fallback']}"
    assert replace(d, reason=h.reason, model={}) == h  # otherwise the heuristic's decision, exactly


def test_a_target_no_setting_can_meet_falls_back_naming_the_closest_miss(
    qos_app: Callable[..., App], agent_node: Callable[..., dict[str, Any]], inventory_of: InventoryOf
) -> None:
    inv = inventory_of(agent_node("n1", cores=2))
    policy = QosLearnedPlacer(Models(latency_p95_ms=FakePredictor(error=0.1)))
    (d,) = policy.plan(qos_app(), inv, Telemetry(offered_rps={"svc": 350.0})).decisions
    assert d.node == "n1"  # the heuristic's placement stands
    assert d.model["fallback"].startswith("no setting is predicted to meet latency_p95_ms <= 40 at 350 req/s")
    assert "closest: 2 cores quota, 2 cpu(s), runc on n1" in d.model["fallback"]
    (none,) = policy.plan(qos_app(), inv, Telemetry()).decisions  # no load known at all
    assert none.model == {"fallback": "no offered load for svc (none observed, declared or default)"}


def test_nodes_without_an_agent_cannot_be_tuned(
    qos_app: Callable[..., App], node_doc: NodeDoc, inventory_of: InventoryOf
) -> None:
    policy = QosLearnedPlacer(Models(latency_p95_ms=FakePredictor(error=0.1)))
    (d,) = policy.plan(
        qos_app(), inventory_of(node_doc("bare")), Telemetry(offered_rps={"svc": 10.0})
    ).decisions
    assert d.node == "bare" and "bare: no node agent to apply settings" in d.model["fallback"]


def test_components_without_a_target_are_the_heuristics_and_the_policy_runs_in_a_chain(
    app_of: AppOf, component: Comp, agent_node: Callable[..., dict[str, Any]], inventory_of: InventoryOf
) -> None:
    qos = [{"application_metric_id": "latency_p95_ms", "target": 40, "relation": "lower_or_equal"}]
    app = app_of(component("db"), component("svc", qos_metrics=qos, depends_on=["db"]), name="shop")
    inv = inventory_of(agent_node("n1", cores=8))
    source = Models(latency_p95_ms=FakePredictor(error=0.1))
    registry = PolicyRegistry({"qosLearnedPlacer": lambda: QosLearnedPlacer(source)})
    outcome = run_policies(
        registry.chain(["qosLearnedPlacer"]), app, inv, Telemetry(offered_rps={"svc": 50.0})
    )
    db, svc = (outcome.plan.decision(n) for n in ("db", "svc"))
    assert db is not None and svc is not None and not outcome.conflicts
    assert db.model == {} and "learned" not in db.reason
    assert svc.model["setting"]["cpu_quota_cores"] == cheapest(50.0, 0.1)
    assert source.asked == ["latency_p95_ms"]  # the model is named by the metric id


def test_setting_cost_orders_quota_then_cpus_then_runc() -> None:
    options = [
        Setting(0.5, 2, "runc"),
        Setting(0.5, 1, "runsc"),
        Setting(0.4, 2, "runsc"),
        Setting(0.5, 1, "runc"),
    ]
    assert sorted(options, key=lambda s: s.cost) == [
        Setting(0.4, 2, "runsc"), Setting(0.5, 1, "runc"), Setting(0.5, 1, "runsc"), Setting(0.5, 2, "runc"),
    ]  # fmt: skip


def test_explicit_quota_tiers_and_an_unmodelled_runtime(
    qos_app: Callable[..., App], agent_node: Callable[..., dict[str, Any]], inventory_of: InventoryOf
) -> None:
    inv = inventory_of(agent_node("n1", runtimes=[{"handler": "crun", "available": True}]))
    source = Models(latency_p95_ms=FakePredictor(error=0.1))
    tiers = QosLearnedPlacer(source, quotas=(0.5, 1.0, 2.0, 3.0))
    (d,) = tiers.plan(qos_app(), inv, Telemetry(offered_rps={"svc": 100.0})).decisions
    assert d.model["setting"]["cpu_quota_cores"] == 1.0  # cheapest(100) is 0.8: the next tier up
    assert {a["cpu_quota_cores"] for a in d.model["alternatives"]} <= {0.5, 1.0, 2.0, 3.0}
    (crun,) = tiers.plan(
        qos_app(runtime_class_name="crun"), inv, Telemetry(offered_rps={"svc": 100.0})
    ).decisions
    assert "n1: runtime crun is not modelled here (the model knows runc, runsc)" in crun.model["fallback"]


def test_an_empty_model_registry_means_the_heuristic_decides(
    tmp_path: Path,
    qos_app: Callable[..., App],
    agent_node: Callable[..., dict[str, Any]],
    inventory_of: InventoryOf,
) -> None:
    """The registry's champion cache is the policy's PredictorSource (mypy checks the fit); a
    real embedded MLflow registry without the model yields no champion, so the heuristic decides."""
    from mlconnector.registry import ChampionPredictors, MlflowRegistry

    source: PredictorSource = ChampionPredictors(MlflowRegistry.embedded(tmp_path / "registry"))
    (d,) = QosLearnedPlacer(source).plan(qos_app(), inventory_of(agent_node("n1")),
                                         Telemetry(offered_rps={"svc": 10.0})).decisions  # fmt: skip
    assert d.node == "n1" and d.model == {"fallback": "no champion model 'latency_p95_ms'"}

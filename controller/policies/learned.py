"""`qosLearnedPlacer`: place and size a component with a learned performance model, so it meets its
QoS target with the least CPU; the heuristic placer decides, visibly, where no model can be trusted.

Per component with a QoS target (`qos_metrics` with a relation and a target, e.g. latency_p95_ms
lower_or_equal 40) and a champion model for that metric (the model is named by the metric id,
looked up through an injected `PredictorSource`):

1. the candidate nodes are those the heuristic placer (`ConstraintAwarePlacer`) accepted: its
   constraint filters and capacity check decide which nodes qualify (one implementation, not a
   copy). A kept component (previous plan), a replicated one or a single_node group member stays
   on the heuristic's host(s); only its settings are tuned;
2. each node offers settings: CPU quota in `quota_step` cores (or the explicit `quotas`, e.g. the
   tiers an operator offers or the grid a dataset measured) up to its free CPU (what the plan
   has not reserved, plus the component's own request) and a cpuset of 1..cores CPUs that can
   hold the quota, under the component's runtime handler (runsc when its runtime_class_name
   names it, else runc: the model knows both; the handler is the description's choice, so it is
   sized for, not switched);
3. every setting is predicted in one batch at the component's offered load (`Telemetry.offered_rps`,
   else the operator's declared value, else `default_offered_rps`; the reason says which), and the
   cheapest one predicted to meet the target with a safety margin wins: least quota, then fewer
   CPUs, then runc; equal settings go to the node the heuristic ranked first. The margin comes
   from the model's own record on held-out windows, times `margin_factor`: where the version
   records how far measurements exceeded its predictions there (`holdout_ratio_p90` at the
   default `confidence` 0.9, `_p95` at 0.95; `_p10` / `_p05` for a higher-is-better target: see
   mlconnector.training), a prediction must keep that far inside the target, so the target is
   missed about one time in ten (twenty) rather than whenever the model is optimistic; a version
   without them keeps its hold-out error (`holdout_mape`) inside: a model that erred 10 % must
   predict 10 % inside the target.

The decision carries the node settings (the cgroup's cpu.max and cpuset in the node-agent Profile
form settings.py emits) and `Decision.model`: the chosen prediction's Explanation (feature
attributions) with the model ref, target, margin and a bounded list of the alternatives considered.

No trustworthy model (none registered, a signature the policy cannot feed, a hold-out error above
`max_holdout_error`, a prediction that fails) or no setting predicted to meet the target → the
heuristic's own decision, with `Decision.model = {"fallback": why}` and the reason saying so.

Pure: predictions go through the `mlconnector.contracts.Predictor` protocol; no I/O here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from controller.inventory import Inventory, NodeInfo
from controller.model import App, Component, QosMetric, Resources
from controller.policies.base import KEEP, Decision, Plan, Telemetry
from controller.policies.placer import ConstraintAwarePlacer
from controller.policies.pools import Ledger
from controller.policies.settings import CPU_PERIOD_US, node_settings, telemetry_needs
from mlconnector.contracts import QOS_FEATURES, Explanation, Predictor, ratio_metric

#: runtime handlers the model knows (feature runtime_gvisor), cheaper first on a tie
RUNTIMES = ("runc", "runsc")
DEFAULT_RUNTIME = "runc"  # containerd's default handler: what "default" or no runtime_class_name runs
LOWER = frozenset({"lower_or_equal", "lower_than"})
HIGHER = frozenset({"greater_or_equal", "greater_than"})
#: the version metric holding the model's relative error on held-out windows (its error on the
#: rows it was fitted on, "mape", says nothing about new conditions and is never used instead)
HOLDOUT_METRICS = ("holdout_mape",)
KNOWN_FEATURES = frozenset(f.name for f in QOS_FEATURES)
REQUIRED_FEATURES = ("cpu_quota_cores", "offered_rps")  # what is tuned, and what it is tuned for


class PredictorSource(Protocol):
    """Where the policy finds the champion model of a QoS metric (mlconnector.registry's
    ChampionPredictors in the daemon; a dict-backed fake in tests). None: no champion."""

    def champion(self, model_name: str) -> Predictor | None: ...


class NoModels:
    """No model registry: every decision is the heuristic's (visibly)."""

    def champion(self, model_name: str) -> Predictor | None:
        return None


@dataclass(frozen=True)
class Goal:
    """One QoS target of a component, e.g. latency_p95_ms lower_or_equal 40."""

    metric: str
    relation: str
    target: float

    @classmethod
    def of(cls, q: QosMetric) -> Goal | None:
        if q.application_metric_id is None or q.relation is None or q.target is None:
            return None
        return cls(q.application_metric_id, q.relation, float(q.target))

    def met(self, value: float, margin: float = 0.0) -> bool:
        """Whether `value` meets the target with a relative safety `margin` (0.1: 10 % inside)."""
        if self.relation in LOWER:
            bound = value * (1 + margin)
            return bound < self.target if self.relation == "lower_than" else bound <= self.target
        bound = value * (1 - margin)
        return bound > self.target if self.relation == "greater_than" else bound >= self.target

    def describe(self) -> str:
        sign = {"lower_or_equal": "<=", "lower_than": "<", "greater_or_equal": ">=", "greater_than": ">"}
        return f"{self.metric} {sign.get(self.relation, self.relation)} {self.target:g}"


@dataclass(frozen=True)
class Setting:
    """One candidate node setting: CFS quota (cores), cpuset size and runtime handler."""

    quota_cores: float
    cpus: int
    runtime: str

    @property
    def cost(self) -> tuple[float, int, int]:
        """Least quota, then fewer CPUs, then the cheaper runtime (runc)."""
        return (self.quota_cores, self.cpus, RUNTIMES.index(self.runtime))

    def features(self, offered_rps: float) -> dict[str, float]:
        return {
            "cpu_quota_cores": self.quota_cores,
            "cpus": float(self.cpus),
            "runtime_gvisor": 1.0 if self.runtime == "runsc" else 0.0,
            "offered_rps": offered_rps,
        }

    def describe(self) -> str:
        return f"{self.quota_cores:g} cores quota, {self.cpus} cpu(s), {self.runtime}"


@dataclass(frozen=True)
class Model:
    """A champion judged trustworthy for one goal, with the margin its hold-out error implies."""

    goal: Goal
    predictor: Predictor
    error: float  # relative hold-out error (MAPE)
    margin: float  # relative margin the prediction must keep inside the target
    basis: str  # where the margin comes from, for the reason

    @property
    def ref(self) -> str:
        return self.predictor.version.ref


CONFIDENCES = (0.9, 0.95)  # the calibrated levels a version records (holdout_ratio_p90 / p95 ...)


def checked_confidence(confidence: float) -> float:
    """`confidence` if a version records margins for it (CONFIDENCES), else ValueError."""
    if confidence not in CONFIDENCES:
        raise ValueError(f"confidence {confidence}: expected one of {CONFIDENCES}")
    return confidence


def ratio_key(goal: Goal, confidence: float) -> str:
    """The version metric bounding measured / predicted at `confidence` on the goal's bad side."""
    level = checked_confidence(confidence)
    return ratio_metric(level if goal.relation in LOWER else 1.0 - level)


def trust(
    goal: Goal,
    predictor: Predictor | None,
    *,
    max_error: float,
    margin_factor: float,
    confidence: float = 0.9,
) -> Model | str:
    """The model for `goal`, or why it cannot be trusted (a sentence for the reason)."""
    if predictor is None:
        return f"no champion model {goal.metric!r}"
    version = predictor.version
    sig = version.signature
    if sig.target.name != goal.metric:
        return f"model {version.ref} predicts {sig.target.name}, not {goal.metric}"
    unknown = sorted(set(sig.feature_names) - KNOWN_FEATURES)
    if unknown:
        return f"model {version.ref} needs feature(s) {', '.join(unknown)} the policy cannot supply"
    lacking = [f for f in REQUIRED_FEATURES if f not in sig.feature_names]
    if lacking:
        return f"model {version.ref}'s signature lacks {', '.join(lacking)}"
    error = next((version.metrics[k] for k in HOLDOUT_METRICS if k in version.metrics), None)
    if error is None or not math.isfinite(error):
        return f"model {version.ref} records no hold-out error ({' or '.join(HOLDOUT_METRICS)})"
    if error > max_error:
        return f"model {version.ref}'s hold-out error {error:.3f} is above {max_error:g}"
    key = ratio_key(goal, confidence)
    ratio = version.metrics.get(key)
    if ratio is not None and math.isfinite(ratio) and ratio > 0:
        margin = max(0.0, ratio - 1.0 if goal.relation in LOWER else 1.0 - ratio) * margin_factor
        basis = f"hold-out measured/predicted p{key[-2:]} {ratio:.3f}"
        return Model(goal, predictor, float(error), margin, basis)
    return Model(goal, predictor, float(error), float(error) * margin_factor, f"hold-out error {error:.3f}")


@dataclass(frozen=True)
class Evaluated:
    """One (node, setting) with its prediction per goal."""

    node: str
    setting: Setting
    predictions: tuple[float, ...]
    meets: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "cpu_quota_cores": self.setting.quota_cores,
            "cpus": self.setting.cpus,
            "runtime": self.setting.runtime,
            "predicted": [round(p, 4) for p in self.predictions],
            "meets": self.meets,
        }


def evaluate(
    models: Sequence[Model], options: Sequence[tuple[str, Setting]], offered_rps: float
) -> list[Evaluated]:
    """Every option predicted by every model (one batch call per model), cheapest first; options
    of equal cost keep their given order (the heuristic's node ranking)."""
    columns: list[list[float]] = []
    for m in models:
        names = m.predictor.version.signature.feature_names
        rows = [{n: s.features(offered_rps)[n] for n in names} for _, s in options]
        values = m.predictor.predict(rows)
        if len(values) != len(rows):
            raise ValueError(f"model {m.ref} returned {len(values)} predictions for {len(rows)} rows")
        columns.append([float(v) for v in values])
    out = []
    for i, (node, setting) in enumerate(options):
        predictions = tuple(col[i] for col in columns)
        meets = all(
            math.isfinite(p) and m.goal.met(p, m.margin) for m, p in zip(models, predictions, strict=True)
        )
        out.append(Evaluated(node, setting, predictions, meets))
    return sorted(out, key=lambda e: e.setting.cost)  # stable: ties keep the node order


def settings_grid(
    free_cores: float,
    node_cores: int,
    runtimes: Sequence[str],
    *,
    step: float,
    max_cores: float,
    quotas: Sequence[float] = (),
) -> list[Setting]:
    """Quota steps up to the free CPU (and `max_cores`), each with every cpuset size that can hold
    it (ceil(quota)..node_cores) and every runtime given."""
    top = min(free_cores, max_cores)
    if quotas:
        levels = sorted({q for q in quotas if 0 < q <= top + 1e-9})
    else:
        levels = [round(k * step, 6) for k in range(1, math.floor(top / step + 1e-9) + 1)]
    out: list[Setting] = []
    for quota in levels:
        for cpus in range(max(1, math.ceil(quota - 1e-9)), node_cores + 1):
            out.extend(Setting(quota, cpus, r) for r in runtimes)
    return out


def cgroup_settings(
    app: App, comp: Component, node: NodeInfo, setting: Setting
) -> tuple[dict[str, Any], list[str]]:
    """The heuristic's node settings for the component on `node`, with the chosen quota and cpuset
    in its cgroup (settings.py's Profile form; memory.max and cpufreq kept as settings.py says)."""
    sections, notes = node_settings(app, comp, node)
    path = f"{app.namespace}/{app.name}/{comp.name}"
    groups = [dict(g) for g in sections.get("cgroups", {}).get("groups", [])]
    mine = next((g for g in groups if g.get("path") == path), None)
    if mine is None:
        mine = {"path": path}
        groups.append(mine)
    mine["cpu_quota_us"] = round(setting.quota_cores * CPU_PERIOD_US)
    mine["cpu_period_us"] = CPU_PERIOD_US
    mine["cpuset_cpus"] = "0" if setting.cpus == 1 else f"0-{setting.cpus - 1}"
    return {**sections, "cgroups": {"groups": groups}}, [
        n for n in notes if not n.startswith("cgroup limits")
    ]


class QosLearnedPlacer:
    """The learning placement policy (see the module docstring)."""

    name = "qosLearnedPlacer"
    mode = "ml"  # the API's ML mode runs it (ahead of the heuristics); heuristic mode leaves it out

    def __init__(
        self,
        predictors: PredictorSource | None = None,
        *,
        heuristic: ConstraintAwarePlacer | None = None,
        offered_rps: Mapping[str, float] | None = None,
        default_offered_rps: float | None = None,
        quota_step: float = 0.1,
        quotas: Sequence[float] = (),
        max_quota_cores: float = 8.0,
        max_holdout_error: float = 0.25,
        margin_factor: float = 1.0,
        confidence: float = 0.9,
        max_alternatives: int = 8,
    ) -> None:
        """`offered_rps`: the load the operator declares per component, used when monitoring
        reports none; `default_offered_rps` for any other component (None: fall back).
        `confidence`: how often a chosen setting should meet the target (CONFIDENCES)."""
        self.confidence = checked_confidence(confidence)
        self.predictors: PredictorSource = predictors if predictors is not None else NoModels()
        self.heuristic = heuristic if heuristic is not None else ConstraintAwarePlacer()
        self.declared = dict(offered_rps or {})
        self.default_offered_rps = default_offered_rps
        self.quota_step = quota_step
        self.quotas = tuple(quotas)
        self.max_quota_cores = max_quota_cores
        self.max_holdout_error = max_holdout_error
        self.margin_factor = margin_factor
        self.max_alternatives = max_alternatives

    def plan(
        self,
        app: App,
        inventory: Inventory,
        telemetry: Telemetry,
        *,
        previous: Plan | None = None,
        ledger: Ledger | None = None,
    ) -> Plan:
        ledger = ledger if ledger is not None else Ledger(inventory)
        base = self.heuristic.plan(app, inventory, telemetry, previous=previous, ledger=ledger)
        grouped = {m for g in app.single_node for m in g.components}
        decisions = tuple(
            self._decide(
                app, app.component(d.component), d, inventory, telemetry, ledger, d.component in grouped
            )
            for d in base.decisions
        )
        return Plan(app.name, app.namespace, self.name, decisions, base.order)

    # ------------------------------------------------------------------ one component

    def _decide(
        self,
        app: App,
        comp: Component,
        heuristic: Decision,
        inventory: Inventory,
        telemetry: Telemetry,
        ledger: Ledger,
        grouped: bool,
    ) -> Decision:
        goals = [g for q in comp.qos_metrics if (g := Goal.of(q)) is not None]
        if not goals or heuristic.node is None:
            return heuristic  # no target to learn for, or nowhere to put it: the heuristic's word
        unsupported = [g for g in goals if g.relation not in LOWER | HIGHER]
        if unsupported:
            return _fallback(heuristic, f"relation {unsupported[0].relation} of {unsupported[0].metric} "
                             "cannot be met with a margin")  # fmt: skip
        models: list[Model] = []
        for goal in goals:
            try:
                champion = self.predictors.champion(goal.metric)
            except Exception as exc:  # a registry that cannot answer must not stop placement
                return _fallback(heuristic, f"model registry: {type(exc).__name__}: {exc}")
            found = trust(goal, champion, max_error=self.max_holdout_error, margin_factor=self.margin_factor,
                          confidence=self.confidence)
            if isinstance(found, str):
                return _fallback(heuristic, found)
            models.append(found)
        load = self._offered(comp.name, telemetry)
        if load is None:
            return _fallback(
                heuristic, f"no offered load for {comp.name} (none observed, declared or default)"
            )
        rps, source = load
        fixed = heuristic.action == KEEP or grouped or len(heuristic.hosts) > 1
        options, skipped = self._options(comp, heuristic, inventory, ledger, fixed)
        if not options:
            return _fallback(heuristic, f"no candidate node offers a modelled setting ({'; '.join(skipped)})")
        try:
            evaluated = evaluate(models, options, rps)
        except Exception as exc:  # a model that cannot predict must not stop placement
            return _fallback(heuristic, f"prediction failed: {type(exc).__name__}: {exc}")
        chosen = next((e for e in evaluated if e.meets), None)
        if chosen is None:
            best = min(evaluated, key=lambda e: _shortfall(models, e))
            return _fallback(
                heuristic,
                f"no setting is predicted to meet {', '.join(g.describe() for g in goals)} at "
                f"{rps:g} req/s with the models' margin (closest: {best.setting.describe()} on {best.node}, "
                f"predicted {', '.join(f'{p:.3g}' for p in best.predictions)})",
            )
        return self._learned(app, comp, heuristic, inventory, ledger, models, evaluated, chosen, rps, source)

    def _offered(self, component: str, telemetry: Telemetry) -> tuple[float, str] | None:
        if component in telemetry.offered_rps:
            return telemetry.offered_rps[component], "observed"
        if component in self.declared:
            return self.declared[component], "declared"
        if self.default_offered_rps is not None:
            return self.default_offered_rps, "default, none observed"
        return None

    def _options(
        self, comp: Component, heuristic: Decision, inventory: Inventory, ledger: Ledger, fixed: bool
    ) -> tuple[list[tuple[str, Setting]], list[str]]:
        """(node, setting) candidates in the heuristic's node order, and why nodes offered none."""
        if fixed:
            names = list(heuristic.hosts)
        else:
            ranked = [c.node for c in heuristic.candidates if c.accepted]
            names = (
                [heuristic.node, *[n for n in ranked if n != heuristic.node]] if heuristic.node else ranked
            )
        hosts = set(heuristic.hosts)
        wanted = comp.runtime_class_name
        options: list[tuple[str, Setting]] = []
        skipped: list[str] = []
        per_node: dict[str, list[Setting]] = {}
        for name in names:
            node = inventory.node(name)
            if node is None:
                continue
            if node.agent_target is None:
                skipped.append(f"{name}: no node agent to apply settings")
                continue
            runtimes = _runtimes(node, wanted)
            if not runtimes:
                skipped.append(
                    f"{name}: runtime {wanted} is not modelled here (the model knows {', '.join(RUNTIMES)})"
                )
                continue
            i = inventory.index.position[name]
            own = comp.resources.cpu_millis if name in hosts else 0  # the heuristic reserved it here
            free = (ledger.free(i)[0] + own) / 1000
            cores = max(1, node.cpu_millis_capacity // 1000)
            grid = settings_grid(free, cores, runtimes, step=self.quota_step, max_cores=self.max_quota_cores,
                                 quotas=self.quotas)  # fmt: skip
            if not grid:
                skipped.append(f"{name}: {free:g} cores free, less than one quota step")
            per_node[name] = grid
        if fixed:  # every host gets the same setting: only what all of them offer
            common = set.intersection(*(set(g) for g in per_node.values())) if per_node else set()
            first = next(iter(per_node), None)
            if first is not None and len(per_node) == len(names):
                options = [(first, s) for s in per_node[first] if s in common]
        else:
            options = [(n, s) for n, grid in per_node.items() for s in grid]
        return options, skipped

    def _learned(
        self,
        app: App,
        comp: Component,
        heuristic: Decision,
        inventory: Inventory,
        ledger: Ledger,
        models: Sequence[Model],
        evaluated: Sequence[Evaluated],
        chosen: Evaluated,
        rps: float,
        source: str,
    ) -> Decision:
        node = inventory.node(chosen.node)
        assert node is not None
        moved = chosen.node != heuristic.node
        if moved:  # the capacity the heuristic reserved goes with the component
            _move(ledger, inventory, heuristic.node, chosen.node, comp.resources)
        settings, notes = cgroup_settings(app, comp, node, chosen.setting)
        primary = models[0]
        row = chosen.setting.features(rps)
        names = primary.predictor.version.signature.feature_names
        explanation: Explanation = primary.predictor.explain({n: row[n] for n in names})
        objectives = [
            {
                "model": m.ref,
                "metric": m.goal.metric,
                "relation": m.goal.relation,
                "target": m.goal.target,
                "predicted": round(p, 4),
                "holdout_error": m.error,
                "margin": round(p * m.margin, 4),
            }
            for m, p in zip(models, chosen.predictions, strict=True)
        ]
        explained = {
            **explanation.to_json(),
            "target": primary.goal.target,
            "relation": primary.goal.relation,
            "metric": primary.goal.metric,
            "margin": objectives[0]["margin"],
            "holdout_error": primary.error,
            "offered_rps": rps,
            "offered_rps_source": source,
            "setting": {
                "node": chosen.node,
                "cpu_quota_cores": chosen.setting.quota_cores,
                "cpus": chosen.setting.cpus,
                "runtime": chosen.setting.runtime,
            },
            "objectives": objectives,
            "alternatives": [e.to_json() for e in _around(evaluated, chosen, self.max_alternatives)],
            "evaluated": len(evaluated),
        }
        predicted = "; ".join(
            f"{o['metric']} predicted {o['predicted']:.3g} (target {m.goal.describe()}, "
            f"margin {o['margin']:.3g} from model {m.ref}'s {m.basis})"
            for m, o in zip(models, objectives, strict=True)
        )
        where = f"on {chosen.node}" + (f" (the heuristic chose {heuristic.node})" if moved else "")
        reason = (
            f"learned: {chosen.setting.describe()} {where}, the cheapest of {len(evaluated)} setting(s) "
            f"predicted to meet the target at {rps:g} req/s ({source}): {predicted}; "
            f"heuristic: {heuristic.reason}"
        )
        return replace(
            heuristic,
            node=chosen.node,
            cluster=node.cluster if moved else heuristic.cluster,
            reason="; ".join([reason, *notes]),
            node_settings=settings,
            telemetry=telemetry_needs(comp, node, settings),
            model=explained,
        )


def _runtimes(node: NodeInfo, wanted: str | None) -> list[str]:
    """The modelled handler the component runs under on `node`: the one its runtime_class_name
    names (runsc), else containerd's default, runc. The handler is the description's to choose
    (a Decision cannot change it), so it is sized for, not picked; a node that reports handlers
    must report it (a node reporting none runs the default)."""
    handler = DEFAULT_RUNTIME if wanted in (None, "default") else wanted
    offered = node.runtimes or frozenset({DEFAULT_RUNTIME})
    return [handler] if handler in RUNTIMES and (handler in offered or handler == DEFAULT_RUNTIME) else []


def _shortfall(models: Sequence[Model], e: Evaluated) -> float:
    """How far a prediction is from meeting its goals (relative), for naming the closest miss."""
    total = 0.0
    for m, p in zip(models, e.predictions, strict=True):
        bound = p * (1 + m.margin) if m.goal.relation in LOWER else p * (1 - m.margin)
        gap = bound - m.goal.target if m.goal.relation in LOWER else m.goal.target - bound
        total += max(0.0, gap) / max(abs(m.goal.target), 1e-9)
    return total


def _around(evaluated: Sequence[Evaluated], chosen: Evaluated, bound: int) -> list[Evaluated]:
    """A bounded window of the alternatives around the choice: the costlier-by-a-step ones that
    also meet and the cheaper ones that did not (why nothing cheaper was chosen)."""
    i = list(evaluated).index(chosen)
    before = max(0, i - (bound + 1) // 2)
    return [e for e in evaluated[before : before + bound + 1] if e is not chosen][:bound]


def _move(ledger: Ledger, inventory: Inventory, old: str | None, new: str, need: Resources) -> None:
    """Move the heuristic's reservation from `old` to `new` (a negative reservation releases)."""
    if old is not None:
        ledger.reserve_node(old, Resources(cpu_millis=-need.cpu_millis, memory_bytes=-need.memory_bytes,
                                           gpus=-need.gpus))  # fmt: skip
    ledger.reserve_node(new, need)


def _fallback(heuristic: Decision, why: str) -> Decision:
    return replace(
        heuristic,
        reason=f"{heuristic.reason}; learned policy fell back to the heuristic: {why}",
        model={"fallback": why},
    )

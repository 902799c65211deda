"""ChampionPredictors on a real MLflow registry: a policy's champion comes from memory, follows the
champion alias within refresh_s of the injected clock, is None without a model or a champion, and
survives a registry outage. Also the numbers a policy cares about: a cached champion costs
microseconds; a (re)load tens of milliseconds."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.tree import DecisionTreeRegressor

from mlconnector.contracts import (
    CHAMPION,
    LATENCY_TARGET,
    QOS_FEATURES,
    ModelVersion,
    Predictor,
    Signature,
)
from mlconnector.registry import ChampionPredictors, MlflowRegistry, RegistryUnavailable

SIGNATURE = Signature(QOS_FEATURES, LATENCY_TARGET)
ROW = {"cpu_quota_cores": 1.0, "cpus": 2.0, "runtime_gvisor": 0.0, "offered_rps": 100.0}


class _Registry(MlflowRegistry):
    """The real registry, counting its loads; `down` makes the store unreachable on demand."""

    down = False
    loads = 0

    def get(self, name: str, version_or_alias: str) -> ModelVersion:
        if self.down:
            raise RegistryUnavailable(f"registry {self.tracking_uri}: down for the test")
        return super().get(name, version_or_alias)

    def load(self, name: str, version_or_alias: str = CHAMPION) -> Predictor:
        self.loads += 1
        return super().load(name, version_or_alias)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> _Registry:
    registry = _Registry.embedded(tmp_path_factory.mktemp("champions"))
    x = np.array(
        [[q, c, g, r] for q in (0.5, 1.0, 2.0) for c in (1, 2) for g in (0, 1) for r in (50, 100, 200)]
    )
    for scale in (1.0, 2.0):
        y = scale * (5 + x[:, 3] / (x[:, 0] * 40) + 3 * x[:, 2])
        registry.register(
            "latency_p95_ms", DecisionTreeRegressor(random_state=0).fit(x, y), SIGNATURE, metrics={}
        )
    return registry


def test_no_model_or_no_champion_is_none(registry: _Registry) -> None:
    champions = ChampionPredictors(registry, refresh_s=30, clock=_Clock())
    assert champions.champion("no_such_model") is None
    assert champions.champion("latency_p95_ms") is None  # versions, but no champion yet


def test_the_champion_is_cached_and_follows_the_alias_after_refresh(registry: _Registry) -> None:
    clock = _Clock()
    champions = ChampionPredictors(registry, refresh_s=30, clock=clock)
    registry.promote("latency_p95_ms", "1")
    first = champions.champion("latency_p95_ms")
    assert first is not None and first.version.version == "1"
    loads = registry.loads

    registry.promote("latency_p95_ms", "2")
    clock.now += 29
    assert champions.champion("latency_p95_ms") is first  # within refresh_s: from memory
    clock.now += 2
    second = champions.champion("latency_p95_ms")
    assert second is not None and second.version.version == "2"
    assert second.predict([ROW])[0] == pytest.approx(2 * first.predict([ROW])[0])
    assert registry.loads == loads + 1

    clock.now += 31
    assert champions.champion("latency_p95_ms") is second  # checked, unchanged: not reloaded
    assert registry.loads == loads + 1

    registry.rollback("latency_p95_ms")
    champions.invalidate("latency_p95_ms")
    back = champions.champion("latency_p95_ms")
    assert back is not None and back.version.version == "1"


def test_an_unreachable_registry_keeps_the_loaded_champion(registry: _Registry) -> None:
    clock = _Clock()
    champions = ChampionPredictors(registry, refresh_s=30, clock=clock)
    registry.promote("latency_p95_ms", "2")
    held = champions.champion("latency_p95_ms")
    assert held is not None
    registry.down = True
    try:
        clock.now += 60
        assert champions.champion("latency_p95_ms") is held
        assert ChampionPredictors(registry, clock=clock).champion("latency_p95_ms") is None  # none loaded yet
    finally:
        registry.down = False


def test_a_cached_champion_is_cheap_enough_for_a_decision_path(registry: _Registry) -> None:
    registry.promote("latency_p95_ms", "2")
    champions = ChampionPredictors(registry, refresh_s=30)
    start = time.perf_counter()
    predictor = champions.champion("latency_p95_ms")
    first_s = time.perf_counter() - start
    assert predictor is not None
    start = time.perf_counter()
    for _ in range(1000):
        champions.champion("latency_p95_ms")
    cached_s = (time.perf_counter() - start) / 1000
    print(f"champion: first {first_s * 1e3:.1f} ms, cached {cached_s * 1e6:.1f} us")
    assert cached_s < 1e-3
    assert first_s < 5.0

"""`ChampionPredictors`: the champion of each model, loaded once and kept until its alias moves.

A policy asks for a model's champion at every decision; asking the registry each time would put a
database query (and, when the champion changed, an artifact download) in the decision path. This
cache answers from memory and checks the champion alias at most every `refresh_s` seconds of the
injected clock; a moved alias loads the new version, a missing model or alias answers None (the
policy then falls back to its heuristic, visibly). When the registry cannot be reached the last
loaded champion keeps serving: a registry outage must not turn a working policy into a fallback.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from mlconnector.contracts import CHAMPION, ModelRegistry, Predictor, RegistryError
from mlconnector.registry.mlflow_registry import RegistryUnavailable

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    predictor: Predictor | None
    checked: float


class ChampionPredictors:
    """The source of champions a learning policy reads (`champion(model_name) -> Predictor | None`)."""

    def __init__(
        self,
        registry: ModelRegistry,
        refresh_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._refresh_s = refresh_s
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def champion(self, model_name: str) -> Predictor | None:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(model_name)
            if entry is not None and now - entry.checked < self._refresh_s:
                return entry.predictor
            predictor = self._refresh(model_name, entry)
            self._entries[model_name] = _Entry(predictor, now)
            return predictor

    def invalidate(self, model_name: str | None = None) -> None:
        """Forget one model's (or every) champion: the next call asks the registry (after a promote here)."""
        with self._lock:
            if model_name is None:
                self._entries.clear()
            else:
                self._entries.pop(model_name, None)

    def _refresh(self, name: str, entry: _Entry | None) -> Predictor | None:
        held = entry.predictor if entry is not None else None
        try:
            version = self._registry.get(name, CHAMPION)
            if held is not None and held.version.version == version.version:
                return held
            predictor = self._registry.load(name, version.version)
        except RegistryUnavailable as e:
            log.warning(
                "champion of %s: %s; %s", name, e, "keeping the loaded one" if held else "none loaded"
            )
            return held
        except RegistryError as e:
            log.info("champion of %s: %s", name, e)
            return None
        log.info("champion of %s: version %s loaded", name, predictor.version.version)
        return predictor

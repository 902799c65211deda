"""PolicyControl over the installed policy registry, recorded in a small JSON file.

The chain is the daemon's configured policy order; the API may disable and re-enable policies
in it and switch the mode. A policy belongs to the mode its class declares in a `mode`
attribute ("heuristic" when absent). In heuristic mode the controller plans with the enabled
heuristic policies; in ML mode with every enabled policy, in the configured order: the learning
ones (qosLearnedPlacer) decide what they have a trustworthy model for, and the heuristics after
them place what they pass on (and are what a learning policy falls back to, visibly).

Switching to "ml" with no enabled ML policy in the chain is refused with 409 saying which to
add, rather than accepted and ignored. Every change is checked whole (the chain may not become
empty) before the file is replaced; then `on_change` receives the new chain, which the daemon
uses to restart its in-process controller (reconciles are idempotent, so a restart loses nothing).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from controller.api.ports import MODES, PolicyInfo, PortError
from controller.policies import PolicyRegistry

LEARNING_POLICY = "qosLearnedPlacer"  # the shipped ML policy, named when ML mode has none to run


class RegistryPolicyControl:
    def __init__(
        self,
        registry: PolicyRegistry,
        chain: Sequence[str],
        state_file: Path | None = None,
        on_change: Callable[[tuple[str, ...]], None] | None = None,
    ) -> None:
        self.registry = registry
        self.configured = tuple(chain)
        self.state_file = state_file
        self.on_change = on_change
        self._lock = threading.Lock()
        self._modes: dict[str, str] = {}
        self._disabled: frozenset[str] = frozenset()
        self._mode = "heuristic"
        self._loaded = False

    # ------------------------------------------------------------------ reads

    def policies(self) -> list[PolicyInfo]:
        with self._lock:
            self._load()
            return self._infos(self._disabled, self._mode)

    def mode(self) -> str:
        with self._lock:
            self._load()
            return self._mode

    def chain(self) -> tuple[str, ...]:
        """The names the controller should plan with, in priority order."""
        with self._lock:
            self._load()
            return self._chain(self._disabled, self._mode)

    # ------------------------------------------------------------------ writes

    def set_enabled(self, name: str, enabled: bool) -> PolicyInfo:
        with self._lock:
            self._load()
            if name not in self._modes:
                known = ", ".join(self._modes) or "(none)"
                raise PortError(f"no policy {name!r} in the chain (expected one of {known})", 404, "name")
            disabled = self._disabled - {name} if enabled else self._disabled | {name}
            self._commit(disabled, self._mode)
            return next(i for i in self._infos(disabled, self._mode) if i.name == name)

    def set_mode(self, mode: str) -> str:
        if mode not in MODES:
            raise PortError(f"mode {mode!r}: expected one of {', '.join(MODES)}", 422, "mode")
        with self._lock:
            self._load()
            self._commit(self._disabled, mode)
            return mode

    # ------------------------------------------------------------------ internals

    def _infos(self, disabled: frozenset[str], mode: str) -> list[PolicyInfo]:
        chain = self._chain(disabled, mode)
        return [
            PolicyInfo(n, n in chain, self._modes[n], chain.index(n) if n in chain else -1)
            for n in self.configured
        ]

    def _chain(self, disabled: frozenset[str], mode: str) -> tuple[str, ...]:
        enabled = [n for n in self.configured if n not in disabled]
        if mode == "ml":
            return tuple(enabled) if any(self._modes[n] == "ml" for n in enabled) else ()
        return tuple(n for n in enabled if self._modes[n] == mode)

    def _commit(self, disabled: frozenset[str], mode: str) -> None:
        chain = self._chain(disabled, mode)
        if not chain:
            if mode == "ml":
                ml = [n for n in self.configured if self._modes[n] == "ml"]
                configured = ", ".join(self.configured)
                fix = (
                    f"enable {', '.join(ml)}"
                    if ml
                    else f"add {LEARNING_POLICY} to the daemon's `policies` (configured: {configured})"
                )
                raise PortError(f"no enabled ML policy in the chain: {fix}", 409, "mode")
            raise PortError(
                f"that would leave no enabled {mode} policy: the controller could not place anything",
                409,
                "enabled",
            )
        before = self._chain(self._disabled, self._mode)
        self._save(disabled, mode)
        self._disabled, self._mode = disabled, mode
        if chain != before and self.on_change is not None:
            self.on_change(chain)

    def _load(self) -> None:
        if self._loaded:
            return
        self._modes = {n: str(getattr(self.registry.create(n), "mode", "heuristic")) for n in self.configured}
        if self.state_file is not None and self.state_file.exists():
            data = json.loads(self.state_file.read_text() or "{}")
            self._disabled = frozenset(n for n in data.get("disabled", []) if n in self._modes)
            if data.get("mode") in MODES and self._chain(self._disabled, data["mode"]):
                self._mode = data["mode"]
        self._loaded = True

    def _save(self, disabled: frozenset[str], mode: str) -> None:
        if self.state_file is None:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".policies-", dir=self.state_file.parent)
        with os.fdopen(fd, "w") as f:
            json.dump({"mode": mode, "disabled": sorted(disabled)}, f)
        os.replace(tmp, self.state_file)

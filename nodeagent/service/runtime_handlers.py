"""Which runtime handlers this node really offers: configured, installed, and proven by a probe.

Discovery reads containerd's configuration (config.toml and the files it imports, including the
agent's drop-in), checks each handler's shim and binary, and runs a probe container (`true`,
exit code 0) on every handler that passed: only a handler that ran something is `available`.
Each unavailable handler carries the precise reason (a missing shim in containerd's words, or
the runtime's own error from the failed probe).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nodeagent.host import runtimefiles
from nodeagent.mechanisms.runtime_handlers import (
    HandlerConfig,
    merge_handlers,
    missing_binaries,
    render_dropin,
    runsc_wrapper,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HandlerStatus:
    name: str
    runtime_type: str
    binary_name: str
    available: bool
    reason: str
    version: str
    runtime_class_name: str


@dataclass(frozen=True)
class DropinResult:
    changed: bool  # the handler set containerd reads changed: it must be restarted to see it
    restarted: bool


Probe = Callable[[HandlerConfig], None]  # raises with the runtime's reason when `true` does not exit 0


class HandlerCatalog:
    """The handlers of containerd's configuration, their drop-in, and what discovery found."""

    def __init__(
        self,
        *,
        config_path: Path,
        dropin_path: Path | None,
        wrapper_path: Path,
        runsc: str = "/usr/bin/runsc",
        wanted: Sequence[HandlerConfig] = (),
        which: Callable[[str], str | None] = runtimefiles.which,
        version_of: Callable[[str], str] = runtimefiles.binary_version,
    ) -> None:
        self.config_path = config_path
        self.dropin_path = dropin_path
        self.wrapper_path = wrapper_path
        self.runsc = runsc
        self.wanted = tuple(wanted)
        self._which = which
        self._version_of = version_of
        self._lock = threading.Lock()
        self._statuses: dict[str, HandlerStatus] = {}

    def ensure_dropin(self, restart: Callable[[], None] | None) -> DropinResult:
        """Write the wrapper and the drop-in when their text differs; restart containerd (a
        disruptive step, the caller records it) only when the drop-in changed."""
        if any(h.binary_name == str(self.wrapper_path) for h in self.wanted):
            runtimefiles.write_if_changed(self.wrapper_path, runsc_wrapper(self.runsc), 0o755)
        if self.dropin_path is None:
            return DropinResult(False, False)
        changed = runtimefiles.write_if_changed(self.dropin_path, render_dropin(self.wanted))
        if changed and restart is not None:
            restart()
            return DropinResult(True, True)
        return DropinResult(changed, False)

    def configured(self) -> list[HandlerConfig]:
        return merge_handlers(runtimefiles.read_configs(self.config_path))

    def names(self) -> list[str]:
        return [h.name for h in self.configured()]

    def discover(self, probe: Probe) -> list[HandlerStatus]:
        """Check every configured handler (binaries, then a probe container); remembered for status()."""
        found: dict[str, HandlerStatus] = {}
        for handler in self.configured():
            reason = missing_binaries(handler, self._which)
            if not reason:
                reason = _probe_twice(probe, handler)
            found[handler.name] = HandlerStatus(
                handler.name,
                handler.runtime_type,
                handler.binary_name,
                not reason,
                reason,
                self._version(handler),
                handler.runtime_class_name,
            )
            log.info("runtime handler=%s available=%s reason=%r", handler.name, not reason, reason)
        with self._lock:
            self._statuses = found
        return list(found.values())

    def statuses(self) -> list[HandlerStatus]:
        with self._lock:
            return list(self._statuses.values())

    def status(self, name: str) -> HandlerStatus | None:
        with self._lock:
            return self._statuses.get(name)

    def handler(self, name: str) -> HandlerConfig | None:
        return next((h for h in self.configured() if h.name == name), None)

    def _version(self, handler: HandlerConfig) -> str:
        binary = handler.binary_name or (
            "runc" if handler.runtime_type.startswith("io.containerd.runc.") else ""
        )
        if binary == str(self.wrapper_path):
            binary = self.runsc
        path = self._which(binary) if binary else self._which(handler.shim)
        return self._version_of(path) if path else ""


def _probe_twice(probe: Probe, handler: HandlerConfig) -> str:
    """ "" when the probe container ran; else the reason of its second failure. One retry, since
    a start can fail once for a passing reason on a loaded machine (seen: runc's "unable to store
    init state"); a handler that cannot run fails the same way twice."""
    reason = ""
    for _attempt in range(2):
        try:
            probe(handler)
            return ""
        except Exception as exc:  # the probe's failure is the handler's reason, whatever it was
            reason = f"probe container failed: {exc}"
            log.info("runtime handler=%s probe failed: %s", handler.name, exc)
    return reason

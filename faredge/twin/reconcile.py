"""Twin reconciliation, pure: what a `devices set` or a device's `twin/reported` does to a twin.

The bridge (`faredge.bridge.twinsync`) persists the result, counts the outcome and sends the
desired state; these functions only decide, so every rule is tested without a registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faredge.errors import Invalid
from faredge.protocol.messages import FreqCaps, TwinReported, encode_desired
from faredge.twin import ReportOutcome, Twin, apply_report, set_desired


def desired_message(device_id: str, twin: Twin) -> bytes:
    """The `twin/desired` message of a twin: always the full desired settings."""
    return encode_desired(device_id, twin.desired_version, twin.desired)


def plan_desired(device_id: str, twin: Twin, changes: dict[str, Any], *, limit: int) -> Twin:
    """Merge validated changes (`faredge.protocol.settings.validate_settings`) into the desired state.

    Raises Invalid, and nothing changes, when the full desired message would not fit the
    device's transport (`limit` bytes: a serial frame carries 1024). Returns `twin` itself when
    nothing changes (the version stays).
    """
    new = set_desired(twin, changes)
    size = len(desired_message(device_id, new))
    if size > limit:
        raise Invalid("settings", f"the desired state would be {size} bytes, over {limit} for {device_id}")
    return new


def check_capabilities(
    device_id: str, sensors: tuple[str, ...], freqs: FreqCaps | None, changes: dict[str, Any]
) -> None:
    """Refuse, up front and by name, what the device said it cannot do (its birth's `sensors`
    and `caps.freq_hz`): such a value would be rejected by the board and block every later
    version of the twin."""
    freq = changes.get("freq_hz")
    if freq is not None and freqs is not None and not freqs.accepts(freq):
        raise Invalid(
            "settings.freq_hz", f"{freq} is not a frequency {device_id} accepts ({freqs.describe()})"
        )
    wanted = changes.get("sensors")
    if wanted is not None and sensors:
        missing = [s for s in wanted if s not in sensors]
        if missing:
            raise Invalid(
                "settings.sensors", f"{', '.join(missing)} not on {device_id} (it has {', '.join(sensors)})"
            )


@dataclass(frozen=True, slots=True)
class ReportDecision:
    """What a `twin/reported` means: the twin to keep and how the report was judged."""

    twin: Twin
    outcome: ReportOutcome

    @property
    def stale(self) -> bool:
        """Older than the last report: dropped, the twin is unchanged."""
        return self.outcome is ReportOutcome.STALE

    @property
    def resend(self) -> bool:
        """The device is ahead of the bridge: it must get the (re-versioned) desired state."""
        return self.outcome is ReportOutcome.AHEAD


def decide_report(twin: Twin, report: TwinReported) -> ReportDecision:
    twin, outcome = apply_report(twin, report.version, report.settings, report.errors)
    return ReportDecision(twin, outcome)

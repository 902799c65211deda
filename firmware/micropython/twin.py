"""Device twin: desired settings with a version, applied all-or-nothing, reported back.

Each setting is a row of `KNOBS` (name -> check returning a reason or None), so a desired
state is validated completely before anything changes. Unknown keys are reported in `errors`
and do not block the known ones (a newer bridge may know more settings); a known key with a bad
value rejects the whole version: nothing is applied, and the report carries that version (so the
bridge sees it was processed), the unchanged settings and the reason per key. Desired versions
lower than the applied one are stale and ignored; the same version is reported again without
re-applying (the bridge may have missed the report).

`RANGES` is the firmware's one copy of the integer settings' limits (config.py reads it too);
tests/faredge/firmware/test_fw_settings.py asserts it equals the bridge's table
(faredge/protocol/settings.py).
"""


def _int_in(lo, hi):
    def check(v, hal):
        if type(v) is not int or not lo <= v <= hi:
            return f"must be an integer in {lo}..{hi}"
        return None

    return check


def _freq(v, hal):
    if type(v) is not int or not hal.freq_ok(v):
        return "frequency not supported by board " + hal.NAME
    return None


def _sensors(v, hal):
    if not isinstance(v, list):
        return "must be a list of sensor names"
    for s in v:
        if s not in hal.SENSORS:
            return f"unknown sensor {s!r} (board has {', '.join(hal.SENSORS)})"
    if len(set(v)) != len(v):
        return "duplicate sensor names"
    return None


# (low, high) of the integer settings; freq_hz and sensors are checked against the board.
RANGES = {"interval_ms": (100, 3600000), "batch": (1, 32), "reboot": (0, 0x7FFFFFFF)}
KNOBS = {k: _int_in(lo, hi) for k, (lo, hi) in RANGES.items()}
KNOBS["freq_hz"] = _freq
KNOBS["sensors"] = _sensors


class Twin:
    def __init__(self, hal, settings, version=0):
        self.hal = hal
        self.settings = settings
        self.version = version

    def report(self, dev_id, errors=None):
        return {"id": dev_id, "version": self.version, "settings": self.settings, "errors": errors or {}}

    def desired(self, msg):
        """Handle a twin/desired message: (report or None if stale/malformed, reboot wanted)."""
        version = msg.get("version")
        want = msg.get("settings")
        if type(version) is not int or version < 0 or not isinstance(want, dict):
            return None, False
        if version < self.version:
            return None, False
        if version == self.version:
            return self.report(msg["id"]), False
        errors = {}
        for k in want:
            check = KNOBS.get(k)
            reason = check(want[k], self.hal) if check else "unknown setting"
            if reason:
                errors[k] = reason
        self.version = version
        if any(k in KNOBS for k in errors):
            return self.report(msg["id"], errors), False
        reboot = False
        for k in want:
            if k in KNOBS and want[k] != self.settings.get(k):
                if k == "freq_hz":
                    try:
                        self.hal.freq(want[k])
                    except (ValueError, OSError) as e:
                        errors[k] = f"board refused: {e}"
                        continue
                reboot = reboot or k == "reboot"
                self.settings[k] = want[k]
        return self.report(msg["id"], errors), reboot

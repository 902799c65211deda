"""One settings table: the firmware enforces exactly the limits the bridge validates against.

The bridge's table is `faredge.protocol.settings.KNOBS`; the firmware's one copy is `RANGES` in
firmware/micropython/twin.py, from which its twin checks and its config rules (config.py) are
built. The firmware modules are imported into CPython: the same source the device runs.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from faredge.protocol.settings import KNOBS


def test_firmware_and_bridge_know_the_same_settings(fw: Callable[[str], ModuleType]) -> None:
    assert set(fw("twin").KNOBS) == set(KNOBS)


def test_firmware_integer_limits_are_the_bridge_limits(fw: Callable[[str], ModuleType]) -> None:
    bridge = {k.name: k.bounds for k in KNOBS.values() if k.bounds is not None and not k.board_checked}
    assert bridge == fw("twin").RANGES


def test_config_rules_take_their_limits_from_the_twin_table(fw: Callable[[str], ModuleType]) -> None:
    config = fw("config")
    rules = {name: (lo, hi) for name, _type, _default, lo, hi in config._RULES}
    assert rules == {name: KNOBS[name].bounds for name in rules}
    assert set(rules) == {"interval_ms", "batch"}  # the twin settings a config.json may set


def test_every_firmware_integer_check_enforces_its_range(fw: Callable[[str], ModuleType]) -> None:
    twin = fw("twin")
    for name, (lo, hi) in twin.RANGES.items():
        check = twin.KNOBS[name]
        assert check(lo, None) is None and check(hi, None) is None, name
        assert check(lo - 1, None) and check(hi + 1, None), name

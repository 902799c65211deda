"""Twin versioning and settings (firmware/micropython/twin.py) inside MicroPython."""

import fakehal
from twin import Twin


def _twin():
    fakehal.clear()
    return Twin(
        fakehal, {"interval_ms": 1000, "batch": 1, "sensors": ["temp"], "reboot": 0, "freq_hz": 160000000}, 0
    )


def test_applies_new_version_and_reports_it():
    t = _twin()
    rep, reboot = t.desired({"id": "d", "version": 2, "settings": {"interval_ms": 500, "freq_hz": 240000000}})
    assert rep == {"id": "d", "version": 2, "errors": {}, "settings": t.settings}
    assert t.settings["interval_ms"] == 500 and not reboot
    assert fakehal.calls == [("freq", 240000000)]


def test_writes_only_what_differs():
    t = _twin()
    t.desired({"id": "d", "version": 1, "settings": {"freq_hz": 160000000}})
    assert fakehal.calls == []


def test_stale_version_ignored_same_version_re_reported_without_reapply():
    t = _twin()
    t.desired({"id": "d", "version": 5, "settings": {"interval_ms": 700}})
    assert t.desired({"id": "d", "version": 4, "settings": {"interval_ms": 100}}) == (None, False)
    rep, _ = t.desired({"id": "d", "version": 5, "settings": {"interval_ms": 900}})
    assert rep["version"] == 5 and t.settings["interval_ms"] == 700


def test_bad_known_key_rejects_whole_version_and_names_reasons():
    t = _twin()
    rep, _ = t.desired(
        {
            "id": "d",
            "version": 3,
            "settings": {"interval_ms": 50, "batch": 4, "sensors": ["temp", "nope"], "freq_hz": 1},
        }
    )
    assert t.settings["batch"] == 1  # nothing applied
    assert rep["version"] == 3
    assert sorted(rep["errors"]) == ["freq_hz", "interval_ms", "sensors"]
    assert "100..3600000" in rep["errors"]["interval_ms"]
    assert "nope" in rep["errors"]["sensors"]
    assert fakehal.calls == []


def test_unknown_key_reported_but_known_keys_applied():
    t = _twin()
    rep, _ = t.desired({"id": "d", "version": 1, "settings": {"batch": 8, "colour": "red"}})
    assert t.settings["batch"] == 8
    assert rep["errors"] == {"colour": "unknown setting"}


def test_reboot_only_when_counter_changes():
    t = _twin()
    assert t.desired({"id": "d", "version": 1, "settings": {"reboot": 0}})[1] is False
    assert t.desired({"id": "d", "version": 2, "settings": {"reboot": 1}})[1] is True
    assert t.desired({"id": "d", "version": 3, "settings": {"reboot": 1}})[1] is False


def test_board_refusing_frequency_is_a_per_key_error():
    t = _twin()
    rep, _ = t.desired({"id": "d", "version": 1, "settings": {"freq_hz": 123000000, "batch": 2}})
    assert "PLL" in rep["errors"]["freq_hz"]
    assert t.settings["freq_hz"] == 160000000 and t.settings["batch"] == 2


def test_malformed_desired_is_dropped():
    t = _twin()
    for msg in (
        {"id": "d"},
        {"id": "d", "version": "1", "settings": {}},
        {"id": "d", "version": 1, "settings": []},
        {"id": "d", "version": -1, "settings": {}},
    ):
        assert t.desired(msg) == (None, False)
    assert t.version == 0

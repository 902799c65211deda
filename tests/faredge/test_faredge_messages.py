"""Message parsing and settings validation: untrusted JSON in, frozen values or a counted drop out."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faredge.errors import Dropped, Invalid
from faredge.protocol.messages import (
    KINDS,
    Birth,
    Status,
    Telemetry,
    TwinReported,
    encode_desired,
    parse_message,
)
from faredge.protocol.settings import parse_assignments, validate_settings
from faredge.protocol.topics import split_topic, topic


def j(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_birth_is_parsed_into_a_frozen_value() -> None:
    msg = parse_message(
        "birth",
        j({"id": "dev-1", "fw": "1.0", "board": "esp32", "boot": 3, "sensors": ["temp"], "freq": 240000000}),
    )
    assert msg == Birth("dev-1", "1.0", "esp32", 3, ("temp",), 240000000)


def test_a_birth_names_the_mpy_version_its_board_loads() -> None:
    """What an over-the-air update compiles the app for (sys.implementation._mpy)."""
    birth = {"id": "dev-1", "fw": "1.0", "board": "esp32", "boot": 3, "sensors": []}
    got = parse_message("birth", j({**birth, "mpy": 0x0A06}))
    assert isinstance(got, Birth) and got.mpy == 0x0A06
    with pytest.raises(Dropped, match="mpy"):
        parse_message("birth", j({**birth, "mpy": "6.3"}))


def test_single_and_batched_telemetry() -> None:
    one = parse_message(
        "telemetry",
        j(
            {
                "id": "d",
                "seq": 4,
                "up": 10,
                "boot": 1,
                "mem_free": 9000,
                "freq": 1,
                "r": {"temp": 21.5, "hum": None},
            }
        ),
    )
    assert isinstance(one, Telemetry) and one.samples[0].readings == (("temp", 21.5), ("hum", None))
    batch = parse_message(
        "telemetry",
        j({"id": "d", "seq": 5, "boot": 1, "batch": [{"up": 1, "r": {"t": 1}}, {"up": 2, "r": {"t": 2}}]}),
    )
    assert isinstance(batch, Telemetry) and [s.up for s in batch.samples] == [1, 2]


def test_twin_reported_and_status() -> None:
    rep = parse_message(
        "twin/reported",
        j({"id": "d", "version": 2, "settings": {"interval_ms": 500}, "errors": {"bogus": "unknown key"}}),
    )
    assert rep == TwinReported("d", 2, {"interval_ms": 500}, {"bogus": "unknown key"})
    assert parse_message("status", j({"id": "d", "online": False})) == Status("d", False)


@pytest.mark.parametrize(
    ("kind", "payload", "reason", "field"),
    [
        ("telemetry", b"{not json", "json", ""),
        ("telemetry", b"[1,2]", "schema", "message"),
        ("telemetry", j({"id": "a/b", "seq": 1}), "schema", "id"),
        ("telemetry", j({"id": "d"}), "schema", "seq"),
        ("telemetry", j({"id": "d", "seq": -1}), "schema", "seq"),
        ("telemetry", j({"id": "d", "seq": 1, "r": {"t": "hot"}}), "schema", "r.t"),
        ("telemetry", j({"id": "d", "seq": 1, "batch": []}), "schema", "batch"),
        ("birth", j({"id": "d", "boot": True}), "schema", "boot"),
        ("birth", j({"id": "d", "boot": 1, "sensors": ["bad name!"]}), "schema", "sensors"),
        ("status", j({"id": "d", "online": "no"}), "schema", "online"),
        ("twin/reported", j({"id": "d", "version": 1, "settings": []}), "schema", "settings"),
        ("twin/desired", j({"id": "d"}), "kind", ""),
        ("telemetry", b" " * 5000, "oversize", ""),
    ],
)
def test_bad_messages_are_dropped_naming_the_field(
    kind: str, payload: bytes, reason: str, field: str
) -> None:
    with pytest.raises(Dropped) as info:
        parse_message(kind, payload)
    assert info.value.reason == reason
    assert field in info.value.detail


def test_nan_and_infinity_are_not_json() -> None:
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        with pytest.raises(Dropped) as info:
            parse_message("telemetry", b'{"id":"d","seq":1,"r":{"t":' + literal + b"}}")
        assert info.value.reason == "json"


def test_bad_utf8_is_not_json_and_huge_integers_are_not_integers() -> None:
    with pytest.raises(Dropped) as info:
        parse_message("telemetry", b'{"id":"d\xff","seq":1}')
    assert info.value.reason == "json"
    with pytest.raises(Dropped) as info:  # orjson reads it as a float: not a sequence number
        parse_message("telemetry", b'{"id":"d","seq":' + b"9" * 30 + b"}")
    assert info.value.reason == "schema" and "seq" in info.value.detail


def test_desired_message_is_compact_and_complete() -> None:
    assert json.loads(encode_desired("d", 3, {"interval_ms": 100})) == {
        "id": "d",
        "version": 3,
        "settings": {"interval_ms": 100},
    }


def test_topics_round_trip_and_reject_foreign_names() -> None:
    assert split_topic(topic("dev-1", "twin/reported")) == ("dev-1", "twin/reported")
    assert split_topic("other/topic") is None
    assert split_topic("mlsysops/v1/dev/dev-1") is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
fields = st.sampled_from(
    [
        "id",
        "seq",
        "up",
        "boot",
        "mem_free",
        "freq",
        "r",
        "batch",
        "fw",
        "board",
        "sensors",
        "version",
        "settings",
        "errors",
        "online",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(KINDS), st.dictionaries(fields, json_values, max_size=8))
def test_fuzz_parsers_return_a_message_or_a_drop(kind: str, obj: dict[str, object]) -> None:
    try:
        payload = json.dumps(obj).encode()
    except ValueError:
        return
    try:
        msg = parse_message(kind, payload)
    except Dropped as drop:
        assert drop.reason in {"json", "schema", "oversize"}
        return
    assert isinstance(msg.id, str)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(KINDS), st.binary(max_size=300))
def test_fuzz_parsers_on_raw_bytes(kind: str, payload: bytes) -> None:
    try:
        parse_message(kind, payload)
    except Dropped as drop:
        assert drop.reason in {"json", "schema", "oversize"}


# ------------------------------------------------------------------ settings (knobs as data)
def test_assignments_are_parsed_and_validated_as_a_whole() -> None:
    assert parse_assignments(["interval_ms=500", "sensors=temp,hum", "batch=4"]) == {
        "interval_ms": 500,
        "sensors": ["temp", "hum"],
        "batch": 4,
    }


@pytest.mark.parametrize(
    ("pairs", "field", "reason"),
    [
        (["interval_ms=99"], "settings.interval_ms", "outside 100..3600000"),
        (["interval_ms=fast"], "settings.interval_ms", "must be an integer"),
        (["batch=33"], "settings.batch", "outside 1..32"),
        (["sensors=a,a"], "settings.sensors", "repeat"),
        (["sensors=bad name"], "settings.sensors", "not a sensor name"),
        (["colour=red"], "settings.colour", "unknown setting"),
        (["interval_ms"], "interval_ms", "expected key=value"),
    ],
)
def test_bad_assignments_name_the_field(pairs: list[str], field: str, reason: str) -> None:
    with pytest.raises(Invalid) as info:
        parse_assignments(pairs)
    assert info.value.field == field and reason in info.value.reason


def test_validate_settings_rejects_booleans_as_integers() -> None:
    with pytest.raises(Invalid, match="interval_ms"):
        validate_settings({"interval_ms": True})

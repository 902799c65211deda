"""Telemetry batching (firmware/micropython/telemetry.py) inside MicroPython."""

import json

from telemetry import Batcher


def _r(i):
    return {"up": i, "mem_free": 1000, "freq": 1, "r": {"temp": 20.5}}


def test_single_reading_message_shape():
    b = Batcher("d", 3)
    (m,) = b.add(_r(1), 1)
    assert json.loads(m) == {
        "id": "d",
        "seq": 0,
        "boot": 3,
        "up": 1,
        "mem_free": 1000,
        "freq": 1,
        "r": {"temp": 20.5},
    }


def test_batches_until_full_and_numbers_messages():
    b = Batcher("d", 1)
    assert b.add(_r(1), 3) == [] and b.add(_r(2), 3) == []
    (m,) = b.add(_r(3), 3)
    msg = json.loads(m)
    assert msg["seq"] == 0 and [x["up"] for x in msg["batch"]] == [1, 2, 3]
    assert json.loads(b.add(_r(4), 1)[0])["seq"] == 1


def test_batch_over_the_payload_limit_is_split():
    b = Batcher("d", 1, limit=300)
    out = []
    for i in range(8):
        out += b.add(_r(i), 8)
    assert len(out) > 1 and all(len(m) <= 300 for m in out)
    ups = []
    for m in out:
        ups += [x["up"] for x in json.loads(m).get("batch", [])] or [json.loads(m)["up"]]
    assert ups == list(range(8))
    assert [json.loads(m)["seq"] for m in out] == list(range(len(out)))


def test_smaller_batch_setting_sends_everything_pending():
    b = Batcher("d", 1)
    b.add(_r(1), 8)
    b.add(_r(2), 8)
    (m,) = b.add(_r(3), 2)
    assert [x["up"] for x in json.loads(m)["batch"]] == [1, 2, 3]

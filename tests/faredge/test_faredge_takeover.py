"""Session takeover (issue 9, defect 1) against the real Mosquitto: client ids are bound to usernames.

A device's credentials used with the bridge's client id, or with another device's, must neither
kick the bridge nor the other device; the broker replaces the asked-for id with the username, so
the only session such a client can replace is its own, and that is counted from the broker's log.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from faredge.broker import BRIDGE_USER
from faredge.channels.brokerlog import classify
from faredge.channels.mqtt import make_client
from faredge.config import MqttSettings
from faredge.errors import Invalid
from faredge.provision import provision_device
from faredge.testing import sample
from mlsysops.testing import wait_for


def attack(port: int, user: str, password: str, client_id: str) -> bool:
    """Connect with `user`'s credentials asking for `client_id`; True if the broker accepted."""
    client = make_client(
        MqttSettings(port=port, client_id=client_id, username=user, password=password), clean_session=False
    )
    accepted = threading.Event()
    client.on_connect = lambda c, u, f, reason, p: None if reason.is_failure else accepted.set()
    client.connect("127.0.0.1", port, 30)
    client.loop_start()
    try:
        return accepted.wait(5)
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_device_can_take_over_neither_the_bridge_nor_another_device(
    mqtt_bridge: Any, device: Any, broker: Any
) -> None:
    bridge = mqtt_bridge(broker_log=str(broker.layout.log))
    attacker, victim = device(), device()
    victim.birth()
    wait_for(lambda: victim.id in bridge.registry, what="victim's birth")
    lost_victim = []
    victim.client.on_disconnect = lambda *a: lost_victim.append(a)
    pw = broker.passwords[attacker.id]
    assert bridge.mqtt is not None
    attempts = {50: bridge.mqtt.settings.client_id, 150: "mlsysops-faredge", 250: victim.id}
    for seq in range(1, 301):  # QoS 1 traffic for the bridge's session during both attempts
        victim.publish("telemetry", {"seq": seq, "r": {"temp": seq}}, qos=1)
        if seq in attempts:  # accepted, but as the attacker: it kicks only the attacker itself
            wait_for(attacker.client.is_connected, what="attacker's own client back")
            assert attack(broker.port, attacker.id, pw, attempts[seq])
    wait_for(
        lambda: (
            sample(
                bridge.metrics, "faredge_messages_total", device=victim.id, transport="mqtt", kind="telemetry"
            )
            == 300
        ),
        what="all 300 QoS 1 messages",
    )
    assert bridge.mqtt.connects == 1 and bridge.mqtt.connected.is_set()  # never kicked off
    assert not lost_victim and victim.client.is_connected()
    # every attempt replaced only the attacker's own session, and the bridge counted each
    wait_for(
        lambda: sample(bridge.metrics, "faredge_broker_denials_total", event="takeover") >= 3,
        what="takeovers counted",
    )


def test_refused_logins_are_counted(mqtt_bridge: Any, broker: Any) -> None:
    bridge = mqtt_bridge(broker_log=str(broker.layout.log))
    assert not attack(broker.port, "nobody", "wrong", f"x-{uuid.uuid4().hex[:6]}")
    wait_for(
        lambda: sample(bridge.metrics, "faredge_broker_denials_total", event="auth_denied") >= 1,
        what="refused login counted",
    )


def test_the_bridge_user_cannot_be_provisioned_as_a_device(broker: Any) -> None:
    before = broker.layout.passwd.read_text()
    for user in (BRIDGE_USER, broker.bridge_settings().username):
        with pytest.raises(Invalid, match="bridge's user"):
            provision_device(broker.layout, user, board="virtual", host="127.0.0.1", port=broker.port)
    assert broker.layout.passwd.read_text().count("\n") == before.count("\n") + 1  # only the new bridge


def test_every_listener_binds_client_ids_to_usernames(broker: Any) -> None:
    conf = broker.layout.conf.read_text().splitlines()
    listeners = [i for i, line in enumerate(conf) if line.startswith("listener ")]
    assert listeners and all(conf[i + 1] == "use_username_as_clientid true" for i in listeners)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("1796: Client devA already connected, closing old connection.", ("takeover", "devA")),
        ("1796: Client <unknown> disconnected, not authorised.", ("auth_denied", "<unknown>")),
        ("1796: New client connected from 127.0.0.1:1 as devA (p2, c0, k60, u'devA').", None),
    ],
)
def test_broker_log_lines_are_classified(line: str, expected: object) -> None:
    assert classify(line) == expected

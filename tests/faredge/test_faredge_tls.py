"""TLS to the broker: CA-verified server, client certificate, certificates made in the test."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

cryptography = pytest.importorskip("cryptography", reason="needs the cryptography package to make certs")
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from faredge.broker import BRIDGE_USER, BrokerLayout, BrokerTls  # noqa: E402
from faredge.channels.mosquitto import (  # noqa: E402
    MosquittoProcess,
    free_port,
    mosquitto_binary,
    private_settings,
)
from faredge.config import MqttSettings, TlsSettings  # noqa: E402
from faredge.provision import init_broker, provision_device  # noqa: E402
from faredge.testing import DeviceClient  # noqa: E402
from mlsysops.testing import wait_for  # noqa: E402


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> tuple[Path, Path]:
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path.with_suffix(".crt"), path.with_suffix(".key")


def _cert(
    name: str,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    ip: str | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer if issuer else (subject, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
    return key, builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[dict[str, Any]]:
    if mosquitto_binary() is None:
        pytest.skip("needs the Debian mosquitto package")
    ca_key, ca_cert = _cert("test-ca", None, ca=True)
    ca_crt, _ = _write(tmp_path / "ca", ca_key, ca_cert)
    server_crt, server_key = _write(
        tmp_path / "server", *_cert("broker", (ca_cert.subject, ca_key), ip="127.0.0.1")
    )
    client_crt, client_key = _write(tmp_path / "client", *_cert("faredge", (ca_cert.subject, ca_key)))
    layout = BrokerLayout(tmp_path / "broker")
    plain_port, tls_port = free_port(), free_port()
    tls = BrokerTls(ca_crt, server_crt, server_key, require_client_certificate=True)
    password = init_broker(layout, private_settings(plain_port, tls=tls, tls_port=tls_port))
    dev = provision_device(
        layout, f"tls{uuid.uuid4().hex[:6]}", board="virtual", host="127.0.0.1", port=tls_port, ca=str(ca_crt)
    )
    process = MosquittoProcess(layout, tls_port)
    process.start()
    try:
        yield {
            "port": tls_port,
            "password": password,
            "device": dev,
            "tls": TlsSettings(str(ca_crt), str(client_crt), str(client_key)),
        }
    finally:
        process.stop()


def test_bridge_and_device_over_tls_with_client_certificates(
    tls_broker: dict[str, Any], make_bridge: Any, new_config: Any
) -> None:
    settings = MqttSettings(
        port=tls_broker["port"],
        client_id=f"bridge-{uuid.uuid4().hex[:6]}",
        username=BRIDGE_USER,
        password=tls_broker["password"],
        tls=tls_broker["tls"],
    )
    bridge = make_bridge(new_config(mqtt=settings))
    wait_for(bridge.mqtt.connected.is_set, what="bridge connected over TLS")
    dev_id = tls_broker["device"].device_id
    assert tls_broker["device"].config["mqtt"]["tls"] is True
    dev = DeviceClient(
        tls_broker["port"], dev_id, tls_broker["device"].password, tls=tls_broker["tls"]
    ).start()
    try:
        dev.birth()
        wait_for(lambda: dev_id in bridge.registry, what="birth over TLS")
    finally:
        dev.close()


def test_a_client_that_does_not_trust_the_ca_cannot_connect(
    tls_broker: dict[str, Any], tmp_path: Path
) -> None:
    other_key, other_ca = _cert("other-ca", None, ca=True)
    wrong_ca, _ = _write(tmp_path / "other", other_key, other_ca)
    with pytest.raises(ssl.SSLCertVerificationError):
        DeviceClient(
            tls_broker["port"],
            "x",
            "y",
            tls=TlsSettings(str(wrong_ca), *map(str, (tmp_path / "client.crt", tmp_path / "client.key"))),
        ).start()

"""End to end: how the agent listens (unix socket, TCP with mutual TLS or --insecure), health and
reflection, as seen by a client of the real process."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb

SERVICE = "mlsysops.nodeconfig.v1.NodeConfig"


def test_unix_socket_has_mode_0660_and_serves_health_and_reflection(agent_env: Any) -> None:
    agent = agent_env.start()
    assert stat.S_IMODE(agent_env.socket.stat().st_mode) == 0o660
    channel = grpc.insecure_channel(agent.target)
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    services = ProtoReflectionDescriptorDatabase(channel).get_services()
    assert SERVICE in services and "grpc.health.v1.Health" in services
    apply_method = ProtoReflectionDescriptorDatabase(channel).FindFileContainingSymbol(SERVICE)
    assert apply_method.package == "mlsysops.nodeconfig.v1"


def test_socket_mode_is_configurable(agent_env: Any) -> None:
    agent_env.write_config('listen: {socket_mode: "0600"}\n')
    agent_env.start()
    assert stat.S_IMODE(agent_env.socket.stat().st_mode) == 0o600


def test_a_second_agent_on_the_same_socket_is_refused(agent_env: Any) -> None:
    agent_env.start()
    result = agent_env.run("--runtime-dir", str(agent_env.workdir / "run2"))
    assert result.returncode == 78 and "is in use" in result.stderr


def test_plain_tcp_needs_insecure(agent_env: Any) -> None:
    refused = agent_env.run("--listen", "127.0.0.1:0")
    assert refused.returncode == 78
    assert "listen.tcp: refusing plain-text TCP" in refused.stderr and "--insecure" in refused.stderr

    agent = agent_env.start("--listen", "127.0.0.1:0", "--insecure")
    tcp = agent.addresses[1]
    assert tcp.startswith("127.0.0.1:") and not tcp.endswith(":0")
    inventory = agent.stub(grpc.insecure_channel(tcp)).GetInventory(pb.GetInventoryRequest())
    assert inventory.api_version == "mlsysops.nodeconfig.v1"


def test_mutual_tls_accepts_a_client_certificate_and_rejects_a_client_without(agent_env: Any) -> None:
    pki = make_pki(agent_env.workdir / "pki")
    agent = agent_env.start(
        "--listen", "127.0.0.1:0", "--tls-cert", str(pki["server.crt"]), "--tls-key", str(pki["server.key"]),
        "--tls-client-ca", str(pki["ca.crt"]),
    )
    tcp = agent.addresses[1]
    ca = pki["ca.crt"].read_bytes()
    key, cert = pki["client.key"].read_bytes(), pki["client.crt"].read_bytes()
    with_cert = grpc.secure_channel(tcp, grpc.ssl_channel_credentials(ca, key, cert))
    inventory = agent.stub(with_cert).GetInventory(pb.GetInventoryRequest(), timeout=10)
    assert inventory.api_version == "mlsysops.nodeconfig.v1"

    without_cert = grpc.secure_channel(tcp, grpc.ssl_channel_credentials(ca))
    with pytest.raises(grpc.RpcError) as err:
        agent.stub(without_cert).GetInventory(pb.GetInventoryRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError):
        agent.stub(grpc.insecure_channel(tcp)).GetInventory(pb.GetInventoryRequest(), timeout=10)


def test_watch_streams_beyond_the_limit_are_refused(agent_env: Any) -> None:
    agent_env.write_config("listen: {workers: 3, max_watchers: 1}\n")
    agent = agent_env.start()
    stub = agent.stub()
    first = stub.WatchEvents(pb.WatchEventsRequest())
    first.initial_metadata()
    with pytest.raises(grpc.RpcError) as err:
        next(stub.WatchEvents(pb.WatchEventsRequest()))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stub.GetState(pb.GetStateRequest()).generation == 0  # unary calls still served
    first.cancel()


def make_pki(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, signed by the CA (openssl CLI)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make test certificates")
    directory.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True)

    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=test-ca")
    for name, extensions in (
        ("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        (directory / f"{name}.ext").write_text(extensions + "\n")
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "1", "-extfile", f"{name}.ext")
    return {p.name: p for p in directory.iterdir()}

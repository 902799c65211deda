"""Issue 11, defect 7: callers are identified by what their transport proves (SO_PEERCRED on the
unix socket, the client certificate's CN/SAN on TCP) and authorised by `authz.policy`; events
name the authenticated identity; the CLI says "permission denied" (exit 5)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner

from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb
from mlsysops.nodeconfig.v1 import nodeconfig_pb2_grpc as pb_grpc
from nodeagent.api.convert import dict_to_profile
from nodeagent.cli import node
from nodeagent.errors import Forbidden
from nodeagent.service.authz import Identity, Policy
from tests.nodeagent.e2e.test_nodeagent_e2e_listen import make_pki
from tests.nodeagent.hostile.conftest import LiveAgent, start_agent

PROFILE = dict_to_profile({"cgroups": {"groups": [{"path": "app", "cpu_weight": 200}]}})


def denied(call: Any) -> str:
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    return err.value.details() or ""


@pytest.fixture
def started(workdir: Path) -> Any:
    agents: list[LiveAgent] = []

    def start(**overrides: Any) -> LiveAgent:
        agent = start_agent(workdir, **overrides)
        agents.append(agent)
        return agent

    yield start
    for agent in agents:
        agent.channel.close()
        agent.agent.stop()


def test_the_most_privileged_matching_rule_wins_and_no_match_is_no_access() -> None:
    policy = Policy({"uid:1000": "read", "gid:50": "apply", "cn:controller": "reset"})
    policy.check("Apply", Identity(uid=1000, gid=50))
    with pytest.raises(Forbidden, match=r"Apply needs role 'apply'; uid:1000 has role 'read'"):
        policy.check("Apply", Identity(uid=1000, gid=1000))
    policy.check("Reset", Identity(names=("cn:controller",)))
    with pytest.raises(Forbidden, match="no role"):
        policy.check("GetState", Identity(uid=7))
    with pytest.raises(Forbidden, match="needs role 'admin'"):  # an RPC the table does not know
        policy.check("SomeFutureRpc", Identity(names=("cn:controller",)))


def test_unix_socket_callers_are_known_by_uid_and_events_name_them(started: Any) -> None:
    live = started(authz={"policy": {f"uid:{os.getuid()}": "read"}})
    assert live.stub.GetState(pb.GetStateRequest(), timeout=10).generation == 0
    message = denied(lambda: live.stub.Apply(pb.ApplyRequest(profile=PROFILE), timeout=10))
    assert f"uid:{os.getuid()} has role 'read'" in message
    denied(lambda: live.stub.Reset(pb.ResetRequest(), timeout=10))


def test_another_uid_gets_only_what_the_policy_gives_it(started: Any, workdir: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to call as another user")
    live = started(listen={"socket_mode": "0666"}, authz={"policy": {"uid:0": "admin", "*": "read"}})
    workdir.chmod(0o755)
    script = textwrap.dedent(f"""
        import grpc
        from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb, nodeconfig_pb2_grpc as pb_grpc
        import os
        os.setgroups([]); os.setgid(65534); os.setuid(65534)  # modules loaded as root, then become nobody
        stub = pb_grpc.NodeConfigStub(grpc.insecure_channel("unix:{workdir / 'agent.sock'}"))
        stub.GetState(pb.GetStateRequest(), timeout=10)
        try:
            stub.Reset(pb.ResetRequest(), timeout=10)
        except grpc.RpcError as exc:
            print(exc.code().name, exc.details())
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )
    expected = "PERMISSION_DENIED Reset needs role 'reset'; uid:65534 has role 'read' (authz.policy)"
    assert done.stdout.strip() == expected, done.stderr
    applied = live.stub.Apply(pb.ApplyRequest(profile=PROFILE, requester="someone-else"), timeout=10)
    assert applied.writes_performed > 0


def test_the_relay_port_dialled_directly_is_anonymous(started: Any) -> None:
    live = started(authz={"policy": {"uid:0": "admin"}})
    backend = live.agent.server._front._backend  # type: ignore[union-attr]  # white box: the relay's port
    direct = pb_grpc.NodeConfigStub(grpc.insecure_channel(f"127.0.0.1:{backend[1]}"))
    assert "anonymous has no role" in denied(lambda: direct.GetState(pb.GetStateRequest(), timeout=10))


def test_the_cli_reports_permission_denied_with_exit_5(started: Any, workdir: Path) -> None:
    started(authz={"policy": {"*": "read"}})
    profile = workdir / "profile.yaml"
    profile.write_text("cgroups: {groups: [{path: app, cpu_weight: 200}]}\n")
    target = f"unix:{workdir / 'agent.sock'}"
    result = CliRunner().invoke(node, ["--target", target, "apply", "-f", str(profile)])
    assert result.exit_code == 5, result.output
    assert "permission denied" in result.output and "needs role 'apply'" in result.output


def test_tls_clients_are_known_by_their_certificate_and_it_reloads(started: Any, workdir: Path) -> None:
    pki = make_pki(workdir / "pki")
    live = started(
        listen={"tcp": "127.0.0.1:0", "tls": {
            "cert": str(pki["server.crt"]), "key": str(pki["server.key"]), "client_ca": str(pki["ca.crt"])}},
        authz={"policy": {"uid:0": "admin", "cn:client": "read"}},
    )
    tcp = live.agent.server.addresses[1]
    ca, key, cert = (pki[n].read_bytes() for n in ("ca.crt", "client.key", "client.crt"))
    stub = pb_grpc.NodeConfigStub(grpc.secure_channel(tcp, grpc.ssl_channel_credentials(ca, key, cert)))
    stub.GetInventory(pb.GetInventoryRequest(), timeout=10)
    assert "cn:client has role 'read'" in denied(lambda: stub.Reset(pb.ResetRequest(), timeout=10))
    live.agent.server.reload_certificates()  # SIGHUP: the same files read again, the next handshake uses them
    again = pb_grpc.NodeConfigStub(grpc.secure_channel(tcp, grpc.ssl_channel_credentials(ca, key, cert)))
    again.GetState(pb.GetStateRequest(), timeout=10)


def test_the_socket_group_is_configurable(started: Any, workdir: Path) -> None:
    live = started(listen={"socket_group": "65534", "socket_mode": "0660"})
    stat = (workdir / "agent.sock").stat()
    assert stat.st_gid == 65534 and oct(stat.st_mode & 0o777) == "0o660"
    live.stub.GetState(pb.GetStateRequest(), timeout=10)

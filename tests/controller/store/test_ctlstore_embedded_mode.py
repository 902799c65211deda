"""Which mode `python -m controller` picks, and what the embedded mode refuses before starting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from controller import daemon
from controller.kube.errors import Conflict
from controller.mechanisms import MechanismRegistry
from controller.reconcile.embedded import build_embedded, default_store_path, embedded_config
from controller.store import ControllerLock, SqliteStore


def test_without_a_kubeconfig_the_controller_is_embedded() -> None:
    assert not daemon.kubernetes_mode(None, {})
    assert daemon.kubernetes_mode("/etc/kube.conf", {})
    assert daemon.kubernetes_mode(None, {"KUBECONFIG": "/k"})
    assert daemon.kubernetes_mode(None, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"})


def test_the_default_store_is_the_system_state_dir_for_root_else_the_users() -> None:
    assert default_store_path(0, {}) == Path("/var/lib/mlsysops/controller.db")
    assert default_store_path(1000, {"XDG_STATE_HOME": "/x"}) == Path("/x/mlsysops/controller.db")
    home = default_store_path(1000, {"HOME": "/home/u"})
    assert home == Path("/home/u/.local/state/mlsysops/controller.db")


def test_embedded_defaults_are_the_local_agent_and_the_local_mechanisms() -> None:
    config = embedded_config(namespace="apps")
    assert config.mechanisms == ("local", "nodeagent", "faredge")
    assert [a.target for a in config.agents] == ["unix:/run/mlsysops/nodeagent.sock"]


def test_mechanisms_that_need_kubernetes_are_refused_embedded(db: SqliteStore) -> None:
    with pytest.raises(ValueError, match="kubernetes: needs a Kubernetes API server"):
        build_embedded(embedded_config(mechanisms=("kubernetes", "nodeagent")), db)
    with pytest.raises(ValueError, match="at least one node agent"):
        build_embedded(embedded_config(agents=()), db)


def test_the_daemon_refuses_bad_embedded_flags_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    names = MechanismRegistry.from_entry_points().names()
    assert "local" in names
    store = tmp_path / "ctl.db"
    assert daemon.main(["--store", str(store), "--mechanism", "karmada"]) == 2
    assert "karmada: needs a Kubernetes API server" in capsys.readouterr().err
    assert daemon.main(["--store", str(store), "--kubeconfig", str(tmp_path / "k")]) == 2
    assert "--store: the embedded store is used without a kubeconfig only" in capsys.readouterr().err
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert daemon.main(["--store", str(blocked / "ctl.db")]) == 2
    assert "cannot open" in capsys.readouterr().err


def test_a_second_controller_on_the_same_store_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    path = tmp_path / "ctl.db"
    with ControllerLock(path):
        assert daemon.main(["--store", str(path), "--agent", "unix:/nonexistent.sock"]) == 2
    assert f"another controller (pid {os.getpid()})" in capsys.readouterr().err


def test_the_lock_of_a_killed_controller_is_free_again(tmp_path: Path) -> None:
    path = tmp_path / "ctl.db"
    code = (f"from controller.store import ControllerLock; import time; "
            f"ControllerLock({str(path)!r}).acquire(); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        with pytest.raises(Conflict, match="one controller per store"):
            ControllerLock(path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    ControllerLock(path).acquire().release()

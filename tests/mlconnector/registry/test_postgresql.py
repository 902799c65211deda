"""The registry on a real PostgreSQL (Debian's postgresql, started privately: a fresh cluster in a
temporary directory, a Unix socket only, no TCP port) through SQLAlchemy's psycopg driver, the
shared-deployment store. Register, promote, rollback, and a second registry object loading the
champion, as on SQLite."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import RandomForestRegressor

from mlconnector.contracts import CHAMPION, LATENCY_TARGET, QOS_FEATURES, Lineage, RegistryError, Signature
from mlconnector.registry import MlflowRegistry

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SIGNATURE = Signature(QOS_FEATURES, LATENCY_TARGET)

pytest.importorskip("psycopg", reason="the psycopg driver (PostgreSQL deployments) is not installed")
if not (PG_BIN / "initdb").exists():
    pytest.skip("Debian's postgresql is not installed", allow_module_level=True)
if os.geteuid() != 0:
    pytest.skip("starting a private PostgreSQL as its own user needs root", allow_module_level=True)


def _as_postgres(*argv: str) -> None:
    done = subprocess.run(
        ["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()}")


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A private cluster; yields the SQLAlchemy URI of its database `mlflow`. Its directory is not under
    pytest's tmp_path: that is root's alone, and the server runs as postgres."""
    root = Path(tempfile.mkdtemp(prefix="mlsysops-registry-pg-"))
    data, sock = root / "data", root / "sock"
    data.mkdir()
    sock.mkdir()
    for d in (root, data, sock):
        shutil.chown(d, "postgres", "postgres")
    _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "mlsysops")
    options = f"-k {sock} -c listen_addresses='' -c fsync=off"
    _as_postgres(
        str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-o", options, "-w", "start"
    )
    try:
        _as_postgres(str(PG_BIN / "createdb"), "-h", str(sock), "-U", "mlsysops", "mlflow")
        yield f"postgresql+psycopg://mlsysops@/mlflow?host={sock}"
    finally:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_registry_round_trip_on_postgresql(postgres: str, tmp_path: Path) -> None:
    artifacts = (tmp_path / "artifacts").as_uri()
    registry = MlflowRegistry(postgres, artifacts)
    x = np.array([[q, c, g, r] for q in (0.5, 1.0, 2.0) for c in (1, 2) for g in (0, 1) for r in (50, 100)])
    y = 5 + x[:, 3] / (x[:, 0] * 40) + 3 * x[:, 2]
    forests = [RandomForestRegressor(n_estimators=5, random_state=i).fit(x, y) for i in range(2)]
    lineage = Lineage(
        "dataset:test", 1.0, 2.0, len(x), "ab" * 32
    )  # a 64-character digest: PostgreSQL checks lengths
    for forest in forests:
        registry.register("latency_p95_ms", forest, SIGNATURE, metrics={"mape": 0.1}, lineage=lineage)
    registry.promote("latency_p95_ms", "1")
    registry.promote("latency_p95_ms", "2")
    assert registry.get("latency_p95_ms", "2").lineage == lineage

    again = MlflowRegistry(postgres, artifacts)
    version, estimator = again.load_estimator("latency_p95_ms", CHAMPION)
    assert version.version == "2"
    np.testing.assert_array_equal(estimator.predict(x), forests[1].predict(x))
    assert again.rollback("latency_p95_ms").version == "1"
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback("latency_p95_ms")

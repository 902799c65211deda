"""Two processes on one store file (the REST API and the controller): writes are serialised
with one global resourceVersion, a watch in one process sees the other's writes, and a status
written from a stale read in either is a conflict."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from storedocs import app

from controller import store
from controller.kube import resources
from controller.kube.errors import Conflict
from controller.store import SqliteStore

WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {here!r})
    from controller import store
    from storedocs import app
    db = store.open({path!r})
    for i in range({count}):
        db.apply(app(f"{prefix}{{i}}"))
    db.close()
    """
)


def writer(path: Path, prefix: str, count: int) -> subprocess.Popen[bytes]:
    code = WRITER.format(here=str(Path(__file__).parent), path=str(path), prefix=prefix, count=count)
    return subprocess.Popen([sys.executable, "-c", code])


def test_a_watch_sees_another_processes_writes_in_order(db: SqliteStore, db_path: Path) -> None:
    _, rv = db.list(resources.APP, "default")
    child = writer(db_path, "p", 5)
    seen: list[str] = []
    for event in db.watch(resources.APP, "default", rv, timeout_seconds=30):
        if event.type == "ADDED":
            seen.append(event.object["metadata"]["name"])
        if len(seen) == 5:
            break
    assert child.wait(30) == 0
    assert seen == [f"p{i}" for i in range(5)]


def test_concurrent_writers_in_two_processes_share_one_resource_version_sequence(
    db: SqliteStore, db_path: Path
) -> None:
    children = [writer(db_path, "a", 40), writer(db_path, "b", 40)]
    for child in children:
        assert child.wait(60) == 0
    items, rv = db.list(resources.APP, "default")
    versions = sorted(int(o["metadata"]["resourceVersion"]) for o in items)
    assert len(items) == 80 and versions == list(range(1, 81)) and rv == "80"


def test_a_stale_status_write_conflicts_across_processes(db: SqliteStore, db_path: Path) -> None:
    obj = db.apply(app())
    with store.open(db_path) as other:
        fresh = other.get(resources.APP, "default", "shop")
        fresh["status"] = {"phase": "Deploying"}
        other.replace_status(resources.APP, fresh)
    obj["status"] = {"phase": "Deployed"}
    with pytest.raises(Conflict):
        db.replace_status(resources.APP, obj)
    assert db.get(resources.APP, "default", "shop")["status"] == {"phase": "Deploying"}

"""The embedded store has the Kubernetes API semantics the reconcile loop relies on."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from storedocs import app

from controller import store
from controller.kube import resources
from controller.kube.errors import Conflict, Gone, Invalid, NotFound
from controller.kube.objectapi import ObjectApi, WatchEvent
from controller.store import SqliteStore

APP, NODE = resources.APP, resources.NODE


def deployment(name: str, owner: dict | None = None) -> dict:
    meta: dict = {"name": name, "namespace": "default", "labels": {"app.kubernetes.io/part-of": "shop"}}
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": owner["apiVersion"], "kind": owner["kind"],
                                    "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"]}]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {"replicas": 1}}


def test_the_store_is_an_object_api(db: SqliteStore) -> None:
    assert isinstance(db, ObjectApi)


def test_create_sets_identity_and_every_write_bumps_one_global_resource_version(db: SqliteStore) -> None:
    first = db.apply(app("a"))
    second = db.apply(app("b"))
    meta = first["metadata"]
    assert meta["generation"] == 1 and meta["uid"] and meta["creationTimestamp"]
    assert int(second["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    items, rv = db.list(APP, "default")
    assert [o["metadata"]["name"] for o in items] == ["a", "b"]
    assert rv == second["metadata"]["resourceVersion"]


def test_a_no_op_apply_writes_nothing_and_keeps_the_resource_version(db: SqliteStore) -> None:
    first = db.apply(app())
    again = db.apply(app())
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert db.list(APP)[1] == first["metadata"]["resourceVersion"]


def test_generation_counts_spec_changes_not_label_or_status_changes(db: SqliteStore) -> None:
    obj = db.apply(app())
    relabelled = db.apply(app(labels={"team": "x"}))
    assert relabelled["metadata"]["generation"] == 1
    changed = db.apply(app(image="registry/web:2"))
    assert changed["metadata"]["generation"] == 2
    changed["status"] = {"phase": "Deploying"}
    status = db.replace_status(APP, changed)
    assert status["metadata"]["generation"] == 2
    assert status["metadata"]["uid"] == obj["metadata"]["uid"]


def test_apply_never_touches_status(db: SqliteStore) -> None:
    obj = db.apply(app())
    obj["status"] = {"phase": "Deployed"}
    db.replace_status(APP, obj)
    body = app()
    body["status"] = {"phase": "Failed"}
    after = db.apply(body)
    assert after["status"] == {"phase": "Deployed"}


def test_apply_drops_what_its_manager_no_longer_sets_and_keeps_other_managers_fields(
    db: SqliteStore,
) -> None:
    db.apply(app(labels={"a": "1", "b": "2"}), field_manager="cli")
    db.apply({**app(), "metadata": {"name": "shop", "namespace": "default", "labels": {"c": "3"}}},
             field_manager="controller")
    after = db.apply(app(labels={"a": "1"}), field_manager="cli")
    assert after["metadata"]["labels"] == {"a": "1", "c": "3"}
    managers = {e["manager"] for e in after["metadata"]["managedFields"]}
    assert managers == {"cli", "controller"}


def test_apply_conflicts_with_another_managers_field_unless_forced(db: SqliteStore) -> None:
    db.apply(app(labels={"a": "1"}), field_manager="cli")
    with pytest.raises(Conflict, match=r"metadata.labels.a \(owned by cli\)"):
        db.apply(app(labels={"a": "2"}), field_manager="other", force=False)
    assert db.get(APP, "default", "shop")["metadata"]["labels"] == {"a": "1"}
    forced = db.apply(app(labels={"a": "2"}), field_manager="other", force=True)
    assert forced["metadata"]["labels"] == {"a": "2"}


def test_replace_status_with_a_stale_resource_version_is_a_conflict(db: SqliteStore) -> None:
    obj = db.apply(app())
    stale = dict(obj, status={"phase": "Deploying"})
    db.apply(app(image="registry/web:2"))
    with pytest.raises(Conflict) as caught:
        db.replace_status(APP, stale)
    assert caught.value.code == 409
    assert "status" not in db.get(APP, "default", "shop")


def test_a_no_op_status_write_keeps_the_resource_version(db: SqliteStore) -> None:
    obj = db.apply(app())
    obj["status"] = {"phase": "Deploying"}
    written = db.replace_status(APP, obj)
    again = db.replace_status(APP, written)
    assert again["metadata"]["resourceVersion"] == written["metadata"]["resourceVersion"]


def test_missing_objects_are_not_found(db: SqliteStore) -> None:
    with pytest.raises(NotFound, match=r'mlsysopsapps\.mlsysops\.eu "nope" not found'):
        db.get(APP, "default", "nope")
    with pytest.raises(NotFound):
        db.replace_status(APP, {"metadata": {"name": "nope", "namespace": "default"}, "status": {}})
    assert db.delete(APP, "default", "nope") is False


def test_invalid_objects_are_refused_naming_the_field_and_nothing_is_written(db: SqliteStore) -> None:
    bad = app()
    bad["components"][0]["containers"] = "web"
    with pytest.raises(Invalid, match=r"MLSysOpsApp.components\[0\].containers: expected a list"):
        db.apply(bad)
    with pytest.raises(Invalid, match=r"metadata\.name"):
        db.apply(app("Not_A_Name"))
    with pytest.raises(Invalid, match="not a kind the controller writes"):
        db.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"}})
    obj = db.apply(app())
    obj["status"] = {"phase": 3}
    with pytest.raises(Invalid, match=r"MLSysOpsApp.status.phase: expected a string"):
        db.replace_status(APP, obj)
    assert db.list(APP)[1] == obj["metadata"]["resourceVersion"]
    with pytest.raises(Invalid, match="labelSelector"):
        db.list(APP, "default", "a in b")


def test_label_selectors_filter_lists(db: SqliteStore) -> None:
    db.apply(app("a", labels={"tier": "web", "env": "prod"}))
    db.apply(app("b", labels={"tier": "db"}))
    db.apply(app("c"))

    def names(selector: str) -> list[str]:
        return [o["metadata"]["name"] for o in db.list(APP, "default", selector)[0]]

    assert names("tier=web") == ["a"]
    assert names("tier!=web") == ["b", "c"]
    assert names("tier in (web,db),env") == ["a"]
    assert names("tier notin (web)") == ["b", "c"]
    assert names("!tier") == ["c"]


def test_deleting_an_owner_collects_its_dependents(db: SqliteStore) -> None:
    owner = db.apply(app())
    db.apply(deployment("web", owner))
    db.apply(deployment("free"))
    assert db.delete(APP, "default", "shop") is True
    assert [o["metadata"]["name"] for o in db.list(resources.DEPLOYMENT, "default")[0]] == ["free"]


def test_orphan_propagation_keeps_dependents_without_the_reference(db: SqliteStore) -> None:
    owner = db.apply(app())
    db.apply(deployment("web", owner))
    db.delete(APP, "default", "shop", propagation="Orphan")
    kept = db.get(resources.DEPLOYMENT, "default", "web")
    assert "ownerReferences" not in kept["metadata"]


def test_an_object_whose_owners_are_gone_is_collected_when_written(db: SqliteStore) -> None:
    owner = db.apply(app())
    db.delete(APP, "default", "shop")
    db.apply(deployment("late", owner))
    with pytest.raises(NotFound):
        db.get(resources.DEPLOYMENT, "default", "late")


def collect(events: object, until: int) -> list[WatchEvent]:
    out: list[WatchEvent] = []
    for event in events:  # type: ignore[attr-defined]
        if event.type != "BOOKMARK":
            out.append(event)
        if len(out) == until:
            break
    return out


def test_watch_reports_changes_after_a_version_in_order(db: SqliteStore) -> None:
    _, rv = db.list(APP, "default")
    obj = db.apply(app())
    obj["status"] = {"phase": "Deploying"}
    db.replace_status(APP, obj)
    db.apply(deployment("other"))  # another kind: not in this watch
    db.delete(APP, "default", "shop")
    events = collect(db.watch(APP, "default", rv, timeout_seconds=5), 3)
    assert [e.type for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    versions = [int(e.object["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and len(set(versions)) == 3
    assert events[1].object["status"] == {"phase": "Deploying"}


def test_an_idle_watch_sends_bookmarks_and_ends_at_its_timeout(db: SqliteStore) -> None:
    _, rv = db.list(APP, "default")
    db.apply(deployment("other"))
    events = list(db.watch(APP, "default", rv, timeout_seconds=1))
    assert events and all(e.type == "BOOKMARK" for e in events)
    assert int(events[-1].object["metadata"]["resourceVersion"]) > int(rv)  # stays current


def test_a_watch_wakes_on_a_write_from_another_thread(db: SqliteStore) -> None:
    _, rv = db.list(APP, "default")
    writer = threading.Timer(0.2, lambda: db.apply(app()))
    writer.start()
    try:
        events = collect(db.watch(APP, "default", rv, timeout_seconds=10), 1)
    finally:
        writer.join()
    assert events[0].type == "ADDED"


def test_a_watch_from_a_compacted_version_is_gone(db_path: Path) -> None:
    with store.open(db_path, history=5) as db:
        _, rv = db.list(APP, "default")
        for i in range(10):
            db.apply(app(f"a{i}"))
        with pytest.raises(Gone):
            next(iter(db.watch(APP, "default", rv, timeout_seconds=1)))
        _, fresh = db.list(APP, "default")
        assert all(e.type == "BOOKMARK" for e in db.watch(APP, "default", fresh, timeout_seconds=0))
        db.apply(app("late"))
        db.compact()
        with pytest.raises(Gone):
            next(iter(db.watch(APP, "default", fresh, timeout_seconds=1)))


def test_everything_survives_closing_and_reopening(db_path: Path) -> None:
    with store.open(db_path) as db:
        obj = db.apply(app())
        obj["status"] = {"phase": "Deploying"}
        written = db.replace_status(APP, obj)
        _, rv = db.list(APP, "default")
    with store.open(db_path) as db:
        again = db.get(APP, "default", "shop")
        assert again == written
        assert db.list(APP, "default")[1] == rv
        after = db.apply(app("next"))
        assert int(after["metadata"]["resourceVersion"]) > int(rv)
        events = collect(db.watch(APP, "default", str(int(rv) - 1), timeout_seconds=2), 2)
        assert [e.type for e in events] == ["MODIFIED", "ADDED"]


def test_the_store_file_and_its_directory_are_private(db: SqliteStore, db_path: Path) -> None:
    assert db_path.stat().st_mode & 0o077 == 0
    assert db_path.parent.stat().st_mode & 0o077 == 0


def test_an_unopenable_path_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(Exception, match="cannot open"):
        store.open(tmp_path / "file" / "controller.db")

"""SqliteStore: the embedded object store, an ObjectApi on one SQLite file (WAL mode).

The single-machine controller keeps its MLSysOps objects here instead of in a Kubernetes API
server, with the semantics the reconcile loop depends on (controller.kube.objectapi):

- one global resourceVersion, bumped by every write in the same transaction that writes the
  object and appends the change to the `changes` log; uid, creationTimestamp and generation
  (bumped when anything but metadata and status changes) are set by the store;
- apply is server-side apply per field manager (controller.store.apply); a no-op apply or
  status write changes nothing and keeps the resourceVersion;
- replace_status with a stale resourceVersion raises Conflict;
- delete removes the dependents named by ownerReferences in the same transaction (the
  garbage collector's Background propagation, without its delay; Orphan strips the
  references instead; Foreground acts as Background); an object whose owners are all gone
  is collected when written; finalizers are not honoured (the controller sets none);
- watch reads the change log after a resourceVersion, in order, with BOOKMARKs while idle and
  at the end of each stream; the log keeps the last `history` changes, and a watch from an
  older version raises Gone (the informer lists again);
- MLSysOps objects are validated against their CRD schemas before anything is written
  (controller.store.validation), errors naming the field.

Durability and processes: writes are `BEGIN IMMEDIATE` transactions with synchronous=FULL,
so an acknowledged write survives a crash of the process (and of the machine), and several
processes (the REST API, the controller, the CLI) can open the same file. Watchers in the
process that wrote wake at once; watchers in other processes see a change within
`poll_interval` (0.1 s by default), because they poll the change log.

This module is the only one that imports sqlite3 (an import-linter contract). Open a store
with `controller.store.open(path)`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.kube.errors import Conflict, Gone, Invalid, KubeError, NotFound, Unavailable
from controller.kube.objectapi import FIELD_MANAGER, Obj, WatchEvent
from controller.kube.resources import ALL, Resource, resource_for
from controller.store import selectors, validation
from controller.store.apply import ApplyConflict, applied, clone, same_object, spec_changed

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    uid TEXT NOT NULL UNIQUE, body TEXT NOT NULL,
    PRIMARY KEY (resource, namespace, name));
CREATE TABLE IF NOT EXISTS owner_refs (
    owner_uid TEXT NOT NULL, uid TEXT NOT NULL, PRIMARY KEY (owner_uid, uid));
CREATE INDEX IF NOT EXISTS owner_refs_by_dependent ON owner_refs (uid);
CREATE TABLE IF NOT EXISTS changes (
    rv INTEGER PRIMARY KEY, resource TEXT NOT NULL, namespace TEXT NOT NULL,
    type TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS changes_by_resource ON changes (resource, rv);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters VALUES ('rv', 0), ('compacted', 0);
"""
_BY_KEY = {f"{r.plural}.{r.group}": r for r in ALL}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key(res: Resource) -> str:
    return f"{res.plural}.{res.group}"


def _dump(obj: Obj) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


def _not_found(res: Resource, name: str) -> NotFound:
    what = f"{res.plural}.{res.group}" if res.group else res.plural
    return NotFound(f'{what} "{name}" not found', 404, "NotFound")


@dataclass
class _Tx:
    """One write transaction: the resourceVersion counter and what it changed."""

    db: sqlite3.Connection
    rv: int
    compacted: int
    written: int = 0
    deleted_uids: set[str] = field(default_factory=set)

    def bump(self) -> int:
        self.rv += 1
        self.written += 1
        return self.rv

    def read(self, res: Resource, namespace: str, name: str) -> Obj | None:
        row = self.db.execute("SELECT body FROM objects WHERE resource=? AND namespace=? AND name=?",
                              (_key(res), namespace, name)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, res: Resource, obj: Obj, event: str) -> Obj:
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self.bump())
        body = _dump(obj)
        namespace = meta.get("namespace", "")
        self.db.execute("INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?)",
                        (_key(res), namespace, meta["name"], meta["uid"], body))
        self.db.execute("DELETE FROM owner_refs WHERE uid=?", (meta["uid"],))
        self.db.executemany("INSERT OR IGNORE INTO owner_refs VALUES (?, ?)",
                            [(r["uid"], meta["uid"]) for r in meta.get("ownerReferences") or []])
        self.db.execute("INSERT INTO changes VALUES (?, ?, ?, ?, ?)",
                        (self.rv, _key(res), namespace, event, body))
        return obj

    def remove(self, res: Resource, obj: Obj, propagation: str) -> None:
        meta = obj["metadata"]
        self.db.execute("DELETE FROM objects WHERE uid=?", (meta["uid"],))
        self.db.execute("DELETE FROM owner_refs WHERE uid=?", (meta["uid"],))
        self.deleted_uids.add(meta["uid"])
        gone = clone(obj)
        gone["metadata"]["resourceVersion"] = str(self.bump())
        self.db.execute("INSERT INTO changes VALUES (?, ?, ?, 'DELETED', ?)",
                        (self.rv, _key(res), meta.get("namespace", ""), _dump(gone)))
        for resource, body in self.db.execute(
                "SELECT o.resource, o.body FROM owner_refs r JOIN objects o ON o.uid = r.uid "
                "WHERE r.owner_uid=? ORDER BY o.resource, o.namespace, o.name", (meta["uid"],)).fetchall():
            dependent, dep_res = json.loads(body), _BY_KEY[resource]
            if propagation == "Orphan":
                refs = [r for r in dependent["metadata"]["ownerReferences"] if r.get("uid") != meta["uid"]]
                if refs:
                    dependent["metadata"]["ownerReferences"] = refs
                else:
                    dependent["metadata"].pop("ownerReferences")
                self.put(dep_res, dependent, "MODIFIED")
            else:
                self.remove(dep_res, dependent, propagation)

    def orphaned(self, obj: Obj) -> bool:
        """Owner references, none of whose owners exists: the GC would collect it."""
        refs = obj["metadata"].get("ownerReferences") or []
        if not refs:
            return False
        uids = [r["uid"] for r in refs]
        marks = ",".join("?" * len(uids))
        return not self.db.execute(f"SELECT 1 FROM objects WHERE uid IN ({marks}) LIMIT 1", uids).fetchone()


class SqliteStore:
    """The embedded store on `path` (see the module docstring). Construct, then `connect()`
    (or use controller.store.open); `close()` when done. Safe to share between threads."""

    def __init__(self, path: str | os.PathLike[str], history: int = 10_000, poll_interval: float = 0.1,
                 bookmark_interval: float = 10.0, busy_timeout: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.history = history
        self.poll_interval = poll_interval
        self.bookmark_interval = bookmark_interval
        self.busy_timeout = busy_timeout
        self.clock = clock
        self._db: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._changed = threading.Condition(threading.Lock())
        self._commits = 0  # writes committed through this instance (watchers in it wake on them)

    # ------------------------------------------------------------------ life cycle

    def connect(self) -> SqliteStore:
        """Open (creating it 0600, and its directory 0700, when missing) and check the schema."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            db = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                 check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise Unavailable(f"store {self.path}: cannot open: {exc}") from None
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise Invalid(f"store {self.path}: schema version {version} is newer than this controller's "
                              f"({SCHEMA_VERSION}); upgrade the controller")
            if db.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
                raise Unavailable(f"store {self.path}: the file system does not support WAL mode")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript("BEGIN IMMEDIATE;" + _SCHEMA + f"PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
        except sqlite3.Error as exc:
            db.close()
            raise Unavailable(f"store {self.path}: {exc}") from None
        except KubeError:
            db.close()
            raise
        self._db = db
        return self

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reads

    def get(self, res: Resource, namespace: str, name: str) -> Obj:
        with self._read() as db:
            row = db.execute("SELECT body FROM objects WHERE resource=? AND namespace=? AND name=?",
                             (_key(res), namespace if res.namespaced else "", name)).fetchone()
        if row is None:
            raise _not_found(res, name)
        return json.loads(row[0])

    def list(self, res: Resource, namespace: str = "", label_selector: str = "") -> tuple[list[Obj], str]:
        try:
            wanted = selectors.parse(label_selector)
        except ValueError as exc:
            raise Invalid(str(exc), 400, "BadRequest") from None
        query, args = "SELECT body FROM objects WHERE resource=?", [_key(res)]
        if namespace and res.namespaced:
            query, args = query + " AND namespace=?", [*args, namespace]
        with self._read() as db:
            rows = db.execute(query + " ORDER BY namespace, name", args).fetchall()
            head = db.execute("SELECT value FROM counters WHERE name='rv'").fetchone()[0]
        items = [json.loads(r[0]) for r in rows]
        items = [o for o in items if selectors.matches(wanted, o["metadata"].get("labels"))]
        return items, str(head)

    # ------------------------------------------------------------------ writes

    def apply(self, obj: Mapping[str, Any], field_manager: str = FIELD_MANAGER, force: bool = True) -> Obj:
        try:
            res = resource_for(obj)
        except ValueError as exc:
            raise Invalid(str(exc), 400, "BadRequest") from None
        meta = obj.get("metadata")
        if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str) or not meta["name"]:
            raise Invalid(f"{res.kind}.metadata.name: expected a name (required field is missing)",
                          422, "Invalid")
        if not field_manager:
            raise Invalid("fieldManager is required for apply requests", 400, "BadRequest")
        namespace = meta.get("namespace") or ""
        if res.namespaced and not namespace:
            raise Invalid(f"{res.kind}.metadata.namespace: expected a namespace (required field is missing)",
                          422, "Invalid")
        with self._write() as tx:
            old = tx.read(res, namespace if res.namespaced else "", meta["name"])
            try:
                new = applied(old, obj, field_manager, force, now())
            except ApplyConflict as exc:
                raise Conflict(str(exc), 409, "Conflict") from None
            new["apiVersion"], new["kind"] = res.api_version, res.kind
            nmeta = new["metadata"]
            if res.namespaced:
                nmeta["namespace"] = namespace
            else:
                nmeta.pop("namespace", None)
            if old is None:
                nmeta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
            else:
                ometa = old["metadata"]
                for key in ("uid", "creationTimestamp", "resourceVersion"):
                    nmeta[key] = ometa[key]
                nmeta["generation"] = ometa.get("generation", 1) + spec_changed(old, new)
            self._validate(res, new)
            if old is not None and same_object(old, new):
                return old
            if tx.orphaned(new):  # written with owners that are all gone: collected at once
                if old is not None:
                    tx.remove(res, old, "Background")
                return new
            return clone(tx.put(res, new, "ADDED" if old is None else "MODIFIED"))

    def replace_status(self, res: Resource, obj: Obj) -> Obj:
        meta = obj.get("metadata") or {}
        name, namespace = meta.get("name", ""), meta.get("namespace", "") if res.namespaced else ""
        with self._write() as tx:
            old = tx.read(res, namespace, name)
            if old is None:
                raise _not_found(res, name)
            sent = meta.get("resourceVersion")
            if sent and sent != old["metadata"]["resourceVersion"]:
                raise Conflict(f'Operation cannot be fulfilled on {_key(res)} "{name}": the object has been '
                               "modified; please apply your changes to the latest version and try again",
                               409, "Conflict")
            new = clone(old)
            if obj.get("status") is None:
                new.pop("status", None)
            else:
                new["status"] = clone(obj["status"])
            if new == old:
                return old
            self._validate(res, new)
            return clone(tx.put(res, new, "MODIFIED"))

    def delete(self, res: Resource, namespace: str, name: str, propagation: str = "Background") -> bool:
        if propagation not in ("Background", "Foreground", "Orphan"):
            raise Invalid("propagationPolicy: expected Background, Foreground or Orphan "
                          f"(got {propagation!r})", 400, "BadRequest")
        with self._write() as tx:
            old = tx.read(res, namespace if res.namespaced else "", name)
            if old is None:
                return False
            tx.remove(res, old, propagation)
        return True

    # ------------------------------------------------------------------ watch

    def watch(self, res: Resource, namespace: str, resource_version: str,
              timeout_seconds: int = 60) -> Iterator[WatchEvent]:
        deadline = self.clock() + timeout_seconds
        cursor = self._start(resource_version)
        idle_since = self.clock()
        query, args = "SELECT rv, type, body FROM changes WHERE resource=? AND rv>?", [_key(res)]
        if namespace and res.namespaced:
            query, args = query + " AND namespace=?", [*args, namespace]
        query += " ORDER BY rv LIMIT 500"
        while True:
            with self._changed:
                commits = self._commits  # a commit after this point wakes the wait below
            with self._read() as db:
                compacted, head = self._counters(db)
                if cursor < compacted:
                    raise Gone(f"too old resource version: {cursor} ({compacted})", 410, "Expired")
                rows = db.execute(query, [args[0], cursor, *args[1:]]).fetchall()
            for rv, kind, body in rows:
                cursor = rv
                yield WatchEvent(kind, json.loads(body))
            if rows:
                idle_since = self.clock()
                continue
            cursor = max(cursor, head)  # nothing for this watch up to head: an idle watch stays current
            left = deadline - self.clock()
            if left <= 0 or self.clock() - idle_since >= self.bookmark_interval:
                yield WatchEvent("BOOKMARK", self._bookmark(res, cursor))
                idle_since = self.clock()
                if left <= 0:
                    return
            with self._changed:
                if self._commits == commits:
                    self._changed.wait(min(self.poll_interval, max(left, 0.0)))

    def compact(self) -> None:
        """Forget the whole change log (as etcd compaction does): older watches get Gone."""
        with self._write() as tx:
            tx.db.execute("DELETE FROM changes")
            tx.compacted = tx.rv

    # ------------------------------------------------------------------ internals

    def _start(self, resource_version: str) -> int:
        if not resource_version:
            with self._read() as db:
                return self._counters(db)[1]
        try:
            return int(resource_version)
        except ValueError:
            raise Invalid(f"resourceVersion: expected a number (got {resource_version!r})", 400,
                          "BadRequest") from None

    @staticmethod
    def _bookmark(res: Resource, rv: int) -> Obj:
        return {"apiVersion": res.api_version, "kind": res.kind, "metadata": {"resourceVersion": str(rv)}}

    @staticmethod
    def _counters(db: sqlite3.Connection) -> tuple[int, int]:
        values = dict(db.execute("SELECT name, value FROM counters").fetchall())
        return values["compacted"], values["rv"]

    @staticmethod
    def _validate(res: Resource, obj: Obj) -> None:
        found = validation.problems(res, obj)
        if found:
            name = obj.get("metadata", {}).get("name")
            raise Invalid(f"{res.kind} {name!r} is invalid: " + "; ".join(found), 422, "Invalid")

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise Unavailable(f"store {self.path}: not open (call connect() or use controller.store.open)")
        return self._db

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One snapshot: every statement inside sees the same committed state."""
        with self._lock:
            db = self._connection()
            try:
                db.execute("BEGIN")
                try:
                    yield db
                finally:
                    db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise Unavailable(f"store {self.path}: {exc}") from None

    @contextmanager
    def _write(self) -> Iterator[_Tx]:
        """One write transaction (taking the file's write lock first, so writers in other
        processes queue behind it); the counters are updated and the log compacted in it."""
        with self._lock:
            db = self._connection()
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise Unavailable(f"store {self.path}: {exc}") from None
            try:
                compacted, head = self._counters(db)
                tx = _Tx(db, head, compacted)
                yield tx
                if tx.rv - tx.compacted > self.history + self.history // 10:  # in batches, not per write
                    tx.compacted = tx.rv - self.history
                if tx.written or tx.compacted != compacted:
                    db.execute("DELETE FROM changes WHERE rv<=?", (tx.compacted,))
                    db.executemany("UPDATE counters SET value=? WHERE name=?",
                                   [(tx.rv, "rv"), (tx.compacted, "compacted")])
                db.execute("COMMIT")
            except BaseException as exc:
                with suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise Unavailable(f"store {self.path}: {exc}") from None
                raise
        if tx.written:
            with self._changed:
                self._commits += 1
                self._changed.notify_all()

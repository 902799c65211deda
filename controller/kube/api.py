"""KubeApi: the typed adapter over the kubernetes client that the controller talks through.

Objects are plain dicts in Kubernetes form (what the mechanisms render); every call returns
dicts and raises only controller.kube.errors. Writes are server-side apply with a field
manager, so the controller states the fields it owns and repeated applies are no-ops; status
goes through the status subresource with optimistic concurrency (PUT with resourceVersion),
so a concurrent writer produces a Conflict instead of being overwritten.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from kubernetes import client, watch

from controller.kube.errors import KubeError, NotFound, from_status, translate
from controller.kube.objectapi import FIELD_MANAGER, Obj, ObjectApi, WatchEvent
from controller.kube.resources import Resource, resource_for

__all__ = ["FIELD_MANAGER", "KubeApi", "Obj", "ObjectApi", "WatchEvent"]

Query = list[tuple[str, str]]  # (name, value) query parameters (named here: KubeApi.list shadows `list`)

APPLY = "application/apply-patch+yaml"


class KubeApi:
    """Requests to one API server (an ObjectApi). `request_timeout` bounds every non-watch call (seconds)."""

    def __init__(self, api_client: client.ApiClient, request_timeout: float = 10.0,
                 user_agent: str | None = None) -> None:
        if user_agent is not None:  # how the API server's audit log names the caller
            api_client.user_agent = user_agent
        self.api_client = api_client
        self.request_timeout = request_timeout

    # ------------------------------------------------------------------ reads

    def get(self, res: Resource, namespace: str, name: str) -> Obj:
        return self._call("GET", res.path(namespace, name))

    def list(self, res: Resource, namespace: str = "", label_selector: str = "") -> tuple[list[Obj], str]:
        """Items and the list's resourceVersion (where a watch continues from)."""
        query = [("labelSelector", label_selector)] if label_selector else []
        result = self._call("GET", res.path(namespace), query)
        return result.get("items", []), result.get("metadata", {}).get("resourceVersion", "")

    # ------------------------------------------------------------------ writes

    def apply(self, obj: Mapping[str, Any], field_manager: str = FIELD_MANAGER, force: bool = True) -> Obj:
        """Server-side apply of a whole object (the fields this manager owns)."""
        res = resource_for(obj)
        meta = obj.get("metadata", {})
        query = [("fieldManager", field_manager), ("force", "true" if force else "false")]
        return self._call("PATCH", res.path(meta.get("namespace", ""), meta["name"]), query, obj, APPLY)

    def create(self, obj: Mapping[str, Any]) -> Obj:
        """POST a new object; Conflict when one of that name exists (a Lease taken first)."""
        res = resource_for(obj)
        return self._call("POST", res.path(obj.get("metadata", {}).get("namespace", "")), [], obj)

    def replace(self, obj: Obj) -> Obj:
        """PUT the whole object; Conflict when obj's resourceVersion is stale (compare-and-swap,
        what leader election needs: server-side apply would let two holders both win)."""
        res = resource_for(obj)
        meta = obj["metadata"]
        return self._call("PUT", res.path(meta.get("namespace", ""), meta["name"]), [], obj)

    def replace_status(self, res: Resource, obj: Obj) -> Obj:
        """PUT the status subresource; Conflict when obj's resourceVersion is stale."""
        meta = obj["metadata"]
        return self._call("PUT", res.path(meta.get("namespace", ""), meta["name"], "status"), [], obj)

    def delete(self, res: Resource, namespace: str, name: str, propagation: str = "Background") -> bool:
        """Delete (idempotent): False when it was already gone."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        try:
            self._call("DELETE", res.path(namespace, name), [], body)
        except NotFound:
            return False
        return True

    # ------------------------------------------------------------------ watch

    def watch(self, res: Resource, namespace: str, resource_version: str,
              timeout_seconds: int = 60) -> Iterator[WatchEvent]:
        """Events after resource_version until the server ends the stream (kubernetes.watch).

        Any kind, core group included (the controller watches its Services too). Raises Gone
        when resource_version was compacted (the caller relists) and Unavailable when the
        stream breaks."""
        watcher = watch.Watch()
        try:
            for event in watcher.stream(self._watch_stream, res.path(namespace),
                                        resource_version=resource_version, timeout_seconds=timeout_seconds):
                yield WatchEvent(event["type"], event["object"])
        except Exception as exc:
            raise translate(exc) from None
        finally:
            watcher.stop()

    def _watch_stream(self, path: str, *, resource_version: str, timeout_seconds: int, watch: bool,
                      _preload_content: bool) -> Any:
        """One watch request, driven by kubernetes.watch.Watch (which passes `watch` and
        `_preload_content`, and calls again from the last resourceVersion seen): the streaming
        HTTP response of the kind's own path, its events left as dicts."""
        query = [("watch", "true"), ("resourceVersion", resource_version),
                 ("timeoutSeconds", str(timeout_seconds)), ("allowWatchBookmarks", "true")]
        params = self.api_client.param_serialize("GET", path, query_params=query,
                                                 header_params={"Accept": "application/json"},
                                                 auth_settings=["BearerToken"])
        response = self.api_client.call_api(*params)
        if not 200 <= response.status <= 299:  # refused before streaming (403, 404): say why
            raise from_status(response.status, response.read())
        return response.response

    # ------------------------------------------------------------------ transport

    def _call(self, method: str, path: str, query: Query | None = None,
              body: Mapping[str, Any] | None = None, content_type: str = "application/json") -> Obj:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            params = self.api_client.param_serialize(method, path, query_params=query or [],
                                                     header_params=headers, body=body,
                                                     auth_settings=["BearerToken"])
            response = self.api_client.call_api(*params, _request_timeout=self.request_timeout)
            data = response.read()
        except KubeError:
            raise
        except Exception as exc:
            raise translate(exc) from None
        if not 200 <= response.status <= 299:
            raise from_status(response.status, data)
        return json.loads(data) if data else {}


_SATISFIES: type[ObjectApi] = KubeApi  # mypy checks here that KubeApi implements the protocol

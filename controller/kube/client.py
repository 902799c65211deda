"""Construction of the kubernetes ApiClient: from a kubeconfig, in-cluster, or a bare host."""

from __future__ import annotations

import os

from kubernetes import client, config
from kubernetes.client import ApiClient

from controller.kube.errors import Forbidden

__all__ = ["ApiClient", "api_client_for_host", "load_api_client"]


def load_api_client(kubeconfig: str | None) -> client.ApiClient:
    """An ApiClient for `kubeconfig`; with None, the in-cluster service account if running in a
    pod, else $KUBECONFIG / ~/.kube/config (as kubectl does)."""
    configuration = client.Configuration()
    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    except (config.ConfigException, OSError) as exc:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise Forbidden(f"kubeconfig {where}: cannot load: {exc}") from None
    return client.ApiClient(configuration)


def api_client_for_host(host: str, token: str | None = None) -> client.ApiClient:
    """An ApiClient for a plain URL (the test stand-in, `kubectl proxy`), without retries:
    the reconcile loop owns retrying and backoff."""
    configuration = client.Configuration()
    configuration.host = host.rstrip("/")
    configuration.retries = False
    if token:
        configuration.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(configuration)

"""The API daemon's composition root: config in, store + ports + app (+ controller) wired, served.

    serve(ServeConfig(host="127.0.0.1", port=8000, tokens_file=..., store_path=...))

Listener rules, checked before anything is opened: a listener on anything but loopback
needs TLS (`tls_cert` + `tls_key`), and a client CA (`tls_client_ca`, mTLS: clients must show
a certificate it signed) needs TLS too. A refused configuration raises ListenerRefused with the
reason; the daemon exits 2 with it.

The store is the Kubernetes API when a kubeconfig is given, else the embedded SQLite store.
With `run_controller` the controller runs in this process over the same store, with the
policy chain PolicyControl keeps: a policy or mode change restarts it with the new chain
(reconciles are idempotent, so nothing is lost).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import signal
import socket
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import FastAPI

from controller.api.app import create_app
from controller.api.bridge import BridgeDevices
from controller.api.context import DEFAULT_MAX_BODY, ApiContext, ApiSettings
from controller.api.nodeagents import AgentStates
from controller.api.policies import RegistryPolicyControl
from controller.api.ports import PerformanceSource
from controller.api.tokens import TokenStore, role_rank
from controller.kube.objectapi import ObjectApi
from controller.policies import PolicyRegistry
from controller.reconcile.bootstrap import DEFAULT_MECHANISMS, Config, build
from controller.reconcile.embedded import build_embedded, embedded_config
from controller.reconcile.leader import DEFAULT_LEASE, Ended, LeaderElector, LeaseSettings
from controller.reconcile.loop import Controller
from controller.reconcile.metrics import ControllerMetrics
from controller.reconcile.nodesync import AgentTarget
from mlconnector.contracts import ModelRegistry
from mlsysops.nodeapi.target import DEFAULT_TARGET

if TYPE_CHECKING:  # the telemetry adapters load only when a Prometheus is configured
    from controller.telemetry.prometheus import PrometheusProcess

log = logging.getLogger(__name__)

STATE_DIR = Path("/var/lib/mlsysops")
DEFAULT_TOKENS = STATE_DIR / "api" / "tokens.json"


class ListenerRefused(ValueError):
    """A listener configuration the daemon will not start with (the message says why)."""


LEARNED = "qosLearnedPlacer"
# The daemon's chain: heuristic mode (the default) plans with DEFAULT_CHAIN's two heuristics; ML
# mode (PUT /api/v1/policies/mode) puts the learning policy ahead of the placer it falls back to.
API_POLICIES = ("staticPlacedComponents", LEARNED, "constraintAwarePlacer")


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    tokens_file: Path = DEFAULT_TOKENS
    allow_anonymous_loopback: str | None = None  # a role, or None (off)
    max_body_bytes: int = DEFAULT_MAX_BODY
    namespace: str = "default"
    kubeconfig: str | None = None
    store_path: Path = STATE_DIR / "controller.db"
    run_controller: bool = False
    # With a kubeconfig: the in-process controller reconciles only while holding this Lease
    # (controller.reconcile.leader), so a rollout's new pod waits as a standby.
    leader_elect: bool = False
    leader_elect_lease: str = DEFAULT_LEASE
    leader_elect_lease_duration: float = 15.0
    leader_elect_renew_deadline: float = 10.0
    leader_elect_retry_period: float = 2.0
    # Empty: the mode's defaults (kubernetes + nodeagent with a kubeconfig; local, nodeagent,
    # faredge and the local node agent in embedded mode, see controller.reconcile.embedded).
    mechanisms: tuple[str, ...] = ()
    policies: tuple[str, ...] = API_POLICIES
    agents: tuple[AgentTarget, ...] = ()
    prometheus_url: str | None = None  # where the performance routes read metrics
    prometheus_dir: Path | None = None  # or: run a private Prometheus there, scraping the agents
    bridge_socket: Path | None = None
    policy_state: Path = STATE_DIR / "api" / "policies.json"
    # The model registry: a directory (an embedded MLflow registry: SQLite + artifacts in it) or an
    # MLflow tracking URI (postgresql://..., http://...). Needs the ml extra; without it the
    # /api/v1/models routes answer 503.
    model_registry: str = str(STATE_DIR / "api" / "models")
    model_datasets: Path | None = None  # where POST /models/{name}/train may read datasets
    model_server_image: str = ApiSettings.model_server_image
    # The ML connector's options (controller.api.models.models_config): more Prometheus URLs
    # training may read, and `retrain`, the retraining loop run with the server.
    ml: dict[str, Any] = field(default_factory=dict)
    log_level: str = "info"
    # More controller.reconcile.bootstrap.Config fields for the in-process controller
    # (workers, resync_period, watch_timeout, ...), by name.
    controller_options: dict[str, Any] = field(default_factory=dict)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_listener(cfg: ServeConfig) -> None:
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        raise ListenerRefused("TLS needs both tls_cert and tls_key")
    for name in ("tls_cert", "tls_key", "tls_client_ca"):
        path = getattr(cfg, name)
        if path is not None and not Path(path).is_file():
            raise ListenerRefused(f"{name} {path}: no such file")
    if cfg.tls_client_ca is not None and cfg.tls_cert is None:
        raise ListenerRefused("tls_client_ca (mTLS) needs TLS: set tls_cert and tls_key")
    if cfg.tls_cert is None and not is_loopback(cfg.host):
        raise ListenerRefused(
            f"listening on {cfg.host} (not loopback) needs TLS: set tls_cert and tls_key, "
            "or listen on 127.0.0.1 / ::1"
        )
    if cfg.prometheus_url is not None and cfg.prometheus_dir is not None:
        raise ListenerRefused("prometheus_url and prometheus_dir: give one (a Prometheus to read, or to run)")
    if cfg.allow_anonymous_loopback is not None:
        try:
            role_rank(cfg.allow_anonymous_loopback)
        except ValueError as exc:
            raise ListenerRefused(f"allow_anonymous_loopback: {exc}") from None
    if cfg.leader_elect:
        if not (cfg.run_controller and cfg.kubeconfig):
            raise ListenerRefused("leader_elect: needs run_controller and a kubeconfig (on the embedded "
                                  "store, the store's lock already lets one controller run)")
        try:
            lease_settings(cfg)
        except ValueError as exc:
            raise ListenerRefused(f"leader_elect: {exc}") from None


def lease_settings(cfg: ServeConfig) -> LeaseSettings:
    """The Lease candidate: the host name (the pod's) and a random suffix, as client-go's."""
    return LeaseSettings(
        f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}", cfg.leader_elect_lease, cfg.namespace,
        cfg.leader_elect_lease_duration, cfg.leader_elect_renew_deadline, cfg.leader_elect_retry_period,
    )


def open_store(cfg: ServeConfig) -> ObjectApi:
    """The Kubernetes API for a kubeconfig, else the embedded store (controller.store)."""
    if cfg.kubeconfig:
        from controller.kube.api import KubeApi
        from controller.kube.client import load_api_client

        return KubeApi(load_api_client(cfg.kubeconfig), user_agent="mlsysops-api")
    from controller import store as embedded

    store: ObjectApi = embedded.open(cfg.store_path)
    return store


def is_kubernetes(store: ObjectApi) -> bool:
    """A Kubernetes/Karmada API server (else the embedded store)."""
    from controller.kube.api import KubeApi

    return isinstance(store, KubeApi)


class ControllerRunner:
    """The in-process controller: started, restarted with a new policy chain, stopped. Every
    controller it builds feeds the one `metrics` (the /metrics route's), so a restart keeps the
    counters. With an elector it runs only while this process holds the Lease: a candidate
    thread campaigns, builds the controller once leading, stops it when leading ends (a lost
    Lease makes it a candidate again), and a policy change restarts it only where it leads.
    Its controllers plan with `policies`, the registry the policies routes list (the learning
    policy reading the champions of the API's own model registry); the installed entry points
    when None."""

    def __init__(self, cfg: ServeConfig, store: ObjectApi, metrics: ControllerMetrics,
                 elector: LeaderElector | None = None, policies: PolicyRegistry | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.metrics = metrics
        self.elector = elector
        self.policies = policies
        self._lock = threading.Lock()
        self._running: tuple[Controller, threading.Event] | None = None
        self._chain: tuple[str, ...] = cfg.policies
        self._campaign: tuple[threading.Thread, threading.Event] | None = None

    def start(self, chain: tuple[str, ...]) -> None:
        with self._lock:
            self._chain = chain
            if self.elector is None or self._running is not None:
                self._restart_locked()
            elif self._campaign is None:
                stop = threading.Event()
                thread = threading.Thread(target=self._campaign_loop, args=(stop,), name="leader-election",
                                          daemon=True)
                self._campaign = (thread, stop)
                thread.start()

    def _restart_locked(self) -> None:
        self._stop_locked()
        controller = self._build(self._chain)
        stop = threading.Event()
        controller.start(stop)
        self._running = (controller, stop)
        log.info("controller running with policies %s", ", ".join(self._chain))

    def _campaign_loop(self, stop: threading.Event) -> None:
        assert self.elector is not None
        while not stop.is_set():
            if self.elector.run(stop, self._lead, self._follow) is Ended.STOPPED:
                return
            log.error("the controller stopped: its Lease was lost; campaigning again")

    def _lead(self) -> None:
        with self._lock:
            self._restart_locked()

    def _follow(self) -> None:
        with self._lock:
            self._stop_locked()

    def _build(self, chain: tuple[str, ...]) -> Controller:
        cfg = self.cfg
        values: dict[str, Any] = {"namespace": cfg.namespace, "policies": chain, **cfg.controller_options}
        if cfg.mechanisms:
            values["mechanisms"] = cfg.mechanisms
        if cfg.agents:
            values["agents"] = cfg.agents
        if cfg.bridge_socket:
            values["bridge_socket"] = cfg.bridge_socket
        if is_kubernetes(self.store):
            config = Config(**{"mechanisms": DEFAULT_MECHANISMS, **values})
            return build(config, self.store, registry=self.policies, metrics=self.metrics)
        return build_embedded(
            embedded_config(**values), self.store, registry=self.policies, metrics=self.metrics
        )

    def stop(self) -> None:
        """Stop campaigning (a leader releases its Lease) and the controller."""
        campaign, self._campaign = self._campaign, None
        if campaign is not None:
            campaign[1].set()
            campaign[0].join(timeout=30)
        with self._lock:
            self._stop_locked()

    def state(self) -> str:
        """running, standby (campaigning for the Lease) or stopped: what /manage/ping reports."""
        if self._running is not None:
            return "running"
        return "standby" if self._campaign is not None else "stopped"

    def _stop_locked(self) -> None:
        if self._running is not None:
            controller, stop = self._running
            stop.set()
            controller.shutdown()
            self._running = None


def elector_for(cfg: ServeConfig, store: ObjectApi) -> LeaderElector | None:
    from controller.kube.api import KubeApi

    if not cfg.leader_elect or not isinstance(store, KubeApi):
        return None
    return LeaderElector(store, lease_settings(cfg))



def wire(
    cfg: ServeConfig, store: ObjectApi, performance: PerformanceSource | None = None
) -> tuple[FastAPI, ControllerRunner | None, RegistryPolicyControl]:
    models = model_registry(cfg.model_registry)
    installed = policy_registry(models)
    runner = None
    if cfg.run_controller:
        runner = ControllerRunner(cfg, store, ControllerMetrics(), elector_for(cfg, store), installed)
    policies = RegistryPolicyControl(
        installed,
        cfg.policies,
        cfg.policy_state,
        on_change=runner.start if runner is not None else None,
    )
    ctx = ApiContext(
        store=store,
        tokens=TokenStore(cfg.tokens_file),
        settings=ApiSettings(
            namespace=cfg.namespace,
            max_body_bytes=cfg.max_body_bytes,
            anonymous_loopback_role=cfg.allow_anonymous_loopback,
            local_workloads=not is_kubernetes(store),
            model_datasets=cfg.model_datasets,
            model_registry_uri=cfg.model_registry,
            model_server_image=cfg.model_server_image,
        ),
        models=models,
        performance=performance,
        devices=BridgeDevices(cfg.bridge_socket) if cfg.bridge_socket else None,
        node_states=None if is_kubernetes(store) else AgentStates(),  # agents' sockets: one machine
        policies=policies,
        controller_state=runner.state if runner is not None else None,
        metrics=runner.metrics if runner is not None else None,
    )
    return create_app(ctx), runner, policies


def policy_registry(models: ModelRegistry | None) -> PolicyRegistry:
    """The installed policies, the learning one reading its champions from `models` (the
    registry the models routes manage, so a promote there changes what the policy predicts
    with); without a registry it falls back to the heuristic, saying so in every decision."""
    installed = PolicyRegistry.from_entry_points()
    if models is None or LEARNED not in installed:
        return installed
    from controller.policies.learned import QosLearnedPlacer
    from mlconnector.registry import ChampionPredictors

    champions = ChampionPredictors(models)
    factories = {name: installed.factory(name) for name in installed.names()}
    factories[LEARNED] = lambda: QosLearnedPlacer(champions)
    return PolicyRegistry(factories)


def model_registry(uri: str) -> ModelRegistry | None:
    """The registry the models routes work on (nothing is opened until a route uses it), or None
    when the ml extra is not installed."""
    import importlib.util

    if importlib.util.find_spec("mlflow") is None:
        log.info("no model registry: the ml extra is not installed (pip install 'mlsysops[ml]')")
        return None
    from mlconnector.serve import registry_from_uri

    return registry_from_uri(uri)


def ml_config(cfg: ServeConfig, app: FastAPI, prometheus_url: str | None) -> Any:
    """The models routes' Prometheus URLs and the retraining loop (built, not started) from `ml`."""
    from controller.api.models import models_config

    try:
        return models_config(cfg.ml, app.state.context.models, prometheus_url)
    except ValueError as exc:
        raise ListenerRefused(str(exc)) from None


def uvicorn_config(cfg: ServeConfig, app: FastAPI) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=cfg.host,
        port=cfg.port,
        log_level=cfg.log_level,
        access_log=False,
        ssl_certfile=str(cfg.tls_cert) if cfg.tls_cert else None,
        ssl_keyfile=str(cfg.tls_key) if cfg.tls_key else None,
        ssl_ca_certs=str(cfg.tls_client_ca) if cfg.tls_client_ca else None,
        ssl_cert_reqs=ssl.CERT_REQUIRED if cfg.tls_client_ca else ssl.CERT_NONE,
    )


def performance_source(
    cfg: ServeConfig, store: ObjectApi, prometheus: PrometheusProcess | None = None
) -> PerformanceSource | None:
    url = prometheus.url if prometheus is not None else cfg.prometheus_url
    if url is None:
        return None
    from controller.telemetry.performance import PrometheusPerformance
    from controller.telemetry.prometheus import PrometheusHttp

    return PrometheusPerformance(PrometheusHttp(url), store)


def private_prometheus(cfg: ServeConfig) -> PrometheusProcess | None:
    """With `prometheus_dir`: a private Prometheus (state in that directory, a free loopback
    port) scraping every agent's /metrics, as each agent reports it; an agent that cannot be
    scraped is logged, not fatal. ListenerRefused when it cannot start."""
    if cfg.prometheus_dir is None:
        return None
    from controller.telemetry.prometheus import PrometheusProcess, PrometheusSettings
    from controller.telemetry.targets import start_for_agents

    agents = [a.target for a in cfg.agents] or ([] if cfg.kubeconfig else [DEFAULT_TARGET])
    process = PrometheusProcess(PrometheusSettings(cfg.prometheus_dir))
    try:
        found = start_for_agents(process, agents)
    except RuntimeError as exc:
        raise ListenerRefused(f"prometheus_dir: {exc}") from exc
    for why in found.skipped:
        log.warning("prometheus: not scraping %s", why)
    log.info("prometheus %s scraping %d agent(s)", process.url, len(found.targets))
    return process


def _exit_on_sigterm() -> None:
    """uvicorn re-raises the SIGTERM it shut down on once it is done: with the default action
    that kills the process before serve()'s clean-up (controller, Prometheus, store) runs. A
    SystemExit unwinds through it instead."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_exit)


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve(cfg: ServeConfig, performance: PerformanceSource | None = None) -> None:
    """Check, wire, run until SIGINT/SIGTERM (uvicorn handles them), stop the controller."""
    check_listener(cfg)
    store = open_store(cfg)
    prometheus: PrometheusProcess | None = None
    try:
        prometheus = None if performance is not None else private_prometheus(cfg)
        performance = performance or performance_source(cfg, store, prometheus)
        app, runner, policies = wire(cfg, store, performance)
        app.state.ml = ml_config(cfg, app, prometheus.url if prometheus is not None else cfg.prometheus_url)
        with contextlib.ExitStack() as held:
            if app.state.ml.runner is not None:
                app.state.ml.runner.start()
                held.callback(app.state.ml.runner.stop)
            if runner is not None and not cfg.kubeconfig:  # one controller per embedded store
                from controller.store import ControllerLock

                held.enter_context(ControllerLock(cfg.store_path))
            if runner is not None:
                runner.start(policies.chain())
            try:
                _exit_on_sigterm()
                uvicorn.Server(uvicorn_config(cfg, app)).run()
            finally:
                if runner is not None:
                    runner.stop()
    finally:
        if prometheus is not None:
            prometheus.stop()
        close = getattr(store, "close", None)
        if callable(close):
            close()

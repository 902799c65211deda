"""The northbound REST API daemon behind `mlsysops-api` / `python -m controller.api`.

    mlsysops-api --config /etc/mlsysops/api.yaml
    mlsysops-api --listen 127.0.0.1:8000 --store /var/lib/mlsysops/controller.db --run-controller

Options come from the YAML config file (keys as the long flags, with underscores: `listen`,
`tls_cert`, `allow_anonymous_loopback`, ...), then the flags override them. Exit status 2:
a configuration the daemon refuses (the message says why: e.g. a non-loopback listener
without TLS).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from controller.api.server import ListenerRefused, ServeConfig, serve
from controller.daemon import parse_agent
from controller.kube.errors import Conflict

_PATHS = {
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "tokens_file",
    "store_path",
    "bridge_socket",
    "policy_state",
    "prometheus_dir",
    "model_datasets",
}
_TUPLES = {"mechanisms", "policies"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlsysops-api", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--config", type=Path, help="YAML config file (flags override it)")
    p.add_argument("--listen", help="HOST:PORT (default 127.0.0.1:8000; non-loopback needs TLS)")
    p.add_argument("--tls-cert", type=Path)
    p.add_argument("--tls-key", type=Path)
    p.add_argument("--tls-client-ca", type=Path, help="require client certificates signed by this CA (mTLS)")
    p.add_argument("--tokens-file", type=Path, help="token file (default /var/lib/mlsysops/api/tokens.json)")
    p.add_argument(
        "--allow-anonymous-loopback",
        metavar="ROLE",
        choices=("viewer", "operator", "admin"),
        help="grant ROLE to clients without a token on 127.0.0.1/::1 (off by default)",
    )
    p.add_argument("--max-body-bytes", type=int)
    p.add_argument("--namespace")
    p.add_argument("--kubeconfig", help="drive a Kubernetes/Karmada API (default: the embedded store)")
    p.add_argument("--store", dest="store_path", type=Path, help="embedded store file")
    p.add_argument(
        "--run-controller", action="store_true", default=None, help="run the controller in-process"
    )
    p.add_argument("--mechanism", action="append", dest="mechanisms")
    p.add_argument("--policy", action="append", dest="policies")
    p.add_argument("--agent", action="append", dest="agents", type=parse_agent, help="TARGET[=LAYER]")
    p.add_argument("--policy-state", type=Path, help="where policy and mode changes are kept")
    p.add_argument("--prometheus", dest="prometheus_url", metavar="URL", help="Prometheus for /performance")
    p.add_argument(
        "--prometheus-dir", type=Path, metavar="DIR", help="run a Prometheus (state in DIR) scraping agents"
    )
    p.add_argument("--bridge-socket", type=Path, help="the far-edge bridge's control socket")
    p.add_argument(
        "--leader-elect", action="store_true", default=None,
        help="with a kubeconfig: the in-process controller reconciles only while holding the Lease",
    )
    p.add_argument(
        "--model-registry", metavar="URI",
        help="model registry: a directory (embedded MLflow) or an MLflow tracking URI "
        "(default /var/lib/mlsysops/api/models)",
    )
    p.add_argument(
        "--model-datasets", type=Path, metavar="DIR", help="where model training may read datasets"
    )
    p.add_argument("--model-server-image", metavar="IMAGE", help="the image /ml/deploy_ml runs models in")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    return p


def load_config(path: Path | None, args: argparse.Namespace) -> ServeConfig:
    """File values, then flags; unknown keys in the file are refused by name."""
    values: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ListenerRefused(f"{path}: expected a mapping of options")
        values.update(loaded)
    values.update({k: v for k, v in vars(args).items() if v is not None and k != "config"})
    listen = values.pop("listen", None)
    if listen is not None:
        host, sep, port = str(listen).rpartition(":")
        if not sep or not port.isdigit():
            raise ListenerRefused(f"listen {listen!r}: expected HOST:PORT")
        values["host"], values["port"] = host.strip("[]"), int(port)
    known = {f.name for f in fields(ServeConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ListenerRefused(f"unknown option(s) {', '.join(unknown)} (expected {', '.join(sorted(known))})")
    if values.get("allow_anonymous_loopback") is False:
        values["allow_anonymous_loopback"] = None
    for key in _PATHS & set(values):
        values[key] = Path(values[key])
    for key in _TUPLES & set(values):
        values[key] = tuple(values[key])
    if "agents" in values:
        values["agents"] = tuple(a if not isinstance(a, str) else parse_agent(a) for a in values["agents"])
    return ServeConfig(**values)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        cfg = load_config(args.config, args)
        logging.basicConfig(
            level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        serve(cfg)
    except (ListenerRefused, OSError, Conflict) as exc:  # Conflict: another controller holds the store
        print(f"mlsysops-api: {exc}", file=sys.stderr)
        return 2
    return 0

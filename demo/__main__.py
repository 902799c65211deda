"""`make demo`: the whole stack on embedded defaults, without disturbing the host.

A real node agent (private cgroup subtree, its own network namespace, simulated cpufreq where
the machine has none, workloads on a private containerd), a private Mosquitto, the far-edge
bridge with one virtual MicroPython device over a pty and one over MQTT, the controller in plan
mode, then the whole loop (demo/live.py): the REST API with the embedded controller runs two
apps in containers (one under gVisor), reads back their status and their live performance
from a private Prometheus, rolls a far-edge app out to the MQTT board over the air, and
removes them. Each part's own demo
module owns its set-up and clean-up; this only sequences them, so one failing part still
tears down the others.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click


def _banner(title: str) -> None:
    click.secho(f"\n=== {title} ===", bold=True)


def run(workdir: Path) -> None:
    from controller import demo as controller_demo
    from demo import live
    from demo.containerd import private_containerd
    from faredge import demo as faredge_demo
    from nodeagent import demo as nodeagent_demo

    namespace, _ = nodeagent_demo.demo_names()
    with private_containerd(workdir / "containerd", namespace) as runtime:
        _banner("node agent")
        with nodeagent_demo.agent(workdir / "nodeagent", runtime.agent_config) as target:
            nodeagent_demo.tour(target)
            _banner("far-edge bridge and MicroPython devices")
            with faredge_demo.bridge(workdir / "faredge", target) as info:
                faredge_demo.tour(info)
                _banner("node inventory with the far-edge devices")
                nodeagent_demo.show_devices(target)
                _banner("controller (plan mode)")
                controller_demo.tour(workdir / "controller", target)
                _banner("the whole loop: REST API, embedded controller, containers, Prometheus")
                live.tour(workdir / "live", target, runtime.image, bridge_metrics=info["metrics"],
                          bridge_socket=info["socket"], ota_device=faredge_demo.MQTT_ID)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mlsysops-demo-") as tmp:
        try:
            run(Path(tmp))
        except KeyboardInterrupt:
            sys.exit(130)
        except click.ClickException as exc:  # a part failed: its reason, after every part cleaned up
            exc.show()
            sys.exit(exc.exit_code)
    click.secho("\ndemo finished; everything it created was removed", fg="green")


if __name__ == "__main__":
    main()

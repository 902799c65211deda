"""Build glue that pyproject.toml cannot express: data that lives outside the Python packages.

The firmware sources (`firmware/micropython/`, what the bridge flashes and the virtual board
runs) and the systemd units (`systemd/`) stay where people look for them in the repository,
and ship inside the wheel as the packages `faredge.firmware` and `mlsysops.units`, so an
installed bridge finds its firmware with importlib.resources, like any package data.
Everything else is configured in pyproject.toml.
"""

from setuptools import find_packages, setup

DATA_PACKAGES = {
    "faredge.firmware": "firmware/micropython",
    "faredge.firmware.hal": "firmware/micropython/hal",
    "mlsysops.units": "systemd",
}

setup(
    packages=[
        *find_packages(
            include=["mlsysops*", "nodeagent*", "faredge*", "controller*", "mlconnector*"],
            exclude=["mlconnector.experiment*"],  # runs from a checkout: it uses the tests' containerd
        ),
        *DATA_PACKAGES,
    ],
    package_dir=DATA_PACKAGES,
)

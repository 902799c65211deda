"""The mlsysops node agent: a per-node daemon that tunes CPU frequency, cgroups and network
through a versioned gRPC API, journals every original value, and exports telemetry."""

__version__ = "0.1.0"

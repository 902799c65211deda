"""Far-edge bridge: connects microcontroller devices (MQTT and serial) to the node.

The daemon `mlsysops-faredge` keeps a twin (desired/reported settings) and liveness per device,
exports telemetry as Prometheus metrics and reports the device inventory to the node agent. The
wire contract with our firmware is docs/faredge-protocol.md; the bridge itself is described in
docs/faredge-bridge.md.

Layers (imports only point downwards): `protocol` (pure codecs and message validation), `twin`,
`registry`, `metrics` → `bridge` (routing, pure apart from the queues it is given) → `channels`
(the only modules that import paho, pyserial and grpc) → `bootstrap` (the composition root).
"""

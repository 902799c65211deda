"""The wire contract (docs/faredge-protocol.md): pure codecs and validation, no I/O."""

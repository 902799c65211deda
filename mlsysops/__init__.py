"""mlsysops: shared pieces of the distribution (the `mlsysops` CLI root and the node API stubs)."""

API_VERSION = "mlsysops.nodeconfig.v1"

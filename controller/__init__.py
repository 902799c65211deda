"""The mlsysops controller: MLSysOps descriptions in, placement and node settings out.

Layers, each importing only the ones above it:

    model/        descriptions (MLSysOpsApp/Node/Cluster/Continuum/Datacenter): parse, validate, typed values
    inventory     the system as the policies see it (from descriptions, files or live node agents)
    policies/     placement policy plugins -> Plan (decisions with explanations), conflicts, relocation
    mechanisms/   realisation plugins (kubernetes, karmada, nodeagent): render(plan) -> objects, realize
    plan          plan mode: files in, decisions + explanations + the exact objects out, no API server
    kube/, reconcile/, daemon     the daemon against a Kubernetes API server
    cli           `mlsysops apps|nodes|clusters`

Nothing happens at import time; registries are instances built by whoever composes them.
"""

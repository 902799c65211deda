"""The reconcile loop: watch MLSysOpsApp/Node/Cluster objects and converge the world on them.

    informer (list+watch, 410 → relist, outage → backoff)  ──events──▶  WorkQueue (dedup, backoff)
        ──keys──▶  Reconciler.reconcile(name): plan → mechanisms.realize → status
    NodeSync: node agents' GetInventory → MLSysOpsNode objects (and their Ready condition)
    QosSource: QoS violations reported on the app (qos.AnnotationQos) → the policies' Telemetry

`bootstrap.build(config)` is the composition root used by `python -m controller`.
"""

"""MLSysOps descriptions: parsing (YAML/JSON, multi-document, Kubernetes and wrapper form),
validation against our CRDs' openAPIV3Schema plus semantic checks, typed frozen values.

    from controller.model import load_documents, DescriptionError, App
    docs = load_documents("app.yaml")            # or a directory, or the YAML text itself
    app = next(d for d in docs if isinstance(d, App))
    app.raw        # the validated document in Kubernetes form (what gets written)
    app.components # typed Components: .name, .containers, .resources, .ports, .placement, ...

Errors: DescriptionError(.path, .expected, .problems, .source), e.g.
"MLSysOpsApp.components[0].restart_policy: expected one of Always, OnFailure, Never (got string
'on_failure')".
"""

from controller.model.descriptions import (
    ANYWHERE,
    App,
    ClusterDesc,
    ClusterPlacement,
    Component,
    Container,
    ContinuumDesc,
    DatacenterDesc,
    Description,
    DeviceDesc,
    Interaction,
    NodeDesc,
    NodePlacement,
    Port,
    QosMetric,
    Resources,
    Scaling,
    SingleNodeGroup,
)
from controller.model.errors import DescriptionError, Problem
from controller.model.loader import (
    collection_paused,
    load_documents,
    load_each,
    parse_document,
    parse_text,
    to_kubernetes_form,
    unknown_fields,
)
from controller.model.schema import API_VERSION, GROUP, KINDS, VERSION, CrdSchemas, default_schemas
from controller.model.semantic import depends_on_order

__all__ = [
    "ANYWHERE",
    "API_VERSION",
    "GROUP",
    "KINDS",
    "VERSION",
    "App",
    "ClusterDesc",
    "ClusterPlacement",
    "Component",
    "Container",
    "ContinuumDesc",
    "CrdSchemas",
    "DatacenterDesc",
    "Description",
    "DescriptionError",
    "DeviceDesc",
    "Interaction",
    "NodeDesc",
    "NodePlacement",
    "Port",
    "Problem",
    "QosMetric",
    "Resources",
    "Scaling",
    "SingleNodeGroup",
    "collection_paused",
    "default_schemas",
    "depends_on_order",
    "load_documents",
    "load_each",
    "parse_document",
    "parse_text",
    "to_kubernetes_form",
    "unknown_fields",
]

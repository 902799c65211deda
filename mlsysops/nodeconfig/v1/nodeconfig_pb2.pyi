import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetInventoryRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Inventory(_message.Message):
    __slots__ = ("node_name", "api_version", "agent_version", "cpus", "cgroup", "network", "runtimes", "devices", "mechanisms", "memory_bytes", "architecture")
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CPUS_FIELD_NUMBER: _ClassVar[int]
    CGROUP_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    RUNTIMES_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    MECHANISMS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    node_name: str
    api_version: str
    agent_version: str
    cpus: _containers.RepeatedCompositeFieldContainer[Cpu]
    cgroup: CgroupInfo
    network: NetworkInfo
    runtimes: _containers.RepeatedCompositeFieldContainer[Runtime]
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    mechanisms: _containers.RepeatedCompositeFieldContainer[MechanismInfo]
    memory_bytes: int
    architecture: str
    def __init__(self, node_name: _Optional[str] = ..., api_version: _Optional[str] = ..., agent_version: _Optional[str] = ..., cpus: _Optional[_Iterable[_Union[Cpu, _Mapping]]] = ..., cgroup: _Optional[_Union[CgroupInfo, _Mapping]] = ..., network: _Optional[_Union[NetworkInfo, _Mapping]] = ..., runtimes: _Optional[_Iterable[_Union[Runtime, _Mapping]]] = ..., devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ..., mechanisms: _Optional[_Iterable[_Union[MechanismInfo, _Mapping]]] = ..., memory_bytes: _Optional[int] = ..., architecture: _Optional[str] = ...) -> None: ...

class Cpu(_message.Message):
    __slots__ = ("id", "cpufreq_available", "available_governors", "available_frequencies_khz", "cpuinfo_min_khz", "cpuinfo_max_khz", "governor", "scaling_min_khz", "scaling_max_khz", "current_khz")
    ID_FIELD_NUMBER: _ClassVar[int]
    CPUFREQ_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_GOVERNORS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FREQUENCIES_KHZ_FIELD_NUMBER: _ClassVar[int]
    CPUINFO_MIN_KHZ_FIELD_NUMBER: _ClassVar[int]
    CPUINFO_MAX_KHZ_FIELD_NUMBER: _ClassVar[int]
    GOVERNOR_FIELD_NUMBER: _ClassVar[int]
    SCALING_MIN_KHZ_FIELD_NUMBER: _ClassVar[int]
    SCALING_MAX_KHZ_FIELD_NUMBER: _ClassVar[int]
    CURRENT_KHZ_FIELD_NUMBER: _ClassVar[int]
    id: int
    cpufreq_available: bool
    available_governors: _containers.RepeatedScalarFieldContainer[str]
    available_frequencies_khz: _containers.RepeatedScalarFieldContainer[int]
    cpuinfo_min_khz: int
    cpuinfo_max_khz: int
    governor: str
    scaling_min_khz: int
    scaling_max_khz: int
    current_khz: int
    def __init__(self, id: _Optional[int] = ..., cpufreq_available: _Optional[bool] = ..., available_governors: _Optional[_Iterable[str]] = ..., available_frequencies_khz: _Optional[_Iterable[int]] = ..., cpuinfo_min_khz: _Optional[int] = ..., cpuinfo_max_khz: _Optional[int] = ..., governor: _Optional[str] = ..., scaling_min_khz: _Optional[int] = ..., scaling_max_khz: _Optional[int] = ..., current_khz: _Optional[int] = ...) -> None: ...

class CgroupInfo(_message.Message):
    __slots__ = ("version", "root", "controllers")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    CONTROLLERS_FIELD_NUMBER: _ClassVar[int]
    version: str
    root: str
    controllers: _containers.RepeatedCompositeFieldContainer[CgroupController]
    def __init__(self, version: _Optional[str] = ..., root: _Optional[str] = ..., controllers: _Optional[_Iterable[_Union[CgroupController, _Mapping]]] = ...) -> None: ...

class CgroupController(_message.Message):
    __slots__ = ("name", "version", "mount")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MOUNT_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    mount: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., mount: _Optional[str] = ...) -> None: ...

class NetworkInfo(_message.Message):
    __slots__ = ("interfaces", "features")
    INTERFACES_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    interfaces: _containers.RepeatedCompositeFieldContainer[Interface]
    features: _containers.RepeatedCompositeFieldContainer[Feature]
    def __init__(self, interfaces: _Optional[_Iterable[_Union[Interface, _Mapping]]] = ..., features: _Optional[_Iterable[_Union[Feature, _Mapping]]] = ...) -> None: ...

class Interface(_message.Message):
    __slots__ = ("name", "netns", "index", "state", "mtu", "root_qdisc")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NETNS_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MTU_FIELD_NUMBER: _ClassVar[int]
    ROOT_QDISC_FIELD_NUMBER: _ClassVar[int]
    name: str
    netns: str
    index: int
    state: str
    mtu: int
    root_qdisc: str
    def __init__(self, name: _Optional[str] = ..., netns: _Optional[str] = ..., index: _Optional[int] = ..., state: _Optional[str] = ..., mtu: _Optional[int] = ..., root_qdisc: _Optional[str] = ...) -> None: ...

class Feature(_message.Message):
    __slots__ = ("name", "supported", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SUPPORTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    supported: bool
    reason: str
    def __init__(self, name: _Optional[str] = ..., supported: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class Runtime(_message.Message):
    __slots__ = ("handler", "available", "reason", "version", "runtime_type", "binary", "runtime_class_name")
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    BINARY_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    handler: str
    available: bool
    reason: str
    version: str
    runtime_type: str
    binary: str
    runtime_class_name: str
    def __init__(self, handler: _Optional[str] = ..., available: _Optional[bool] = ..., reason: _Optional[str] = ..., version: _Optional[str] = ..., runtime_type: _Optional[str] = ..., binary: _Optional[str] = ..., runtime_class_name: _Optional[str] = ...) -> None: ...

class Device(_message.Message):
    __slots__ = ("id", "kind", "transport", "online", "sensors", "firmware_version", "last_seen", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    SENSORS_FIELD_NUMBER: _ClassVar[int]
    FIRMWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    transport: str
    online: bool
    sensors: _containers.RepeatedScalarFieldContainer[str]
    firmware_version: str
    last_seen: _timestamp_pb2.Timestamp
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., transport: _Optional[str] = ..., online: _Optional[bool] = ..., sensors: _Optional[_Iterable[str]] = ..., firmware_version: _Optional[str] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class MechanismInfo(_message.Message):
    __slots__ = ("name", "available", "reason", "capabilities")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    name: str
    available: bool
    reason: str
    capabilities: _struct_pb2.Struct
    def __init__(self, name: _Optional[str] = ..., available: _Optional[bool] = ..., reason: _Optional[str] = ..., capabilities: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Profile(_message.Message):
    __slots__ = ("cpufreq", "cgroups", "network", "extensions")
    class ExtensionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Struct
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
    CPUFREQ_FIELD_NUMBER: _ClassVar[int]
    CGROUPS_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    EXTENSIONS_FIELD_NUMBER: _ClassVar[int]
    cpufreq: CpuFreqProfile
    cgroups: CgroupsProfile
    network: NetworkProfile
    extensions: _containers.MessageMap[str, _struct_pb2.Struct]
    def __init__(self, cpufreq: _Optional[_Union[CpuFreqProfile, _Mapping]] = ..., cgroups: _Optional[_Union[CgroupsProfile, _Mapping]] = ..., network: _Optional[_Union[NetworkProfile, _Mapping]] = ..., extensions: _Optional[_Mapping[str, _struct_pb2.Struct]] = ...) -> None: ...

class CpuFreqProfile(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: _containers.RepeatedCompositeFieldContainer[CpuFreqSetting]
    def __init__(self, settings: _Optional[_Iterable[_Union[CpuFreqSetting, _Mapping]]] = ...) -> None: ...

class CpuFreqSetting(_message.Message):
    __slots__ = ("cpus", "governor", "min_khz", "max_khz")
    CPUS_FIELD_NUMBER: _ClassVar[int]
    GOVERNOR_FIELD_NUMBER: _ClassVar[int]
    MIN_KHZ_FIELD_NUMBER: _ClassVar[int]
    MAX_KHZ_FIELD_NUMBER: _ClassVar[int]
    cpus: str
    governor: str
    min_khz: int
    max_khz: int
    def __init__(self, cpus: _Optional[str] = ..., governor: _Optional[str] = ..., min_khz: _Optional[int] = ..., max_khz: _Optional[int] = ...) -> None: ...

class CgroupsProfile(_message.Message):
    __slots__ = ("groups",)
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[CgroupSetting]
    def __init__(self, groups: _Optional[_Iterable[_Union[CgroupSetting, _Mapping]]] = ...) -> None: ...

class CgroupSetting(_message.Message):
    __slots__ = ("path", "cpu_quota_us", "cpu_period_us", "cpu_weight", "cpuset_cpus", "cpuset_mems", "memory_max_bytes")
    PATH_FIELD_NUMBER: _ClassVar[int]
    CPU_QUOTA_US_FIELD_NUMBER: _ClassVar[int]
    CPU_PERIOD_US_FIELD_NUMBER: _ClassVar[int]
    CPU_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    CPUSET_CPUS_FIELD_NUMBER: _ClassVar[int]
    CPUSET_MEMS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    path: str
    cpu_quota_us: int
    cpu_period_us: int
    cpu_weight: int
    cpuset_cpus: str
    cpuset_mems: str
    memory_max_bytes: int
    def __init__(self, path: _Optional[str] = ..., cpu_quota_us: _Optional[int] = ..., cpu_period_us: _Optional[int] = ..., cpu_weight: _Optional[int] = ..., cpuset_cpus: _Optional[str] = ..., cpuset_mems: _Optional[str] = ..., memory_max_bytes: _Optional[int] = ...) -> None: ...

class NetworkProfile(_message.Message):
    __slots__ = ("interfaces",)
    INTERFACES_FIELD_NUMBER: _ClassVar[int]
    interfaces: _containers.RepeatedCompositeFieldContainer[InterfaceShaping]
    def __init__(self, interfaces: _Optional[_Iterable[_Union[InterfaceShaping, _Mapping]]] = ...) -> None: ...

class InterfaceShaping(_message.Message):
    __slots__ = ("name", "netns", "htb", "tbf", "remove")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NETNS_FIELD_NUMBER: _ClassVar[int]
    HTB_FIELD_NUMBER: _ClassVar[int]
    TBF_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    name: str
    netns: str
    htb: HtbQdisc
    tbf: TbfQdisc
    remove: bool
    def __init__(self, name: _Optional[str] = ..., netns: _Optional[str] = ..., htb: _Optional[_Union[HtbQdisc, _Mapping]] = ..., tbf: _Optional[_Union[TbfQdisc, _Mapping]] = ..., remove: _Optional[bool] = ...) -> None: ...

class HtbQdisc(_message.Message):
    __slots__ = ("default_class", "classes")
    DEFAULT_CLASS_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    default_class: int
    classes: _containers.RepeatedCompositeFieldContainer[HtbClass]
    def __init__(self, default_class: _Optional[int] = ..., classes: _Optional[_Iterable[_Union[HtbClass, _Mapping]]] = ...) -> None: ...

class HtbClass(_message.Message):
    __slots__ = ("minor", "rate", "ceil")
    MINOR_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    CEIL_FIELD_NUMBER: _ClassVar[int]
    minor: int
    rate: str
    ceil: str
    def __init__(self, minor: _Optional[int] = ..., rate: _Optional[str] = ..., ceil: _Optional[str] = ...) -> None: ...

class TbfQdisc(_message.Message):
    __slots__ = ("rate", "burst", "latency")
    RATE_FIELD_NUMBER: _ClassVar[int]
    BURST_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    rate: str
    burst: str
    latency: str
    def __init__(self, rate: _Optional[str] = ..., burst: _Optional[str] = ..., latency: _Optional[str] = ...) -> None: ...

class ApplyRequest(_message.Message):
    __slots__ = ("profile", "dry_run", "requester")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_FIELD_NUMBER: _ClassVar[int]
    profile: Profile
    dry_run: bool
    requester: str
    def __init__(self, profile: _Optional[_Union[Profile, _Mapping]] = ..., dry_run: _Optional[bool] = ..., requester: _Optional[str] = ...) -> None: ...

class Write(_message.Message):
    __slots__ = ("mechanism", "key", "before", "after")
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    mechanism: str
    key: str
    before: str
    after: str
    def __init__(self, mechanism: _Optional[str] = ..., key: _Optional[str] = ..., before: _Optional[str] = ..., after: _Optional[str] = ...) -> None: ...

class ApplyResponse(_message.Message):
    __slots__ = ("writes", "writes_performed", "generation", "duration_ms")
    WRITES_FIELD_NUMBER: _ClassVar[int]
    WRITES_PERFORMED_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    writes: _containers.RepeatedCompositeFieldContainer[Write]
    writes_performed: int
    generation: int
    duration_ms: float
    def __init__(self, writes: _Optional[_Iterable[_Union[Write, _Mapping]]] = ..., writes_performed: _Optional[int] = ..., generation: _Optional[int] = ..., duration_ms: _Optional[float] = ...) -> None: ...

class GetStateRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class KnobState(_message.Message):
    __slots__ = ("mechanism", "key", "desired", "actual", "original", "drifted")
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    DRIFTED_FIELD_NUMBER: _ClassVar[int]
    mechanism: str
    key: str
    desired: str
    actual: str
    original: str
    drifted: bool
    def __init__(self, mechanism: _Optional[str] = ..., key: _Optional[str] = ..., desired: _Optional[str] = ..., actual: _Optional[str] = ..., original: _Optional[str] = ..., drifted: _Optional[bool] = ...) -> None: ...

class NodeState(_message.Message):
    __slots__ = ("desired", "generation", "knobs", "drifted", "last_apply", "last_drift_check")
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    KNOBS_FIELD_NUMBER: _ClassVar[int]
    DRIFTED_FIELD_NUMBER: _ClassVar[int]
    LAST_APPLY_FIELD_NUMBER: _ClassVar[int]
    LAST_DRIFT_CHECK_FIELD_NUMBER: _ClassVar[int]
    desired: Profile
    generation: int
    knobs: _containers.RepeatedCompositeFieldContainer[KnobState]
    drifted: int
    last_apply: _timestamp_pb2.Timestamp
    last_drift_check: _timestamp_pb2.Timestamp
    def __init__(self, desired: _Optional[_Union[Profile, _Mapping]] = ..., generation: _Optional[int] = ..., knobs: _Optional[_Iterable[_Union[KnobState, _Mapping]]] = ..., drifted: _Optional[int] = ..., last_apply: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_drift_check: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ResetRequest(_message.Message):
    __slots__ = ("dry_run",)
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    dry_run: bool
    def __init__(self, dry_run: _Optional[bool] = ...) -> None: ...

class ResetResponse(_message.Message):
    __slots__ = ("writes", "writes_performed")
    WRITES_FIELD_NUMBER: _ClassVar[int]
    WRITES_PERFORMED_FIELD_NUMBER: _ClassVar[int]
    writes: _containers.RepeatedCompositeFieldContainer[Write]
    writes_performed: int
    def __init__(self, writes: _Optional[_Iterable[_Union[Write, _Mapping]]] = ..., writes_performed: _Optional[int] = ...) -> None: ...

class GetTelemetryConfigRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Collector(_message.Message):
    __slots__ = ("name", "enabled", "interval_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    enabled: bool
    interval_ms: int
    def __init__(self, name: _Optional[str] = ..., enabled: _Optional[bool] = ..., interval_ms: _Optional[int] = ...) -> None: ...

class TelemetryConfig(_message.Message):
    __slots__ = ("collectors", "metrics_endpoint")
    COLLECTORS_FIELD_NUMBER: _ClassVar[int]
    METRICS_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    collectors: _containers.RepeatedCompositeFieldContainer[Collector]
    metrics_endpoint: str
    def __init__(self, collectors: _Optional[_Iterable[_Union[Collector, _Mapping]]] = ..., metrics_endpoint: _Optional[str] = ...) -> None: ...

class SetTelemetryConfigRequest(_message.Message):
    __slots__ = ("collectors",)
    COLLECTORS_FIELD_NUMBER: _ClassVar[int]
    collectors: _containers.RepeatedCompositeFieldContainer[Collector]
    def __init__(self, collectors: _Optional[_Iterable[_Union[Collector, _Mapping]]] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("kinds",)
    KINDS_FIELD_NUMBER: _ClassVar[int]
    kinds: _containers.RepeatedScalarFieldContainer[Event.Kind]
    def __init__(self, kinds: _Optional[_Iterable[_Union[Event.Kind, str]]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("kind", "time", "mechanism", "key", "message", "generation", "details")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Event.Kind]
        APPLIED: _ClassVar[Event.Kind]
        DRIFT: _ClassVar[Event.Kind]
        ERROR: _ClassVar[Event.Kind]
        RESET: _ClassVar[Event.Kind]
        TELEMETRY_CONFIGURED: _ClassVar[Event.Kind]
        DEVICES: _ClassVar[Event.Kind]
        ENFORCED: _ClassVar[Event.Kind]
    KIND_UNSPECIFIED: Event.Kind
    APPLIED: Event.Kind
    DRIFT: Event.Kind
    ERROR: Event.Kind
    RESET: Event.Kind
    TELEMETRY_CONFIGURED: Event.Kind
    DEVICES: Event.Kind
    ENFORCED: Event.Kind
    class DetailsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KIND_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    kind: Event.Kind
    time: _timestamp_pb2.Timestamp
    mechanism: str
    key: str
    message: str
    generation: int
    details: _containers.ScalarMap[str, str]
    def __init__(self, kind: _Optional[_Union[Event.Kind, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., mechanism: _Optional[str] = ..., key: _Optional[str] = ..., message: _Optional[str] = ..., generation: _Optional[int] = ..., details: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ReportDevicesRequest(_message.Message):
    __slots__ = ("source", "devices")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    source: str
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    def __init__(self, source: _Optional[str] = ..., devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ...) -> None: ...

class ReportDevicesResponse(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    def __init__(self, accepted: _Optional[int] = ...) -> None: ...

class ListRuntimesRequest(_message.Message):
    __slots__ = ("refresh",)
    REFRESH_FIELD_NUMBER: _ClassVar[int]
    refresh: bool
    def __init__(self, refresh: _Optional[bool] = ...) -> None: ...

class ListRuntimesResponse(_message.Message):
    __slots__ = ("runtimes",)
    RUNTIMES_FIELD_NUMBER: _ClassVar[int]
    runtimes: _containers.RepeatedCompositeFieldContainer[Runtime]
    def __init__(self, runtimes: _Optional[_Iterable[_Union[Runtime, _Mapping]]] = ...) -> None: ...

class WorkloadMount(_message.Message):
    __slots__ = ("source", "target", "readonly")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    READONLY_FIELD_NUMBER: _ClassVar[int]
    source: str
    target: str
    readonly: bool
    def __init__(self, source: _Optional[str] = ..., target: _Optional[str] = ..., readonly: _Optional[bool] = ...) -> None: ...

class WorkloadSpec(_message.Message):
    __slots__ = ("name", "image", "handler", "args", "env", "mounts", "cgroup", "netns", "cpu_quota_us", "cpu_period_us", "memory_max_bytes", "readiness", "readiness_timeout_s")
    NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    MOUNTS_FIELD_NUMBER: _ClassVar[int]
    CGROUP_FIELD_NUMBER: _ClassVar[int]
    NETNS_FIELD_NUMBER: _ClassVar[int]
    CPU_QUOTA_US_FIELD_NUMBER: _ClassVar[int]
    CPU_PERIOD_US_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    READINESS_FIELD_NUMBER: _ClassVar[int]
    READINESS_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    name: str
    image: str
    handler: str
    args: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.RepeatedScalarFieldContainer[str]
    mounts: _containers.RepeatedCompositeFieldContainer[WorkloadMount]
    cgroup: str
    netns: str
    cpu_quota_us: int
    cpu_period_us: int
    memory_max_bytes: int
    readiness: _containers.RepeatedScalarFieldContainer[str]
    readiness_timeout_s: float
    def __init__(self, name: _Optional[str] = ..., image: _Optional[str] = ..., handler: _Optional[str] = ..., args: _Optional[_Iterable[str]] = ..., env: _Optional[_Iterable[str]] = ..., mounts: _Optional[_Iterable[_Union[WorkloadMount, _Mapping]]] = ..., cgroup: _Optional[str] = ..., netns: _Optional[str] = ..., cpu_quota_us: _Optional[int] = ..., cpu_period_us: _Optional[int] = ..., memory_max_bytes: _Optional[int] = ..., readiness: _Optional[_Iterable[str]] = ..., readiness_timeout_s: _Optional[float] = ...) -> None: ...

class RunWorkloadRequest(_message.Message):
    __slots__ = ("spec", "image_tarball")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    IMAGE_TARBALL_FIELD_NUMBER: _ClassVar[int]
    spec: WorkloadSpec
    image_tarball: str
    def __init__(self, spec: _Optional[_Union[WorkloadSpec, _Mapping]] = ..., image_tarball: _Optional[str] = ...) -> None: ...

class Workload(_message.Message):
    __slots__ = ("spec", "status", "pid", "exit_status", "runtime", "previous_handler")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    EXIT_STATUS_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_HANDLER_FIELD_NUMBER: _ClassVar[int]
    spec: WorkloadSpec
    status: str
    pid: int
    exit_status: int
    runtime: str
    previous_handler: str
    def __init__(self, spec: _Optional[_Union[WorkloadSpec, _Mapping]] = ..., status: _Optional[str] = ..., pid: _Optional[int] = ..., exit_status: _Optional[int] = ..., runtime: _Optional[str] = ..., previous_handler: _Optional[str] = ...) -> None: ...

class StopWorkloadRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListWorkloadsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWorkloadsResponse(_message.Message):
    __slots__ = ("workloads",)
    WORKLOADS_FIELD_NUMBER: _ClassVar[int]
    workloads: _containers.RepeatedCompositeFieldContainer[Workload]
    def __init__(self, workloads: _Optional[_Iterable[_Union[Workload, _Mapping]]] = ...) -> None: ...

class GetWorkloadLogsRequest(_message.Message):
    __slots__ = ("name", "tail_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TAIL_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    tail_bytes: int
    def __init__(self, name: _Optional[str] = ..., tail_bytes: _Optional[int] = ...) -> None: ...

class WorkloadLogs(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class SwitchRuntimeRequest(_message.Message):
    __slots__ = ("name", "handler", "force")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    handler: str
    force: bool
    def __init__(self, name: _Optional[str] = ..., handler: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class SwitchRuntimeResponse(_message.Message):
    __slots__ = ("outcome", "handler", "steps", "error", "workload")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    outcome: str
    handler: str
    steps: _containers.RepeatedScalarFieldContainer[str]
    error: str
    workload: Workload
    def __init__(self, outcome: _Optional[str] = ..., handler: _Optional[str] = ..., steps: _Optional[_Iterable[str]] = ..., error: _Optional[str] = ..., workload: _Optional[_Union[Workload, _Mapping]] = ...) -> None: ...

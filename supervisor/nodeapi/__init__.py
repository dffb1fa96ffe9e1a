"""The public API of a node: the async ``NodeAPI`` Protocol, its models and its errors.

A node, the cluster manager, the test fakes of ``supervisor.testing`` and every adapter (the
REST API, the CLI, CamServer's routes) implement or consume this package alone. Registry entry
specs (``specs``) are part of it: a create request names inputs and outputs with them.
"""

from .errors import (
    BackgroundNotFoundError,
    ConflictError,
    EntryNotFoundError,
    InstanceNotFoundError,
    InvalidConfigError,
    InvalidEntryError,
    InvalidNameError,
    InvalidValueError,
    MalformedRequestError,
    NotFoundError,
    PayloadTooLargeError,
    StorageError,
    SupervisorError,
    UnavailableError,
)
from .models import (
    BackgroundInfo,
    ConfigResult,
    CreateInstance,
    Entry,
    EntryKind,
    InstanceInfo,
    InstanceState,
    InstanceStats,
    LogEntry,
    LogStats,
    NodeResources,
    Preview,
    RegistryChanges,
    RegistryFile,
    ResourceStats,
)
from .protocol import NodeAPI
from .specs import EntrySpec, InputSpec, OutputSpec, RestartMode, RestartPolicy

__all__ = [
    "BackgroundInfo",
    "BackgroundNotFoundError",
    "ConfigResult",
    "ConflictError",
    "CreateInstance",
    "Entry",
    "EntryKind",
    "EntryNotFoundError",
    "EntrySpec",
    "InputSpec",
    "InstanceInfo",
    "InstanceNotFoundError",
    "InstanceState",
    "InstanceStats",
    "InvalidConfigError",
    "InvalidEntryError",
    "InvalidNameError",
    "InvalidValueError",
    "LogEntry",
    "LogStats",
    "MalformedRequestError",
    "NodeAPI",
    "NodeResources",
    "NotFoundError",
    "OutputSpec",
    "PayloadTooLargeError",
    "Preview",
    "RegistryChanges",
    "RegistryFile",
    "ResourceStats",
    "RestartMode",
    "RestartPolicy",
    "StorageError",
    "SupervisorError",
    "UnavailableError",
]

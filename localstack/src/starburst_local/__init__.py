"""The starburst local cloud: LocalStack plus a local Fargate runner hosting moto.

``LocalCloud`` (a context manager) and ``up`` / ``down`` / ``status`` / ``cloud_env``
start, stop and describe it; ``python -m starburst_local.runner`` is the runner.
"""

from .cloud import (
    CloudState,
    LocalCloud,
    LocalCloudError,
    cloud_env,
    down,
    export_lines,
    read_state,
    status,
    up,
)

__all__ = [
    "CloudState",
    "LocalCloud",
    "LocalCloudError",
    "cloud_env",
    "down",
    "export_lines",
    "read_state",
    "status",
    "up",
]

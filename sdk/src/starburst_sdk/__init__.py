"""starburst: send Python function calls to AWS Fargate, get futures back.

    from starburst_sdk import Plan

    with Plan(workers=50, cpu=2, memory="4GB") as plan:
        results = list(plan.map(simulate, range(10_000)))
"""

from ._config import DeploymentConfig, load_config
from ._errors import (
    BrokenPlan,
    ConfigError,
    QuotaError,
    RemoteError,
    RemoteTraceback,
    ResultMissingError,
    StarburstError,
    WorkerLostError,
)
from ._plan import Plan, PlanStatus
from ._resources import TaskSize, task_size

__version__ = "0.1.0"

__all__ = [
    "BrokenPlan",
    "ConfigError",
    "DeploymentConfig",
    "Plan",
    "PlanStatus",
    "QuotaError",
    "RemoteError",
    "RemoteTraceback",
    "ResultMissingError",
    "StarburstError",
    "TaskSize",
    "WorkerLostError",
    "load_config",
    "task_size",
]

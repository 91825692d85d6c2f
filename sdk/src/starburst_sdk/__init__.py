"""starburst: send Python function calls to AWS Fargate, get futures back.

from starburst_sdk import Plan

with Plan(workers=50, cpu=2, memory="4GB") as plan:
    results = list(plan.map(simulate, range(10_000)))
"""

from ._config import DeploymentConfig, load_config
from ._cost import CostReport, Estimate, Rate, WorkerCost
from ._errors import (
    BrokenPlan,
    BudgetExceededError,
    ConfigError,
    CredentialsError,
    QuotaError,
    RemoteError,
    RemoteTraceback,
    ResultMissingError,
    SessionCancelledError,
    SessionNotFoundError,
    StarburstError,
    WorkerLostError,
)
from ._image import ImageError, ImageResult, ensure_image, list_images
from ._plan import Plan, PlanStatus
from ._resources import TaskSize, task_size

__version__ = "0.1.0"

__all__ = [
    "BrokenPlan",
    "BudgetExceededError",
    "ConfigError",
    "CredentialsError",
    "CostReport",
    "DeploymentConfig",
    "Estimate",
    "ImageError",
    "ImageResult",
    "Plan",
    "PlanStatus",
    "QuotaError",
    "Rate",
    "RemoteError",
    "RemoteTraceback",
    "ResultMissingError",
    "SessionCancelledError",
    "SessionNotFoundError",
    "StarburstError",
    "TaskSize",
    "WorkerCost",
    "WorkerLostError",
    "ensure_image",
    "list_images",
    "load_config",
    "task_size",
]

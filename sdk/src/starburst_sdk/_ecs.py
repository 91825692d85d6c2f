"""ECS calls: task definitions, RunTask in batches of ten, DescribeTasks in
batches of a hundred, StopTask."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ._aws import error_code
from ._config import DeploymentConfig
from ._resources import TaskSize

log = logging.getLogger("starburst")

CONTAINER = "worker"
RUN_TASK_BATCH = 10  # AWS's limit on RunTask's count
DESCRIBE_BATCH = 100  # AWS's limit on DescribeTasks' tasks
ARCHITECTURES = {"x86_64": "X86_64", "arm64": "ARM64"}


def chunks(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


@dataclass(frozen=True)
class TaskDefinitionSpec:
    """Everything that makes two task definitions interchangeable."""

    image: str
    size: TaskSize
    execution_role_arn: str
    task_role_arn: str
    log_group: str
    region: str
    arch: str = "x86_64"

    def family(self, deployment: str) -> str:
        key = json.dumps(
            [
                self.image,
                self.size.cpu_units,
                self.size.memory_mib,
                self.execution_role_arn,
                self.task_role_arn,
                self.log_group,
                self.region,
                self.arch,
            ]
        )
        return f"starburst-{deployment}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"

    def register_args(self, family: str, tags: list[dict[str, str]]) -> dict[str, Any]:
        return {
            "family": family,
            "requiresCompatibilities": ["FARGATE"],
            "networkMode": "awsvpc",
            "cpu": str(self.size.cpu_units),
            "memory": str(self.size.memory_mib),
            "executionRoleArn": self.execution_role_arn,
            "taskRoleArn": self.task_role_arn,
            "runtimePlatform": {
                "cpuArchitecture": ARCHITECTURES[self.arch],
                "operatingSystemFamily": "LINUX",
            },
            "containerDefinitions": [
                {
                    "name": CONTAINER,
                    "image": self.image,
                    "essential": True,
                    # Container-level memory too: some ECS implementations
                    # (moto) refuse RunTask without it; Fargate accepts both.
                    "memory": self.size.memory_mib,
                    "logConfiguration": {
                        "logDriver": "awslogs",
                        "options": {
                            "awslogs-group": self.log_group,
                            "awslogs-region": self.region,
                            "awslogs-stream-prefix": "starburst",
                        },
                    },
                }
            ],
            "tags": tags,
        }


def ensure_task_definition(
    ecs: Any, spec: TaskDefinitionSpec, deployment: str, tags: list[dict[str, str]]
) -> str:
    """Reuse an ACTIVE revision of the spec's family, or register one. -> ARN."""
    family = spec.family(deployment)
    resp = ecs.list_task_definitions(familyPrefix=family, status="ACTIVE", sort="DESC")
    for arn in resp.get("taskDefinitionArns", []):
        # familyPrefix matches prefixes; the family name must match exactly.
        if arn.rsplit("/", 1)[-1].rsplit(":", 1)[0] == family:
            log.debug("reusing task definition %s", arn)
            return arn
    resp = ecs.register_task_definition(**spec.register_args(family, tags))
    arn = resp["taskDefinition"]["taskDefinitionArn"]
    log.info("registered task definition %s", arn)
    return arn


@dataclass
class LaunchResult:
    arns: list[str]
    failures: list[dict[str, Any]]


def run_tasks(
    ecs: Any,
    *,
    cluster: str,
    task_definition: str,
    count: int,
    config: DeploymentConfig,
    environment: dict[str, str],
    tags: list[dict[str, str]],
    started_by: str,
    capacity_provider: str = "FARGATE",
    attempts: int = 6,
) -> LaunchResult:
    """One RunTask call for at most ten tasks, retried when throttled."""
    if not 1 <= count <= RUN_TASK_BATCH:
        raise ValueError(f"RunTask starts 1 to {RUN_TASK_BATCH} tasks, not {count}")
    args: dict[str, Any] = {
        "cluster": cluster,
        "taskDefinition": task_definition,
        "count": count,
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": list(config.subnets),
                "securityGroups": list(config.security_groups),
                "assignPublicIp": "ENABLED" if config.assign_public_ip else "DISABLED",
            }
        },
        "overrides": {
            "containerOverrides": [
                {
                    "name": CONTAINER,
                    "environment": [
                        {"name": k, "value": v} for k, v in sorted(environment.items())
                    ],
                }
            ]
        },
        "tags": tags,
        "startedBy": started_by[:36],
        "enableECSManagedTags": True,
    }
    if capacity_provider == "FARGATE":
        args["launchType"] = "FARGATE"
    else:
        args["capacityProviderStrategy"] = [
            {"capacityProvider": capacity_provider, "weight": 1}
        ]
    overrides_size = len(json.dumps(args["overrides"]))
    if overrides_size > 8192:
        raise ValueError(
            f"RunTask overrides are {overrides_size} bytes; AWS allows 8192"
        )
    for attempt in range(attempts):
        try:
            resp = ecs.run_task(**args)
        except Exception as exc:
            if not throttled(exc) or attempt == attempts - 1:
                raise
            delay = min(20.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.0)
            log.info("RunTask throttled (%s); retrying in %.1f s", exc, delay)
            time.sleep(delay)
            continue
        return LaunchResult(
            [t["taskArn"] for t in resp.get("tasks", [])],
            list(resp.get("failures", [])),
        )
    raise AssertionError("unreachable")


def throttled(exc: BaseException) -> bool:
    """RunTask's ways of saying "too fast": throttling errors, and
    InvalidParameterException with a rate-exceeded message."""
    code = error_code(exc)
    if code in ("ThrottlingException", "Throttling", "TooManyRequestsException"):
        return True
    # ECS sometimes reports a request rate over its limit this way; "rate" as a
    # word, so a message about, say, a separate parameter is not a throttle.
    return (
        code == "InvalidParameterException"
        and re.search(r"\brate\b", str(exc), re.IGNORECASE) is not None
    )


def describe_tasks(ecs: Any, cluster: str, arns: Sequence[str]) -> list[dict[str, Any]]:
    """DescribeTasks for any number of ARNs, a hundred per call."""
    found: list[dict[str, Any]] = []
    for batch in chunks(list(arns), DESCRIBE_BATCH):
        resp = ecs.describe_tasks(cluster=cluster, tasks=list(batch))
        found.extend(resp.get("tasks", []))
    return found


def stop_tasks(ecs: Any, cluster: str, arns: Sequence[str], reason: str) -> None:
    for arn in arns:
        try:
            ecs.stop_task(cluster=cluster, task=arn, reason=reason[:255])
        except Exception as exc:  # already stopped or gone: nothing left to stop
            log.debug("StopTask %s: %s", arn, exc)

"""The Fargate vCPU quota, and how much of it is already in use."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from . import _ecs

log = logging.getLogger("starburst")

ON_DEMAND_QUOTA = "L-3032A538"  # Fargate On-Demand vCPU resource count
SPOT_QUOTA = "L-36FBB829"  # Fargate Spot vCPU resource count
DEFAULT_FALLBACK = 32.0


@dataclass
class Quota:
    limit: float
    source: str
    others: float = 0.0  # vCPUs of tasks that are not this plan's

    @classmethod
    def read(
        cls, clients: Any, cluster: str, *, spot: bool, fallback: float | None
    ) -> Quota:
        code = SPOT_QUOTA if spot else ON_DEMAND_QUOTA
        try:
            resp = clients.service_quotas.get_service_quota(
                ServiceCode="fargate", QuotaCode=code
            )
            quota = cls(float(resp["Quota"]["Value"]), f"Service Quotas {code}")
        except Exception as exc:
            value = DEFAULT_FALLBACK if fallback is None else float(fallback)
            log.warning(
                "could not read the Fargate vCPU quota (%s); assuming %g vCPU. "
                "Pass Plan(vcpu_quota=...) to set it",
                exc,
                value,
            )
            quota = cls(value, "assumed: Service Quotas unavailable")
        if fallback is not None and quota.source.startswith("Service"):
            quota.limit = min(quota.limit, float(fallback))
        quota.others = running_vcpus(clients.ecs, cluster)
        return quota

    def room(self, alive_workers: int, vcpu: float) -> int:
        """How many more workers of ``vcpu`` fit under the quota."""
        free = self.limit - self.others - alive_workers * vcpu
        return max(0, math.floor(free / vcpu + 1e-9))


def running_vcpus(ecs: Any, cluster: str) -> float:
    """vCPUs of the tasks running in the cluster now."""
    try:
        arns: list[str] = []
        for page in ecs.get_paginator("list_tasks").paginate(
            cluster=cluster, desiredStatus="RUNNING"
        ):
            arns.extend(page.get("taskArns", []))
        if not arns:
            return 0.0
        descs = _ecs.describe_tasks(ecs, cluster, arns)
    except Exception as exc:
        log.warning("could not count running Fargate tasks: %s", exc)
        return 0.0
    return sum(
        int(d.get("cpu", 0)) / 1024
        for d in descs
        if d.get("lastStatus") != "STOPPED" and d.get("desiredStatus") != "STOPPED"
    )

"""What Fargate bills: vCPU-hours and GB-hours, per second, one minute minimum.

``PRICES`` is a snapshot of AWS's public Fargate price list for Linux tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

PRICES_AS_OF = "2026-11-01"
MINIMUM_SECONDS = 60

#: region -> (vCPU-hour, GB-hour) in USD, Linux/x86_64 On-Demand.
PRICES: dict[str, tuple[float, float]] = {
    "us-east-1": (0.04048, 0.004445),
    "us-east-2": (0.04048, 0.004445),
    "us-west-1": (0.04656, 0.00511),
    "us-west-2": (0.04048, 0.004445),
    "eu-west-1": (0.04048, 0.004445),
    "eu-central-1": (0.04656, 0.00511),
    "ap-southeast-1": (0.05056, 0.00553),
    "ap-northeast-1": (0.05056, 0.00553),
}


@dataclass(frozen=True)
class Rate:
    vcpu_hour: float
    gb_hour: float

    def per_second(self, vcpu: float, memory_gb: float) -> float:
        return (vcpu * self.vcpu_hour + memory_gb * self.gb_hour) / 3600


def rate(region: str) -> Rate:
    try:
        vcpu_hour, gb_hour = PRICES[region]
    except KeyError:
        known = ", ".join(sorted(PRICES))
        raise ValueError(
            f"no Fargate price for region {region!r}; known regions: {known}"
        ) from None
    return Rate(vcpu_hour, gb_hour)


def billed_seconds(seconds: float) -> float:
    """Fargate bills per second with a one-minute minimum."""
    return max(MINIMUM_SECONDS, seconds)


def task_cost(seconds: float, vcpu: float, memory_gb: float, region: str) -> float:
    return billed_seconds(seconds) * rate(region).per_second(vcpu, memory_gb)

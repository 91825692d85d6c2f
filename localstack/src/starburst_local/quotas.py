"""Service Quotas for Fargate, answered by the local runner (moto only knows ``vpc``).

Requests are AWS JSON 1.1 with ``X-Amz-Target: ServiceQuotasV20190624.<Op>``. For
ServiceCode ``fargate`` this module answers GetServiceQuota,
GetAWSDefaultServiceQuota and ListServiceQuotas with the configured vCPU values;
every other service code is left to moto.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

TARGET_PREFIX = "ServiceQuotasV20190624."
ON_DEMAND_CODE = "L-3032A538"
SPOT_CODE = "L-36FBB829"
NAMES = {
    ON_DEMAND_CODE: "Fargate On-Demand vCPU resource count",
    SPOT_CODE: "Fargate Spot vCPU resource count",
}


@dataclass
class Quotas:
    """The Fargate vCPU quotas the runner reports."""

    on_demand: float = 16.0
    spot: float = 16.0

    def value(self, code: str) -> float | None:
        return {ON_DEMAND_CODE: self.on_demand, SPOT_CODE: self.spot}.get(code)


def _region(auth_header: str, default: str) -> str:
    match = re.search(r"Credential=[^/]+/\d+/([^/]+)/", auth_header or "")
    return match.group(1) if match else default


def _quota(code: str, value: float, region: str, account: str) -> dict[str, Any]:
    return {
        "ServiceCode": "fargate",
        "ServiceName": "AWS Fargate",
        "QuotaArn": f"arn:aws:servicequotas:{region}:{account}:fargate/{code}",
        "QuotaCode": code,
        "QuotaName": NAMES[code],
        "Value": float(value),
        "Unit": "None",
        "Adjustable": True,
        "GlobalQuota": False,
    }


def handle(quotas: Quotas, target: str, body: bytes, auth: str, *,
           region: str = "us-east-1", account: str = "000000000000",
           ) -> tuple[int, dict[str, Any]] | None:
    """(status, JSON body) for a Fargate quota request, or None to pass it to moto."""
    op = target[len(TARGET_PREFIX):]
    try:
        params = json.loads(body or b"{}")
    except ValueError:
        return 400, {"__type": "SerializationException", "message": "invalid JSON"}
    if params.get("ServiceCode") != "fargate":
        return None
    region = _region(auth, region)
    if op in ("GetServiceQuota", "GetAWSDefaultServiceQuota"):
        code = params.get("QuotaCode", "")
        value = quotas.value(code)
        if value is None:
            return 400, {"__type": "NoSuchResourceException",
                         "message": f"The quota {code} for fargate does not exist."}
        return 200, {"Quota": _quota(code, value, region, account)}
    if op in ("ListServiceQuotas", "ListAWSDefaultServiceQuotas"):
        return 200, {"Quotas": [_quota(c, quotas.value(c) or 0.0, region, account)
                                for c in (ON_DEMAND_CODE, SPOT_CODE)]}
    return None

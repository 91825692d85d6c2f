"""Service Quotas for Fargate, answered by the local runner (moto only knows ``vpc``).

Requests are AWS JSON 1.1 with ``X-Amz-Target: ServiceQuotasV20190624.<Op>``. For
ServiceCode ``fargate`` this module answers GetServiceQuota,
GetAWSDefaultServiceQuota and ListServiceQuotas with the configured vCPU values, and
keeps increase requests (RequestServiceQuotaIncrease, GetRequestedServiceQuotaChange,
ListRequestedServiceQuotaChangeHistoryByQuota) in memory: a request stays
``CASE_OPENED`` and never changes the quota. Every other service code is left to moto.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
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
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)

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


def handle(
    quotas: Quotas,
    target: str,
    body: bytes,
    auth: str,
    *,
    region: str = "us-east-1",
    account: str = "000000000000",
) -> tuple[int, dict[str, Any]] | None:
    """(status, JSON body) for a Fargate quota request, or None to pass it to moto."""
    op = target[len(TARGET_PREFIX) :]
    try:
        params = json.loads(body or b"{}")
    except ValueError:
        return 400, {"__type": "SerializationException", "message": "invalid JSON"}
    if op == "GetRequestedServiceQuotaChange":
        found = quotas.requests.get(params.get("RequestId", ""))
        if found is None:
            return 400, {
                "__type": "NoSuchResourceException",
                "message": f"No request with id {params.get('RequestId')}.",
            }
        return 200, {"RequestedQuota": found}
    if params.get("ServiceCode") != "fargate":
        return None
    region = _region(auth, region)
    if op == "RequestServiceQuotaIncrease":
        return _request_increase(quotas, params, region, account)
    if op == "ListRequestedServiceQuotaChangeHistoryByQuota":
        return 200, {
            "RequestedQuotas": [
                r
                for r in quotas.requests.values()
                if r["QuotaCode"] == params.get("QuotaCode")
            ]
        }
    if op in ("GetServiceQuota", "GetAWSDefaultServiceQuota"):
        code = params.get("QuotaCode", "")
        value = quotas.value(code)
        if value is None:
            return 400, {
                "__type": "NoSuchResourceException",
                "message": f"The quota {code} for fargate does not exist.",
            }
        return 200, {"Quota": _quota(code, value, region, account)}
    if op in ("ListServiceQuotas", "ListAWSDefaultServiceQuotas"):
        return 200, {
            "Quotas": [
                _quota(c, quotas.value(c) or 0.0, region, account)
                for c in (ON_DEMAND_CODE, SPOT_CODE)
            ]
        }
    return None


def _request_increase(
    quotas: Quotas, params: dict[str, Any], region: str, account: str
) -> tuple[int, dict[str, Any]]:
    code = params.get("QuotaCode", "")
    if quotas.value(code) is None:
        return 400, {
            "__type": "NoSuchResourceException",
            "message": f"The quota {code} for fargate does not exist.",
        }
    if any(
        r["QuotaCode"] == code and r["Status"] in ("PENDING", "CASE_OPENED")
        for r in quotas.requests.values()
    ):
        return 400, {
            "__type": "ResourceAlreadyExistsException",
            "message": f"A request for {code} is already open.",
        }
    request_id = uuid.uuid4().hex
    quotas.requests[request_id] = {
        "Id": request_id,
        "CaseId": f"local-{request_id[:10]}",
        "ServiceCode": "fargate",
        "ServiceName": "AWS Fargate",
        "QuotaCode": code,
        "QuotaName": NAMES[code],
        "DesiredValue": float(params.get("DesiredValue", 0)),
        "Status": "CASE_OPENED",
        "Created": time.time(),
        "LastUpdated": time.time(),
        "Requester": f"arn:aws:iam::{account}:root",
        "QuotaArn": f"arn:aws:servicequotas:{region}:{account}:fargate/{code}",
        "GlobalQuota": False,
        "Unit": "None",
    }
    return 200, {"RequestedQuota": quotas.requests[request_id]}

"""``starburst-cli quota`` and ``starburst-cli doctor``: can this account run workers?

``quota`` reads the two Fargate vCPU quotas from Service Quotas (``L-3032A538``
On-Demand, ``L-36FBB829`` Spot) and counts the vCPUs of the tasks running in
every cluster of the region, since the quota is per account and region.
``doctor`` runs one check per line and names the fix of each that fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from starburst_sdk import StarburstError
from starburst_sdk._aws import Clients, error_code
from starburst_sdk._config import DeploymentConfig, load_config
from starburst_sdk._image import AUTO
from starburst_sdk._quota import ON_DEMAND_QUOTA, SPOT_QUOTA

from . import _output as out

QUOTAS = {"on_demand": ON_DEMAND_QUOTA, "spot": SPOT_QUOTA}


# ---------------------------------------------------------------------------
# quota


def vcpus_in_use(clients: Clients) -> dict[str, float]:
    """vCPUs of the live Fargate tasks in the region, On-Demand and Spot."""
    ecs = clients.ecs
    use = {"on_demand": 0.0, "spot": 0.0}
    clusters: list[str] = []
    for page in ecs.get_paginator("list_clusters").paginate():
        clusters.extend(page.get("clusterArns", []))
    for cluster in clusters:
        arns: list[str] = []
        for page in ecs.get_paginator("list_tasks").paginate(
            cluster=cluster, desiredStatus="RUNNING"
        ):
            arns.extend(page.get("taskArns", []))
        for i in range(0, len(arns), 100):
            for task in ecs.describe_tasks(
                cluster=cluster, tasks=arns[i : i + 100]
            ).get("tasks", []):
                if task.get("lastStatus") == "STOPPED":
                    continue
                if task.get("launchType", "FARGATE") != "FARGATE" and not task.get(
                    "capacityProviderName", ""
                ).startswith("FARGATE"):
                    continue  # EC2 capacity does not count against Fargate's quota
                kind = (
                    "spot"
                    if task.get("capacityProviderName") == "FARGATE_SPOT"
                    else "on_demand"
                )
                use[kind] += int(task.get("cpu", 0) or 0) / 1024
    return use


def read_quotas(clients: Clients) -> dict[str, dict[str, Any]]:
    quotas = clients.service_quotas
    use = vcpus_in_use(clients)
    report: dict[str, dict[str, Any]] = {}
    for kind, code in QUOTAS.items():
        resp = quotas.get_service_quota(ServiceCode="fargate", QuotaCode=code)
        value = float(resp["Quota"]["Value"])
        report[kind] = {
            "quota_code": code,
            "name": resp["Quota"].get("QuotaName", ""),
            "limit": value,
            "in_use": use[kind],
            "free": max(0.0, value - use[kind]),
        }
    return report


def _request(
    clients: Clients, vcpus: float, spot: bool, current: float
) -> dict[str, Any]:
    """File a quota increase, then read its status back.

    ``current`` is the quota's value now; a request at or below it is refused
    here, since there is nothing to raise.
    """
    quotas = clients.service_quotas
    code = SPOT_QUOTA if spot else ON_DEMAND_QUOTA
    kind = "Spot" if spot else "On-Demand"
    if vcpus <= current:
        raise out.fail(
            f"the Fargate {kind} vCPU quota ({code}) is already {current:g}, at or "
            f"above the {vcpus:g} requested; nothing to request. Ask for more than "
            f"{current:g} to raise it"
        )
    try:
        filed = quotas.request_service_quota_increase(
            ServiceCode="fargate", QuotaCode=code, DesiredValue=float(vcpus)
        )
    except Exception as exc:
        if error_code(exc) == "ResourceAlreadyExistsException":
            raise out.fail(
                f"a request for {code} is already open: see it in the Service Quotas "
                "console (Quota request history) and wait for AWS to decide"
            ) from None
        raise
    request_id = filed["RequestedQuota"]["Id"]
    change = quotas.get_requested_service_quota_change(RequestId=request_id)
    q = change["RequestedQuota"]
    return {
        "request_id": request_id,
        "quota_code": code,
        "desired": q.get("DesiredValue"),
        "status": q.get("Status"),
        "case_id": q.get("CaseId") or None,
    }


@out.errors()
def quota(
    request: Annotated[
        float | None,
        typer.Option(
            "--request", min=1, help="ask AWS to raise the quota to this many vCPUs"
        ),
    ] = None,
    spot: Annotated[
        bool,
        typer.Option(
            "--spot",
            help="with --request: raise the Spot quota instead of the On-Demand one "
            "(both are always shown)",
        ),
    ] = False,
    as_json: out.AsJson = False,
) -> None:
    """Show the Fargate On-Demand and Spot vCPU quotas and their use; file an increase."""
    if spot and request is None:
        raise typer.BadParameter(
            "--spot only picks which quota --request raises (both quotas are always "
            "shown): add --request VCPUS, or drop --spot",
            param_hint="--spot",
        )
    clients = Clients()
    report: dict[str, Any] = {"region": clients.region, **read_quotas(clients)}
    if request is not None:
        current = report["spot" if spot else "on_demand"]["limit"]
        report["request"] = _request(clients, request, spot, current)
    if as_json:
        out.print_json(report)
        return
    out.table(
        ("quota", "code", "vCPU limit", "in use", "free"),
        [
            (
                kind.replace("_", "-"),
                q["quota_code"],
                f"{q['limit']:g}",
                f"{q['in_use']:g}",
                f"{q['free']:g}",
            )
            for kind, q in report.items()
            if kind in QUOTAS
        ],
        title=f"Fargate vCPU quotas in {clients.region}",
    )
    if "request" in report:
        r = report["request"]
        typer.echo(
            f"requested {r['desired']:g} vCPU for {r['quota_code']}: "
            f"{r['status']}"
            + (f", support case {r['case_id']}" if r["case_id"] else "")
            + f" (request {r['request_id']})"
        )


# ---------------------------------------------------------------------------
# doctor


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    skipped: bool = False


#: VPC endpoints that let workers in a private subnet without NAT do their job.
NEEDED_ENDPOINTS = ("s3", "ecr.api", "ecr.dkr", "logs", "sqs")


def _network(clients: Clients, cfg: DeploymentConfig) -> str:
    """How the subnets reach AWS; raises ValueError with the fix when they cannot."""
    ec2 = clients.ec2
    subnets = ec2.describe_subnets(SubnetIds=list(cfg.subnets))["Subnets"]
    found = []
    for subnet in subnets:
        sid, vpc = subnet["SubnetId"], subnet["VpcId"]
        tables = ec2.describe_route_tables(
            Filters=[{"Name": "association.subnet-id", "Values": [sid]}]
        )["RouteTables"]
        if not tables:  # no explicit association: the VPC's main table applies
            tables = [
                t
                for t in ec2.describe_route_tables(
                    Filters=[{"Name": "vpc-id", "Values": [vpc]}]
                )["RouteTables"]
                if any(a.get("Main") for a in t.get("Associations", []))
            ]
        routes = [
            r
            for t in tables
            for r in t.get("Routes", [])
            if r.get("DestinationCidrBlock") == "0.0.0.0/0"
            and r.get("State", "active") == "active"
        ]
        if any(
            r.get("NatGatewayId")
            or r.get("TransitGatewayId")
            or r.get("NetworkInterfaceId")
            or r.get("InstanceId")
            for r in routes
        ):
            found.append(f"{sid}: NAT")
            continue
        if any(str(r.get("GatewayId", "")).startswith("igw-") for r in routes):
            if cfg.assign_public_ip:
                found.append(f"{sid}: internet gateway")
                continue
            raise ValueError(
                f"subnet {sid} routes to an internet gateway but assign_public_ip is "
                "false, so workers get no public IP: set assign_public_ip = true in "
                "the Terraform, or route the subnet through a NAT gateway"
            )
        endpoints = ec2.describe_vpc_endpoints(
            Filters=[{"Name": "vpc-id", "Values": [vpc]}]
        )["VpcEndpoints"]
        have = {
            e["ServiceName"].rsplit(f"{cfg.region}.", 1)[-1]
            for e in endpoints
            if e.get("State", "available").lower() in ("available", "pending")
        }
        missing = [e for e in NEEDED_ENDPOINTS if e not in have]
        if missing:
            raise ValueError(
                f"subnet {sid} has no route to the internet (no NAT or internet "
                f"gateway) and VPC {vpc} lacks the endpoint(s) {', '.join(missing)}: "
                "add a NAT gateway, or VPC endpoints for S3, ECR, CloudWatch Logs "
                "and SQS, so workers can pull the image and reach the session"
            )
        found.append(f"{sid}: VPC endpoints")
    return "; ".join(found)


def _image(clients: Clients, cfg: DeploymentConfig) -> str:
    """The worker image check: a named ``worker_image`` must be in ECR; with none
    (or ``auto``) Plan builds or finds the image of the caller's environment."""
    image = cfg.worker_image
    if not image or image == AUTO:
        return (
            "no worker_image set: the image of your environment is built and "
            "pushed on the first Plan (or ahead of time with "
            "`starburst-cli image build`)"
        )
    repo_url = cfg.ecr_repository_url
    if not image.startswith(f"{repo_url}:") and not image.startswith(f"{repo_url}@"):
        return f"{image} (not in the deployment's ECR repository; not checked)"
    name = repo_url.split("/", 1)[1]
    ref = image[len(repo_url) + 1 :]
    image_id = (
        {"imageDigest": ref} if image[len(repo_url)] == "@" else {"imageTag": ref}
    )
    try:
        clients.ecr.describe_images(repositoryName=name, imageIds=[image_id])
    except Exception as exc:
        if error_code(exc) in ("ImageNotFoundException", "RepositoryNotFoundException"):
            raise ValueError(
                f"{image} is not in ECR: build and push this environment's image "
                "with `starburst-cli image build` and set worker_image to the "
                "reference it prints, or leave worker_image empty so that Plan "
                "builds it"
            ) from None
        raise
    return image


def _checks(clients: Clients, deployment: str) -> list[Check]:
    checks: list[Check] = []

    def run(name: str, fn: Callable[[], str], fix: str = "") -> bool:
        try:
            checks.append(Check(name, True, fn()))
            return True
        except (ValueError, StarburstError) as exc:
            checks.append(Check(name, False, str(exc)))
        except Exception as exc:
            checks.append(Check(name, False, f"{_short(exc)}{fix}"))
        return False

    def whoami() -> str:
        ident = clients.sts.get_caller_identity()
        return f"account {ident['Account']} as {ident['Arn']}"

    if not run(
        "credentials",
        whoami,
        "; configure credentials (aws configure, AWS_PROFILE) or for the "
        'local cloud `eval "$(starburst-cli local env)"`',
    ):
        return checks
    config: list[DeploymentConfig] = []

    def read_config() -> str:
        config.append(load_config(clients.ssm, deployment))
        return f"deployment {deployment!r} in {config[0].region}"

    if not run("config", read_config):
        return checks
    cfg = config[0]
    if cfg.region != clients.region:
        checks.append(
            Check(
                "region",
                False,
                (
                    f"the deployment lives in {cfg.region} but this shell uses "
                    f"{clients.region}: set AWS_REGION={cfg.region}"
                ),
            )
        )

    def bucket() -> str:
        clients.s3.head_bucket(Bucket=cfg.bucket)
        return f"s3://{cfg.bucket}/{cfg.prefix}"

    def cluster() -> str:
        found = clients.ecs.describe_clusters(clusters=[cfg.cluster])["clusters"]
        active = [c for c in found if c.get("status") == "ACTIVE"]
        if not active:
            raise ValueError(
                f"ECS cluster {cfg.cluster} does not exist or is not "
                "ACTIVE: re-run `starburst-cli infra apply`"
            )
        return cfg.cluster

    def log_group() -> str:
        groups = clients.logs.describe_log_groups(logGroupNamePrefix=cfg.log_group)[
            "logGroups"
        ]
        if not any(g["logGroupName"] == cfg.log_group for g in groups):
            raise ValueError(
                f"log group {cfg.log_group} does not exist: re-run "
                "`starburst-cli infra apply`"
            )
        return cfg.log_group

    def quota_check() -> str:
        q = read_quotas(clients)["on_demand"]
        if q["limit"] < 0.25:
            raise ValueError(
                f"the Fargate On-Demand vCPU quota is {q['limit']:g}: "
                "request more with `starburst-cli quota --request 32`"
            )
        return f"{q['limit']:g} vCPU On-Demand, {q['in_use']:g} in use"

    infra = "; re-run `starburst-cli infra apply`"
    run("bucket", bucket, infra)
    run("cluster", cluster, infra)
    run("log group", log_group, infra)
    run("network", lambda: _network(clients, cfg), infra)
    run("image", lambda: _image(clients, cfg))
    run(
        "quota",
        quota_check,
        "; check servicequotas:GetServiceQuota permission, or "
        "pass Plan(vcpu_quota=...) so the SDK need not read it",
    )
    return checks


def _short(exc: BaseException) -> str:
    code = error_code(exc)
    return f"{code}: {exc}" if code and code not in str(exc) else str(exc)


@out.errors()
def doctor(
    deployment: out.Deployment = "default",
    as_json: out.AsJson = False,
) -> None:
    """Check credentials, config, bucket, cluster, logs, network, image and quota."""
    started = time.monotonic()
    clients = Clients()
    checks = _checks(clients, deployment)
    failed = [c for c in checks if not c.ok]
    if as_json:
        out.print_json(
            {
                "deployment": deployment,
                "region": clients.region,
                "ok": not failed,
                "checks": [
                    {"check": c.name, "ok": c.ok, "detail": c.detail} for c in checks
                ],
            }
        )
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            typer.echo(f"{'ok' if c.ok else 'FAIL':<4} {c.name:<{width}}  {c.detail}")
        typer.echo(
            f"{len(checks) - len(failed)} of {len(checks)} checks ok in "
            f"{time.monotonic() - started:.1f} s"
        )
    if failed:
        raise typer.Exit(out.ERROR)


def register(app: typer.Typer) -> None:
    app.command()(quota)
    app.command()(doctor)

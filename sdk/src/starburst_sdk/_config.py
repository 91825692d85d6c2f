"""The deployment's config document: what Terraform writes and the SDK reads.

One JSON document in SSM Parameter Store at ``/starburst/<deployment>/config``.
``REQUIRED`` and ``OPTIONAL`` below are the contract: Terraform's
``aws_ssm_parameter`` writes exactly these keys, and a test holds both sides to
it. Endpoints never appear here; they come from the standard AWS environment
variables (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_S3``, ...).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from ._errors import ConfigError, CredentialsError

#: key -> JSON type every document must carry.
REQUIRED: dict[str, type] = {
    "version": int,
    "deployment": str,
    "region": str,
    "bucket": str,
    "prefix": str,
    "cluster": str,
    "subnets": list,
    "security_groups": list,
    "assign_public_ip": bool,
    "execution_role_arn": str,
    "task_role_arn": str,
    "log_group": str,
    "ecr_repository_url": str,
    "queue_prefix": str,
}
#: key -> JSON type a document may carry ("" means unset).
OPTIONAL: dict[str, type] = {
    "worker_image": str,
}

CONFIG_VERSION = 1


def parameter_name(deployment: str) -> str:
    return f"/starburst/{deployment}/config"


def default_deployment() -> str:
    return os.environ.get("STARBURST_DEPLOYMENT", "default")


@dataclass(frozen=True)
class DeploymentConfig:
    """The parsed config document of one deployment."""

    deployment: str
    region: str
    bucket: str
    prefix: str
    cluster: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    assign_public_ip: bool
    execution_role_arn: str
    task_role_arn: str
    log_group: str
    ecr_repository_url: str
    queue_prefix: str
    worker_image: str = ""

    @classmethod
    def from_document(cls, doc: Any, source: str) -> DeploymentConfig:
        if not isinstance(doc, dict):
            raise ConfigError(f"{source} is not a JSON object")
        missing = [k for k in REQUIRED if k not in doc]
        if missing:
            raise ConfigError(
                f"{source} lacks {', '.join(missing)}; re-run `starburst-cli infra "
                "apply` (or `starburst-cli local up`) to rewrite it"
            )
        for key, kind in {**REQUIRED, **OPTIONAL}.items():
            if key in doc and not isinstance(doc[key], kind):
                raise ConfigError(
                    f"{source}: {key!r} should be a JSON {kind.__name__}, "
                    f"got {type(doc[key]).__name__}"
                )
        if doc["version"] != CONFIG_VERSION:
            raise ConfigError(
                f"{source} has version {doc['version']}, this SDK reads version "
                f"{CONFIG_VERSION}; upgrade starburst or re-apply the Terraform"
            )
        if not doc["subnets"]:
            raise ConfigError(f"{source} lists no subnets; Fargate tasks need one")
        prefix = doc["prefix"]
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return cls(
            deployment=doc["deployment"],
            region=doc["region"],
            bucket=doc["bucket"],
            prefix=prefix,
            cluster=doc["cluster"],
            subnets=tuple(doc["subnets"]),
            security_groups=tuple(doc["security_groups"]),
            assign_public_ip=doc["assign_public_ip"],
            execution_role_arn=doc["execution_role_arn"],
            task_role_arn=doc["task_role_arn"],
            log_group=doc["log_group"],
            ecr_repository_url=doc["ecr_repository_url"],
            queue_prefix=doc["queue_prefix"],
            worker_image=doc.get("worker_image", ""),
        )


def load_config(ssm_client: Any, deployment: str) -> DeploymentConfig:
    """Read and validate the deployment's document from SSM.

    Raises ``ConfigError`` when it is absent or malformed and
    ``CredentialsError`` when AWS refuses (or finds no) credentials: this is
    the first AWS call of a plan, so the place to say how to give them."""
    from ._aws import CREDENTIALS_FIX, credentials_error

    name = parameter_name(deployment)
    try:
        resp = ssm_client.get_parameter(Name=name, WithDecryption=True)
    except ssm_client.exceptions.ParameterNotFound:
        region = ssm_client.meta.region_name
        raise ConfigError(
            f"no starburst deployment {deployment!r} in {region}: SSM parameter "
            f"{name} does not exist in this account and region. Check the region "
            "(AWS_REGION, Plan(region=...)) and STARBURST_DEPLOYMENT; create the "
            "deployment with `starburst-cli infra apply`, or start the local cloud "
            'with `starburst-cli local up` and `eval "$(starburst-cli local env)"`'
        ) from None
    except Exception as exc:
        if not credentials_error(exc):
            raise
        raise CredentialsError(
            f"cannot read SSM parameter {name}: {exc}. {CREDENTIALS_FIX}"
        ) from None
    try:
        doc = json.loads(resp["Parameter"]["Value"])
    except ValueError as exc:
        raise ConfigError(f"SSM parameter {name} is not valid JSON: {exc}") from None
    return DeploymentConfig.from_document(doc, f"SSM parameter {name}")

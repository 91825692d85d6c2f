"""Provision a deployment on the local cloud by applying the project's own Terraform.

Flow of :func:`provision`:

1. copy the root module (``terraform/`` of this repository, or ``module_dir``) into
   ``<state_dir>/module``, fresh each time, so the run sees the current code;
2. add ``local_cloud.tf.json`` beside it: an ``aws`` provider whose per-service
   ``endpoints`` come from the ``AWS_ENDPOINT_URL_*`` variables in ``env``, fake
   credentials and no account checks, and a local backend keeping the state in
   ``<state_dir>/terraform.tfstate``. The module itself declares no provider block,
   so nothing of this reaches what a user applies to real AWS;
3. ``init`` (offline when a provider mirror is found: see :func:`provider_mirror`),
   then ``apply`` with ``starburst.auto.tfvars.json`` (the deployment name,
   ``force_destroy`` so that destroy empties the bucket, and any extra variables);
4. read the config document back from SSM and return it.

:func:`deprovision` destroys what :func:`provision` created, from the same state.
Terraform's own output goes to ``<state_dir>/terraform.log``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("starburst.local")

#: ``AWS_ENDPOINT_URL_<SERVICE>`` suffix -> key in the provider's ``endpoints`` block.
ENDPOINT_KEYS = {
    "S3": "s3",
    "SQS": "sqs",
    "IAM": "iam",
    "CLOUDWATCH_LOGS": "cloudwatchlogs",
    "SSM": "ssm",
    "STS": "sts",
    "ECS": "ecs",
    "ECR": "ecr",
    "EC2": "ec2",
}

#: Where a filesystem mirror of the AWS provider may live, besides
#: ``$STARBURST_TF_PLUGIN_MIRROR`` (a directory holding ``registry.terraform.io``).
MIRROR_CANDIDATES = (
    "/opt/tf-plugins",
    "~/.terraform.d/plugins",
    "~/.local/share/terraform/plugins",
    "/usr/local/share/terraform/plugins",
    "/usr/share/terraform/plugins",
)

_IGNORED = shutil.ignore_patterns(
    ".terraform", ".terraform.lock.hcl", "*.tfstate", "*.tfstate.*", "examples"
)


class ProvisionError(RuntimeError):
    """Terraform could not apply or destroy the deployment on the local cloud."""


def default_module_dir() -> Path:
    """The root module: ``$STARBURST_TERRAFORM_DIR``, else this repository's ``terraform/``."""
    env = os.environ.get("STARBURST_TERRAFORM_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parents[3] / "terraform"


def find_binary() -> str:
    """Path of ``terraform``, else ``tofu``; raises :class:`ProvisionError` if neither."""
    for name in ("terraform", "tofu"):
        path = shutil.which(name)
        if path:
            return path
    raise ProvisionError(
        "neither `terraform` nor `tofu` is on PATH; install Terraform >= 1.6 "
        "(https://developer.hashicorp.com/terraform/install) or OpenTofu "
        "(https://opentofu.org/docs/intro/install/)"
    )


def provider_mirror() -> Path | None:
    """A directory that holds ``registry.terraform.io/hashicorp/aws``, if any."""
    candidates = [os.environ.get("STARBURST_TF_PLUGIN_MIRROR", ""), *MIRROR_CANDIDATES]
    for candidate in candidates:
        if not candidate:
            continue
        path = Path(candidate).expanduser()
        if (path / "registry.terraform.io" / "hashicorp" / "aws").is_dir():
            return path
    return None


def cli_config(state_dir: Path) -> Path | None:
    """Write a CLI config that installs providers from the mirror only; None if no mirror.

    An existing ``TF_CLI_CONFIG_FILE`` is respected as it is.
    """
    current = os.environ.get("TF_CLI_CONFIG_FILE")
    if current and Path(current).is_file():
        return Path(current)
    mirror = provider_mirror()
    if mirror is None:
        return None
    path = state_dir / "cli.tfrc"
    path.write_text(
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f"    path    = {json.dumps(str(mirror))}\n"
        '    include = ["registry.terraform.io/*/*"]\n'
        "  }\n"
        "  direct {\n"
        '    exclude = ["registry.terraform.io/*/*"]\n'
        "  }\n"
        "}\n"
    )
    return path


def region_of(env: Mapping[str, str]) -> str:
    return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"


def provider_config(env: Mapping[str, str], state_file: Path) -> dict[str, Any]:
    """The ``local_cloud.tf.json`` document: provider endpoints and the local backend."""
    fallback = env.get("AWS_ENDPOINT_URL")
    endpoints: dict[str, str] = {}
    for suffix, key in ENDPOINT_KEYS.items():
        url = env.get(f"AWS_ENDPOINT_URL_{suffix}") or fallback
        if not url:
            raise ProvisionError(
                f"no endpoint for {key}: set AWS_ENDPOINT_URL_{suffix} (or "
                "AWS_ENDPOINT_URL) in the environment passed to provision()"
            )
        endpoints[key] = url
    return {
        "terraform": {"backend": {"local": {"path": str(state_file)}}},
        "provider": {
            "aws": {
                "region": region_of(env),
                "access_key": env.get("AWS_ACCESS_KEY_ID", "test"),
                "secret_key": env.get("AWS_SECRET_ACCESS_KEY", "test"),
                "skip_credentials_validation": True,
                "skip_requesting_account_id": True,
                "skip_metadata_api_check": True,
                "s3_use_path_style": True,
                "endpoints": [endpoints],
            }
        },
    }


def _prepare(
    env: Mapping[str, str],
    deployment: str,
    state_dir: Path,
    module_dir: Path | None,
    variables: Mapping[str, Any] | None,
) -> tuple[Any, dict[str, str]]:
    from tofupy import Tofu

    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    source = Path(module_dir) if module_dir else default_module_dir()
    if not (source / "main.tf").is_file():
        raise ProvisionError(f"no Terraform root module at {source} (main.tf missing)")
    work = state_dir / "module"
    tfvars_path = work / "starburst.auto.tfvars.json"
    previous = json.loads(tfvars_path.read_text()) if tfvars_path.exists() else {}
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(source, work, ignore=_IGNORED)

    doc = provider_config(env, state_dir / "terraform.tfstate")
    (work / "local_cloud.tf.json").write_text(json.dumps(doc, indent=2))
    # Destroy reuses the variables of the last apply unless given new ones.
    extra = previous if variables is None else variables
    tfvars = {**extra, "deployment": deployment, "force_destroy": True}
    tfvars_path.write_text(json.dumps(tfvars, indent=2))

    tf_env = {
        "TF_DATA_DIR": str(state_dir / ".terraform"),
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",
        "AWS_ACCESS_KEY_ID": env.get("AWS_ACCESS_KEY_ID", "test"),
        "AWS_SECRET_ACCESS_KEY": env.get("AWS_SECRET_ACCESS_KEY", "test"),
        "AWS_REGION": region_of(env),
    }
    config = cli_config(state_dir)
    if config is not None:
        tf_env["TF_CLI_CONFIG_FILE"] = str(config)
    tofu = Tofu(cwd=work, binary=find_binary(), env=tf_env)
    try:
        tofu.init(extra_args=["-input=false", "-reconfigure"])
    except RuntimeError as exc:
        raise ProvisionError(f"terraform init failed in {work}: {exc}") from None
    return tofu, tf_env


def _write_log(state_dir: Path, what: str, events: list[dict[str, Any]]) -> Path:
    path = Path(state_dir) / "terraform.log"
    with open(path, "a") as out:
        out.write(f"--- {what}\n")
        for event in events:
            out.write(f"{event.get('@message', '')}\n")
    return path


def _check(result: Any, what: str, state_dir: Path) -> None:
    log_path = _write_log(state_dir, what, result.data)
    if result.errors:
        details = "; ".join(f"{d.summary}: {d.detail}" for d in result.errors)
        raise ProvisionError(f"terraform {what} failed ({details}); see {log_path}")


def provision(
    env: dict[str, str],
    deployment: str,
    state_dir: Path,
    *,
    module_dir: Path | None = None,
    variables: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Apply the root module to the local cloud and return the config document.

    Args:
        env: The local cloud's environment: ``AWS_ENDPOINT_URL_<SERVICE>`` (or
            ``AWS_ENDPOINT_URL``) for S3, SQS, IAM, CLOUDWATCH_LOGS, SSM, STS, ECS,
            ECR and EC2, and optionally ``AWS_REGION`` and fake credentials.
        deployment: The deployment name (``/starburst/<deployment>/config``).
        state_dir: Where this deployment's Terraform state, working copy and log
            live; one directory per deployment.
        module_dir: The root module to apply instead of this repository's.
        variables: Extra root-module variables, such as ``{"worker_image": ...}``.

    Returns:
        The config document as read back from SSM.

    Raises:
        ProvisionError: Terraform is missing, or init or apply failed.
    """
    tofu, tf_env = _prepare(env, deployment, state_dir, module_dir, variables)
    log.info("applying the starburst Terraform for %r to the local cloud", deployment)
    _check(tofu.apply(), "apply", state_dir)
    name = tofu.output()["ssm_parameter_name"].value
    return _read_parameter(env, name)


def deprovision(
    env: dict[str, str],
    deployment: str,
    state_dir: Path,
    *,
    module_dir: Path | None = None,
) -> None:
    """Destroy what :func:`provision` created for ``deployment`` in ``state_dir``.

    Raises:
        ProvisionError: Terraform is missing, or init or destroy failed.
    """
    if not (Path(state_dir) / "terraform.tfstate").exists():
        log.info("no Terraform state in %s: nothing to destroy", state_dir)
        return
    tofu, _ = _prepare(env, deployment, state_dir, module_dir, None)
    log.info("destroying the starburst Terraform for %r on the local cloud", deployment)
    _check(tofu.destroy(), "destroy", state_dir)


def _read_parameter(env: Mapping[str, str], name: str) -> dict[str, Any]:
    import boto3

    ssm = boto3.client(
        "ssm",
        region_name=region_of(env),
        endpoint_url=env.get("AWS_ENDPOINT_URL_SSM") or env.get("AWS_ENDPOINT_URL"),
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY", "test"),
    )
    value = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    return json.loads(value)

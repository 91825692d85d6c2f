"""LocalStack 4.14 on the host: start it on loopback, wait for health, stop it by pid.

The environment below is the verified one (see emulators.md): hypercorn so that only
127.0.0.1 is bound, no DNS server, state under our own ``FILESYSTEM_ROOT``, queue URLs
that resolve on this machine, signature validation on for presigned S3 URLs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import procs
from .install import ensure_localstack

SERVICES = ("s3", "sqs", "iam", "logs", "ssm", "sts")


def localstack_env(port: int, root: Path) -> dict[str, str]:
    """The variables LocalStack is started with (on top of a cleaned environment)."""
    return {
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "GATEWAY_SERVER": "hypercorn",
        "DNS_ADDRESS": "0",
        "OVERRIDE_IN_DOCKER": "0",
        "FILESYSTEM_ROOT": str(root),
        "SERVICES": ",".join(SERVICES),
        "EAGER_SERVICE_LOADING": "1",
        "LOCALSTACK_HOST": f"127.0.0.1:{port}",
        "SQS_ENDPOINT_STRATEGY": "off",
        "S3_SKIP_SIGNATURE_VALIDATION": "0",
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        "DISABLE_EVENTS": "1",
        "LS_LOG": "warn",
    }


def _base_env() -> dict[str, str]:
    """Our environment minus AWS_* and anything that would steer LocalStack itself."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "LOCALSTACK_", "GATEWAY_", "SERVICES"))
    }


def _healthy(body: bytes) -> bool:
    try:
        services = json.loads(body).get("services", {})
    except ValueError:
        return False
    return all(services.get(s) in ("available", "running") for s in SERVICES)


def start_localstack(
    port: int, state_dir: Path, timeout: float = 120.0
) -> dict[str, Any]:
    """Install if needed, start LocalStack on 127.0.0.1:``port``, wait until healthy."""
    if procs.port_in_use(port):
        raise RuntimeError(
            f"port {port} on 127.0.0.1 is taken; stop what uses it or "
            "pick another with --localstack-port"
        )
    python = ensure_localstack()
    root = state_dir / "localstack"
    root.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "localstack.log"
    env = {**_base_env(), **localstack_env(port, root)}
    rec = procs.spawn([str(python), "-m", "localstack.runtime.main"], env, log_path)
    try:
        procs.wait_http(
            f"http://127.0.0.1:{port}/_localstack/health",
            rec,
            "LocalStack",
            log_path,
            timeout=timeout,
            ready=_healthy,
        )
    except Exception:
        procs.stop(rec, "LocalStack")
        raise
    return {**rec, "port": port, "log": str(log_path)}


def stop_localstack(rec: dict[str, Any] | None) -> bool:
    """SIGTERM, SIGKILL after 15 s (SIGTERM hangs about one run in six)."""
    return procs.stop(rec, "LocalStack", grace=15.0)

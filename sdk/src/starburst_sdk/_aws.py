"""boto3 clients, configured once per plan.

Endpoints come only from the standard AWS variables (``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_S3``, ...), which botocore reads itself: the local cloud is
just another endpoint, and nothing here knows it exists.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import boto3
from botocore import exceptions as bexc
from botocore.config import Config

_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 8},
    max_pool_connections=32,
    connect_timeout=10,
    read_timeout=60,
)


class Clients:
    """Lazily made, thread-safe boto3 clients sharing one session."""

    def __init__(self, region: str | None = None, session: boto3.Session | None = None):
        # botocore reads AWS_DEFAULT_REGION and the profile, but not AWS_REGION,
        # which the AWS CLI v2 and the other SDKs read first.
        region = region or os.environ.get("AWS_REGION") or None
        self._session = session or boto3.Session(region_name=region)
        self.region = region or self._session.region_name
        if not self.region:
            from ._errors import ConfigError

            raise ConfigError(
                "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or a region "
                "in your AWS profile), or pass Plan(region=...)"
            )
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}

    def refresh(self) -> None:
        """Start again from a new boto3 session, so credentials are read afresh
        (environment, profile, SSO cache, role) and every client is remade."""
        old = self._session
        session = boto3.Session(
            region_name=self.region,
            profile_name=old.profile_name if old.profile_name != "default" else None,
        )
        with self._lock:
            self._session = session
            self._clients = {}

    def __getattr__(self, service: str) -> Any:
        if service.startswith("_"):
            raise AttributeError(service)
        name = service.replace("_", "-")
        with self._lock:
            client = self._clients.get(name)
            if client is None:
                try:
                    client = self._session.client(
                        name, region_name=self.region, config=_CONFIG
                    )
                except _CREDENTIAL_ERRORS as exc:  # e.g. a key without a secret
                    from ._errors import CredentialsError

                    raise CredentialsError(
                        f"cannot make the boto3 {name} client: {exc}. {CREDENTIALS_FIX}"
                    ) from None
                self._clients[name] = client
            return client


CREDENTIALS_FIX = (
    "Give this process AWS credentials: set AWS_PROFILE (after `aws configure` "
    "or `aws sso login`), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; for "
    'the local cloud, run `eval "$(starburst-cli local env)"`'
)

_CREDENTIAL_CODES = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "TokenRefreshRequired",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
    }
)
_CREDENTIAL_ERRORS = (
    bexc.NoCredentialsError,
    bexc.PartialCredentialsError,
    bexc.CredentialRetrievalError,
    bexc.TokenRetrievalError,
    bexc.UnauthorizedSSOTokenError,
)


def credentials_error(exc: BaseException) -> bool:
    """Whether AWS refused a call for its credentials (expired, unknown or
    absent), or a client could not be made for want of them."""
    from ._errors import CredentialsError

    return (
        isinstance(exc, (*_CREDENTIAL_ERRORS, CredentialsError))
        or error_code(exc) in _CREDENTIAL_CODES
    )


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))

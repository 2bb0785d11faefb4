"""The one boto3 client factory: every AWS client in the project comes from here.

Region, timeouts and retries come from :class:`rag.settings.Settings`; credentials come from the
default chain (IRSA web identity in the cluster), never from code or manifests. Endpoints can be
redirected for tests and local servers with boto3's standard ``AWS_ENDPOINT_URL`` /
``AWS_ENDPOINT_URL_<SERVICE>`` variables
(https://docs.aws.amazon.com/sdkref/latest/guide/feature-ss-endpoints.html).
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from rag.settings import Settings, SettingsError


def _require_region(settings: Settings) -> None:
    if not settings.aws_default_region:
        raise SettingsError("AWS_DEFAULT_REGION: required when Bedrock, S3 or DynamoDB is used")


def client_config(settings: Settings, *, read_timeout: float | None = None) -> Config:
    """botocore ``Config`` with the "standard" retry mode (exponential backoff with jitter, retries
    throttling errors such as Bedrock's ``ThrottlingException``) and explicit timeouts in seconds.

    See https://boto3.amazonaws.com/v1/documentation/api/latest/guide/retries.html.
    """
    return Config(
        region_name=settings.aws_default_region,
        connect_timeout=settings.bedrock_connect_timeout_seconds,
        read_timeout=read_timeout or settings.bedrock_read_timeout_seconds,
        retries={"mode": "standard", "total_max_attempts": settings.bedrock_max_attempts},
        max_pool_connections=max(10, settings.embed_concurrency * 2),
    )


def make_client(service: str, settings: Settings, **kwargs: Any) -> Any:
    """Create a boto3 client for ``service`` (``"s3"``, ``"dynamodb"``, ``"bedrock-runtime"``).

    Args:
        service: boto3 service name.
        settings: supplies region, timeouts and retry policy.
        kwargs: passed to ``boto3.client`` (e.g. ``endpoint_url`` in tests).

    Raises:
        SettingsError: ``AWS_DEFAULT_REGION`` is not set.
    """
    _require_region(settings)
    config = kwargs.pop("config", None) or client_config(settings)
    return boto3.client(service, region_name=settings.aws_default_region, config=config, **kwargs)


def make_resource(service: str, settings: Settings, **kwargs: Any) -> Any:
    """Create a boto3 resource (e.g. DynamoDB ``Table`` access) with the same config as clients.

    Raises:
        SettingsError: ``AWS_DEFAULT_REGION`` is not set.
    """
    _require_region(settings)
    config = kwargs.pop("config", None) or client_config(settings)
    return boto3.resource(service, region_name=settings.aws_default_region, config=config, **kwargs)

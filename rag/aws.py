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


#: Services that hold data (milliseconds per call): they get the short AWS_DATA_* timeouts.
DATA_SERVICES = frozenset({"s3", "dynamodb"})


def client_config(settings: Settings, service: str = "bedrock-runtime", *, max_pool_connections: int = 10) -> Config:
    """botocore ``Config`` with the "standard" retry mode (exponential backoff with jitter, retries
    throttling errors such as Bedrock's ``ThrottlingException`` and DynamoDB's
    ``ProvisionedThroughputExceededException``) and explicit timeouts in seconds.

    Bedrock calls get ``BEDROCK_*`` timeouts and attempts (a model may take a minute); S3 and
    DynamoDB get the short ``AWS_DATA_*`` ones. ``total_max_attempts`` counts the first call too.
    See https://boto3.amazonaws.com/v1/documentation/api/latest/guide/retries.html.

    Args:
        settings: timeouts and attempts.
        service: boto3 service name; decides which timeouts apply.
        max_pool_connections: HTTP connections kept per client (one per concurrent call).
    """
    if service in DATA_SERVICES:
        connect, read, attempts = (
            settings.aws_data_connect_timeout_seconds,
            settings.aws_data_read_timeout_seconds,
            settings.aws_data_max_attempts,
        )
    else:
        connect, read, attempts = (
            settings.bedrock_connect_timeout_seconds,
            settings.bedrock_read_timeout_seconds,
            settings.bedrock_max_attempts,
        )
    return Config(
        region_name=settings.aws_default_region,
        connect_timeout=connect,
        read_timeout=read,
        retries={"mode": "standard", "total_max_attempts": attempts},
        max_pool_connections=max(max_pool_connections, settings.embed_concurrency * 2),
    )


def make_client(service: str, settings: Settings, **kwargs: Any) -> Any:
    """Create a boto3 client for ``service`` (``"s3"``, ``"dynamodb"``, ``"bedrock-runtime"``).

    Args:
        service: boto3 service name.
        settings: supplies region, timeouts and retry policy.
        kwargs: passed to ``boto3.client`` (e.g. ``endpoint_url`` in tests); ``max_pool_connections``
            sizes the HTTP pool (set it to the number of concurrent calls, e.g. streams per worker).

    Raises:
        SettingsError: ``AWS_DEFAULT_REGION`` is not set.
    """
    _require_region(settings)
    pool = kwargs.pop("max_pool_connections", 10)
    config = kwargs.pop("config", None) or client_config(settings, service, max_pool_connections=pool)
    return boto3.client(service, region_name=settings.aws_default_region, config=config, **kwargs)


def make_resource(service: str, settings: Settings, **kwargs: Any) -> Any:
    """Create a boto3 resource (e.g. DynamoDB ``Table`` access) with the same config as clients.

    Raises:
        SettingsError: ``AWS_DEFAULT_REGION`` is not set.
    """
    _require_region(settings)
    config = kwargs.pop("config", None) or client_config(settings, service)
    return boto3.resource(service, region_name=settings.aws_default_region, config=config, **kwargs)

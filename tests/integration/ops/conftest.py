"""Fixtures for the operations integration tests: tables in DynamoDB Local shaped as onboarding creates them."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import boto3
import pytest

from tests.integration.conftest import FAKE_CREDS, create_table


def create_range_table(endpoint: str, name: str, hash_key: str, range_key: str) -> None:
    """A PAY_PER_REQUEST table with string HASH and RANGE keys (usage, feedback), as onboard-tenant.sh creates it."""
    client = boto3.client("dynamodb", endpoint_url=endpoint, **FAKE_CREDS)
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": hash_key, "KeyType": "HASH"}, {"AttributeName": range_key, "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": hash_key, "AttributeType": "S"},
            {"AttributeName": range_key, "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=name)


def create_sessions_table(endpoint: str, name: str) -> None:
    """The web chat's conversations table (HASH TenantId, RANGE ConversationId, LSI by activity, TTL)."""
    from rag.stores.sessions import TABLE_DEFINITION

    client = boto3.client("dynamodb", endpoint_url=endpoint, **FAKE_CREDS)
    client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", **TABLE_DEFINITION)
    client.get_waiter("table_exists").wait(TableName=name)
    client.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})


@pytest.fixture
def ddb_tables(dynamodb_local: str, aws_env: None) -> Callable[[], dict[str, str]]:
    """``ddb_tables()`` → fresh quota/usage/feedback/history/sessions table names (unique per call) in DynamoDB Local."""

    def make() -> dict[str, str]:
        suffix = uuid.uuid4().hex[:8]
        names = {k: f"t-{k}-{suffix}" for k in ("quota", "usage", "feedback", "history", "sessions")}
        create_table(dynamodb_local, names["quota"], "QuotaKey", ttl_attribute="expires_at")
        create_table(dynamodb_local, names["history"], "SessionId", ttl_attribute="expires_at")
        create_range_table(dynamodb_local, names["usage"], "TenantId", "UsageKey")
        create_range_table(dynamodb_local, names["feedback"], "TenantId", "FeedbackId")
        create_sessions_table(dynamodb_local, names["sessions"])
        return names

    return make


@pytest.fixture
def ddb_resource(dynamodb_local: str, aws_env: None):
    return boto3.resource("dynamodb", endpoint_url=dynamodb_local, **FAKE_CREDS)

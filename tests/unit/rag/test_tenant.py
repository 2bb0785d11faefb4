"""Tenant id and session id validation (rag.tenant)."""

from __future__ import annotations

import uuid

import pytest

from rag.tenant import (
    InvalidSessionIdError,
    InvalidTenantIdError,
    SessionId,
    parse_session_id,
    validate_tenant_id,
)


@pytest.mark.parametrize(
    "value",
    ["abc", "a" * 32, "tenanta", "tenant-b", "t3n-4nt", "a1b", "a-b"],
)
def test_valid_tenant_ids(value: str) -> None:
    assert validate_tenant_id(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "../x",
        "a/b",
        "tenant/../other",
        "TenantA",
        "TENANTA",
        "",
        "ab",  # 2 chars: too short
        "a" * 33,  # one over
        "a" * 64,
        "1tenant",  # leading digit
        "-tenant",
        "tenant-",  # trailing dash
        "tenant_a",
        "tenant.a",
        "tenant a",
        " tenanta",
        "tenanta\n",
        "ténant",
        None,
        123,
        b"tenanta",
    ],
)
def test_invalid_tenant_ids(value: object) -> None:
    with pytest.raises(InvalidTenantIdError, match="invalid tenant id"):
        validate_tenant_id(value)


def test_invalid_tenant_id_error_is_a_value_error_and_message_is_bounded() -> None:
    with pytest.raises(ValueError) as info:
        validate_tenant_id("X" * 10_000)
    assert len(str(info.value)) < 200


def test_parse_session_id_round_trip() -> None:
    raw = f"tenanta:alice@example.com:{uuid.uuid4()}"
    parsed = parse_session_id(raw)
    assert isinstance(parsed, SessionId)
    assert parsed.tenant == "tenanta"
    assert parsed.email == "alice@example.com"
    assert str(parsed) == raw
    assert parsed.user_key == "tenanta:alice@example.com"


def test_session_id_new_is_parseable_and_unique() -> None:
    first = SessionId.new("tenantb", "bob@example.com")
    second = SessionId.new("tenantb", "bob@example.com")
    assert parse_session_id(str(first)) == first
    assert first != second


def test_session_id_uppercase_uuid_is_normalised() -> None:
    value = uuid.uuid4()
    parsed = parse_session_id(f"tenanta:a@b.c:{str(value).upper()}")
    assert parsed.session_uuid == str(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        None,
        "tenanta",
        "tenanta:alice@example.com",
        "tenanta:alice@example.com:not-a-uuid",
        f"tenanta:alice@example.com:{uuid.uuid4()}:extra",
        f"tenanta:not-an-email:{uuid.uuid4()}",
        f"tenanta:al ice@example.com:{uuid.uuid4()}",
        f"tenanta:alice@example.com:{uuid.uuid4().hex}",  # not canonical (no dashes)
        "tenanta:" + "a" * 390 + "@x.y:" + str(uuid.uuid4()),  # over 400 chars
    ],
)
def test_invalid_session_ids(value: object) -> None:
    with pytest.raises(InvalidSessionIdError):
        parse_session_id(value)


@pytest.mark.parametrize("tenant", ["../x", "Tenant", "ab", "1abc"])
def test_session_id_with_bad_tenant(tenant: str) -> None:
    with pytest.raises(InvalidTenantIdError):
        parse_session_id(f"{tenant}:alice@example.com:{uuid.uuid4()}")


def test_session_id_new_rejects_bad_email() -> None:
    with pytest.raises(InvalidSessionIdError):
        SessionId.new("tenanta", "no-at-sign")

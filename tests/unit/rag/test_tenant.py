"""Tenant id and session id validation (rag.tenant)."""

from __future__ import annotations

import uuid

import pytest

from rag.tenant import (
    InvalidSessionIdError,
    InvalidTenantIdError,
    SessionId,
    parse_session_id,
    user_key,
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


SUB = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"


def test_parse_session_id_round_trip() -> None:
    raw = f"tenanta:{SUB}:{uuid.uuid4()}"
    parsed = parse_session_id(raw)
    assert isinstance(parsed, SessionId)
    assert (parsed.tenant, parsed.subject) == ("tenanta", SUB)
    assert str(parsed) == raw
    assert parsed.user_key == f"tenanta:{SUB}" == user_key("tenanta", SUB)


def test_session_id_new_is_parseable_and_unique() -> None:
    first = SessionId.new("tenantb", SUB)
    second = SessionId.new("tenantb", SUB)
    assert parse_session_id(str(first)) == first
    assert first != second
    assert first.session_uuid == first.session_uuid.lower()


@pytest.mark.parametrize(
    "spelling",
    [
        lambda u: str(u).upper(),  # the issue-16 case: stored under the raw id, read under the lowered one
        lambda u: str(u)[:8].upper() + str(u)[8:],
        lambda u: u.hex,  # no dashes
        lambda u: "{" + str(u) + "}",
        lambda u: " " + str(u),
        lambda u: str(u) + "\n",
    ],
)
def test_non_canonical_uuid_spellings_are_refused(spelling) -> None:
    value = uuid.uuid4()
    with pytest.raises(InvalidSessionIdError, match=r"invalid UUID part|canonical form"):
        parse_session_id(f"tenanta:{SUB}:{spelling(value)}")


def test_parse_is_the_identity_on_valid_ids() -> None:
    """Whatever parses is already canonical, so a store keyed by the raw string agrees with one keyed by str()."""
    for sid in (SessionId.new("tenanta", SUB), SessionId.new("tenant-b", "Google_1234AbC")):
        assert str(parse_session_id(str(sid))) == str(sid)


@pytest.mark.parametrize(
    "value",
    [
        "",
        None,
        "tenanta",
        f"tenanta:{SUB}",
        f"tenanta:{SUB}:not-a-uuid",
        f"tenanta:{SUB}:{uuid.uuid4()}:extra",
        f"tenanta:al ice:{uuid.uuid4()}",
        f"tenanta:al#ice:{uuid.uuid4()}",
        f"tenanta:alice\u00e9:{uuid.uuid4()}",
        f"tenanta::{uuid.uuid4()}",
        f"tenanta:-x:{uuid.uuid4()}",
        f"tenanta:{'s' * 129}:{uuid.uuid4()}",  # subject over 128 characters
        "tenanta:" + "a" * 400 + ":" + str(uuid.uuid4()),  # over 400 chars
    ],
)
def test_invalid_session_ids(value: object) -> None:
    with pytest.raises(InvalidSessionIdError):
        parse_session_id(value)


@pytest.mark.parametrize("tenant", ["../x", "Tenant", "ab", "1abc"])
def test_session_id_with_bad_tenant(tenant: str) -> None:
    with pytest.raises(InvalidTenantIdError):
        parse_session_id(f"{tenant}:{SUB}:{uuid.uuid4()}")


@pytest.mark.parametrize("subject", ["a:b", "", "a b", "x" * 129, "tenant#user"])
def test_session_id_new_and_user_key_reject_bad_subjects(subject: str) -> None:
    with pytest.raises(InvalidSessionIdError, match="invalid user subject"):
        SessionId.new("tenanta", subject)
    with pytest.raises(InvalidSessionIdError, match="invalid user subject"):
        user_key("tenanta", subject)


def test_subject_pattern_admits_cognito_and_common_issuer_subjects() -> None:
    for subject in (SUB, "Google_1234567890", "auth0|5f7c8ec7c33c6c004bbafe82", "alice@example.com", "a"):
        assert parse_session_id(f"tenanta:{subject}:{uuid.uuid4()}").subject == subject

"""pgvector backend without a database: names, onboarding SQL, settings, the 503 mapping."""

from __future__ import annotations

import pytest

from api.errors import classify_exception
from rag.index.backend import VectorStoreUnavailableError
from rag.index.pgvector import (
    PgVectorIndex,
    deprovision_sql,
    main,
    provision_sql,
    redact_url,
    role_for,
    schema_for,
    table_for,
)
from rag.index.store import IndexIntegrityError
from rag.settings import SettingsError, load_settings
from rag.tenant import InvalidTenantIdError


def test_schema_and_role_names_come_from_the_validated_tenant_id() -> None:
    assert schema_for("tenanta") == role_for("tenanta") == "tenant_tenanta"
    assert schema_for("acme-corp-2") == "tenant_acme_corp_2"
    for bad in ("A", "x", 'a"; drop schema x; --', "tenant_a", "-ab", "a" * 40):
        with pytest.raises(InvalidTenantIdError):
            schema_for(bad)


def test_version_tables_accept_only_version_ids() -> None:
    assert table_for("20261125T120000123456Z-1a2b3c4d") == "chunks_20261125t120000123456z_1a2b3c4d"
    for bad in ("LATEST", "20261125T120000Z-1a2b3c4d; drop table x", "../v", ""):
        with pytest.raises(IndexIntegrityError):
            table_for(bad)


def test_redact_url_hides_the_password_only() -> None:
    assert redact_url("postgresql://tenant_a:s3cret@db:5432/rag") == "postgresql://tenant_a:***@db:5432/rag"
    assert redact_url("postgresql://tenant_a@/rag?host=/tmp") == "postgresql://tenant_a@/rag?host=/tmp"


def test_provision_sql_makes_one_role_owning_one_schema() -> None:
    text = "\n".join(s.as_string(None) for s in provision_sql("acme-corp", database="rag", iam=True))
    assert 'CREATE SCHEMA IF NOT EXISTS "tenant_acme_corp" AUTHORIZATION "tenant_acme_corp"' in text
    assert 'REVOKE ALL ON SCHEMA "tenant_acme_corp" FROM PUBLIC' in text
    assert 'REVOKE ALL ON DATABASE "rag" FROM PUBLIC' in text and "REVOKE CREATE ON SCHEMA public FROM PUBLIC" in text
    assert 'GRANT CONNECT ON DATABASE "rag" TO "tenant_acme_corp"' in text
    assert 'GRANT rds_iam TO "tenant_acme_corp"' in text
    assert "NOSUPERUSER NOCREATEDB NOCREATEROLE" in text and "PASSWORD" not in text
    local = "\n".join(s.as_string(None) for s in provision_sql("acme-corp", database="rag", iam=False, password="pw"))
    assert "rds_iam" not in local and "PASSWORD 'pw'" in local
    with pytest.raises(ValueError, match="no password"):
        provision_sql("acme-corp", database="rag", iam=True, password="pw")
    with pytest.raises(ValueError, match="database"):
        provision_sql("acme-corp", database="rag; drop", iam=True)
    dropped = "\n".join(s.as_string(None) for s in deprovision_sql("acme-corp", database="rag"))
    assert (
        'DROP SCHEMA IF EXISTS "tenant_acme_corp" CASCADE' in dropped
        and 'DROP ROLE IF EXISTS "tenant_acme_corp"' in dropped
    )


def test_cli_prints_the_sql_and_rejects_a_bad_tenant(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["provision", "--tenant", "tenanta", "--iam"]) == 0
    out = capsys.readouterr().out
    assert out.count(";\n") >= 10 and 'GRANT rds_iam TO "tenant_tenanta";' in out
    assert main(["deprovision", "--tenant", "Bad_Tenant"]) == 2
    assert "invalid tenant id" in capsys.readouterr().err


def test_settings_need_a_target_and_map_empty_values_to_unset() -> None:
    with pytest.raises(SettingsError, match=r"PGVECTOR_URL .* or PG_HOST"):
        load_settings(tenant_id="tenanta", vector_store="pgvector")
    with pytest.raises(SettingsError, match="PGVECTOR_URL"):
        load_settings(tenant_id="tenanta", vector_store="pgvector", pgvector_url="mysql://x")
    offline = {"embeddings_provider": "local", "llm_provider": "extractive"}
    local = load_settings(
        tenant_id="tenanta", vector_store="pgvector", pgvector_url="postgresql://u@/rag", pg_host="", **offline
    )
    assert local.pg_host is None and not local.uses_pgvector_iam and not local.uses_aws
    aurora = load_settings(
        tenant_id="tenanta", vector_store="pgvector", pg_host="db.cluster-x.eu-west-1.rds.amazonaws.com"
    )
    assert aurora.uses_pgvector_iam and aurora.uses_aws and aurora.pg_sslmode == "require"
    assert load_settings(tenant_id="tenanta").vector_store == "faiss"


def test_production_connection_uses_iam_token_tls_and_the_tenant_role(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    settings = load_settings(
        tenant_id="acme-corp",
        vector_store="pgvector",
        pg_host="db.cluster-x.eu-west-1.rds.amazonaws.com",
        aws_default_region="eu-west-1",
    )
    index = PgVectorIndex.from_settings(settings, purpose="serve")
    assert "sslmode=require" in index.pool.conninfo and "user=tenant_acme_corp" in index.pool.conninfo
    assert "password" not in index.pool.conninfo
    kwargs = index._connect_kwargs()
    # a SigV4-presigned rds-db connect URL, signed locally (no network)
    assert kwargs["password"].startswith("db.cluster-x.eu-west-1.rds.amazonaws.com:5432/?Action=connect")
    assert "DBUser=tenant_acme_corp" in kwargs["password"] and "X-Amz-Signature=" in kwargs["password"]
    assert "statement_timeout=5000" in kwargs["options"] and kwargs["connect_timeout"] == 3
    assert (
        index.uri == "postgresql://tenant_acme_corp@db.cluster-x.eu-west-1.rds.amazonaws.com:5432/rag#tenant_acme_corp"
    )
    ingest = PgVectorIndex.from_settings(settings, purpose="ingest")
    assert "statement_timeout=0" in ingest._connect_kwargs()["options"]


def test_vector_store_unavailable_is_a_503_with_retry_after() -> None:
    error = classify_exception(VectorStoreUnavailableError("vector database unavailable: PoolTimeout"))
    assert (error.status, error.error, error.retry_after) == (503, "vector_store_unavailable", 5)
    assert error.headers() == {"Retry-After": "5"} and "unavailable" in error.message

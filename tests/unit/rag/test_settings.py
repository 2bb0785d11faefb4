"""Settings from the environment (rag.settings): defaults, derived values, one line per bad variable."""

from __future__ import annotations

import pytest

from rag.settings import LOCAL_EMBEDDING_MODEL_ID, SettingsError, get_settings, load_settings


def test_minimal_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANT_ID", "tenanta")
    settings = load_settings()
    assert settings.tenant_id == "tenanta"
    assert settings.embeddings_provider == "bedrock"
    assert settings.embedding_model_id == "amazon.titan-embed-text-v2:0"
    assert settings.chunk_size == 1500
    assert settings.chunk_overlap == 150


def test_missing_tenant_id_names_the_variable() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert str(info.value).startswith("TENANT_ID:")
    assert "\n" not in str(info.value)


def test_bad_tenant_id_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANT_ID", "../etc")
    with pytest.raises(SettingsError) as info:
        load_settings()
    lines = str(info.value).splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("TENANT_ID: invalid tenant id")


def test_several_bad_field_variables_one_line_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANT_ID", "Bad")
    monkeypatch.setenv("EMBEDDINGS_PROVIDER", "openai")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "nowhere")
    monkeypatch.setenv("CHUNK_SIZE", "ten")
    with pytest.raises(SettingsError) as info:
        load_settings()
    lines = str(info.value).splitlines()
    assert sorted(line.split(":")[0] for line in lines) == [
        "AWS_DEFAULT_REGION",
        "CHUNK_SIZE",
        "EMBEDDINGS_PROVIDER",
        "TENANT_ID",
    ]


def test_overlap_not_below_chunk_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANT_ID", "tenanta")
    monkeypatch.setenv("CHUNK_SIZE", "200")
    monkeypatch.setenv("CHUNK_OVERLAP", "200")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert str(info.value) == "CHUNK_OVERLAP: must be smaller than CHUNK_SIZE"


def test_bad_tenant_and_bad_overlap_are_both_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """BUG (reported): the cross-field check is a model validator, which pydantic skips once any
    field failed, so a bad TENANT_ID hides the CHUNK_OVERLAP problem."""
    monkeypatch.setenv("TENANT_ID", "A")
    monkeypatch.setenv("CHUNK_SIZE", "200")
    monkeypatch.setenv("CHUNK_OVERLAP", "300")
    with pytest.raises(SettingsError) as info:
        load_settings()
    lines = str(info.value).splitlines()
    assert [line.split(":")[0] for line in lines] == ["TENANT_ID", "CHUNK_OVERLAP"]


def test_two_cross_field_problems_are_two_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """BUG (reported): both combination problems are joined with '; ' on one line."""
    monkeypatch.setenv("TENANT_ID", "tenanta")
    monkeypatch.setenv("CHUNK_SIZE", "200")
    monkeypatch.setenv("CHUNK_OVERLAP", "300")
    monkeypatch.setenv("EMBEDDING_DIMENSIONS", "7")
    with pytest.raises(SettingsError) as info:
        load_settings()
    lines = str(info.value).splitlines()
    assert sorted(line.split(":")[0] for line in lines) == ["CHUNK_OVERLAP", "EMBEDDING_DIMENSIONS"]


@pytest.mark.parametrize("dims", ["256", "512", "1024"])
def test_titan_dimensions_accepted(monkeypatch: pytest.MonkeyPatch, dims: str) -> None:
    monkeypatch.setenv("TENANT_ID", "tenanta")
    monkeypatch.setenv("EMBEDDING_DIMENSIONS", dims)
    assert load_settings().embedding_dimensions == int(dims)


def test_overrides_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANT_ID", "tenanta")
    assert load_settings(tenant_id="tenantb").tenant_id == "tenantb"


def test_resolved_index_uri(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("TENANT_ID", "tenanta")
    with pytest.raises(SettingsError, match="INDEX_URI or CONTEXTUAL_DATA_BUCKET"):
        _ = load_settings().resolved_index_uri
    monkeypatch.setenv("CONTEXTUAL_DATA_BUCKET", "tenanta-bucket")
    settings = load_settings()
    assert settings.resolved_index_uri == "s3://tenanta-bucket/faiss_index/"
    assert settings.default_source_uri == "s3://tenanta-bucket/documents/"
    monkeypatch.setenv("INDEX_URI", str(tmp_path))
    assert load_settings().resolved_index_uri == str(tmp_path)


def test_default_source_needs_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANT_ID", "tenanta")
    with pytest.raises(SettingsError, match="CONTEXTUAL_DATA_BUCKET"):
        _ = load_settings().default_source_uri


def test_bad_bucket_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANT_ID", "tenanta")
    monkeypatch.setenv("CONTEXTUAL_DATA_BUCKET", "Bad_Bucket")
    with pytest.raises(SettingsError, match=r"^CONTEXTUAL_DATA_BUCKET:"):
        load_settings()


def test_effective_embedding_model_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANT_ID", "tenanta")
    assert load_settings().effective_embedding_model_id == "amazon.titan-embed-text-v2:0"
    monkeypatch.setenv("EMBEDDINGS_PROVIDER", "local")
    assert load_settings().effective_embedding_model_id == LOCAL_EMBEDDING_MODEL_ID


def test_uses_aws(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("TENANT_ID", "tenanta")
    assert load_settings().uses_aws  # bedrock by default
    monkeypatch.setenv("EMBEDDINGS_PROVIDER", "local")
    monkeypatch.setenv("LLM_PROVIDER", "extractive")
    monkeypatch.setenv("INDEX_URI", str(tmp_path))
    assert not load_settings().uses_aws
    monkeypatch.setenv("INDEX_URI", "s3://bucket-x/faiss_index/")
    assert load_settings().uses_aws


def test_settings_are_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANT_ID", "tenanta")
    settings = load_settings()
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type
        settings.tenant_id = "tenantb"  # type: ignore[misc]


def test_get_settings_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANT_ID", "tenanta")
    first = get_settings()
    monkeypatch.setenv("TENANT_ID", "tenantb")
    assert get_settings() is first
    get_settings.cache_clear()
    assert get_settings().tenant_id == "tenantb"


def test_aws_client_needs_region(monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.aws import make_client

    monkeypatch.setenv("TENANT_ID", "tenanta")
    with pytest.raises(SettingsError, match=r"^AWS_DEFAULT_REGION:"):
        make_client("s3", load_settings())


def test_aws_client_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """BUG (reported, minor): botocore's ``retries["max_attempts"]`` counts *retries*, so
    BEDROCK_MAX_ATTEMPTS=3 gives 4 attempts; rag/aws.py should pass ``total_max_attempts``."""
    from rag.aws import make_client

    monkeypatch.setenv("TENANT_ID", "tenanta")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("BEDROCK_MAX_ATTEMPTS", "3")
    client = make_client("bedrock-runtime", load_settings())
    assert client.meta.region_name == "eu-west-1"
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 3}
    assert client.meta.config.read_timeout == 60.0


@pytest.mark.parametrize("group", ["admins", "tenant-admins", "Ädmins+ops@example.com", "a" * 128])
def test_admin_group_accepts_cognito_group_names(monkeypatch: pytest.MonkeyPatch, group: str) -> None:
    monkeypatch.setenv("TENANT_ID", "tenanta")
    monkeypatch.setenv("ADMIN_GROUP", group)
    assert load_settings().admin_group == group


@pytest.mark.parametrize("group", ["", "two words", "admins\n", "admins;drop", "a" * 129])
def test_admin_group_refuses_what_is_not_a_group_name(monkeypatch: pytest.MonkeyPatch, group: str) -> None:
    monkeypatch.setenv("TENANT_ID", "tenanta")
    monkeypatch.setenv("ADMIN_GROUP", group)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert str(info.value).startswith("ADMIN_GROUP: must be 1 to 128 letters, digits or +=,.@-_")


def test_graceful_timeout_default_is_the_serving_constant(monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.serving import GRACEFUL_TIMEOUT_SECONDS

    monkeypatch.setenv("TENANT_ID", "tenanta")
    assert load_settings().gunicorn_graceful_timeout == GRACEFUL_TIMEOUT_SECONDS

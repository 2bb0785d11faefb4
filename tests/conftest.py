"""Shared pytest configuration: paths to the shared demo data and a clean environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SHARED_DIR", REPO_ROOT.parent / "shared"))
DATA_DIR = SHARED / "data"
EVAL_DIR = SHARED / "eval"

#: Variables that would make a test talk to a real AWS account or change settings behind its back.
_ENV_TO_CLEAR = (
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
    "TENANT_ID",
    "CONTEXTUAL_DATA_BUCKET",
    "INDEX_URI",
    "EMBEDDING_MODEL_ID",
    "EMBEDDINGS_PROVIDER",
    "LLM_PROVIDER",
    "TEXT2TEXT_MODEL_ID",
    "HISTORY_URL",
    "CHATHISTORY_TABLE",
    "SESSIONS_TABLE",
    "SESSIONS_URL",
    "ISSUER_URI",
    "AUTH_MODE",
    "RAG_API_URL",
    "RETRIEVER_MODE",
    "INDEX_POLL_SECONDS",
    "COGNITO_CLIENT_ID",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from rag.settings import get_settings

    get_settings.cache_clear()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``../shared/data`` (the two demo FAQ corpora); fails loudly when absent."""
    assert (DATA_DIR / "Amazon_SageMaker_FAQs.csv").is_file(), f"demo data missing under {DATA_DIR}"
    return DATA_DIR


@pytest.fixture(scope="session")
def eval_dir() -> Path:
    """``../shared/eval`` (dev question sets)."""
    assert (EVAL_DIR / "dev_tenanta.jsonl").is_file(), f"eval data missing under {EVAL_DIR}"
    return EVAL_DIR

"""Bodies that only the RAG API uses (the web chat <-> API messages live in :mod:`rag.contract`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Readiness(BaseModel):
    """``GET /readyz``."""

    status: Literal["ready", "not_ready"]
    tenant: str
    index_version: str | None = None
    embedding_model: str | None = None
    chunks: int | None = None
    message: str | None = None

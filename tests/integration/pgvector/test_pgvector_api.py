"""The RAG API with ``VECTOR_STORE=pgvector`` on a real PostgreSQL: the same answers and citations
as with FAISS, and a database outage or a slow database as a fast 503 + ``Retry-After`` with
readiness false, recovering when the database is back."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient
from langchain_core.documents import Document
from psycopg import sql

from api.main import create_app
from devstack.postgres import DATABASE, LocalPostgres
from rag.index.pgvector import PgVectorIndex, deprovision_sql, run_statements, schema_for, table_for
from rag.index.store import SourceRecord
from rag.stores.history import InMemoryHistoryStore
from tests.integration.api.conftest import wait_until
from tests.unit.api.fakes import EMBEDDING_MODEL, FAQ, SESSION, TENANT, fake_embeddings, make_settings, parse_sse
from tests.unit.api.fakes import publish_index as publish_faiss_index

pytestmark = pytest.mark.integration


def faq_documents() -> list[Document]:
    """The documents :func:`tests.unit.api.fakes.publish_index` writes to FAISS."""
    return [
        Document(f"{q}\n{a}", metadata={"id": f"faq.csv#{i}", "source": "faq.csv", "row": i, "title": q})
        for i, (q, a) in enumerate(FAQ)
    ]


def publish_pg_index(url: str) -> str:
    """Publish the FAQ into tenanta's schema with the same fake embeddings; returns the version."""
    docs = faq_documents()
    vectors = np.asarray(fake_embeddings().embed_documents([d.page_content for d in docs]), dtype=np.float32)
    index = PgVectorIndex(tenant=TENANT, conninfo=url, statement_timeout=0)
    try:
        return index.publish(tenant=TENANT, embedding_model=EMBEDDING_MODEL, previous=None, kept_positions=[],
                             new_vectors=vectors, documents=docs,
                             sources=[SourceRecord("faq.csv", "sha256:0", len(docs))],
                             chunking={"chunk_size": 1500, "chunk_overlap": 150}, index_type="hnsw")  # fmt: skip
    finally:
        index.close()


@pytest.fixture
def tenanta_url(postgres: LocalPostgres) -> str:
    """tenanta's role and schema, freshly made (offboarding SQL first, so each test starts empty)."""
    with psycopg.connect(postgres.url()) as conn:
        run_statements(conn, deprovision_sql(TENANT, database=DATABASE))
    return postgres.provision(TENANT)


@pytest.fixture
def client_for(tmp_path: Path, tenanta_url: str) -> Iterator[Callable[..., TestClient]]:
    """``client_for(backend, **settings)`` → a started TestClient over the FAQ index in that backend."""
    opened: list[TestClient] = []
    publish_pg_index(tenanta_url)
    publish_faiss_index(tmp_path / "index")

    def make(backend: str, **overrides: Any) -> TestClient:
        if backend == "pgvector":
            overrides = {"vector_store": "pgvector", "pgvector_url": tenanta_url, **overrides}
        settings = make_settings(tmp_path / "index", **overrides)
        client = TestClient(create_app(settings=settings, embeddings=fake_embeddings(), history=InMemoryHistoryStore()))
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


def _ask(client: TestClient, q: str, session: str | None = None, **extra: Any) -> Any:
    """POST /rag in ``session`` (default: a new session, so no history changes the retrieval)."""
    session = session or f"{TENANT}:alice@example.com:{uuid.uuid4()}"
    return client.post("/api/v1/llm/rag", json={"q": q, "user_session_id": session, **extra})


def _citations(body: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(s["source"], s["row"], round(s["score"], 4)) for s in body["sources"]]


@pytest.mark.parametrize("question", ["What is SageMaker Studio?", "Does EMR support Presto?", "R language"])
def test_dense_answers_and_citations_equal_faiss(client_for, question: str) -> None:
    # pgvector holds float32 vectors: compared with FAISS over the file's float32 vectors, to the 4th decimal
    faiss = _ask(
        client_for("faiss", retriever_mode="dense", flat_search_precision="float32"), question, max_matching_docs=3
    )
    pg = _ask(client_for("pgvector", retriever_mode="dense"), question, max_matching_docs=3)
    assert faiss.status_code == pg.status_code == 200, (faiss.text, pg.text)
    assert _citations(pg.json()) == _citations(faiss.json())
    assert pg.json()["answer"] == faiss.json()["answer"]
    # FAISS's default float16 serving copy: the same citations in the same order, cosine within 1e-3
    half = _ask(client_for("faiss", retriever_mode="dense"), question, max_matching_docs=3)
    assert half.status_code == 200, half.text
    assert [c[:2] for c in _citations(half.json())] == [c[:2] for c in _citations(pg.json())]
    for got, exact in zip(half.json()["sources"], pg.json()["sources"], strict=True):
        assert abs(got["score"] - exact["score"]) < 1e-3
    assert half.json()["answer"] == pg.json()["answer"]


@pytest.mark.parametrize("backend", ["faiss", "pgvector"])
def test_stream_readiness_and_follow_up(client_for, backend: str) -> None:
    """A representative API flow on both backends: readiness with the version, a streamed hybrid
    answer with sources, a follow-up that uses the history."""
    client = client_for(backend)
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text
    assert ready.json()["chunks"] == len(FAQ) and ready.json()["embedding_model"] == EMBEDDING_MODEL
    events = parse_sse(
        client.post("/api/v1/llm/rag/stream", json={"q": "Does EMR support Presto?", "user_session_id": SESSION}).text
    )
    names = [name for name, _ in events]
    assert names[0] == "token" and names[-2:] == ["sources", "done"], names
    sources = events[-2][1]["sources"]
    assert sources[0]["row"] == 3 and sources[0]["source"] == "faq.csv"
    follow = _ask(client, "and Trino?", SESSION, verbose=True)
    assert follow.status_code == 200, follow.text
    history = client.get(f"/api/v1/sessions/{SESSION}/messages").json()["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]


def test_database_stopped_mid_run_is_a_503_then_recovers(client_for, postgres: LocalPostgres) -> None:
    client = client_for(
        "pgvector", retriever_mode="dense", pg_connect_timeout_seconds=1, pg_statement_timeout_seconds=2
    )
    before = _ask(client, "What is Amazon EMR?")
    assert before.status_code == 200, before.text
    postgres.stop()
    try:
        down = _ask(client, "What is Amazon EMR?")
        assert down.status_code == 503, down.text
        assert down.json()["error"] == "vector_store_unavailable"
        assert down.headers["Retry-After"] == "5"
        stream = client.post("/api/v1/llm/rag/stream", json={"q": "What is Amazon EMR?", "user_session_id": SESSION})
        error = dict(parse_sse(stream.text))["error"]
        assert error["error"] == "vector_store_unavailable" and error["retry_after"] == 5
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "vector database unavailable" in ready.json()["message"]
    finally:
        postgres.start()
    assert wait_until(lambda: client.get("/readyz").status_code == 200, timeout=90, interval=0.5)
    again = _ask(client, "What is Amazon EMR?")
    assert again.status_code == 200 and _citations(again.json()) == _citations(before.json())


def test_slow_database_is_a_503_not_a_hang(client_for, postgres: LocalPostgres) -> None:
    """A lock held elsewhere stalls the search: ``statement_timeout`` turns it into a 503."""
    client = client_for("pgvector", retriever_mode="dense", pg_statement_timeout_seconds=1)
    before = _ask(client, "What is Amazon EMR?")
    assert before.status_code == 200, before.text
    with postgres.admin() as admin:
        chunk_table = admin.execute(
            sql.SQL("SELECT version FROM {}.current").format(sql.Identifier(schema_for(TENANT)))
        ).fetchone()[0]
    with psycopg.connect(postgres.url()) as blocker:  # a transaction holding an exclusive lock
        blocker.execute(
            sql.SQL("LOCK TABLE {}.{} IN ACCESS EXCLUSIVE MODE").format(
                sql.Identifier(schema_for(TENANT)), sql.Identifier(table_for(chunk_table))
            )
        )
        slow = _ask(client, "What is Amazon EMR?")
        assert slow.status_code == 503, slow.text
        assert slow.json()["error"] == "vector_store_unavailable" and slow.headers["Retry-After"] == "5"
        blocker.rollback()
    fine = _ask(client, "What is Amazon EMR?")
    assert fine.status_code == 200 and _citations(fine.json()) == _citations(before.json())

"""The pgvector backend against a real PostgreSQL 16 + pgvector 0.6 (``pgserver``): ingestion,
incremental re-ingestion, the atomic version switch, tenant isolation, and retrieval equal to FAISS."""

from __future__ import annotations

import secrets
import shutil
import threading
from pathlib import Path

import numpy as np
import psycopg
import pytest
from langchain_core.embeddings import Embeddings
from psycopg import sql

from ingest.pipeline import run_ingestion
from ingest.sources import LocalSource
from rag.answer.retrieval import TenantIndex, TenantRetriever
from rag.eval import evaluate, load_questions
from rag.index.pgvector import PgIndexReader, schema_for, table_for
from rag.index.store import LocalBlobStore, load_index_version
from tests.integration.pgvector.conftest import write_docs
from tests.unit.ingest.conftest import FAKE_MODEL, CountingEmbeddings

pytestmark = pytest.mark.integration

DOCS = {
    "studio.md": "# SageMaker Studio\n\nStudio is a web-based IDE for machine learning notebooks.",
    "pricing.txt": "Studio itself is free of charge; you pay for the compute instances you run.",
    "emr.md": "# Amazon EMR\n\nEMR runs Apache Spark, Hive and Presto clusters on EC2 instances.",
}


def ingest(tenant: str, docs: Path, target, embeddings: CountingEmbeddings, **kwargs):
    return run_ingestion(tenant=tenant, source=LocalSource(docs), store=target, embeddings=embeddings,
                         embedding_model=FAKE_MODEL, concurrency=1, progress=False, **kwargs)  # fmt: skip


def rows_of(index, version: str) -> dict[str, tuple[str, list[float]]]:
    """``{chunk id: (text, embedding)}`` of one version's table, read as the tenant role."""
    with index.connection() as conn:
        rows = conn.execute(
            sql.SQL("SELECT id, text, embedding FROM {}.{}").format(
                sql.Identifier(index.schema), sql.Identifier(table_for(version))
            )
        ).fetchall()
    return {r[0]: (r[1], r[2].to_list()) for r in rows}


def test_ingestion_round_trip_matches_the_faiss_index(new_tenant, open_index, tmp_path: Path) -> None:
    tenant, url = new_tenant()
    docs = write_docs(tmp_path / "docs", DOCS)
    index = open_index(tenant, url)
    summary = ingest(tenant, docs, index, CountingEmbeddings(), index_type="hnsw")
    faiss_store = LocalBlobStore(tmp_path / "faiss")
    faiss_summary = ingest(tenant, docs, faiss_store, CountingEmbeddings(), index_type="flat")

    assert summary.version == index.latest_version_id() and index.versions() == [summary.version]
    assert (summary.chunks, summary.embedded_chunks, summary.reused_chunks) == (faiss_summary.chunks, 3, 0)
    assert summary.index_uri.endswith(f"#{schema_for(tenant)}")
    current = index.current_version(embedding_model=FAKE_MODEL)
    assert current.manifest.count == 3 and current.manifest.dim == 32 and current.manifest.index_type == "hnsw"
    assert current.manifest.index_params == {"m": 32, "ef_construction": 80}
    with index.connection() as conn:  # the HNSW (inner product) and GIN indexes exist
        indexes = dict(
            conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
                (index.schema, table_for(summary.version)),
            ).fetchall()
        )
    assert any("USING hnsw (embedding vector_ip_ops)" in d for d in indexes.values()), indexes
    assert any("USING gin (tsv)" in d for d in indexes.values()), indexes

    faiss_index = TenantIndex(load_index_version(faiss_store, tenant=tenant, embedding_model=FAKE_MODEL))
    pg_index = PgIndexReader(index, embedding_model=FAKE_MODEL).load(summary.version)
    embeddings = CountingEmbeddings()
    for question in ("Is Studio free?", "Which engines does EMR run?", "web IDE for notebooks"):
        expected = TenantRetriever(index=faiss_index, embeddings=embeddings, mode="dense", k=3).invoke(question)
        got = TenantRetriever(index=pg_index, embeddings=embeddings, mode="dense", k=3).invoke(question)
        assert [d.id for d in got] == [d.id for d in expected]
        assert [d.page_content for d in got] == [d.page_content for d in expected]
        for a, b in zip(got, expected, strict=True):
            assert {k: v for k, v in a.metadata.items() if "score" not in k} == {
                k: v for k, v in b.metadata.items() if "score" not in k
            }
            assert a.metadata["score"] == pytest.approx(b.metadata["score"], abs=1e-5)
    hybrid = TenantRetriever(index=pg_index, embeddings=embeddings, mode="hybrid", k=3).invoke("Presto on EC2")
    assert hybrid[0].metadata["source"].endswith("emr.md")  # full-text match fused in
    assert all({"score", "dense_score", "fusion_score", "rank"} <= set(d.metadata) for d in hybrid)


def test_incremental_reingestion_reuses_unchanged_vectors(new_tenant, open_index, tmp_path: Path) -> None:
    tenant, url = new_tenant()
    docs = write_docs(tmp_path / "docs", DOCS)
    index = open_index(tenant, url)
    first = ingest(tenant, docs, index, CountingEmbeddings(), index_type="flat")
    before = rows_of(index, first.version)

    again = CountingEmbeddings()
    unchanged = ingest(tenant, docs, index, again, index_type="flat")
    assert unchanged.unchanged and unchanged.version == first.version and again.texts == []

    (docs / "pricing.txt").write_text("Studio is free; notebooks bill per instance hour.", encoding="utf-8")
    (docs / "emr.md").unlink()
    (docs / "new.txt").write_text("Amazon Bedrock hosts foundation models behind one API.", encoding="utf-8")
    embeddings = CountingEmbeddings()
    second = ingest(tenant, docs, index, embeddings, index_type="flat", keep_versions=1)

    assert sorted(embeddings.texts) == sorted(
        ["Studio is free; notebooks bill per instance hour.", "Amazon Bedrock hosts foundation models behind one API."]
    )
    assert (second.reused_chunks, second.embedded_chunks, second.chunks) == (1, 2, 3)
    assert [Path(uri).name for uri in second.removed_sources] == ["emr.md"]
    after = rows_of(index, second.version)
    studio_id = next(i for i, (text, _) in before.items() if "web-based IDE" in text)
    assert after[studio_id] == before[studio_id]  # the same row, vector copied inside the database
    assert not any("Spark" in text for text, _ in after.values())
    assert index.versions() == [second.version]  # the old version was dropped after the switch
    with index.connection() as conn:
        tables = {
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (index.schema,)).fetchall()
        }
    assert tables == {"versions", "current", table_for(second.version)}


def test_switch_is_atomic_while_queries_run(new_tenant, open_index) -> None:
    """Readers query without pause while three new versions are published and old ones dropped:
    no error, every result comes from exactly one version, and the last version wins."""
    tenant, url = new_tenant()
    writer = open_index(tenant, url)
    reader = open_index(tenant, url, statement_timeout=5.0)
    embeddings = CountingEmbeddings()
    generations = 4

    def publish(generation: int) -> str:
        from langchain_core.documents import Document

        from rag.index.store import SourceRecord

        docs = [
            Document(f"generation {generation} chunk {i} about spark clusters",
                     metadata={"id": f"g{generation}-{i}", "source": f"g{generation}.txt", "generation": generation})
            for i in range(40)
        ]  # fmt: skip
        vectors = np.asarray(embeddings.embed_documents([d.page_content for d in docs]), dtype=np.float32)
        previous = writer.previous(tenant, FAKE_MODEL)
        version = writer.publish(tenant=tenant, embedding_model=FAKE_MODEL, previous=previous, kept_positions=[],
                                 new_vectors=vectors, documents=docs, sources=[SourceRecord(f"g{generation}", "x", 40)],
                                 chunking={"chunk_size": 1500, "chunk_overlap": 150}, index_type="hnsw")  # fmt: skip
        writer.prune(1)
        return version

    publish(0)
    retriever = TenantRetriever(
        index=PgIndexReader(reader, embedding_model=FAKE_MODEL).load(writer.latest_version_id()),
        embeddings=embeddings,
        mode="hybrid",
        k=8,
    )
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: list[set[int]] = []

    def query() -> None:
        while not stop.is_set():
            try:
                docs = retriever.invoke("spark clusters chunk")
                seen.append({d.metadata["generation"] for d in docs})
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)
                return

    threads = [threading.Thread(target=query) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for generation in range(1, generations):
            publish(generation)
        final = {generations - 1}
        # Poll with a deadline: the readers keep going until one sees the final version.
        for _ in range(2000):
            if seen and seen[-1] == final:
                break
            threading.Event().wait(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not errors, errors[:3]
    assert seen and all(len(generation_set) == 1 for generation_set in seen), [s for s in seen if len(s) != 1][:3]
    assert seen[-1] == final
    assert len({next(iter(s)) for s in seen}) >= 2  # the readers really ran across a switch
    assert writer.versions() == [writer.latest_version_id()]


def test_second_tenant_role_is_denied_the_first_tenants_schema(postgres, new_tenant, open_index, tmp_path) -> None:
    tenant_a, url_a = new_tenant("ta")
    _, url_b = new_tenant("tb")
    docs = write_docs(tmp_path / "docs", DOCS)
    index_a = open_index(tenant_a, url_a)
    ingest(tenant_a, docs, index_a, CountingEmbeddings(), index_type="flat")
    schema_a = schema_for(tenant_a)

    with psycopg.connect(url_b) as conn:
        for statement in (
            sql.SQL("SELECT * FROM {}.versions").format(sql.Identifier(schema_a)),
            sql.SQL("CREATE TABLE {}.intruder (x int)").format(sql.Identifier(schema_a)),
            sql.SQL("CREATE TABLE public.intruder (x int)"),
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                conn.execute(statement)
            conn.rollback()
    # B's role pointed at A's index: refused by the database, not by our code
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        open_index(tenant_a, url_b).latest_version_id()
    # and a role that is not a tenant's at all cannot connect to the database
    with postgres.admin() as admin:
        admin.execute("CREATE ROLE stranger LOGIN")
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(postgres.url("stranger")).close()
    # A itself reads its own schema
    assert open_index(tenant_a, url_a).latest_version_id()


class QueryCache(Embeddings):
    """Embeddings that compute each query once (the dev questions are asked by several retrievers)."""

    def __init__(self, inner: Embeddings) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.queries: dict[str, list[float]] = {}

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        if text not in self.queries:
            self.queries[text] = self.inner.embed_query(text)
        return self.queries[text]


@pytest.fixture(scope="module")
def local_model() -> QueryCache:
    from rag.index.embeddings import make_embeddings
    from rag.settings import Settings

    return QueryCache(make_embeddings(Settings(tenant_id="tenanta", embeddings_provider="local")))


CORPORA = {"tenanta": "Amazon_SageMaker_FAQs.csv", "tenantb": "Amazon_EMR_FAQs.csv"}


@pytest.mark.timeout(1200)  # embeds a corpus with the local model: minutes on a busy 2-core machine
@pytest.mark.parametrize("corpus", list(CORPORA))
def test_demo_corpora_dense_retrieval_equals_faiss_flat(
    corpus, postgres, open_index, local_model, data_dir, eval_dir, tmp_path
) -> None:
    """Dev questions: pgvector's HNSW (forced even on these small tables) returns the rows of FAISS's
    exact flat scan, in the same order, except where two chunks have the same score."""
    tenant = f"{corpus}-{secrets.token_hex(3)}"
    url = postgres.provision(tenant)
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(data_dir / CORPORA[corpus], docs)
    faiss_store = LocalBlobStore(tmp_path / "faiss")
    model_id = local_model.model_id
    kwargs = {"embeddings": local_model, "embedding_model": model_id, "concurrency": 1, "progress": False}
    run_ingestion(tenant=tenant, source=LocalSource(docs), store=faiss_store, index_type="flat", **kwargs)
    flat = TenantIndex(load_index_version(faiss_store, tenant=tenant, embedding_model=model_id))
    # The same chunks and vectors into PostgreSQL (no second embedding run): what FAISS stored.
    index = open_index(tenant, url, options={"enable_seqscan": "off"})
    documents = flat.documents
    index.publish(tenant=tenant, embedding_model=model_id, previous=None, kept_positions=[],
                  new_vectors=flat.version.vectors(), documents=documents, sources=flat.version.manifest.sources,
                  chunking=flat.version.manifest.chunking or {}, index_type="hnsw")  # fmt: skip
    pg = PgIndexReader(index, embedding_model=model_id, ef_search=128).load(index.latest_version_id())
    with index.connection() as conn:
        conn.execute("SELECT set_config('hnsw.ef_search', '128', true)")
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                sql.SQL("EXPLAIN SELECT id FROM {}.{} ORDER BY embedding <#> %s LIMIT 10").format(
                    sql.Identifier(index.schema), sql.Identifier(pg.version.chunk_table)
                ),
                (np.asarray(flat.version.vectors()[0]),),
            ).fetchall()
        )
    assert "_hnsw" in plan, plan  # the HNSW graph answers, not an exact scan
    # the grounding check's word list (unknown words of a question) is the same from either backend
    assert pg.vocabulary() == flat.vocabulary()
    assert len(pg.vocabulary()) > 500
    # and the corpus centroid (the grounding check's specificity term)
    assert pg.centroid() is not None and flat.centroid() is not None
    np.testing.assert_allclose(pg.centroid(), flat.centroid(), atol=1e-5)

    questions = load_questions(eval_dir / f"dev_{corpus}.jsonl")
    compared = 0
    for question in questions:
        vector = local_model.embed_query(question.question)
        expected = TenantRetriever(index=flat, embeddings=local_model, mode="dense", k=10).search_by_vector(
            question.question, vector
        )
        got = TenantRetriever(index=pg, embeddings=local_model, mode="dense", k=10).search_by_vector(
            question.question, vector
        )
        assert len(got) == len(expected) == 10
        for rank, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert a.metadata["score"] == pytest.approx(b.metadata["score"], abs=1e-5), (question.question, rank)
            if a.id != b.id:  # only a tie may swap two rows
                tied = [d.id for d in expected if abs(d.metadata["score"] - b.metadata["score"]) <= 1e-5]
                assert a.id in tied, (question.question, rank, a.id, b.id)
        compared += 1
    assert compared == len(questions) >= 30
    dense = evaluate(TenantRetriever(index=pg, embeddings=local_model, mode="dense"), questions)
    hybrid = evaluate(TenantRetriever(index=pg, embeddings=local_model, mode="hybrid"), questions)
    faiss_hybrid = evaluate(TenantRetriever(index=flat, embeddings=local_model, mode="hybrid"), questions)
    print(f"\n{corpus} pgvector dense {dense}\n{corpus} pgvector hybrid (ts_rank_cd) {hybrid}")
    print(f"{corpus} faiss hybrid (BM25) {faiss_hybrid}")
    assert dense.recall[10] >= 0.9
    assert hybrid.recall[10] >= 0.85


def test_ingest_cli_publishes_into_the_tenant_schema(new_tenant, open_index, tmp_path: Path) -> None:
    """``python -m ingest`` with ``VECTOR_STORE=pgvector``, as the ingestion Job runs it; a second run
    finds nothing changed and publishes nothing."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    tenant, url = new_tenant("cli")
    docs = write_docs(tmp_path / "docs", DOCS)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "HF_HUB_OFFLINE": "1",
        "EMBEDDINGS_PROVIDER": "local",
        "VECTOR_STORE": "pgvector",
        "PGVECTOR_URL": url,
        "PYTHONPATH": str(REPO_ROOT),
    }
    command = [sys.executable, "-m", "ingest", "--tenant", tenant, "--source", str(docs), "--no-progress"]
    first = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"#{schema_for(tenant)}" in first.stdout and "3 embedded, 0 reused" in first.stdout
    index = open_index(tenant, url)
    version = index.latest_version_id()
    assert version in first.stdout
    again = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "unchanged: nothing to publish" in again.stdout, again.stdout + again.stderr
    assert index.versions() == [version]

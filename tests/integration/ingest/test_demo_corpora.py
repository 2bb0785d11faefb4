"""Both demo corpora ingested with the real local model; exact counts and retrieval quality."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ingest.pipeline import run_ingestion
from ingest.sources import LocalSource
from rag.answer.retrieval import TenantIndex, TenantRetriever
from rag.eval import evaluate, load_questions
from rag.index.store import LocalBlobStore, load_index_version
from rag.settings import LOCAL_EMBEDDING_MODEL_ID

CORPORA = {"tenanta": ("Amazon_SageMaker_FAQs.csv", 154), "tenantb": ("Amazon_EMR_FAQs.csv", 261)}
#: measured 2026-11-25 (see docs/ingest.md); thresholds leave a margin below the measurement
MIN_DENSE_RECALL_AT_10 = 0.9  # measured 1.00 for both
MIN_DENSE_MRR = 0.65  # measured 0.79 (tenanta) and 0.86 (tenantb)


@pytest.fixture(scope="session")
def local_model():
    import os

    os.environ["HF_HUB_OFFLINE"] = "1"
    from rag.index.embeddings import make_embeddings
    from rag.settings import Settings

    return make_embeddings(Settings(tenant_id="tenanta", embeddings_provider="local"))


@pytest.fixture(scope="session")
def demo_indexes(tmp_path_factory, data_dir, local_model):
    built = {}
    for tenant, (name, _) in CORPORA.items():
        root = tmp_path_factory.mktemp(tenant)
        (root / "docs").mkdir()
        shutil.copy(data_dir / name, root / "docs" / name)
        store = LocalBlobStore(root / "index")
        summary = run_ingestion(tenant=tenant, source=LocalSource(root / "docs"), store=store, embeddings=local_model,
                                embedding_model=local_model.model_id, concurrency=1, progress=False)  # fmt: skip
        built[tenant] = (summary, store)
    return built


@pytest.mark.parametrize("tenant", list(CORPORA))
def test_exact_counts(demo_indexes, tenant: str) -> None:
    summary, store = demo_indexes[tenant]
    expected = CORPORA[tenant][1]
    assert summary.documents == expected
    assert summary.embedded_chunks == summary.chunks >= expected
    loaded = load_index_version(store, tenant=tenant, embedding_model=LOCAL_EMBEDDING_MODEL_ID)
    assert loaded.manifest.dim == 384
    assert sorted({d.metadata["row"] for d in loaded.documents}) == list(range(expected))


@pytest.mark.parametrize("tenant", list(CORPORA))
def test_retrieval_quality(demo_indexes, local_model, eval_dir: Path, tenant: str) -> None:
    _, store = demo_indexes[tenant]
    index = TenantIndex(load_index_version(store, tenant=tenant, embedding_model=LOCAL_EMBEDDING_MODEL_ID))
    questions = load_questions(eval_dir / f"dev_{tenant}.jsonl")
    dense = evaluate(TenantRetriever(index=index, embeddings=local_model, mode="dense"), questions)
    hybrid = evaluate(TenantRetriever(index=index, embeddings=local_model, mode="hybrid"), questions)
    print(f"\n{tenant} dense {dense}\n{tenant} hybrid {hybrid}")
    assert dense.recall[10] >= MIN_DENSE_RECALL_AT_10
    assert dense.mrr >= MIN_DENSE_MRR
    assert hybrid.recall[10] >= MIN_DENSE_RECALL_AT_10 - 0.1
    for scores in (dense, hybrid):
        assert scores.recall[1] <= scores.recall[4] <= scores.recall[10] <= 1.0
        assert scores.recall[1] <= scores.mrr <= scores.recall[10]


def test_default_relevance_floor_is_reproduced_from_the_dev_files(demo_indexes, local_model, eval_dir: Path) -> None:
    """The MiniLM floor in DEFAULT_FLOORS is what the calibration of ``python -m rag.eval --calibrate`` gives."""
    from rag.answer.grounding import DEFAULT_FLOORS, RelevanceFloor, calibrate_floor
    from rag.eval import load_conversations, load_unanswerable, question_relevance

    default = DEFAULT_FLOORS[LOCAL_EMBEDDING_MODEL_ID]
    probe = RelevanceFloor(0.0, unknown_word_penalty=default.unknown_word_penalty, corpus_weight=default.corpus_weight)
    answerable, unanswerable = {}, {}
    for tenant in CORPORA:
        _, store = demo_indexes[tenant]
        index = TenantIndex(load_index_version(store, tenant=tenant, embedding_model=LOCAL_EMBEDDING_MODEL_ID))
        texts = [q.question for q in load_questions(eval_dir / f"dev_{tenant}.jsonl")]
        conversations = load_conversations(eval_dir / f"dev_conversations_{tenant}.jsonl")
        texts += [t.question for c in conversations for t in c if t.kind != "follow_up"]
        answerable[tenant] = [question_relevance(index, local_model, q, probe) for q in texts]
        unanswerable[tenant] = [
            question_relevance(index, local_model, q, probe)
            for q, _ in load_unanswerable(eval_dir / f"dev_unanswerable_{tenant}.jsonl")
        ]
    result = calibrate_floor(answerable, unanswerable)
    print(f"\ncalibrated {result}")
    assert round(result.floor, 3) == default.floor
    assert all(share <= 0.05 for share in result.falsely_refused.values())

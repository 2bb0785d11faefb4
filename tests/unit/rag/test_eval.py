"""Retrieval evaluation metrics (rag.eval)."""

from __future__ import annotations

import json

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from rag.answer.retrieval import TenantIndex, TenantRetriever
from rag.eval import (
    Question,
    evaluate,
    first_relevant_rank,
    format_table,
    load_questions,
    main,
)
from rag.index.store import LocalBlobStore, load_index_version, write_index_version


def test_first_relevant_rank() -> None:
    assert first_relevant_rank([5, 3, 9], frozenset({3})) == 2
    assert first_relevant_rank([5, 3, 9], frozenset({9, 5})) == 1
    assert first_relevant_rank([5, 3, 9], frozenset({1})) is None
    assert first_relevant_rank([], frozenset({1})) is None
    assert first_relevant_rank([None, 1], frozenset({1})) == 2


class _OneHot(Embeddings):
    """Text ``"doc N ..."`` and query ``"qN"`` embed to the same one-hot vector: exact control of ranks."""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def _vec(self, n: int) -> list[float]:
        v = [0.0] * self.dim
        v[n] = 1.0
        return v

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vec(int(t.split()[1])) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        # query "q<n>": mostly doc n, a bit of every later doc so they rank after it
        n = int(text[1:])
        v = [0.0] * self.dim
        for i in range(self.dim):
            v[i] = 1.0 if i == n else (0.5 - 0.01 * i if i > n else 0.0)
        return v


@pytest.fixture
def onehot_retriever(tmp_path):
    dim = 12
    emb = _OneHot(dim)
    texts = [f"doc {i} text" for i in range(dim)]
    docs = [Document(page_content=t, metadata={"source": "s", "row": i, "id": f"id{i}"}) for i, t in enumerate(texts)]
    store = LocalBlobStore(tmp_path)
    import numpy as np

    write_index_version(
        store, tenant="tenanta", embedding_model="onehot", vectors=np.asarray(emb.embed_documents(texts)),
        documents=docs, sources=[],
    )  # fmt: skip
    index = TenantIndex(load_index_version(store, tenant="tenanta", embedding_model="onehot"))
    return TenantRetriever(index=index, embeddings=emb, mode="dense", k=1)


def test_evaluate_math(onehot_retriever) -> None:
    # q0 ranks doc0, doc1, doc2, ... (doc i at rank i+1)
    questions = [
        Question("q0", frozenset({0})),  # rank 1
        Question("q0", frozenset({2})),  # rank 3
        Question("q0", frozenset({5})),  # rank 6
        Question("q0", frozenset({11})),  # rank 12: outside top 10
    ]
    scores = evaluate(onehot_retriever, questions)
    assert scores.mode == "dense"
    assert scores.questions == 4
    assert scores.recall == {1: 0.25, 4: 0.5, 10: 0.75}
    assert scores.mrr == pytest.approx((1 + 1 / 3 + 1 / 6) / 4)
    assert onehot_retriever.k == 1  # evaluate works on a copy with k=10


def test_evaluate_with_fake_retriever() -> None:
    class Fake:
        mode = "dense"

        def model_copy(self, update):
            assert update == {"k": 10}
            return self

        def invoke(self, question):
            rows = {"a": [3, 1], "b": [7, 8, 9], "c": []}[question]
            return [Document(page_content="x", metadata={"row": r}) for r in rows]

    scores = evaluate(
        Fake(), [Question("a", frozenset({1})), Question("b", frozenset({7})), Question("c", frozenset({0}))]
    )
    assert scores.recall == {1: pytest.approx(1 / 3), 4: pytest.approx(2 / 3), 10: pytest.approx(2 / 3)}
    assert scores.mrr == pytest.approx((0.5 + 1) / 3)


def test_load_questions(tmp_path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(
        json.dumps({"question": "hi?", "relevant_rows": [1, 2], "extra": 1})
        + "\n\n"
        + json.dumps({"question": "x", "relevant_rows": []})
        + "\n"
    )
    questions = load_questions(path)
    assert questions == [Question("hi?", frozenset({1, 2})), Question("x", frozenset())]
    for bad in [
        "not json",
        '{"question": "x"}',
        '{"question": "", "relevant_rows": [1]}',
        '{"question": "x", "relevant_rows": ["1"]}',
    ]:
        path.write_text(bad + "\n")
        with pytest.raises(ValueError, match=":1:"):
            load_questions(path)
    path.write_text("\n")
    with pytest.raises(ValueError, match="no questions"):
        load_questions(path)


def test_load_real_dev_sets(eval_dir) -> None:
    for tenant in ("tenanta", "tenantb"):
        questions = load_questions(eval_dir / f"dev_{tenant}.jsonl")
        assert len(questions) == 30
        assert all(q.relevant_rows for q in questions)


def test_format_table() -> None:
    from rag.eval import RetrievalScores

    table = format_table("tenanta", [RetrievalScores("dense", 30, {1: 0.5, 4: 0.75, 10: 1.0}, 0.6123)])
    assert table.splitlines()[2] == "| tenanta | dense | 30 | 0.500 | 0.750 | 1.000 | 0.612 |"


def test_cli_bad_input_exit_2(tmp_path, capsys) -> None:
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "x", "relevant_rows": [1]}\n')
    assert main(["--tenant", "../x", "--index-uri", str(tmp_path), "--questions", str(questions)]) == 2
    assert "error" in capsys.readouterr().err

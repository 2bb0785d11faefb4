"""``python -m rag.eval``: retrieval quality of a tenant's index on a question set.

Reads a JSONL file of ``{"question", "relevant_rows": [int, ...]}`` (the format of
``../shared/eval/dev_*.jsonl``) and prints recall@1, recall@4, recall@10 and MRR (mean reciprocal
rank of the first relevant chunk within the top 10) for dense and hybrid retrieval. A retrieved
chunk is relevant when its ``row`` metadata is one of the question's ``relevant_rows``.

Usage::

    python -m rag.eval --tenant tenanta --index-uri .demo/tenanta/index \\
        --questions ../shared/eval/dev_tenanta.jsonl [--mode dense|hybrid|both]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from rag.answer.retrieval import TenantIndex, TenantRetriever

CUTOFFS = (1, 4, 10)


@dataclass(frozen=True)
class Question:
    """One evaluation question and the CSV rows (0-based) that answer it."""

    question: str
    relevant_rows: frozenset[int]


@dataclass(frozen=True)
class RetrievalScores:
    """Averages over a question set: ``recall[k]`` is the share of questions with a relevant
    chunk in the top ``k``; ``mrr`` is the mean of 1/rank of the first relevant chunk (0 if none
    in the top 10)."""

    mode: str
    questions: int
    recall: dict[int, float]
    mrr: float


def load_questions(path: Path) -> list[Question]:
    """Parse the JSONL question file.

    Raises:
        ValueError: a line is not JSON or lacks ``question`` / ``relevant_rows``.
    """
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text, rows = row["question"], row["relevant_rows"]
            if not isinstance(text, str) or not text.strip() or not all(isinstance(r, int) for r in rows):
                raise TypeError("question must be text and relevant_rows integers")
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: {exc}") from exc
        questions.append(Question(question=text, relevant_rows=frozenset(rows)))
    if not questions:
        raise ValueError(f"{path}: no questions")
    return questions


def first_relevant_rank(retrieved_rows: list[object], relevant: frozenset[int]) -> int | None:
    """1-based rank of the first retrieved row in ``relevant``, or None."""
    for rank, row in enumerate(retrieved_rows, start=1):
        if row in relevant:
            return rank
    return None


def evaluate(retriever: TenantRetriever, questions: list[Question]) -> RetrievalScores:
    """Run every question through ``retriever`` (its ``k`` is raised to 10) and score the ranks."""
    retriever = retriever.model_copy(update={"k": max(CUTOFFS)})
    ranks = []
    for item in questions:
        docs = retriever.invoke(item.question)
        ranks.append(first_relevant_rank([d.metadata.get("row") for d in docs], item.relevant_rows))
    count = len(questions)
    recall = {k: sum(1 for r in ranks if r is not None and r <= k) / count for k in CUTOFFS}
    mrr = sum(1.0 / r for r in ranks if r is not None) / count
    return RetrievalScores(mode=retriever.mode, questions=count, recall=recall, mrr=mrr)


def format_table(tenant: str, results: list[RetrievalScores]) -> str:
    """A Markdown table: one row per retrieval mode."""
    lines = [
        "| tenant | mode | questions | recall@1 | recall@4 | recall@10 | MRR |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {tenant} | {r.mode} | {r.questions} | {r.recall[1]:.3f} | {r.recall[4]:.3f} | "
            f"{r.recall[10]:.3f} | {r.mrr:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code (2 on bad input)."""
    parser = argparse.ArgumentParser(prog="python -m rag.eval", description="Retrieval recall@k and MRR.")
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--index-uri", help="default: $INDEX_URI or s3://$CONTEXTUAL_DATA_BUCKET/faiss_index/")
    parser.add_argument("--questions", required=True, type=Path)
    parser.add_argument("--mode", choices=("dense", "hybrid", "both"), default="both")
    args = parser.parse_args(argv)

    from rag.aws import make_client
    from rag.index.embeddings import make_embeddings
    from rag.index.store import IndexError_, load_index_version, open_store
    from rag.settings import SettingsError, load_settings
    from rag.tenant import InvalidTenantIdError

    try:
        overrides: dict[str, object] = {"tenant_id": args.tenant}
        if args.index_uri:
            overrides["index_uri"] = args.index_uri
        settings = load_settings(**overrides)
        index_uri = settings.resolved_index_uri
        questions = load_questions(args.questions)
        s3 = make_client("s3", settings) if index_uri.startswith("s3://") else None
        embeddings = make_embeddings(settings)
        version = load_index_version(
            open_store(index_uri, s3_client=s3), tenant=settings.tenant_id, embedding_model=embeddings.model_id
        )
    except (SettingsError, InvalidTenantIdError, ValueError, OSError, IndexError_) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    index = TenantIndex(version, ef_search=settings.hnsw_ef_search)
    modes = ("dense", "hybrid") if args.mode == "both" else (args.mode,)
    results = [evaluate(TenantRetriever(index=index, embeddings=embeddings, mode=m), questions) for m in modes]
    print(f"index version {version.version} ({version.manifest.count} chunks, {version.manifest.embedding_model})")
    print(format_table(settings.tenant_id, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m rag.eval``: retrieval and answer quality of a tenant's index on labelled question sets.

Inputs (the formats of ``../shared/eval/``, see its README):

* ``--questions FILE``: single questions ``{"question", "relevant_rows": [int, ...]}``: recall@1,
  recall@4, recall@10 and MRR (mean reciprocal rank of the first relevant chunk within the top 10)
  of the retriever, plus the share *falsely refused* (the chain answered "not in the documents").
* ``--conversations FILE``: sessions ``{"turns": [{"question", "relevant_rows", "kind"}, ...]}``,
  asked turn by turn through the real chain with the history of the earlier turns (the offline
  extractive model condenses and answers); hit@k per turn kind (``first`` / ``follow_up`` /
  ``topic_switch``): a relevant row among the turn's ``k`` sources (``--k``, default 4, the API's
  ``max_matching_docs``). A refused turn has no sources, so it misses.
* ``--unanswerable FILE``: ``{"question"}`` the documents do not answer: the share refused.

A retrieved chunk is relevant when its ``row`` metadata is one of the ``relevant_rows``. Each set is
measured for dense and hybrid retrieval (``--mode``), with the relevance floor of the embedding
model (:func:`rag.answer.grounding.floor_for`, ``RELEVANCE_FLOOR`` overrides).

``--calibrate TENANT,INDEX_URI,QUESTIONS,UNANSWERABLE[,CONVERSATIONS]`` (repeatable, one per
tenant) instead derives the floor from answerable questions (the single questions plus the
self-contained turns of the conversations: ``first`` and ``topic_switch``) and unanswerable ones
(:func:`rag.answer.grounding.calibrate_floor`).

Usage::

    python -m rag.eval --tenant tenanta --index-uri .demo/tenanta/index \\
        --questions ../shared/eval/dev_tenanta.jsonl \\
        --conversations ../shared/eval/dev_conversations_tenanta.jsonl \\
        --unanswerable ../shared/eval/dev_unanswerable_tenanta.jsonl [--mode dense|hybrid|both]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from rag.answer.chain import AnswerChain, ChainResult, LiveRetriever, refers_back
from rag.answer.grounding import RelevanceFloor, calibrate_floor, relevance
from rag.answer.models import ExtractiveChatModel, GenerationParams
from rag.answer.retrieval import TenantIndex, TenantRetriever

CUTOFFS = (1, 4, 10)
TURN_KINDS = ("first", "follow_up", "topic_switch")


@dataclass(frozen=True)
class Question:
    """One evaluation question and the CSV rows (0-based) that answer it."""

    question: str
    relevant_rows: frozenset[int]


@dataclass(frozen=True)
class Turn:
    """One turn of an evaluation conversation."""

    question: str
    relevant_rows: frozenset[int]
    kind: str


@dataclass(frozen=True)
class RetrievalScores:
    """Averages over a question set: ``recall[k]`` is the share of questions with a relevant
    chunk in the top ``k``; ``mrr`` is the mean of 1/rank of the first relevant chunk (0 if none
    in the top 10); ``falsely_refused`` the share the chain refused (None when not measured)."""

    mode: str
    questions: int
    recall: dict[int, float]
    mrr: float
    falsely_refused: float | None = None


@dataclass(frozen=True)
class ConversationScores:
    """hit@k per turn kind over conversations asked through the chain.

    Attributes:
        mode: the retriever mode.
        k: sources per turn.
        turns: turn count per kind.
        hits: hit@k per kind (0..1).
        refused: share of turns the chain refused, per kind.
    """

    mode: str
    k: int
    turns: dict[str, int]
    hits: dict[str, float]
    refused: dict[str, float]


@dataclass(frozen=True)
class RefusalScores:
    """Unanswerable questions: ``refused`` is the share (0..1) the chain answered "not in the documents"."""

    mode: str
    questions: int
    refused: float
    by_category: dict[str, float] = field(default_factory=dict)


def _jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: {exc}") from exc
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{number}: expected a JSON object")
        rows.append((number, row))
    if not rows:
        raise ValueError(f"{path}: no questions")
    return rows


def _text_and_rows(row: dict[str, Any]) -> tuple[str, frozenset[int]]:
    text, rows = row["question"], row["relevant_rows"]
    if not isinstance(text, str) or not text.strip() or not isinstance(rows, list):
        raise TypeError("question must be text and relevant_rows a list")
    if not all(isinstance(r, int) and not isinstance(r, bool) for r in rows):
        raise TypeError("question must be text and relevant_rows integers")
    return text, frozenset(rows)


def load_questions(path: Path) -> list[Question]:
    """Parse a JSONL question file (``question``, ``relevant_rows``).

    Raises:
        ValueError: a line is not JSON or lacks ``question`` / ``relevant_rows``.
    """
    questions = []
    for number, row in _jsonl(path):
        try:
            questions.append(Question(*_text_and_rows(row)))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: {exc}") from exc
    return questions


def load_conversations(path: Path) -> list[list[Turn]]:
    """Parse a JSONL conversations file (``turns``: ``question``, ``relevant_rows``, ``kind``).

    Raises:
        ValueError: a line is malformed or a turn kind is unknown.
    """
    conversations = []
    for number, row in _jsonl(path):
        try:
            turns = row["turns"]
            if not isinstance(turns, list) or not turns:
                raise TypeError("turns must be a non-empty list")
            parsed = []
            for turn in turns:
                if turn.get("kind") not in TURN_KINDS:
                    raise TypeError(f"kind must be one of {TURN_KINDS}")
                parsed.append(Turn(*_text_and_rows(turn), kind=turn["kind"]))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}:{number}: {exc}") from exc
        conversations.append(parsed)
    return conversations


def load_unanswerable(path: Path) -> list[tuple[str, str]]:
    """Parse a JSONL file of unanswerable questions: ``(question, category)`` pairs.

    Raises:
        ValueError: a line is malformed.
    """
    items = []
    for number, row in _jsonl(path):
        text = row.get("question")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{path}:{number}: question must be text")
        items.append((text, str(row.get("category") or "")))
    return items


def first_relevant_rank(retrieved_rows: list[object], relevant: frozenset[int]) -> int | None:
    """1-based rank of the first retrieved row in ``relevant``, or None."""
    for rank, row in enumerate(retrieved_rows, start=1):
        if row in relevant:
            return rank
    return None


def evaluate(
    retriever: TenantRetriever, questions: list[Question], refused: Callable[[str], bool] | None = None
) -> RetrievalScores:
    """Run every question through ``retriever`` (its ``k`` is raised to 10) and score the ranks.

    Args:
        retriever: the retriever to measure.
        questions: the labelled questions.
        refused: ``refused(question)`` is True when the chain refuses it (e.g.
            :meth:`ChainEvaluator.refuses`); None: not measured.
    """
    retriever = retriever.model_copy(update={"k": max(CUTOFFS)})
    ranks = []
    refusals = 0
    for item in questions:
        docs = retriever.invoke(item.question)
        ranks.append(first_relevant_rank([d.metadata.get("row") for d in docs], item.relevant_rows))
        if refused is not None and refused(item.question):
            refusals += 1
    count = len(questions)
    recall = {k: sum(1 for r in ranks if r is not None and r <= k) / count for k in CUTOFFS}
    mrr = sum(1.0 / r for r in ranks if r is not None) / count
    return RetrievalScores(
        mode=retriever.mode,
        questions=count,
        recall=recall,
        mrr=mrr,
        falsely_refused=refusals / count if refused is not None else None,
    )


class CachedEmbeddings(Embeddings):
    """Remembers query vectors: every set is asked once per mode, and often twice per turn."""

    def __init__(self, inner: Embeddings) -> None:
        self.inner = inner
        self.model_id = getattr(inner, "model_id", "")
        self._cache: dict[str, list[float]] = {}

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Delegated unchanged."""
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        """The inner model's vector for ``text``, computed once."""
        if text not in self._cache:
            self._cache[text] = self.inner.embed_query(text)
        return self._cache[text]


class ChainEvaluator:
    """The real conversational chain over one index, with the offline extractive model.

    Args:
        index: the loaded index.
        embeddings: the query embedding model.
        mode: ``dense`` or ``hybrid``.
        floor: the relevance floor (None: no no-answer path).
        k: sources per turn (the API's ``max_matching_docs``).
    """

    def __init__(
        self, index: TenantIndex, embeddings: Embeddings, mode: str, floor: RelevanceFloor | None, k: int = 4
    ) -> None:
        self.mode = mode
        self.k = k
        retriever = LiveRetriever(index_provider=lambda: index, embeddings=embeddings, mode=mode)  # type: ignore[arg-type]
        # the API's chain (api.lifespan): condense only questions that refer back to the history
        self.chain: AnswerChain = AnswerChain(
            retriever=retriever, llm=ExtractiveChatModel(), needs_condense=refers_back, relevance_floor=floor
        )

    def ask(self, question: str, turns: Sequence[tuple[str, str]] = ()) -> ChainResult:
        """One turn through the chain (:meth:`rag.answer.chain.AnswerChain.run`)."""
        return self.chain.run(question, list(turns), k=self.k, generation=GenerationParams())

    def refuses(self, question: str) -> bool:
        """True when the chain answers ``question`` (no history) with the no-answer sentence."""
        return not self.ask(question).grounded

    def conversations(self, conversations: list[list[Turn]]) -> ConversationScores:
        """Ask each conversation turn by turn (history = the earlier turns and the chain's answers)."""
        counts = dict.fromkeys(TURN_KINDS, 0)
        hits = dict.fromkeys(TURN_KINDS, 0)
        refused = dict.fromkeys(TURN_KINDS, 0)
        for conversation in conversations:
            history: list[tuple[str, str]] = []
            for turn in conversation:
                result = self.ask(turn.question, history)
                rows = [d.metadata.get("row") for d in result.documents][: self.k]
                counts[turn.kind] += 1
                hits[turn.kind] += first_relevant_rank(rows, turn.relevant_rows) is not None
                refused[turn.kind] += not result.grounded
                history.append((turn.question, result.answer))
        return ConversationScores(
            mode=self.mode,
            k=self.k,
            turns=counts,
            hits={k: hits[k] / counts[k] if counts[k] else 0.0 for k in TURN_KINDS},
            refused={k: refused[k] / counts[k] if counts[k] else 0.0 for k in TURN_KINDS},
        )

    def unanswerable(self, items: list[tuple[str, str]]) -> RefusalScores:
        """The share of ``(question, category)`` items refused, overall and per category."""
        outcomes = [(category, self.refuses(question)) for question, category in items]
        categories = sorted({c for c, _ in outcomes})
        by_category = {
            c: sum(1 for cc, r in outcomes if cc == c and r) / sum(1 for cc, _ in outcomes if cc == c)
            for c in categories
        }
        return RefusalScores(
            mode=self.mode,
            questions=len(items),
            refused=sum(1 for _, r in outcomes if r) / len(items),
            by_category=by_category,
        )


def question_relevance(index: TenantIndex, embeddings: Embeddings, question: str, floor: RelevanceFloor) -> float:
    """The relevance (:func:`rag.answer.grounding.relevance`) of a question's best dense match."""
    vector = embeddings.embed_query(question)
    hits = index.dense_search(vector, 1)
    best = hits[0][1] if hits else -1.0
    centroid = index.centroid()
    corpus = float(np.dot(np.asarray(vector, dtype=np.float32), centroid)) if centroid is not None else 0.0
    return relevance(question, best, floor, index.vocabulary(), corpus)


def format_table(tenant: str, results: list[RetrievalScores]) -> str:
    """A Markdown table: one row per retrieval mode (plus the falsely refused share when measured)."""
    refusals = any(r.falsely_refused is not None for r in results)
    lines = [
        "| tenant | mode | questions | recall@1 | recall@4 | recall@10 | MRR |"
        + (" falsely refused |" if refusals else ""),
        "|---|---|---|---|---|---|---|" + ("---|" if refusals else ""),
    ]
    for r in results:
        row = (
            f"| {tenant} | {r.mode} | {r.questions} | {r.recall[1]:.3f} | {r.recall[4]:.3f} | "
            f"{r.recall[10]:.3f} | {r.mrr:.3f} |"
        )
        if refusals:
            row += f" {r.falsely_refused:.3f} |" if r.falsely_refused is not None else " |"
        lines.append(row)
    return "\n".join(lines)


def format_conversations(tenant: str, results: list[ConversationScores]) -> str:
    """A Markdown table of hit@k per turn kind (turn counts in brackets)."""
    lines = [
        "| tenant | mode | first hit@k | follow-up hit@k | topic switch hit@k | turns refused |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        cells = " | ".join(f"{r.hits[k]:.2f} ({r.turns[k]})" for k in TURN_KINDS)
        total = sum(r.turns.values())
        refused = sum(r.refused[k] * r.turns[k] for k in TURN_KINDS) / total if total else 0.0
        lines.append(f"| {tenant} | {r.mode} (k={r.k}) | {cells} | {refused:.2f} |")
    return "\n".join(lines)


def format_refusals(tenant: str, results: list[RefusalScores]) -> str:
    """A Markdown table of the share of unanswerable questions refused."""
    lines = ["| tenant | mode | unanswerable | refused | by category |", "|---|---|---|---|---|"]
    for r in results:
        categories = ", ".join(f"{c} {v:.2f}" for c, v in r.by_category.items())
        lines.append(f"| {tenant} | {r.mode} | {r.questions} | {r.refused:.2f} | {categories} |")
    return "\n".join(lines)


def _open_index(tenant: str, index_uri: str | None) -> tuple[Any, TenantIndex, Embeddings]:
    from rag.aws import make_client
    from rag.index.embeddings import make_embeddings
    from rag.index.store import load_index_version, open_store
    from rag.settings import load_settings

    overrides: dict[str, object] = {"tenant_id": tenant}
    if index_uri:
        overrides["index_uri"] = index_uri
    settings = load_settings(**overrides)
    uri = settings.resolved_index_uri
    s3 = make_client("s3", settings) if uri.startswith("s3://") else None
    embeddings = CachedEmbeddings(make_embeddings(settings))
    version = load_index_version(
        open_store(uri, s3_client=s3), tenant=settings.tenant_id, embedding_model=embeddings.model_id
    )
    return settings, TenantIndex(version, ef_search=settings.hnsw_ef_search), embeddings


def run_calibration(specs: list[str], max_false_refusals: float) -> str:
    """``--calibrate``: the floor that keeps false refusals within bounds on every given tenant.

    Args:
        specs: ``TENANT,INDEX_URI,QUESTIONS,UNANSWERABLE[,CONVERSATIONS]`` strings.
        max_false_refusals: allowed share of answerable questions refused, per tenant.

    Returns:
        A report (the floor, per-tenant refused / falsely refused shares).

    Raises:
        ValueError: a malformed spec, or indexes of different embedding models.
    """
    from rag.answer.grounding import DEFAULT_FLOORS

    answerable: dict[str, list[float]] = {}
    unanswerable: dict[str, list[float]] = {}
    models = set()
    for spec in specs:
        parts = spec.split(",")
        if len(parts) not in (4, 5):
            raise ValueError(f"--calibrate {spec!r}: expected TENANT,INDEX_URI,QUESTIONS,UNANSWERABLE[,CONVERSATIONS]")
        tenant, uri, questions, unanswered = parts[:4]
        texts = [q.question for q in load_questions(Path(questions))]
        if len(parts) == 5:  # self-contained conversation turns are answerable questions too
            texts += [t.question for c in load_conversations(Path(parts[4])) for t in c if t.kind != "follow_up"]
        _, index, embeddings = _open_index(tenant, uri)
        model = index.version.manifest.embedding_model
        models.add(model)
        default = DEFAULT_FLOORS.get(model, RelevanceFloor(0.0))
        penalty, weight = default.unknown_word_penalty, default.corpus_weight
        floor = RelevanceFloor(0.0, unknown_word_penalty=penalty, corpus_weight=weight)
        answerable[tenant] = [question_relevance(index, embeddings, text, floor) for text in texts]
        unanswerable[tenant] = [
            question_relevance(index, embeddings, q, floor) for q, _ in load_unanswerable(Path(unanswered))
        ]
    if len(models) != 1:
        raise ValueError(f"--calibrate: the indexes use different embedding models: {sorted(models)}")
    result = calibrate_floor(answerable, unanswerable, max_false_refusals=max_false_refusals)
    lines = [
        f"embedding model {models.pop()}: relevance floor {result.floor:.3f} "
        f"(unknown-word penalty {penalty}, corpus weight {weight})"
    ]
    for tenant in answerable:
        lines.append(
            f"  {tenant}: unanswerable refused {result.refused[tenant]:.2f}, "
            f"answerable falsely refused {result.falsely_refused[tenant]:.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code (2 on bad input)."""
    parser = argparse.ArgumentParser(prog="python -m rag.eval", description="Retrieval and answer quality.")
    parser.add_argument("--tenant")
    parser.add_argument("--index-uri", help="default: $INDEX_URI or s3://$CONTEXTUAL_DATA_BUCKET/faiss_index/")
    parser.add_argument("--questions", type=Path, help="single questions: recall@k, MRR, falsely refused")
    parser.add_argument("--conversations", type=Path, help="multi-turn sessions: hit@k per turn kind")
    parser.add_argument("--unanswerable", type=Path, help="questions the documents do not answer: share refused")
    parser.add_argument("--mode", choices=("dense", "hybrid", "both"), default="both")
    parser.add_argument("--k", type=int, default=4, help="sources per conversation turn (default 4)")
    parser.add_argument(
        "--calibrate",
        action="append",
        metavar="TENANT,INDEX_URI,QUESTIONS,UNANSWERABLE[,CONVERSATIONS]",
        help="derive the relevance floor from these sets (repeat per tenant) instead of measuring",
    )
    parser.add_argument("--max-false-refusals", type=float, default=0.05, help="for --calibrate (default 0.05)")
    args = parser.parse_args(argv)

    from rag.index.store import IndexError_
    from rag.settings import SettingsError
    from rag.tenant import InvalidTenantIdError

    errors = (SettingsError, InvalidTenantIdError, ValueError, OSError, IndexError_)
    if args.calibrate:
        try:
            print(run_calibration(args.calibrate, args.max_false_refusals))
        except errors as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    if not args.tenant or not (args.questions or args.conversations or args.unanswerable):
        print("error: --tenant and at least one of --questions, --conversations, --unanswerable", file=sys.stderr)
        return 2
    if not 1 <= args.k <= 20:
        print("error: --k must be 1-20", file=sys.stderr)
        return 2
    try:
        questions = load_questions(args.questions) if args.questions else None
        conversations = load_conversations(args.conversations) if args.conversations else None
        unanswerable = load_unanswerable(args.unanswerable) if args.unanswerable else None
        settings, index, embeddings = _open_index(args.tenant, args.index_uri)
    except errors as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from rag.answer.grounding import floor_for

    manifest = index.version.manifest
    floor = floor_for(manifest.embedding_model, settings.relevance_floor)
    modes = ("dense", "hybrid") if args.mode == "both" else (args.mode,)
    evaluators = [ChainEvaluator(index, embeddings, m, floor, k=args.k) for m in modes]
    floor_text = (
        f"{floor.floor:.3f} (unknown-word penalty {floor.unknown_word_penalty}, corpus weight {floor.corpus_weight})"
        if floor
        else "none"
    )
    print(f"index version {index.version.version} ({manifest.count} chunks, {manifest.embedding_model})")
    print(f"relevance floor {floor_text}")
    if questions is not None:
        results = [
            evaluate(TenantRetriever(index=index, embeddings=embeddings, mode=e.mode), questions, e.refuses)  # type: ignore[arg-type]
            for e in evaluators
        ]
        print(format_table(settings.tenant_id, results))
    if conversations is not None:
        print(format_conversations(settings.tenant_id, [e.conversations(conversations) for e in evaluators]))
    if unanswerable is not None:
        print(format_refusals(settings.tenant_id, [e.unanswerable(unanswerable) for e in evaluators]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

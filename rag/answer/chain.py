"""The conversational RAG chain: condense a follow-up with the history, retrieve, answer.

:class:`AnswerChain` is built once per process (in the API's lifespan) around a :class:`LiveRetriever`
that looks up the tenant's *current* index on every call, so a hot-reloaded index is used without
rebuilding the chain. Everything that belongs to one request — ``k`` (``max_matching_docs``), the
generation parameters, the token sink, the cancellation flag and the run config — is an argument
of :meth:`AnswerChain.run`: no module-level state, so one chain object serves every request.

It is the job of LangChain's legacy ``ConversationalRetrievalChain`` (langchain-classic,
https://python.langchain.com/api_reference/langchain/chains/langchain.chains.conversational_retrieval.base.ConversationalRetrievalChain.html)
written out with LangChain's primitives (prompt templates, ``BaseRetriever.invoke``,
``BaseChatModel.invoke``/``stream``, a callback-manager chain run), because the legacy chain takes no
per-call ``k`` or model parameters (they had to travel in context variables and a wrapper model):

1. condense — when there is history and :data:`NeedsCondense` says the question does not stand
   alone, one bounded, non-streaming model call rewrites it; the condense prompt sees
   ``{chat_history}`` (the reference deployment's lacked it, so follow-ups lost their subject);
2. retrieve — once, with the condensed question and this request's ``k``;
3. answer — the user's own words with the retrieved documents, streamed; the documents returned
   as sources are exactly the ones in the prompt. A :data:`NoAnswer` hook may answer instead,
   without a model call.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.callbacks import CallbackManager, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig
from pydantic import ConfigDict, PrivateAttr

from rag.answer.followup import ALONE_WEIGHT, QueryPlan, plan_query
from rag.answer.followup import refers_back as _question_refers_back
from rag.answer.grounding import (
    NO_ANSWER,
    REASON_MODEL_REFUSED,
    REASON_NO_PASSAGE,
    RelevanceFloor,
    Verdict,
    corpus_score,
    dense_score,
    is_refusal,
    judge,
    mark_cited,
    unknown_share,
)
from rag.answer.models import (
    CONDENSE_MARKER,
    QUESTION_MARKER,
    GenerationParams,
    estimate_tokens,
    generation_kwargs_for,
    text_stream_for,
)
from rag.answer.retrieval import TenantRetriever, reciprocal_rank_fusion
from rag.answer.tracing import span
from rag.index.backend import SearchIndex

_logger = logging.getLogger("rag.chain")

CHAIN_RUN_NAME = "rag"
ANSWER_RUN_NAME = "answer"
CONDENSE_RUN_NAME = "condense"
#: Tag of the answering model's runs (its tokens are the answer's tokens).
ANSWER_TAG = "rag:answer"

#: Condense prompt: MUST contain {chat_history}. Ends with CONDENSE_MARKER (the extractive model keys on it).
CONDENSE_TEMPLATE = (
    "Given the conversation below and a follow-up question, rewrite the follow-up question as a "
    "standalone question that keeps every subject, product and constraint it refers to from the "
    "conversation. If the follow-up question is already self-contained (it names its own subject), "
    "return it exactly as it is. Reply with the question only, in its original language.\n\n"
    "Chat history:\n{chat_history}\n\n"
    "Follow-up question: {question}\n"
    f"{CONDENSE_MARKER}"
)
CONDENSE_PROMPT = PromptTemplate.from_template(CONDENSE_TEMPLATE)

ANSWER_SYSTEM = (
    "You are a helpful assistant that answers questions about the organisation's documents. "
    "Answer only from the documents below. If they do not contain the answer, reply with exactly "
    f"this sentence and nothing else: {NO_ANSWER} "
    "Cite the documents you used as [n].\n\n"
    "Documents:\n{context}"
)
ANSWER_PROMPT = ChatPromptTemplate.from_messages(
    [("system", ANSWER_SYSTEM), ("human", f"{QUESTION_MARKER} {{question}}")]
)
#: How one retrieved chunk appears in {context}; ``n`` is its 1-based rank.
DOCUMENT_PROMPT = PromptTemplate.from_template(
    '<doc n="{rank}" source="{source}" title="{title}">\n{page_content}\n</doc>'
)
#: Between two documents in {context} (LangChain's stuff-documents default).
DOCUMENT_SEPARATOR = "\n\n"

#: A past turn as the chain sees it: ``(question, answer)``.
HistoryTurn = tuple[str, str]
#: Hook: ``needs_condense(question, history) -> bool``; False when the question stands alone (no condense call).
NeedsCondense = Callable[[str, Sequence[HistoryTurn]], bool]
#: Hook: ``no_answer(question, documents) -> reply | None``, called after retrieval. A string is the reply,
#: given without calling the model (the answer is then not grounded and has no sources); None answers normally.
NoAnswer = Callable[[str, list[Document]], str | None]


def condense_when_history(question: str, history: Sequence[HistoryTurn]) -> bool:
    """The default :data:`NeedsCondense`: every question with history is condensed (the legacy chain's rule)."""
    return bool(history)


def refers_back(question: str, history: Sequence[HistoryTurn]) -> bool:
    """The :data:`NeedsCondense` of grounded answers: condense only a question with history whose wording
    points back at it (:func:`rag.answer.followup.refers_back`); any other question is retrieved with its own
    words, without the condense call.

    Args:
        question: the user's question.
        history: past turns, oldest first.
    """
    return bool(history) and _question_refers_back(question)


@dataclass
class RetrievalStats:
    """Filled in by :class:`LiveRetriever` when passed as ``stats=`` (one per request).

    Attributes:
        retrieval_seconds: wall time of the search (query embedding + index search), seconds.
        index_version: the index version the documents came from.
    """

    retrieval_seconds: float | None = None
    index_version: str | None = None


class IndexNotReadyError(RuntimeError):
    """No index is loaded yet (first load pending or failing)."""


class ChainCancelledError(RuntimeError):
    """The caller went away (client disconnect): the chain stops before its next step or token."""


class LiveRetriever(BaseRetriever):
    """Retriever over whatever index ``index_provider()`` returns now (hot reload).

    One base retriever is built per index version with ``retriever_factory`` (e.g.
    :func:`rag.answer.retrieval.make_retriever`, which adds the optional reranker) and copied with the
    call's ``k``. ``k`` and ``stats`` are keyword arguments of ``invoke`` (LangChain passes extra
    ``invoke`` keyword arguments to ``_get_relevant_documents``). The search itself (query
    embedding, FAISS, BM25) is synchronous: it runs in the chain's worker thread, never on the
    event loop.

    Args:
        index_provider: returns the current :class:`TenantIndex`, or None when none is loaded.
        embeddings: the query embedding model (used when no factory is given).
        mode: ``"dense"`` or ``"hybrid"`` (used when no factory is given).
        default_k: ``k`` when the call gives none.
        retriever_factory: builds the retriever for a newly loaded index.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index_provider: Callable[[], SearchIndex | None]
    embeddings: Embeddings
    mode: Literal["dense", "hybrid"] = "hybrid"
    default_k: int = 4
    retriever_factory: Callable[[SearchIndex], TenantRetriever] | None = None
    _cache: tuple[int, TenantRetriever] | None = PrivateAttr(default=None)

    def prime(self, index: SearchIndex) -> None:
        """Build the base retriever for a newly loaded ``index`` now (and drop the previous index's,
        so nothing here keeps the old index alive)."""
        self._cache = None
        self._base(index)

    def _base(self, index: SearchIndex) -> TenantRetriever:
        cached = self._cache
        if cached is not None and cached[0] == id(index):
            return cached[1]
        if self.retriever_factory is not None:
            base = self.retriever_factory(index)
        else:
            base = TenantRetriever(index=index, embeddings=self.embeddings, mode=self.mode, k=self.default_k)
        self._cache = (id(index), base)
        return base

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        stats: RetrievalStats | None = None,
    ) -> list[Document]:
        index = self.index_provider()
        if index is None:
            raise IndexNotReadyError("the tenant's index is not loaded yet")
        k = k or self.default_k
        started = time.perf_counter()
        base = self._base(index)
        retriever = base if base.k == k else base.model_copy(update={"k": k})
        with span("rag.retrieval", k=k, mode=self.mode, index_version=index.version.version) as current:
            docs = retriever._get_relevant_documents(query, run_manager=run_manager)  # no second callback run
            if current is not None:
                current.set_attribute("documents", len(docs))
        if stats is not None:
            # a follow-up may retrieve twice (question alone + condensed): the times add up
            stats.retrieval_seconds = (stats.retrieval_seconds or 0.0) + time.perf_counter() - started
            stats.index_version = index.version.version
        return docs

    def vocabulary(self) -> frozenset[str] | None:
        """The current index's words (for the grounding check), None before the first load."""
        index = self.index_provider()
        return index.vocabulary() if index is not None else None


def _rank_and_source(docs: list[Document]) -> list[Document]:
    """Make sure DOCUMENT_PROMPT's variables exist on every document (``rank`` = position, 1-based)."""
    out = []
    for position, doc in enumerate(docs, start=1):
        metadata = {"source": "", "title": "", **doc.metadata, "rank": position}
        out.append(Document(page_content=doc.page_content, metadata=metadata, id=doc.id))
    return out


def _doc_key(doc: Document) -> str:
    meta = doc.metadata
    return str(
        doc.id or meta.get("id") or (meta.get("source"), meta.get("row"), meta.get("page"), meta.get("start_index"))
    )


def fuse_documents(rankings: list[list[Document]], weights: list[float], k: int) -> list[Document]:
    """Merge ranked document lists by reciprocal rank fusion (:func:`rag.answer.retrieval.reciprocal_rank_fusion`).

    A chunk found by several lists keeps the metadata of its best-ranked occurrence and the highest
    ``dense_score`` (each list's cosine is to its own query), with that query's ``corpus_score``.
    Returns the ``k`` best.
    """
    by_key: dict[str, Document] = {}
    keyed: list[list[int]] = []
    keys: dict[str, int] = {}
    for ranking in rankings:
        ids = []
        for doc in ranking:
            key = _doc_key(doc)
            position = keys.setdefault(key, len(keys))
            ids.append(position)
            seen = by_key.get(key)
            if seen is None:
                by_key[key] = doc
            elif dense_score(doc) > dense_score(seen):
                by_key[key] = Document(
                    page_content=seen.page_content,
                    metadata={
                        **seen.metadata,
                        "dense_score": doc.metadata.get("dense_score"),
                        "score": doc.metadata.get("score"),
                        **({"corpus_score": doc.metadata["corpus_score"]} if "corpus_score" in doc.metadata else {}),
                    },
                    id=seen.id,
                )
        keyed.append(ids)
    ordered = [key for key, _ in sorted(keys.items(), key=lambda kv: kv[1])]
    fused = reciprocal_rank_fusion(keyed, weights)[:k]
    return [by_key[ordered[position]] for position, _ in fused]


def format_history(history: Sequence[HistoryTurn]) -> str:
    """``{chat_history}`` of the condense prompt: ``Human:`` / ``Assistant:`` lines (the legacy chain's format)."""
    return "".join(f"\nHuman: {question}\nAssistant: {answer}" for question, answer in history)


def format_documents(docs: list[Document]) -> str:
    """``{context}`` of the answer prompt: every document through :data:`DOCUMENT_PROMPT`."""
    return DOCUMENT_SEPARATOR.join(DOCUMENT_PROMPT.format(page_content=d.page_content, **d.metadata) for d in docs)


# --------------------------------------------------------------------------------------------
# results


@dataclass
class Usage:
    """Token counts summed over the model calls of one request (condense + answer)."""

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """input + output."""
        return self.input_tokens + self.output_tokens

    def as_dict(self) -> dict[str, int]:
        """``{"input_tokens", "output_tokens", "total_tokens"}``."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass
class ChainResult:
    """What one run of the chain produced.

    Attributes:
        answer: the complete answer text.
        documents: the documents the answer was generated from (rank order; empty when not grounded).
        generated_question: the question retrieval used (the condensed one, or the user's own).
        usage: tokens of every model call of the run.
        retrieval: search time and index version.
        grounded: False when the :data:`NoAnswer` hook or the relevance floor answered instead of the
            model, or the model itself said the documents lack the answer.
        ungrounded_reason: one of :data:`rag.answer.grounding.UNGROUNDED_REASONS` when not grounded.
        query_kind: what retrieval used: ``alone``, ``condensed`` or ``fused``
            (:func:`rag.answer.followup.plan_query`).
    """

    answer: str
    documents: list[Document]
    generated_question: str
    usage: Usage = field(default_factory=Usage)
    retrieval: RetrievalStats = field(default_factory=RetrievalStats)
    grounded: bool = True
    ungrounded_reason: str | None = None
    query_kind: str = "alone"


def _usage_of(meta: Any) -> tuple[int, int] | None:
    if not meta:
        return None
    return int(meta.get("input_tokens", 0)), int(meta.get("output_tokens", 0))


def _prompt_chars(messages: Sequence[BaseMessage]) -> int:
    return sum(len(str(m.content)) for m in messages)


# --------------------------------------------------------------------------------------------
# the chain


class AnswerChain:
    """Condense → retrieve → answer, run synchronously in the caller's thread (see the module docstring).

    Args:
        retriever: usually a :class:`LiveRetriever` (it takes ``k=`` and ``stats=``; other retrievers
            ignore them and use their own ``k``).
        llm: the answering chat model (shared, never mutated; the request's generation parameters
            are call arguments, see :func:`rag.answer.models.generation_kwargs_for`).
        condense_llm: the model that rewrites follow-ups (default: ``llm``).
        needs_condense: decides whether a question with history is rewritten (default:
            :func:`condense_when_history`).
        no_answer: optional hook between retrieval and the answer call (:data:`NoAnswer`).
        condense_max_tokens: upper bound of the condense call's output tokens (a question, not an
            answer); None: the request's ``max_tokens``.
        relevance_floor: the no-answer floor (:func:`rag.answer.grounding.floor_for`): below it the
            answer is :data:`rag.answer.grounding.NO_ANSWER` without a model call, and only passages
            above it go to the model. None: every retrieval counts as relevant (the model's own
            refusals still mark the answer ungrounded).
        vocabulary: returns the index's words for the unknown-word penalty (default: the retriever's
            ``vocabulary`` when it has one; None: no penalty).
    """

    def __init__(
        self,
        *,
        retriever: BaseRetriever,
        llm: BaseChatModel,
        condense_llm: BaseChatModel | None = None,
        needs_condense: NeedsCondense = condense_when_history,
        no_answer: NoAnswer | None = None,
        condense_max_tokens: int | None = None,
        relevance_floor: RelevanceFloor | None = None,
        vocabulary: Callable[[], frozenset[str] | None] | None = None,
    ) -> None:
        self.retriever = retriever
        self.relevance_floor = relevance_floor
        self.vocabulary = vocabulary or getattr(retriever, "vocabulary", None)
        self.llm = llm
        self.condense_llm = condense_llm or llm
        self.needs_condense = needs_condense
        self.no_answer = no_answer
        self.condense_max_tokens = condense_max_tokens
        self._answer_kwargs = generation_kwargs_for(llm)
        self._text_stream = text_stream_for(llm)
        self._condense_kwargs = generation_kwargs_for(self.condense_llm)

    def run(
        self,
        question: str,
        history: Sequence[HistoryTurn] = (),
        *,
        k: int | None = None,
        generation: GenerationParams | None = None,
        on_token: Callable[[str], None] | None = None,
        cancelled: threading.Event | None = None,
        config: RunnableConfig | None = None,
    ) -> ChainResult:
        """Answer ``question`` (blocking: call it from a worker thread).

        Args:
            question: the user's question as typed.
            history: past turns, oldest first.
            k: documents to retrieve (the API's ``max_matching_docs``); None: the retriever's default.
            generation: temperature, max tokens, top-p, top-k and stop sequences of this request.
            on_token: receives each piece of the answer text as the model streams it.
            cancelled: once set, the chain stops before its next step or token with
                :class:`ChainCancelledError` (and closes the model stream).
            config: LangChain run config (``callbacks``, ``tags``, ``metadata`` such as the request
                id): one chain run named ``"rag"`` with the retriever and model runs as children.

        Returns:
            The :class:`ChainResult`.

        Raises:
            ChainCancelledError: ``cancelled`` was set.
            IndexNotReadyError: no index is loaded.
            Exception: whatever the retriever or the models raise (botocore errors and the like).
        """
        config = config or {}
        manager = CallbackManager.configure(
            config.get("callbacks"),
            inheritable_tags=config.get("tags"),
            inheritable_metadata=config.get("metadata"),
        )
        run = manager.on_chain_start(None, {"question": question}, name=CHAIN_RUN_NAME)
        child: RunnableConfig = {"callbacks": run.get_child()}
        try:
            with span("rag.chain", k=k):
                result = self._run(question, history, k, generation or GenerationParams(), on_token, cancelled, child)
        except BaseException as exc:
            run.on_chain_error(exc)
            raise
        run.on_chain_end({"answer": result.answer, "generated_question": result.generated_question})
        return result

    def _run(
        self,
        question: str,
        history: Sequence[HistoryTurn],
        k: int | None,
        generation: GenerationParams,
        on_token: Callable[[str], None] | None,
        cancelled: threading.Event | None,
        config: RunnableConfig,
    ) -> ChainResult:
        def check() -> None:
            if cancelled is not None and cancelled.is_set():
                raise ChainCancelledError("the request was cancelled")

        usage = Usage()
        query = question
        if history and self.needs_condense(question, history):
            check()
            query = self._condense(question, history, generation, config, usage)
        check()
        stats = RetrievalStats()
        docs, verdict, plan = self._retrieve_turn(question, query, bool(history), k, stats, config)
        if self.no_answer is not None and (reply := self.no_answer(question, docs)) is not None:
            if on_token is not None and reply:
                on_token(reply)
            return ChainResult(reply, [], query, usage, stats, grounded=False, query_kind=plan.kind)
        if not verdict.grounded:
            if on_token is not None:
                on_token(NO_ANSWER)
            return ChainResult(
                NO_ANSWER, [], query, usage, stats, False, ungrounded_reason=REASON_NO_PASSAGE, query_kind=plan.kind
            )
        given = verdict.relevant if self.relevance_floor is not None else docs
        check()
        answer = self._answer(question, given, generation, config, usage, on_token, check)
        if is_refusal(answer):
            return ChainResult(
                NO_ANSWER, [], query, usage, stats, False, ungrounded_reason=REASON_MODEL_REFUSED, query_kind=plan.kind
            )
        return ChainResult(answer, mark_cited(docs, answer, given), query, usage, stats, query_kind=plan.kind)

    def _vocabulary(self) -> frozenset[str] | None:
        return self.vocabulary() if self.vocabulary is not None else None

    def _search(self, query: str, k: int | None, stats: RetrievalStats, config: RunnableConfig) -> list[Document]:
        return _rank_and_source(self.retriever.invoke(query, {**config, "run_name": "retriever"}, k=k, stats=stats))

    def _retrieve_turn(
        self,
        question: str,
        condensed: str,
        has_history: bool,
        k: int | None,
        stats: RetrievalStats,
        config: RunnableConfig,
    ) -> tuple[list[Document], Verdict, QueryPlan]:
        """Retrieve with the question alone, the condensed question or both fused (:func:`plan_query`)."""
        floor = self.relevance_floor.floor if self.relevance_floor else None
        vocabulary = self._vocabulary()
        alone = self._search(question, k, stats, config)
        alone_verdict = judge(question, alone, self.relevance_floor, vocabulary)
        if not has_history or condensed.strip() == question.strip():
            return alone, alone_verdict, plan_query(question, question, has_history=has_history)
        with_history = self._search(condensed, k, stats, config)
        # The unknown-word penalty and the corpus background count the user's own words, not the topic
        # the condensed question borrows from the history: an off-topic question after an on-topic
        # conversation stays off-topic, and a short follow-up ("how's it priced?") is not held to the
        # background of the topic's words.
        own_background = corpus_score(alone[0]) if alone and "corpus_score" in alone[0].metadata else None
        history_verdict = judge(question, with_history, self.relevance_floor, vocabulary, own_background)
        plan = plan_query(
            question,
            condensed,
            has_history=True,
            alone_relevance=alone_verdict.relevance,
            condensed_relevance=history_verdict.relevance,
            floor=floor,
            unknown_share=unknown_share(question, vocabulary),
            alone_cosine=alone_verdict.cosine,
            condensed_cosine=history_verdict.cosine,
        )
        if plan.kind == "alone":
            return alone, alone_verdict, plan
        if plan.kind == "condensed":
            return with_history, history_verdict, plan
        docs = _rank_and_source(
            fuse_documents([with_history, alone], [1.0, ALONE_WEIGHT], len(alone) or len(with_history))
        )
        relevant_keys = {_doc_key(d) for d in (*alone_verdict.relevant, *history_verdict.relevant)}
        verdict = Verdict(
            grounded=alone_verdict.grounded or history_verdict.grounded,
            relevance=max(alone_verdict.relevance, history_verdict.relevance),
            relevant=[d for d in docs if _doc_key(d) in relevant_keys],
            cosine=max(alone_verdict.cosine, history_verdict.cosine),
        )
        return docs, verdict, plan

    def _condense(
        self,
        question: str,
        history: Sequence[HistoryTurn],
        generation: GenerationParams,
        config: RunnableConfig,
        usage: Usage,
    ) -> str:
        prompt = CONDENSE_PROMPT.format(chat_history=format_history(history), question=question)
        params = generation
        if self.condense_max_tokens is not None:
            params = generation.bounded(self.condense_max_tokens)
        with span("llm.condense", request_id=(config_metadata(config)).get("request_id")) as current:
            message = self.condense_llm.invoke(
                prompt,
                {**config, "run_name": CONDENSE_RUN_NAME},
                stop=params.stop or None,
                **self._condense_kwargs(params),
            )
            text = message.text if isinstance(message.text, str) else str(message.content)
            tokens = _usage_of(getattr(message, "usage_metadata", None)) or (
                estimate_tokens(prompt),
                estimate_tokens(text),
            )
            _add(usage, tokens, current)
        return text.strip() or question

    def _answer(
        self,
        question: str,
        docs: list[Document],
        generation: GenerationParams,
        config: RunnableConfig,
        usage: Usage,
        on_token: Callable[[str], None] | None,
        check: Callable[[], None],
    ) -> str:
        messages = ANSWER_PROMPT.format_messages(context=format_documents(docs), question=question)
        pieces: list[str] = []
        with span("llm.answer", request_id=config_metadata(config).get("request_id")) as current:
            stream = self._text_stream(
                self.llm,
                messages,
                {**config, "run_name": ANSWER_RUN_NAME, "tags": [ANSWER_TAG]},
                generation.stop or None,
                self._answer_kwargs(generation),
            )
            try:
                for text in stream:
                    check()
                    pieces.append(text)
                    if on_token is not None:
                        on_token(text)
            finally:
                stream.close()
            answer = "".join(pieces)
            _add(
                usage,
                stream.usage or (estimate_tokens("x" * _prompt_chars(messages)), estimate_tokens(answer)),
                current,
            )
        return answer


def config_metadata(config: RunnableConfig) -> dict[str, Any]:
    """The inheritable metadata of a child config's callback manager (e.g. the request id for spans)."""
    callbacks = config.get("callbacks")
    return dict(getattr(callbacks, "inheritable_metadata", None) or config.get("metadata") or {})


def _add(usage: Usage, tokens: tuple[int, int], current: Any) -> None:
    usage.input_tokens += tokens[0]
    usage.output_tokens += tokens[1]
    if current is not None:
        current.set_attribute("input_tokens", tokens[0])
        current.set_attribute("output_tokens", tokens[1])


# --------------------------------------------------------------------------------------------
# handing the tokens of a chain running in a thread to the event loop


class FlushClock:
    """One timer per event loop that flushes every :class:`TokenRelay` with pending text, every ``flush_seconds``.

    With a timer per stream, each stream woke the loop twice per flush window (once from its thread
    to arm the timer, once when it fired): 2 x 20 wake-ups per second per stream at 50 ms. A shared
    clock wakes the loop ``1 / flush_seconds`` times per second however many streams are open, and a
    model thread that adds text while the clock runs does not touch the loop at all. The clock runs
    only while some relay has text waiting: a relay that ends (:meth:`discard`) leaves it, the timer
    is cancelled when none is left, and the next text arms it again (one ``call_soon_threadsafe``).

    Args:
        loop: the event loop the relays' consumers run on.
        flush_seconds: seconds between two ticks (``STREAM_FLUSH_SECONDS``; more than 0).

    Raises:
        ValueError: ``flush_seconds`` is not positive (a relay without an interval needs no clock).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, flush_seconds: float) -> None:
        if not flush_seconds > 0:
            raise ValueError(f"flush_seconds must be > 0, got {flush_seconds!r}")
        self.loop = loop
        self.flush_seconds = flush_seconds
        self._lock = threading.Lock()
        self._due: list[TokenRelay] = []
        self._running = False  # under _lock: a tick is armed or about to be
        self._timer: asyncio.TimerHandle | None = None  # only touched on the loop

    def mark(self, relay: TokenRelay) -> None:
        """Flush ``relay`` at the next tick (any thread; the relay marks itself once per flush).

        Args:
            relay: a relay on this clock's loop with text waiting.
        """
        with self._lock:
            self._due.append(relay)
            if self._running:
                return
            self._running = True
        self.loop.call_soon_threadsafe(self._start)

    def discard(self, relay: TokenRelay) -> None:
        """Forget ``relay`` (on the loop, when it has flushed for good); the last one out stops the clock."""
        with self._lock:
            self._due = [due for due in self._due if due is not relay]
            if self._due or not self._running:
                return
            self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _start(self) -> None:
        with self._lock:
            if not self._running or self._timer is not None:
                return
        self._timer = self.loop.call_later(self.flush_seconds, self._tick)

    def _tick(self) -> None:
        self._timer = None
        with self._lock:
            due, self._due = self._due, []
            if not due:
                self._running = False
                return
        for relay in due:
            relay.flush()
        self._timer = self.loop.call_later(self.flush_seconds, self._tick)


class TokenRelay:
    """Hands text pieces and other events from a worker thread to the event loop, in order.

    The first text piece is handed over at once (time to first token). After it, text waits for
    the next tick of a :class:`FlushClock` (``flush_seconds`` apart; the answer service shares one
    clock among all the worker's streams): what arrives in between travels as one piece, so 64
    streams at 50 tokens/s cost the loop about 20 wake-ups and a few hundred server-sent events per
    second instead of 3,200 of each (and the web chat re-renders less often). With
    ``flush_seconds=0`` (no clock) only pieces that pile up while the loop is busy are joined. Any
    other event (:meth:`put_event`) and the end of the stream (:meth:`close`) flush the pending text
    first, at once. The consumer reads from :attr:`queue`: ``str`` pieces, the events, and ``None``
    at the end.

    Args:
        loop: the event loop of the consumer.
        flush_seconds: seconds between two text pieces after the first; ignored when ``clock`` is given.
        clock: the shared flush clock (default: a clock of this relay's own when ``flush_seconds > 0``).
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, flush_seconds: float = 0.0, clock: FlushClock | None = None
    ) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self._loop = loop
        if clock is None and flush_seconds > 0:
            clock = FlushClock(loop, flush_seconds)
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: list[str | object] = []
        self._scheduled = False
        self._flushed_text = False
        self._closed = False

    def put(self, text: str) -> None:
        """Queue one piece of text for the loop (called from the worker thread).

        Args:
            text: the piece (any length; pieces are joined in arrival order).
        """
        with self._lock:
            self._pending.append(text)
            if self._scheduled:
                return
            self._scheduled = True
            at_once = self._clock is None or not self._flushed_text
        if at_once:
            self._loop.call_soon_threadsafe(self.flush)
        else:
            self._clock.mark(self)  # type: ignore[union-attr]

    def put_event(self, event: object) -> None:
        """Queue a non-text event after the text put so far; flushes at once (called from the worker thread).

        Args:
            event: any object but a ``str`` or None (those are text pieces and the end).
        """
        with self._lock:
            self._pending.append(event)
        self._loop.call_soon_threadsafe(self.flush)

    def flush(self) -> None:
        """Hand everything pending to :attr:`queue` (on the loop: the clock's tick, an event, the end)."""
        if self._closed:  # a cancelled run: close() ran while the thread was still putting
            return
        with self._lock:
            pending, self._pending, self._scheduled = self._pending, [], False
            if any(isinstance(item, str) for item in pending):
                self._flushed_text = True
        text: list[str] = []
        for item in pending:  # in arrival order; consecutive text pieces travel as one
            if isinstance(item, str):
                text.append(item)
                continue
            if text:
                self.queue.put_nowait("".join(text))
                text = []
            self.queue.put_nowait(item)
        if text:
            self.queue.put_nowait("".join(text))

    def close(self) -> None:
        """Called on the loop once the thread has finished (after everything it put was scheduled)."""
        if self._closed:
            return
        self.flush()
        self._closed = True
        if self._clock is not None:
            self._clock.discard(self)
        self.queue.put_nowait(None)


@dataclass(frozen=True)
class TokenEvent:
    """A piece of the answer as the model streams it."""

    text: str


@dataclass(frozen=True)
class FinalEvent:
    """The end of :func:`astream_chain`: the chain's result."""

    result: ChainResult


async def astream_chain(
    chain: AnswerChain,
    question: str,
    history: Sequence[HistoryTurn] = (),
    *,
    k: int | None = None,
    generation: GenerationParams | None = None,
    config: RunnableConfig | None = None,
    flush_seconds: float = 0.0,
    executor: Executor | None = None,
) -> AsyncIterator[TokenEvent | FinalEvent]:
    """Run ``chain`` once in a thread of ``executor``; yield its answer text as it streams, then a :class:`FinalEvent`.

    The whole chain runs synchronously in one thread (default: the loop's executor; with a copy
    of the caller's context, so logging's request id and tracing apply): query embedding, search
    and the model stream are blocking boto3/FAISS calls anyway, and LangChain's async path would
    hop between the loop and a thread for every token (measured against the fake Bedrock: 14.6 ms
    against 6.6 ms of CPU per answer). Tokens reach the loop through :class:`TokenRelay` (the first
    at once, then at most one :class:`TokenEvent` per ``flush_seconds``). Closing the generator
    (client disconnect) stops the chain before its next step or token.

    Raises:
        Whatever :meth:`AnswerChain.run` raises.
    """
    loop = asyncio.get_running_loop()
    relay = TokenRelay(loop, flush_seconds)
    cancelled = threading.Event()
    context = contextvars.copy_context()

    def job() -> ChainResult:
        return chain.run(
            question, history, k=k, generation=generation, on_token=relay.put, cancelled=cancelled, config=config
        )

    run = loop.run_in_executor(executor, context.run, job)
    run.add_done_callback(lambda _: relay.close())
    try:
        while (text := await relay.queue.get()) is not None:
            yield TokenEvent(text)
        result = await run
    finally:
        if not run.done():
            cancelled.set()
            run.cancel()
    yield FinalEvent(result)

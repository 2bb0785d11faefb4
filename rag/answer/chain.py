"""The conversational RAG chain: condense the follow-up with the history, retrieve, answer.

Built once per process (in the API's lifespan) around a :class:`LiveRetriever` that looks up the
tenant's *current* index on every call, so a hot-reloaded index is used without rebuilding the
chain. Per-request values (``k`` = ``max_matching_docs``, generation parameters) travel in context
variables set by :func:`request_scope`.

The chain is LangChain's ``ConversationalRetrievalChain`` (langchain-classic,
https://python.langchain.com/api_reference/langchain/chains/langchain.chains.conversational_retrieval.base.ConversationalRetrievalChain.html):
with an empty history it skips the condense LLM; otherwise the condense prompt sees
``{chat_history}`` (the reference deployment's prompt lacked it, so follow-ups lost their subject).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

from langchain_classic.chains import ConversationalRetrievalChain
from langchain_classic.chains.conversational_retrieval.base import _get_chat_history
from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    BaseCallbackHandler,
    CallbackManagerForChainRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import LLMResult
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig
from pydantic import ConfigDict, PrivateAttr

from rag.answer.followup import ALONE_WEIGHT, QueryPlan, plan_query
from rag.answer.grounding import (
    NO_ANSWER,
    REASON_MODEL_REFUSED,
    REASON_NO_PASSAGE,
    RelevanceFloor,
    Verdict,
    dense_score,
    is_refusal,
    judge,
    mark_cited,
    unknown_share,
)
from rag.answer.models import CONDENSE_MARKER, QUESTION_MARKER, GenerationParams, GenerationParamsModel, estimate_tokens
from rag.answer.models import generation_scope as _generation_scope
from rag.answer.retrieval import TenantIndex, TenantRetriever, reciprocal_rank_fusion
from rag.answer.tracing import end_span, span, start_span

_logger = logging.getLogger("rag.chain")


class _QuietCancellation(logging.Filter):
    """Drops LangChain's "Error in ... callback" warning for :class:`ChainCancelledError` (a client
    disconnect is not an error; the exception itself still stops the chain)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "ChainCancelledError" not in record.getMessage()


logging.getLogger("langchain_core.callbacks.manager").addFilter(_QuietCancellation())

ANSWER_RUN_NAME = "answer"
CONDENSE_RUN_NAME = "condense"
#: Tag of the answering model's runs (its tokens are the answer's tokens).
ANSWER_TAG = "rag:answer"

#: Condense prompt: MUST contain {chat_history}. Ends with CONDENSE_MARKER (the extractive model keys on it).
CONDENSE_TEMPLATE = (
    "Given the conversation below and a follow-up question, rewrite the follow-up question as a "
    "standalone question that keeps every subject, product and constraint it refers to from the "
    "conversation. If the follow-up question is already self-contained (it names its own subject "
    "and does not refer to the conversation, for example a new topic), return it exactly as it is. "
    "Reply with the question only, in its original language.\n\n"
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


@dataclass
class RequestStats:
    """Filled in while one request runs (read by the API for metrics and responses).

    Attributes:
        retrieval_seconds: wall time of the retrieval (query embedding + search), seconds.
        index_version: the index version the documents came from.
    """

    retrieval_seconds: float | None = None
    index_version: str | None = None


@dataclass(frozen=True)
class _Scope:
    k: int
    stats: RequestStats


_SCOPE: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("rag_request_scope", default=None)


@contextlib.contextmanager
def request_scope(*, k: int, generation: GenerationParams) -> Iterator[RequestStats]:
    """Set ``k`` and the generation parameters for chain calls made inside this block.

    Args:
        k: documents to retrieve (the API's ``max_matching_docs``).
        generation: temperature, max tokens, top-p, top-k, stop sequences.

    Yields:
        The :class:`RequestStats` the retriever fills in.
    """
    stats = RequestStats()
    token = _SCOPE.set(_Scope(k=k, stats=stats))
    try:
        with _generation_scope(generation):
            yield stats
    finally:
        _SCOPE.reset(token)


class IndexNotReadyError(RuntimeError):
    """No index is loaded yet (first load pending or failing)."""


class LiveRetriever(BaseRetriever):
    """Retriever over whatever index ``index_provider()`` returns now (hot reload), with ``k`` from
    :func:`request_scope` (default ``default_k``).

    One base retriever is built per index version with ``retriever_factory`` (e.g.
    :func:`rag.answer.retrieval.make_retriever`, which adds the optional reranker) and copied with the
    request's ``k``. The search itself (query embedding, FAISS, BM25) is synchronous: it runs in
    the chain's worker thread (:func:`astream_chain`), never on the event loop.

    Args:
        index_provider: returns the current :class:`TenantIndex`, or None when none is loaded.
        embeddings: the query embedding model (used when no factory is given).
        mode: ``"dense"`` or ``"hybrid"`` (used when no factory is given).
        default_k: ``k`` outside a request scope.
        retriever_factory: builds the retriever for a newly loaded index.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index_provider: Callable[[], TenantIndex | None]
    embeddings: Embeddings
    mode: Literal["dense", "hybrid"] = "hybrid"
    default_k: int = 4
    retriever_factory: Callable[[TenantIndex], TenantRetriever] | None = None
    _cache: tuple[int, TenantRetriever] | None = PrivateAttr(default=None)

    def prime(self, index: TenantIndex) -> None:
        """Build the base retriever for a newly loaded ``index`` now (and drop the previous index's,
        so nothing here keeps the old index alive)."""
        self._cache = None
        self._base(index)

    def _base(self, index: TenantIndex) -> TenantRetriever:
        cached = self._cache
        if cached is not None and cached[0] == id(index):
            return cached[1]
        if self.retriever_factory is not None:
            base = self.retriever_factory(index)
        else:
            base = TenantRetriever(index=index, embeddings=self.embeddings, mode=self.mode, k=self.default_k)
        self._cache = (id(index), base)
        return base

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        index = self.index_provider()
        if index is None:
            raise IndexNotReadyError("the tenant's index is not loaded yet")
        scope = _SCOPE.get()
        k = scope.k if scope else self.default_k
        started = time.perf_counter()
        retriever = self._base(index).model_copy(update={"k": k})
        with span("rag.retrieval", k=k, mode=self.mode, index_version=index.version.version) as current:
            docs = retriever._get_relevant_documents(query, run_manager=run_manager)  # no second callback run
            if current is not None:
                current.set_attribute("documents", len(docs))
        if scope:  # a follow-up may retrieve twice (question alone + condensed): the times add up
            scope.stats.retrieval_seconds = (scope.stats.retrieval_seconds or 0.0) + time.perf_counter() - started
            scope.stats.index_version = index.version.version
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
    ``dense_score`` (each list's cosine is to its own query). Returns the ``k`` best.
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
                    },
                    id=seen.id,
                )
        keyed.append(ids)
    ordered = [key for key, _ in sorted(keys.items(), key=lambda kv: kv[1])]
    fused = reciprocal_rank_fusion(keyed, weights)[:k]
    return [by_key[ordered[position]] for position, _ in fused]


class RagChain(ConversationalRetrievalChain):
    """``ConversationalRetrievalChain`` with follow-up aware retrieval and a no-answer path.

    One turn: condense the question with the history (when there is one), retrieve with the
    question alone, the condensed question or both fused (:func:`rag.answer.followup.plan_query`),
    apply the relevance floor (:func:`rag.answer.grounding.judge`) and only then call the answer
    model, with the passages that clear the floor. When none does, the answer is
    :data:`rag.answer.grounding.NO_ANSWER` and the model is not called; when the model itself says
    the documents lack the answer (:func:`rag.answer.grounding.is_refusal`), the answer becomes
    that sentence too. Both return no ``source_documents`` and ``grounded: False``.

    Extra outputs: ``grounded`` (bool), ``ungrounded_reason`` (one of
    :data:`rag.answer.grounding.UNGROUNDED_REASONS` or None), ``query_kind`` (``alone`` /
    ``condensed`` / ``fused``). Each source document carries ``metadata["cited"]``.

    Attributes:
        relevance_floor: the floor (None: every retrieval counts as relevant).
        vocabulary: returns the index's words for the unknown-word penalty (None: no penalty).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    relevance_floor: RelevanceFloor | None = None
    vocabulary: Callable[[], frozenset[str] | None] | None = None

    def _get_docs(self, question: str, inputs: dict[str, Any], *, run_manager: Any) -> list[Document]:
        return _rank_and_source(super()._get_docs(question, inputs, run_manager=run_manager))

    async def _aget_docs(self, question: str, inputs: dict[str, Any], *, run_manager: Any) -> list[Document]:
        return _rank_and_source(await super()._aget_docs(question, inputs, run_manager=run_manager))

    def _judge(self, query: str, docs: list[Document]) -> Verdict:
        vocabulary = self.vocabulary() if self.vocabulary is not None else None
        return judge(query, docs, self.relevance_floor, vocabulary)

    def retrieve_turn(
        self, question: str, condensed: str, *, has_history: bool, run_manager: Any
    ) -> tuple[list[Document], Verdict, QueryPlan]:
        """Retrieve for one turn (see the class docstring); returns documents, verdict and plan."""
        floor = self.relevance_floor.floor if self.relevance_floor else None
        alone = self._get_docs(question, {}, run_manager=run_manager)
        alone_verdict = self._judge(question, alone)
        if not has_history or condensed.strip() == question.strip():
            plan = plan_query(question, question, has_history=has_history)
            return alone, alone_verdict, plan
        with_history = self._get_docs(condensed, {}, run_manager=run_manager)
        # The unknown-word penalty counts the user's own words, not the topic the condensed question
        # borrows from the history: an off-topic question after an on-topic conversation stays off-topic.
        history_verdict = self._judge(question, with_history)
        plan = plan_query(
            question,
            condensed,
            has_history=True,
            alone_relevance=alone_verdict.relevance,
            condensed_relevance=history_verdict.relevance,
            floor=floor,
            unknown_share=unknown_share(question, self.vocabulary() if self.vocabulary is not None else None),
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
        )
        return docs, verdict, plan

    def _call(self, inputs: dict[str, Any], run_manager: CallbackManagerForChainRun | None = None) -> dict[str, Any]:
        manager = run_manager or CallbackManagerForChainRun.get_noop_manager()
        question = inputs["question"]
        chat_history = (self.get_chat_history or _get_chat_history)(inputs["chat_history"])
        condensed = question
        if chat_history:
            generated = self.question_generator.invoke(
                {"question": question, "chat_history": chat_history}, config={"callbacks": manager.get_child()}
            )
            condensed = str(generated[self.question_generator.output_key]).strip() or question
        docs, verdict, plan = self.retrieve_turn(
            question, condensed, has_history=bool(chat_history), run_manager=manager
        )
        output: dict[str, Any] = {"generated_question": condensed, "query_kind": plan.kind}
        if not verdict.grounded:
            output.update({self.output_key: NO_ANSWER, "grounded": False, "ungrounded_reason": REASON_NO_PASSAGE})
            output["source_documents"] = []
            return output
        given = verdict.relevant if self.relevance_floor is not None else docs
        combine_inputs = {
            **inputs,
            "input_documents": given,
            "question": condensed if self.rephrase_question else question,
            "chat_history": chat_history,
        }
        result = self.combine_docs_chain.invoke(combine_inputs, config={"callbacks": manager.get_child()})
        answer = str(result[self.combine_docs_chain.output_key])
        if is_refusal(answer):
            output.update({self.output_key: NO_ANSWER, "grounded": False, "ungrounded_reason": REASON_MODEL_REFUSED})
            output["source_documents"] = []
            return output
        output.update({self.output_key: answer, "grounded": True, "ungrounded_reason": None})
        output["source_documents"] = mark_cited(docs, answer, given)
        return output

    async def _acall(
        self, inputs: dict[str, Any], run_manager: AsyncCallbackManagerForChainRun | None = None
    ) -> dict[str, Any]:
        # One code path: the turn runs synchronously in a thread (see astream_chain for why).
        sync_manager = run_manager.get_sync() if run_manager is not None else None
        return await asyncio.to_thread(contextvars.copy_context().run, self._call, inputs, sync_manager)


def build_chain(
    *,
    retriever: BaseRetriever,
    llm: BaseChatModel,
    condense_llm: BaseChatModel | None = None,
    relevance_floor: RelevanceFloor | None = None,
) -> RagChain:
    """Build the conversational RAG chain (once per process).

    Args:
        retriever: usually a :class:`LiveRetriever` (its index's words feed the grounding check).
        llm: the answering chat model; wrapped in :class:`GenerationParamsModel` named ``"answer"``.
        condense_llm: the model that rewrites follow-ups (default: ``llm``), named ``"condense"``.
        relevance_floor: the no-answer floor (:func:`rag.answer.grounding.floor_for`); None: none.

    Returns:
        A chain taking ``{"question", "chat_history": [messages]}`` and returning ``answer``,
        ``source_documents``, ``generated_question``, ``grounded``, ``ungrounded_reason`` and
        ``query_kind`` (see :class:`RagChain`).
    """
    # streaming=True (explicit): the models always stream, so tokens reach the callbacks as they come.
    answer = GenerationParamsModel(inner=llm, name=ANSWER_RUN_NAME, tags=[ANSWER_TAG], streaming=True)
    condense = GenerationParamsModel(inner=condense_llm or llm, name=CONDENSE_RUN_NAME, streaming=True)
    return RagChain.from_llm(
        llm=answer,
        retriever=retriever,
        condense_question_prompt=CONDENSE_PROMPT,
        condense_question_llm=condense,
        combine_docs_chain_kwargs={"prompt": ANSWER_PROMPT, "document_prompt": DOCUMENT_PROMPT},
        return_source_documents=True,
        return_generated_question=True,
        rephrase_question=False,  # answer the user's own words; retrieve with the condensed question
        relevance_floor=relevance_floor,
        vocabulary=retriever.vocabulary if isinstance(retriever, LiveRetriever) else None,
    )


def history_messages(turns: list[tuple[str, str]]) -> list[BaseMessage]:
    """``[(question, answer), ...]`` → alternating Human/AI messages for ``chat_history``."""
    messages: list[BaseMessage] = []
    for question, answer in turns:
        messages.extend([HumanMessage(question), AIMessage(answer)])
    return messages


# --------------------------------------------------------------------------------------------
# running the chain as a stream of events


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


@dataclass(frozen=True)
class TokenEvent:
    """A piece of the answer as the model streams it."""

    text: str


@dataclass(frozen=True)
class FinalEvent:
    """The chain's result: the complete answer and the documents it was generated from.

    Attributes:
        answer: the answer text (:data:`rag.answer.grounding.NO_ANSWER` when not grounded).
        documents: the turn's sources (empty when not grounded), each with ``metadata["cited"]``.
        generated_question: the condensed question (the question itself without history).
        usage: tokens of the model calls (none for a no-answer of the first turn).
        grounded: False when the documents hold nothing relevant or the model said so.
        ungrounded_reason: one of :data:`rag.answer.grounding.UNGROUNDED_REASONS`, or None.
        query_kind: what the turn was retrieved with (``alone``, ``condensed``, ``fused``).
    """

    answer: str
    documents: list[Document]
    generated_question: str
    usage: Usage = field(default_factory=Usage)
    grounded: bool = True
    ungrounded_reason: str | None = None
    query_kind: str = "alone"


def _message_text(message: Any) -> str:
    text = getattr(message, "text", None)
    if isinstance(text, str):  # langchain-core >= 1.0: a str property
        return str(text)
    if callable(text):  # older langchain-core: .text() method
        return str(text())
    return str(getattr(message, "content", "") or "")


class ChainCancelledError(RuntimeError):
    """The caller went away (client disconnect): the chain stops at its next callback."""


class _TokenRelay:
    """Hands the answer's tokens from the chain's worker thread to the event loop.

    The first token is handed over at once (time to first token). After it, tokens are sent at
    most every ``flush_seconds``: what arrives in between travels as one piece, so 64 streams at
    50 tokens/s cost the loop a few hundred wake-ups and server-sent events per second instead of
    3,200 (and the web chat re-renders less often). With ``flush_seconds=0`` only tokens that pile
    up while the loop is busy are joined. The end of the stream (:meth:`close`) flushes at once, so
    the total latency does not change. The consumer reads text pieces from :attr:`queue`; ``None``
    ends the stream.

    Args:
        loop: the event loop of the consumer.
        flush_seconds: the shortest time between two pieces after the first, seconds.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, flush_seconds: float = 0.0) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._loop = loop
        self._flush_seconds = flush_seconds
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._scheduled = False
        self._last_flush: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    def put(self, text: str) -> None:
        """Queue one token's text for the loop (called from the worker thread).

        Args:
            text: the token's text (any length; pieces are joined in arrival order).
        """
        with self._lock:
            self._pending.append(text)
            if self._scheduled:
                return
            self._scheduled = True
        self._loop.call_soon_threadsafe(self._schedule)

    def _schedule(self) -> None:
        if self._closed:  # a cancelled run: close() ran while the thread was still putting
            return
        due = None if self._last_flush is None else self._last_flush + self._flush_seconds
        if due is None or due <= self._loop.time():
            self._drain()
        else:
            self._timer = self._loop.call_at(due, self._drain)

    def _drain(self) -> None:
        self._timer = None
        with self._lock:
            pending, self._pending, self._scheduled = self._pending, [], False
        if pending:
            self._last_flush = self._loop.time()
            self.queue.put_nowait("".join(pending))

    def close(self) -> None:
        """Called on the loop once the chain has finished (after every token was scheduled)."""
        if self._timer is not None:
            self._timer.cancel()
        self._drain()
        self._closed = True
        self.queue.put_nowait(None)


class _TokenCollector(BaseCallbackHandler):
    """Receives the answer model's tokens and every model call's usage.

    Runs in the chain's worker thread. Once ``cancelled`` is set, the next retriever start, model
    start or token raises :class:`ChainCancelledError`, which stops the chain (``raise_error``);
    its own bookkeeping never raises (a failure there is logged, the answer goes on).
    """

    raise_error = True
    ignore_chain = True
    ignore_agent = True
    ignore_retry = True
    ignore_custom_event = True

    def __init__(self, relay: _TokenRelay, cancelled: threading.Event) -> None:
        self.relay = relay
        self.cancelled = cancelled
        self.usage = Usage()
        self._prompt_chars: dict[UUID, int] = {}
        self._spans: dict[UUID, Any] = {}

    def _check(self) -> None:
        if self.cancelled.is_set():
            raise ChainCancelledError("the request was cancelled")

    def on_retriever_start(self, serialized: dict[str, Any], query: str, **kwargs: Any) -> None:
        self._check()  # a client that left during the condense call: no query embedding, no rerank

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._check()
        try:
            self._prompt_chars[run_id] = sum(len(str(m.content)) for batch in messages for m in batch)
            role = ANSWER_RUN_NAME if tags and ANSWER_TAG in tags else CONDENSE_RUN_NAME
            self._spans[run_id] = start_span(f"llm.{role}", request_id=(metadata or {}).get("request_id"))
        except Exception:
            _logger.warning("token collector: model start not recorded", exc_info=True)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._prompt_chars.pop(run_id, None)
        try:
            end_span(self._spans.pop(run_id, None), error=error)
        except Exception:
            _logger.warning("token collector: model error not recorded", exc_info=True)

    def on_llm_new_token(
        self, token: Any, *, chunk: Any = None, run_id: UUID, tags: list[str] | None = None, **kwargs: Any
    ) -> None:
        self._check()
        if tags and ANSWER_TAG in tags:
            text = _message_text(chunk.message) if chunk is not None else str(token)
            if text:
                self.relay.put(text)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            self._record_end(response, run_id)
        except Exception:
            _logger.warning("token collector: usage not recorded", exc_info=True)

    def _record_end(self, response: LLMResult, run_id: UUID) -> None:
        prompt_chars = self._prompt_chars.pop(run_id, 0)
        generation = response.generations[0][0] if response.generations and response.generations[0] else None
        message = getattr(generation, "message", None)
        meta = getattr(message, "usage_metadata", None)
        if meta:
            input_tokens, output_tokens = int(meta.get("input_tokens", 0)), int(meta.get("output_tokens", 0))
        else:
            input_tokens = estimate_tokens("x" * prompt_chars)
            output_tokens = estimate_tokens(generation.text if generation else "")
        self.usage.input_tokens += input_tokens
        self.usage.output_tokens += output_tokens
        end_span(self._spans.pop(run_id, None), input_tokens=input_tokens, output_tokens=output_tokens)


async def astream_chain(
    chain: ConversationalRetrievalChain,
    question: str,
    chat_history: list[BaseMessage],
    *,
    metadata: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    flush_seconds: float = 0.0,
    executor: Executor | None = None,
) -> AsyncIterator[TokenEvent | FinalEvent]:
    """Run ``chain`` once and yield the answer's text as it streams, then one :class:`FinalEvent`.

    One retrieval, one answer call (plus one condense call when there is history). The whole chain
    runs synchronously in one thread of ``executor`` (default: the loop's; with a copy of the
    caller's context, so :func:`request_scope`, the request id and tracing apply): query embedding,
    search and the model stream are blocking boto3/FAISS calls anyway, and LangChain's async path
    would hop between the loop and a thread for every token and every callback (measured in one
    process against the fake Bedrock: 14.6 ms against 6.6 ms of CPU per answer). Tokens come from
    a callback handler (the answer model is tagged :data:`ANSWER_TAG`) and reach the loop through
    :class:`_TokenRelay`: the first token at once, then at most one :class:`TokenEvent` per
    ``flush_seconds`` (seconds; tokens in between are joined). Token usage comes from the models'
    ``usage_metadata``; models that report none get an estimate (:func:`rag.answer.models.estimate_tokens`).

    Closing the generator (client disconnect) stops the chain at its next callback: no further
    retrieval or model call starts and the model stream is closed at its next token.

    ``metadata`` and ``tags`` go into the LangChain run config (e.g. the request id), so tracers and
    callbacks of every run (chain, retriever, models) see them.

    Raises:
        Whatever the retriever or the models raise (botocore errors, :class:`IndexNotReadyError`).
    """
    loop = asyncio.get_running_loop()
    relay = _TokenRelay(loop, flush_seconds)
    cancelled = threading.Event()
    collector = _TokenCollector(relay, cancelled)
    config: RunnableConfig = {
        "callbacks": [collector],
        "metadata": dict(metadata or {}),
        "tags": list(tags or []),
    }
    context = contextvars.copy_context()
    run = loop.run_in_executor(
        executor, context.run, chain.invoke, {"question": question, "chat_history": chat_history}, config
    )
    run.add_done_callback(lambda _: relay.close())
    streamed = False
    try:
        while (text := await relay.queue.get()) is not None:
            streamed = True
            yield TokenEvent(text)
        final = await run
    finally:
        if not run.done():
            cancelled.set()
            run.cancel()
    answer = str(final.get("answer", ""))
    if not streamed and answer:  # no model call (the no-answer path): the sentence is the only piece
        yield TokenEvent(answer)
    yield FinalEvent(
        answer=answer,
        documents=list(final.get("source_documents", [])),
        generated_question=str(final.get("generated_question", question)),
        usage=collector.usage,
        grounded=bool(final.get("grounded", True)),
        ungrounded_reason=final.get("ungrounded_reason"),
        query_kind=str(final.get("query_kind", "alone")),
    )

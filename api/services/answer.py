"""The answer service: one turn of a conversation, from the checks before it to the records after it.

:meth:`AnswerService.start` runs the checks that must answer with a plain HTTP error before anything
is streamed (the session's tenant, index readiness, the quotas, the history load) and returns an
:class:`AnswerTurn`; :meth:`AnswerTurn.events` then yields the wire contract's stream events:

    TokenEvent…  SourcesEvent  DoneEvent        (or ErrorEvent instead, after which nothing follows)

The JSON route collects them (:meth:`AnswerTurn.response`), the SSE route sends them as they come.

Everything blocking of a turn — quota check, history load, the chain (query embedding, search, the
model stream), history save, usage and quota accounting — runs in *one* thread of the worker's
chain executor, in that order; the loop only receives the events through a
:class:`rag.answer.chain.TokenRelay` (the first token at once, later ones joined and sent on the
worker's one :class:`rag.answer.chain.FlushClock`, every ``STREAM_FLUSH_SECONDS``). The turn
(question + answer + sources) is written to the history only after the answer is complete; a
failure or a client disconnect (which sets the turn's cancel flag: the chain stops before its next
step or token) leaves no trace in the history.

Hooks for other answer paths live in the chain (:class:`rag.answer.chain.AnswerChain`):
``needs_condense`` (follow-up decision) and ``no_answer`` (answer without a model call; the turn is
then ``grounded=False`` with no sources).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from langchain_core.documents import Document

from api import metrics
from api.deps import check_session
from api.errors import RETRY_AFTER_OVERLOADED, ApiError, classify_exception
from api.state import RagState
from rag.answer.chain import ChainCancelledError, ChainResult, FlushClock, IndexNotReadyError, TokenRelay
from rag.answer.models import GenerationParams
from rag.answer.tracing import span
from rag.contract import (
    SNIPPET_CHARS,
    STREAM_PATH,
    DoneEvent,
    ErrorEvent,
    RagRequest,
    RagResponse,
    RetrievedDoc,
    Source,
    SourcesEvent,
    TokenEvent,
    Usage,
)
from rag.logs import request_id_var
from rag.stores.history import Turn, replace_last_turn, utc_now_iso
from rag.stores.quota import QuotaExceededError
from rag.stores.usage import UsageRecord
from rag.tenant import SessionId

logger = logging.getLogger("api.rag")

#: Past turns loaded for the condense prompt.
HISTORY_TURNS = 10

#: What :meth:`AnswerTurn.events` yields.
StreamEvent = TokenEvent | SourcesEvent | DoneEvent | ErrorEvent

_READY = object()  # the relay's marker: the checks before the answer passed


def to_sources(documents: list[Document]) -> list[Source]:
    """Citations for the documents the answer was generated from (rank order).

    Args:
        documents: the chain's documents; ``metadata`` may hold ``id``, ``source``, ``row``,
            ``page``, ``title`` and ``score`` (see :class:`rag.answer.retrieval.TenantRetriever`).
    """
    sources = []
    for doc in documents:
        meta = doc.metadata
        sources.append(
            Source(
                id=str(meta.get("id") or doc.id or ""),
                source=str(meta.get("source", "")),
                row=meta.get("row") if isinstance(meta.get("row"), int) else None,
                page=meta.get("page") if isinstance(meta.get("page"), int) else None,
                title=str(meta["title"]) if meta.get("title") else None,
                score=float(meta.get("score", 0.0)),
                snippet=doc.page_content[:SNIPPET_CHARS],
                cited=bool(meta.get("cited", False)),
            )
        )
    return sources


def generation_of(body: RagRequest) -> GenerationParams:
    """The request's generation parameters (the reference API's names mapped to LangChain's)."""
    return GenerationParams(
        temperature=body.temperature,
        max_tokens=body.maxTokenCount,
        top_p=body.topP,
        top_k=body.topK,
        stop=list(body.stopSequences),
    )


def _plain(metadata: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metadata.items() if isinstance(v, str | int | float | bool | type(None))}


def _error_event(error: ApiError) -> ErrorEvent:
    return ErrorEvent(status=error.status, error=error.error, message=error.message, retry_after=error.retry_after)


class AnswerService:
    """Runs answer turns for one worker (built once by the lifespan, kept on ``app.state.answers``).

    Args:
        state: the worker's :class:`api.state.RagState` (chain, stores, executor, settings).

    Raises:
        RuntimeError: built outside the event loop (its flush clock belongs to the running loop).
    """

    def __init__(self, state: RagState) -> None:
        self.state = state
        self.limit = state.settings.max_inflight_answers
        #: Answers admitted and not finished yet (their threads still run); only touched on the loop.
        self.in_flight = 0
        flush = state.settings.stream_flush_seconds
        #: The worker's one flush clock for all streams (none when ``STREAM_FLUSH_SECONDS=0``).
        self.clock = FlushClock(asyncio.get_running_loop(), flush) if flush > 0 else None

    def _release(self, _: object = None) -> None:
        self.in_flight -= 1
        metrics.INFLIGHT.dec()

    async def start(self, body: RagRequest, tenant: str, *, route: str, started: float) -> AnswerTurn:
        """Check and prepare a turn; the answer starts right after (in the chain's thread).

        Args:
            body: the validated request.
            tenant: this pod's tenant id.
            route: the route's path (metric and log label; :data:`rag.contract.STREAM_PATH` streams).
            started: ``time.perf_counter()`` when the request arrived (for time to first token).

        Returns:
            The running :class:`AnswerTurn`.

        Raises:
            ApiError: 422/403 for a malformed or foreign session id, 503 ``index_not_ready``,
                503 ``overloaded`` when ``MAX_INFLIGHT_ANSWERS`` answers already run in this worker
                (load shedding: a fast refusal instead of every stream slowing down), 429
                ``quota_exceeded``, 503 ``history_unavailable``.
        """
        session = check_session(body.user_session_id, tenant)
        if self.state.index.get() is None:
            raise classify_exception(IndexNotReadyError("index not loaded"))
        if self.in_flight >= self.limit:
            metrics.SHED.inc()
            raise ApiError(503, "overloaded", "The assistant is busy; try again in a moment.", RETRY_AFTER_OVERLOADED)
        self.in_flight += 1
        metrics.INFLIGHT.inc()
        turn = AnswerTurn(self.state, body, session, route=route, started=started, clock=self.clock)
        try:
            await turn.begin(on_finished=self._release)
        except BaseException:
            if not turn.started_thread:
                self._release()
            raise
        return turn


class AnswerTurn:
    """One question being answered; made by :meth:`AnswerService.start`.

    Attributes:
        answer_id: identifies the answer (``POST /api/v1/feedback``).
        result: the chain's result, once the answer is complete.
        sources: the citations, once the answer is complete.
    """

    def __init__(
        self,
        state: RagState,
        body: RagRequest,
        session: SessionId,
        *,
        route: str,
        started: float,
        clock: FlushClock | None = None,
    ) -> None:
        self.state = state
        self.clock = clock
        self.body = body
        self.session = session
        self.route = route
        self.started = started
        self.streaming = route == STREAM_PATH
        self.answer_id = uuid.uuid4().hex
        self.asked_at = utc_now_iso()
        self.result: ChainResult | None = None
        self.sources: list[Source] = []
        self._cancelled = threading.Event()
        self._first_token_seen = False
        self._relay: TokenRelay | None = None
        self._future: asyncio.Future[None] | None = None
        self.started_thread = False

    # --- on the loop -------------------------------------------------------------------------

    async def begin(self, on_finished: Callable[[object], None] | None = None) -> None:
        """Start the turn's thread and wait until its checks passed (quota, history load).

        Args:
            on_finished: called on the loop when the turn's thread has ended (whatever the outcome).

        Raises:
            ApiError: a check failed (nothing was answered or stored).
        """
        loop = asyncio.get_running_loop()
        self._relay = relay = TokenRelay(loop, clock=self.clock)  # no clock: STREAM_FLUSH_SECONDS=0
        # Context variables that must reach the thread: the logs' request id (rag.logs.request_id_var, set by
        # the middleware) and LangChain's own tracing context (e.g. collect_runs); nothing per request of
        # the answer travels this way (k, generation parameters, sinks are arguments of AnswerChain.run).
        context = contextvars.copy_context()
        self._future = loop.run_in_executor(self.state.chain_executor, context.run, self._run)
        self.started_thread = True
        self._future.add_done_callback(lambda _: relay.close())
        if on_finished is not None:
            self._future.add_done_callback(on_finished)
        try:
            first = await relay.queue.get()
        except BaseException:
            self._cancelled.set()
            raise
        if isinstance(first, ApiError):
            raise first
        if first is not _READY:  # pragma: no cover - the thread puts _READY or an ApiError first
            raise RuntimeError("the answer thread ended before its checks")

    async def events(self) -> AsyncIterator[StreamEvent]:
        """The turn's events: ``TokenEvent``… ``SourcesEvent`` ``DoneEvent`` (or an ``ErrorEvent``, then the end).

        Closing the iterator early (client disconnect) cancels the turn: the chain stops before its
        next step or token, and nothing is stored.
        """
        assert self._relay is not None and self._future is not None, "begin() first"
        queue = self._relay.queue
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, str):
                    if not self._first_token_seen:
                        self._first_token_seen = True
                        metrics.TTFT.labels(self.route).observe(time.perf_counter() - self.started)
                    yield TokenEvent(text=item)
                else:
                    yield item
        finally:
            if not self._future.done():
                self._cancelled.set()

    async def response(self) -> RagResponse:
        """Wait for the whole answer (the JSON route).

        Raises:
            ApiError: the answer failed (the error the stream's ``ErrorEvent`` would carry).
        """
        done: DoneEvent | None = None
        async for event in self.events():
            if isinstance(event, ErrorEvent):
                raise ApiError(event.status, event.error, event.message, event.retry_after)
            if isinstance(event, DoneEvent):
                done = event
        if done is None or self.result is None:  # pragma: no cover - the thread ends with Done or Error
            raise RuntimeError("the answer ended without a result")
        verbose = self.body.verbose
        return RagResponse(
            question=self.body.q,
            answer=done.answer,
            session_id=done.session_id,
            sources=self.sources,
            docs=[RetrievedDoc(page_content=d.page_content, metadata=_plain(d.metadata)) for d in self.result.documents]
            if verbose
            else None,
            usage=done.usage,
            model_id=done.model_id,
            answer_id=done.answer_id,
            grounded=done.grounded,
        )

    # --- in the chain's thread ------------------------------------------------------------------

    def _emit(self, event: object) -> None:
        assert self._relay is not None
        self._relay.put_event(event)

    def _on_token(self) -> Callable[[str], None]:
        assert self._relay is not None
        if self.streaming:
            return self._relay.put

        def first_token_only(_: str) -> None:  # the JSON route needs the time to first token only
            if not self._first_token_seen:
                self._first_token_seen = True
                metrics.TTFT.labels(self.route).observe(time.perf_counter() - self.started)

        return first_token_only

    def _run(self) -> None:
        try:
            self._admit()
            with span("history.load"):
                turns = self.state.history.load(self.body.user_session_id, limit=HISTORY_TURNS)
            if self.body.regenerate:  # answer the last question again, without its old answer in the context
                if not turns or turns[-1].question != self.body.q:
                    raise ApiError(
                        409, "nothing_to_regenerate", "q is not the session's last question; nothing to regenerate."
                    )
                turns = turns[:-1]
        except Exception as exc:
            self._emit(classify_exception(exc))
            return
        self._emit(_READY)
        body = self.body
        try:
            result = self.state.chain.run(
                body.q,
                [(t.question, t.answer) for t in turns],
                k=body.max_matching_docs,
                generation=generation_of(body),
                on_token=self._on_token(),
                cancelled=self._cancelled,
                config=self._run_config(),
            )
        except ChainCancelledError:
            return  # the client went away: nothing to send, nothing to store
        except Exception as exc:
            self._fail(exc, "answer failed")
            return
        self.result = result
        metrics.TOKENS.labels("input").inc(result.usage.input_tokens)
        metrics.TOKENS.labels("output").inc(result.usage.output_tokens)
        if result.retrieval.retrieval_seconds is not None:
            metrics.RETRIEVAL.observe(result.retrieval.retrieval_seconds)
        if not result.grounded:
            metrics.UNGROUNDED.labels(self.state.settings.tenant_id, result.ungrounded_reason or "hook").inc()
        self.sources = to_sources(result.documents)
        self._emit(SourcesEvent(sources=self.sources))
        if self._cancelled.is_set():
            return
        try:
            self._save(result)
        except Exception as exc:
            self._fail(exc, "answer not stored")
            return
        self._account(result)
        self._log_answered(result)
        self._emit(
            DoneEvent(
                session_id=body.user_session_id,
                answer=result.answer,
                usage=Usage(**result.usage.as_dict()),
                model_id=self.state.model_id,
                answer_id=self.answer_id,
                grounded=result.grounded,
            )
        )

    def _fail(self, exc: Exception, what: str) -> None:
        error = classify_exception(exc)
        metrics.ANSWER_ERRORS.labels(self.route, error.error).inc()
        if error.status == 500:
            logger.error(what, exc_info=exc)
        else:
            logger.warning("%s: %s %s", what, error.status, error.error)
        self._emit(_error_event(error))

    def _run_config(self) -> dict[str, Any]:
        """Metadata and tags of the LangChain run (the request id reaches tracers and callbacks)."""
        tenant = self.state.settings.tenant_id
        route = "rag_stream" if self.streaming else "rag"
        return {
            "metadata": {"request_id": request_id_var.get(), "tenant": tenant, "answer_id": self.answer_id},
            "tags": [f"tenant:{tenant}", f"route:{route}"],
        }

    def _admit(self) -> None:
        """Count the request against the quotas (429 when a limit is reached; fails open on backend errors)."""
        quota, tenant = self.state.quota, self.session.tenant
        if not quota.limits.enabled:
            return
        try:
            quota.admit(tenant, self.session.subject)
        except QuotaExceededError as exc:
            metrics.QUOTA_REJECTIONS.labels(tenant, exc.scope, exc.kind).inc()
            logger.info("quota exceeded: %s %s (limit %d)", exc.scope, exc.kind, exc.limit)
            raise ApiError(429, "quota_exceeded", exc.message, exc.retry_after) from None
        except Exception as exc:
            metrics.QUOTA_ERRORS.labels(tenant).inc()
            logger.warning("quota check failed, request admitted: %s", exc)

    def _save(self, result: ChainResult) -> None:
        turn = Turn(
            question=self.body.q,
            answer=result.answer,
            sources=[s.model_dump(exclude_none=True) for s in self.sources],
            created_at=self.asked_at,
            answered_at=utc_now_iso(),
            answer_id=self.answer_id,
            model_id=self.state.model_id,
        )
        with span("history.append"):
            if self.body.regenerate:  # the new answer replaces the last turn: the history keeps one turn, not two
                replace_last_turn(self.state.history, self.body.user_session_id, turn)
            else:
                self.state.history.append(self.body.user_session_id, turn)

    def _account(self, result: ChainResult) -> None:
        """Add the tokens to the token quotas and store the usage record (errors are logged and counted)."""
        state, session, usage = self.state, self.session, result.usage
        tenant, model = state.settings.tenant_id, state.model_id
        try:
            state.quota.add_tokens(tenant, session.subject, usage.total_tokens)
        except Exception as exc:
            metrics.QUOTA_ERRORS.labels(tenant).inc()
            logger.warning("token quota not updated: %s", exc)
        record = UsageRecord(
            tenant=tenant,
            user=session.subject,
            session_id=str(session),
            answer_id=self.answer_id,
            model_id=model,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cost_usd=state.prices.cost(model, usage.input_tokens, usage.output_tokens),
            at=utc_now_iso(),
            grounded=result.grounded,
        )
        metrics.MODEL_TOKENS.labels(tenant, model, "input").inc(usage.input_tokens)
        metrics.MODEL_TOKENS.labels(tenant, model, "output").inc(usage.output_tokens)
        metrics.COST.labels(tenant, model).inc(record.cost_usd)
        try:
            state.usage.record(record)
        except Exception as exc:
            metrics.USAGE_ERRORS.labels(tenant).inc()
            logger.warning("usage not recorded: %s", exc)

    def _log_answered(self, result: ChainResult) -> None:
        """One log line per answered question (counts only: never the question, answer or documents)."""
        logger.info(
            "%s: k=%d docs=%d tokens=%d/%d index=%s grounded=%s",
            "answered (stream)" if self.streaming else "answered",
            self.body.max_matching_docs,
            len(result.documents),
            result.usage.input_tokens,
            result.usage.output_tokens,
            result.retrieval.index_version,
            result.grounded,
            extra={"answer_id": self.answer_id, "model_id": self.state.model_id},
        )

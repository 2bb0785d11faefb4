"""``POST /api/v1/llm/rag`` (one JSON answer) and ``POST /api/v1/llm/rag/stream`` (server-sent events).

Both run the same chain once: one retrieval, the answer generated from exactly the documents
returned as ``sources``. The turn (question + answer + sources) is written to the history only
after the answer is complete; a failure or a client disconnect leaves no trace in the history.

Stream events (``text/event-stream``, https://html.spec.whatwg.org/multipage/server-sent-events.html)::

    event: token    data: {"text": "..."}                       (many)
    event: sources  data: {"sources": [...]}
    event: done     data: {"session_id", "answer", "grounded", "usage", "model_id", "answer_id"}
    event: error    data: {"status", "error", "message", "retry_after"}   (instead, on failure; then the end)

Before answering, the tenant's and user's quotas are checked (429 + ``Retry-After`` when a limit
is reached); after it, the answer's tokens are recorded (usage store, token quotas, metrics by
tenant and model with an estimated cost). ``answer_id`` identifies the answer for feedback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from langchain_core.documents import Document
from sse_starlette import EventSourceResponse

from api import metrics
from api.deps import RagStateDep, TenantDep, check_session
from api.errors import ApiError, classify_exception
from api.state import RagState
from rag.answer.chain import (
    FinalEvent,
    IndexNotReadyError,
    RequestStats,
    astream_chain,
    history_messages,
    request_scope,
)
from rag.answer.chain import Usage as ChainUsage
from rag.answer.models import GenerationParams
from rag.answer.tracing import span
from rag.contract import SNIPPET_CHARS, ErrorBody, RagRequest, RagResponse, RetrievedDoc, Source, Usage
from rag.logs import request_id_var
from rag.stores.history import Turn, utc_now_iso
from rag.stores.quota import QuotaExceededError
from rag.stores.usage import UsageRecord
from rag.tenant import SessionId

logger = logging.getLogger("api.rag")
router = APIRouter(prefix="/api/v1/llm", tags=["rag"])

#: Past turns given to the condense prompt.
HISTORY_TURNS = 10
#: Seconds between SSE keep-alive comments.
SSE_PING_SECONDS = 15
_ERRORS = {
    403: {"model": ErrorBody},
    413: {"model": ErrorBody},
    422: {"model": ErrorBody},
    429: {"model": ErrorBody},
    503: {"model": ErrorBody},
    504: {"model": ErrorBody},
}


def to_sources(documents: list[Document]) -> list[Source]:
    """Citations for the documents the answer was generated from."""
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


def _generation(body: RagRequest) -> GenerationParams:
    return GenerationParams(
        temperature=body.temperature,
        max_tokens=body.maxTokenCount,
        top_p=body.topP,
        top_k=body.topK,
        stop=list(body.stopSequences),
    )


async def _admit(state: RagState, tenant: str, session: SessionId) -> None:
    """Count the request against the quotas (429 when a limit is reached; fails open on backend errors)."""
    if not state.quota.limits.enabled:
        return
    try:
        await run_in_threadpool(state.quota.admit, tenant, session.email)
    except QuotaExceededError as exc:
        metrics.QUOTA_REJECTIONS.labels(tenant, exc.scope, exc.kind).inc()
        logger.info("quota exceeded: %s %s (limit %d)", exc.scope, exc.kind, exc.limit)
        raise ApiError(429, "quota_exceeded", exc.message, exc.retry_after) from None
    except Exception as exc:
        metrics.QUOTA_ERRORS.labels(tenant).inc()
        logger.warning("quota check failed, request admitted: %s", exc)


async def _prepare(state: RagState, body: RagRequest, tenant: str) -> tuple[SessionId, list[tuple[str, str]]]:
    """Tenant check, readiness check, quotas and history load, before anything is streamed."""
    session = check_session(body.user_session_id, tenant)
    if state.index.get() is None:
        raise classify_exception(IndexNotReadyError("index not loaded"))
    await _admit(state, tenant, session)
    try:
        with span("history.load"):
            turns = await run_in_threadpool(state.history.load, body.user_session_id, limit=HISTORY_TURNS)
    except Exception as exc:
        raise classify_exception(exc) from None
    return session, [(t.question, t.answer) for t in turns]


def _run_config(state: RagState, answer_id: str, route: str) -> dict[str, Any]:
    """Metadata and tags of the LangChain run (the request id reaches tracers and callbacks)."""
    tenant = state.settings.tenant_id
    return {
        "metadata": {"request_id": request_id_var.get(), "tenant": tenant, "answer_id": answer_id},
        "tags": [f"tenant:{tenant}", f"route:{route}"],
    }


async def _run_chain(
    state: RagState,
    body: RagRequest,
    turns: list[tuple[str, str]],
    on_token: Callable[[str], Any],
    run_config: dict[str, Any] | None = None,
) -> tuple[FinalEvent, RequestStats]:
    """Run the chain in the current task with this request's k and generation parameters."""
    final: FinalEvent | None = None
    with (
        request_scope(k=body.max_matching_docs, generation=_generation(body)) as stats,
        span("rag.chain", k=body.max_matching_docs),
    ):
        async for event in astream_chain(
            state.chain,
            body.q,
            history_messages(turns),
            flush_seconds=state.settings.stream_flush_seconds,
            executor=state.chain_executor,
            **(run_config or {}),
        ):
            if isinstance(event, FinalEvent):
                final = event
            else:
                on_token(event.text)
    if final is None:  # pragma: no cover - astream_chain always ends with a FinalEvent
        raise RuntimeError("the chain produced no result")
    return final, stats


def _observe(state: RagState, final: FinalEvent, stats: RequestStats) -> None:
    if not final.grounded:
        metrics.UNGROUNDED.labels(state.settings.tenant_id, final.ungrounded_reason or "unknown").inc()
    metrics.TOKENS.labels("input").inc(final.usage.input_tokens)
    metrics.TOKENS.labels("output").inc(final.usage.output_tokens)
    if stats.retrieval_seconds is not None:
        metrics.RETRIEVAL.observe(stats.retrieval_seconds)


async def _save_turn(
    state: RagState, body: RagRequest, answer: str, sources: list[Source], asked_at: str, answer_id: str = ""
) -> None:
    turn = Turn(
        question=body.q,
        answer=answer,
        sources=[s.model_dump(exclude_none=True) for s in sources],
        created_at=asked_at,
        answered_at=utc_now_iso(),
        answer_id=answer_id,
        model_id=state.model_id,
    )
    try:
        with span("history.append"):
            await run_in_threadpool(state.history.append, body.user_session_id, turn)
    except Exception as exc:
        raise classify_exception(exc) from None


def _record_usage(
    state: RagState, session: SessionId, answer_id: str, usage: ChainUsage, grounded: bool = True
) -> None:
    """Blocking: add the tokens to the token quotas and store the usage record (errors are logged)."""
    tenant, model = state.settings.tenant_id, state.model_id
    try:
        state.quota.add_tokens(tenant, session.email, usage.total_tokens)
    except Exception as exc:
        metrics.QUOTA_ERRORS.labels(tenant).inc()
        logger.warning("token quota not updated: %s", exc)
    record = UsageRecord(
        tenant=tenant,
        user=session.email,
        session_id=str(session),
        answer_id=answer_id,
        model_id=model,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_usd=state.prices.cost(model, usage.input_tokens, usage.output_tokens),
        at=utc_now_iso(),
        grounded=grounded,
    )
    metrics.MODEL_TOKENS.labels(tenant, model, "input").inc(usage.input_tokens)
    metrics.MODEL_TOKENS.labels(tenant, model, "output").inc(usage.output_tokens)
    metrics.COST.labels(tenant, model).inc(record.cost_usd)
    try:
        state.usage.record(record)
    except Exception as exc:
        metrics.USAGE_ERRORS.labels(tenant).inc()
        logger.warning("usage not recorded: %s", exc)


async def _account(state: RagState, session: SessionId, answer_id: str, final: FinalEvent) -> None:
    await run_in_threadpool(_record_usage, state, session, answer_id, final.usage, final.grounded)


def _started(request: Request) -> float:
    return float(getattr(request.state, "started", time.perf_counter()))


def _log_answered(
    what: str, state: RagState, body: RagRequest, answer_id: str, final: FinalEvent, stats: RequestStats, docs: int
) -> None:
    """One log line per answered question (counts only: never the question, answer or documents)."""
    logger.info(
        "%s: k=%d docs=%d grounded=%s query=%s tokens=%d/%d index=%s",
        what,
        body.max_matching_docs,
        docs,
        final.grounded,
        final.query_kind,
        final.usage.input_tokens,
        final.usage.output_tokens,
        stats.index_version,
        extra={"answer_id": answer_id, "model_id": state.model_id},
    )


@router.post("/rag", response_model=RagResponse, response_model_exclude_none=True, responses=_ERRORS)
async def rag(body: RagRequest, request: Request, state: RagStateDep, tenant: TenantDep) -> RagResponse:
    """Answer ``q`` in the context of the session's history, with the documents used as ``sources``."""
    asked_at = utc_now_iso()
    session, turns = await _prepare(state, body, tenant)
    started = _started(request)
    first = {"seen": False}
    answer_id = uuid.uuid4().hex

    def on_token(_: str) -> None:
        if not first["seen"]:
            first["seen"] = True
            metrics.TTFT.labels("/api/v1/llm/rag").observe(time.perf_counter() - started)

    try:
        final, stats = await _run_chain(state, body, turns, on_token, _run_config(state, answer_id, "rag"))
    except Exception as exc:
        error = classify_exception(exc)
        metrics.ANSWER_ERRORS.labels("/api/v1/llm/rag", error.error).inc()
        if error.status == 500:
            logger.exception("answer failed")
        raise error from None
    _observe(state, final, stats)
    sources = to_sources(final.documents)
    await _save_turn(state, body, final.answer, sources, asked_at, answer_id)
    await _account(state, session, answer_id, final)
    _log_answered("answered", state, body, answer_id, final, stats, len(sources))
    return RagResponse(
        question=body.q,
        answer=final.answer,
        grounded=final.grounded,
        session_id=body.user_session_id,
        sources=sources,
        docs=[RetrievedDoc(page_content=d.page_content, metadata=_plain(d.metadata)) for d in final.documents]
        if body.verbose
        else None,
        usage=Usage(**final.usage.as_dict()),
        model_id=state.model_id,
        answer_id=answer_id,
    )


def _plain(metadata: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metadata.items() if isinstance(v, str | int | float | bool | type(None))}


def _sse(event: str, data: dict[str, Any]) -> dict[str, str]:
    return {"event": event, "data": json.dumps(data, ensure_ascii=False)}


def _error_event(error: ApiError) -> dict[str, str]:
    return _sse(
        "error",
        {"status": error.status, "error": error.error, "message": error.message, "retry_after": error.retry_after},
    )


@router.post("/rag/stream", responses={200: {"content": {"text/event-stream": {}}}, **_ERRORS})
async def rag_stream(body: RagRequest, request: Request, state: RagStateDep, tenant: TenantDep) -> EventSourceResponse:
    """Like ``/rag`` but streamed as server-sent events: ``token``… ``sources`` ``done`` (or ``error``).

    Checks that can fail before any token (tenant, readiness, history) answer with a plain JSON
    error status instead of a stream.
    """
    asked_at = utc_now_iso()
    session, turns = await _prepare(state, body, tenant)
    started = _started(request)
    route = "/api/v1/llm/rag/stream"
    answer_id = uuid.uuid4().hex
    run_config = _run_config(state, answer_id, "rag_stream")

    async def events() -> AsyncIterator[dict[str, str]]:
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        # The chain runs in its own task (own context: request_scope stays inside it); it is
        # cancelled when the client goes away, and then nothing is written to the history.
        task = asyncio.create_task(_run_chain(state, body, turns, queue.put_nowait, run_config))
        task.add_done_callback(lambda _: queue.put_nowait(None))
        first = True
        try:
            while (text := await queue.get()) is not None:
                if first:
                    first = False
                    metrics.TTFT.labels(route).observe(time.perf_counter() - started)
                yield _sse("token", {"text": text})
            final, stats = task.result()
        except Exception as exc:
            error = classify_exception(exc)
            metrics.ANSWER_ERRORS.labels(route, error.error).inc()
            if error.status == 500:
                logger.error("streamed answer failed", exc_info=exc)
            else:
                logger.warning("streamed answer failed: %s %s", error.status, error.error)
            yield _error_event(error)
            return
        finally:
            if not task.done():
                task.cancel()
        _observe(state, final, stats)
        sources = to_sources(final.documents)
        yield _sse("sources", {"sources": [s.model_dump(exclude_none=True) for s in sources]})
        try:
            await _save_turn(state, body, final.answer, sources, asked_at, answer_id)
        except ApiError as error:
            metrics.ANSWER_ERRORS.labels(route, error.error).inc()
            yield _error_event(error)
            return
        await _account(state, session, answer_id, final)
        _log_answered("answered (stream)", state, body, answer_id, final, stats, len(sources))
        yield _sse(
            "done",
            {
                "session_id": body.user_session_id,
                "answer": final.answer,
                "grounded": final.grounded,
                "usage": final.usage.as_dict(),
                "model_id": state.model_id,
                "answer_id": answer_id,
            },
        )

    return EventSourceResponse(
        events(),
        ping=SSE_PING_SECONDS,
        headers={"Cache-Control": "no-store"},
        # On SIGTERM, let answers in flight finish (sse-starlette's default, 0, cuts them at once);
        # a little less than gunicorn's graceful_timeout so the worker still exits cleanly.
        shutdown_grace_period=max(1.0, state.settings.gunicorn_graceful_timeout - 5.0),
    )

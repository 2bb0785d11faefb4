"""``POST /api/v1/llm/rag`` (one JSON answer) and ``POST /api/v1/llm/rag/stream`` (server-sent events).

Thin adapters over :mod:`api.services.answer`, which runs the turn (checks, quotas, history, the
chain, accounting) and yields the stream events of :mod:`rag.contract`
(https://html.spec.whatwg.org/multipage/server-sent-events.html)::

    event: token    data: TokenEvent    (many)
    event: sources  data: SourcesEvent
    event: done     data: DoneEvent
    event: error    data: ErrorEvent    (instead, on failure; then the end)

Checks that can fail before any token (tenant, readiness, quotas, history) answer with a plain JSON
error status on both routes (429 + ``Retry-After`` for a quota, 503 + ``Retry-After`` for the rest).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sse_starlette import EventSourceResponse

from api.deps import AnswerServiceDep, RagStateDep, TenantDep
from api.services.answer import AnswerTurn
from rag.contract import RAG_PATH, STREAM_EVENTS, STREAM_PATH, ErrorBody, RagRequest, RagResponse, SourcesEvent

router = APIRouter(tags=["rag"])

#: Seconds between SSE keep-alive comments.
SSE_PING_SECONDS = 15
#: Seconds less than gunicorn's graceful timeout that answers in flight get after SIGTERM.
SHUTDOWN_MARGIN_SECONDS = 5.0
_ERRORS = {
    403: {"model": ErrorBody},
    409: {"model": ErrorBody},
    413: {"model": ErrorBody},
    422: {"model": ErrorBody},
    429: {"model": ErrorBody},
    503: {"model": ErrorBody},
    504: {"model": ErrorBody},
}
_EVENT_NAMES: dict[type[BaseModel], str] = {model: name for name, model in STREAM_EVENTS.items()}


def _started(request: Request) -> float:
    return float(getattr(request.state, "started", time.perf_counter()))


@router.post(RAG_PATH, response_model=RagResponse, response_model_exclude_none=True, responses=_ERRORS)
async def rag(body: RagRequest, request: Request, answers: AnswerServiceDep, tenant: TenantDep) -> RagResponse:
    """Answer ``q`` in the context of the session's history, with the documents used as ``sources``."""
    turn = await answers.start(body, tenant, route=RAG_PATH, started=_started(request))
    return await turn.response()


async def _sse(turn: AnswerTurn) -> AsyncIterator[dict[str, str]]:
    async for event in turn.events():
        # sources omit unknown fields (row/page/title); the other events send every field
        data = event.model_dump_json(exclude_none=type(event) is SourcesEvent)
        yield {"event": _EVENT_NAMES[type(event)], "data": data}


@router.post(STREAM_PATH, responses={200: {"content": {"text/event-stream": {}}}, **_ERRORS})
async def rag_stream(
    body: RagRequest, request: Request, answers: AnswerServiceDep, state: RagStateDep, tenant: TenantDep
) -> EventSourceResponse:
    """Like ``/rag`` but streamed as server-sent events: ``token``… ``sources`` ``done`` (or ``error``)."""
    turn = await answers.start(body, tenant, route=STREAM_PATH, started=_started(request))
    return EventSourceResponse(
        _sse(turn),
        ping=SSE_PING_SECONDS,
        headers={"Cache-Control": "no-store"},
        # On SIGTERM, let answers in flight finish (sse-starlette's default, 0, cuts them at once);
        # a little less than gunicorn's graceful_timeout so the worker still exits cleanly.
        shutdown_grace_period=max(1.0, state.settings.gunicorn_graceful_timeout - SHUTDOWN_MARGIN_SECONDS),
    )

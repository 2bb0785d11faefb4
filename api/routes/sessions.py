"""``GET`` and ``DELETE /api/v1/sessions/{session_id}/messages``: read or clear a session's history."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool

from api.deps import HistoryDep, OwnSessionDep
from api.errors import classify_exception
from rag.contract import ErrorBody, HistoryMessage, HistoryResponse, Source

router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"])
_ERRORS = {403: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}}


@router.get(
    "/{session_id}/messages", response_model=HistoryResponse, response_model_exclude_none=True, responses=_ERRORS
)
async def get_messages(session: OwnSessionDep, history: HistoryDep) -> HistoryResponse:
    """The session's messages, oldest first: each turn as a ``user`` then an ``assistant`` message."""
    try:
        turns = await run_in_threadpool(history.load, str(session))
    except Exception as exc:
        raise classify_exception(exc) from None
    messages: list[HistoryMessage] = []
    for turn in turns:
        messages.append(HistoryMessage(role="user", content=turn.question, created_at=turn.created_at))
        messages.append(
            HistoryMessage(
                role="assistant",
                content=turn.answer,
                sources=[Source.model_validate(s) for s in turn.sources],
                created_at=turn.answered_at,
                answer_id=turn.answer_id or None,
            )
        )
    return HistoryResponse(session_id=str(session), messages=messages)


@router.delete("/{session_id}/messages", status_code=204, responses=_ERRORS)
async def delete_messages(session: OwnSessionDep, history: HistoryDep) -> Response:
    """Delete the session's history (idempotent)."""
    try:
        await run_in_threadpool(history.clear, str(session))
    except Exception as exc:
        raise classify_exception(exc) from None
    return Response(status_code=204)

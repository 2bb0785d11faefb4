"""``GET`` and ``DELETE /api/v1/sessions/{session_id}/messages``: read or clear a session's history."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool

from api.deps import FeedbackStoreDep, HistoryDep, OwnSessionDep, TenantDep
from api.errors import classify_exception
from rag.contract import ErrorBody, HistoryMessage, HistoryResponse, Source
from rag.stores.feedback import FeedbackStore

logger = logging.getLogger("api.sessions")
#: How far back ratings are looked up for a session's messages, days (the history's lifetime is shorter).
RATINGS_LOOKBACK_DAYS = 92


def _ratings(store: FeedbackStore, tenant: str, session_id: str) -> dict[str, str]:
    """``{answer_id: latest rating}`` of the session; empty when the feedback store fails (messages matter more)."""
    end = datetime.now(UTC) + timedelta(minutes=1)
    try:
        records = store.query(tenant, end - timedelta(days=RATINGS_LOOKBACK_DAYS), end)
    except Exception as exc:
        logger.warning("ratings not shown with the messages: %s", exc)
        return {}
    latest: dict[str, str] = {}
    for record in sorted((r for r in records if r.session_id == session_id), key=lambda r: r.feedback_id):
        latest[record.answer_id] = record.rating
    return latest


router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"])
_ERRORS = {403: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}}


@router.get(
    "/{session_id}/messages", response_model=HistoryResponse, response_model_exclude_none=True, responses=_ERRORS
)
async def get_messages(
    session: OwnSessionDep, history: HistoryDep, feedback: FeedbackStoreDep, tenant: TenantDep
) -> HistoryResponse:
    """The session's messages, oldest first: each turn as a ``user`` then an ``assistant`` message.

    An assistant message carries ``rating`` (``"up"``/``"down"``) when the user rated that answer.
    """
    try:
        turns = await run_in_threadpool(history.load, str(session))
    except Exception as exc:
        raise classify_exception(exc) from None
    rated = await run_in_threadpool(_ratings, feedback, tenant, str(session)) if turns else {}
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
                rating=rated.get(turn.answer_id) if turn.answer_id else None,
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

"""``GET`` and ``DELETE /api/v1/sessions/{session_id}/messages``: read or clear a session's history.

The session id is checked against the caller (:data:`api.deps.OwnSessionDep`); the history store
reads and deletes by that full id only, so nothing of another session or user is ever returned.
Store failures are answered 503 + ``Retry-After`` by ``api/errors.py``.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool

from api.deps import FeedbackStoreDep, HistoryDep, OwnSessionDep, TenantDep
from rag.contract import ErrorBody, HistoryMessage, HistoryResponse, Source
from rag.stores.base import StoreUnavailableError
from rag.stores.feedback import FeedbackRecord, FeedbackStore, feedback_key

logger = logging.getLogger("api.sessions")
router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"])
_ERRORS = {403: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}}


def _ratings(store: FeedbackStore, tenant: str, keys: list[str]) -> dict[str, FeedbackRecord]:
    """The feedback records of these answers; none when the feedback store fails (the messages matter more)."""
    if not keys:
        return {}
    try:
        return store.get_many(tenant, keys)
    except StoreUnavailableError as exc:
        logger.warning("feedback not shown with the messages: %s", exc)
        return {}


@router.get(
    "/{session_id}/messages", response_model=HistoryResponse, response_model_exclude_none=True, responses=_ERRORS
)
async def get_messages(
    session: OwnSessionDep, history: HistoryDep, feedback: FeedbackStoreDep, tenant: TenantDep
) -> HistoryResponse:
    """The session's messages, oldest first: each turn as a ``user`` then an ``assistant`` message.

    An assistant message carries ``feedback`` (``"up"``/``"down"``) when its answer was rated.
    """
    turns = await run_in_threadpool(history.load, str(session))
    keys = [feedback_key(str(session), turn.answer_id, i) for i, turn in enumerate(turns)]
    rated = await run_in_threadpool(_ratings, feedback, tenant, keys)
    messages: list[HistoryMessage] = []
    for turn, key in zip(turns, keys, strict=True):
        messages.append(HistoryMessage(role="user", content=turn.question, created_at=turn.created_at))
        record = rated.get(key)
        messages.append(
            HistoryMessage(
                role="assistant",
                content=turn.answer,
                sources=[Source.model_validate(s) for s in turn.sources],
                created_at=turn.answered_at,
                answer_id=turn.answer_id or None,
                feedback=record.rating if record is not None and record.rating in ("up", "down") else None,
            )
        )
    return HistoryResponse(session_id=str(session), messages=messages)


@router.delete("/{session_id}/messages", status_code=204, responses=_ERRORS)
async def delete_messages(session: OwnSessionDep, history: HistoryDep) -> Response:
    """Delete the session's whole history, every turn (idempotent)."""
    await run_in_threadpool(history.clear, str(session))
    return Response(status_code=204)

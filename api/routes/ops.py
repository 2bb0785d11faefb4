"""Operating many tenants: ``GET /api/v1/usage``, ``POST /api/v1/feedback``, ``GET /api/v1/feedback/export``.

All three are scoped to this pod's tenant: usage and exports only ever query the tenant's own
partition, and feedback is accepted only for a session of this tenant (403 otherwise).
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api import metrics
from api.deps import FeedbackStoreDep, HistoryDep, ModelIdDep, TenantDep, UsageStoreDep, check_session
from api.errors import ApiError
from rag.contract import ErrorBody, FeedbackRequest, FeedbackResponse
from rag.stores.feedback import FeedbackRecord, feedback_key, to_jsonl
from rag.stores.history import utc_now_iso
from rag.stores.usage import summarize

logger = logging.getLogger("api.ops")
router = APIRouter(prefix="/api/v1", tags=["operations"])

#: Longest range of one usage or export query, in days.
MAX_RANGE_DAYS = 92
_ERRORS = {403: {"model": ErrorBody}, 404: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}}


def _parse(value: str, name: str, *, end: bool) -> datetime:
    text = value.strip()
    try:
        if len(text) == 10:  # a date: from = its midnight, to = the end of that day (inclusive date)
            day = date.fromisoformat(text)
            moment = datetime.combine(day + timedelta(days=1) if end else day, time.min, UTC)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(422, "validation_error", f"{name}: expected an ISO date or datetime, got {value!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def time_range(start: str | None, end: str | None, *, default_days: int = 30) -> tuple[datetime, datetime]:
    """``from``/``to`` → an UTC range (``to`` exclusive; a date ``to`` includes that day).

    Raises:
        ApiError: 422 for a malformed value, ``from >= to``, or a range over :data:`MAX_RANGE_DAYS`.
    """
    hi = _parse(end, "to", end=True) if end else datetime.now(UTC)
    lo = _parse(start, "from", end=False) if start else hi - timedelta(days=default_days)
    if lo >= hi:
        raise ApiError(422, "validation_error", "from: must be before to")
    if hi - lo > timedelta(days=MAX_RANGE_DAYS):
        raise ApiError(422, "validation_error", f"from/to: the range is limited to {MAX_RANGE_DAYS} days")
    return lo, hi


@router.get("/usage", responses=_ERRORS)
async def usage(
    tenant: TenantDep,
    store: UsageStoreDep,
    start: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=40)] = None,
) -> dict[str, Any]:
    """This tenant's token usage and estimated cost between ``from`` and ``to`` (default: the last 30 days).

    Totals plus breakdowns per user, per day (UTC) and per model. Costs are estimates.
    """
    lo, hi = time_range(start, end)
    records = await run_in_threadpool(store.query, tenant, lo, hi)  # a store failure is a 503 (api.errors)
    return summarize(tenant, records, lo, hi)


@router.post("/feedback", status_code=201, response_model=FeedbackResponse, responses=_ERRORS)
async def feedback(
    body: FeedbackRequest, tenant: TenantDep, history: HistoryDep, store: FeedbackStoreDep, model_id: ModelIdDep
) -> FeedbackResponse:
    """Store a thumbs up/down (and comment) on one answer of a session of this tenant.

    One record per answer: rating again or adding a comment updates it (the latest rating and
    comment win; ``feedback_id`` stays the same). The question, answer, sources and model id are
    copied from the session's history.
    """
    session = check_session(body.session_id, tenant)
    turns = await run_in_threadpool(history.load, body.session_id)
    index: int | None = None
    if body.answer_id is not None:
        index = next((i for i, t in enumerate(turns) if t.answer_id == body.answer_id), None)
    elif body.turn_index is not None and body.turn_index < len(turns):
        index = body.turn_index
    if index is None:
        raise ApiError(404, "answer_not_found", "No such answer in this session (it may have expired).")
    turn = turns[index]
    created_at = utc_now_iso()
    record = FeedbackRecord(  # one record per answer: a second rating or a comment updates it
        tenant=tenant,
        feedback_id=feedback_key(str(session), turn.answer_id, index),
        created_at=created_at,
        updated_at=created_at,
        session_id=str(session),
        user=session.subject,
        answer_id=turn.answer_id or f"turn-{index}",
        turn_index=index,
        rating=body.rating,
        comment=body.comment,
        question=turn.question,
        answer=turn.answer,
        sources=turn.sources,
        model_id=turn.model_id or model_id,
    )
    await run_in_threadpool(store.put, record)
    metrics.FEEDBACK.labels(tenant, body.rating).inc()
    logger.info("feedback stored: %s", body.rating, extra={"answer_id": record.answer_id})
    return FeedbackResponse(feedback_id=record.feedback_id, answer_id=record.answer_id)


@router.get(
    "/feedback/export",
    responses={200: {"content": {"application/x-ndjson": {}}}, **_ERRORS},
    response_class=StreamingResponse,
)
async def export_feedback(
    tenant: TenantDep,
    store: FeedbackStoreDep,
    start: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=40)] = None,
) -> StreamingResponse:
    """This tenant's feedback between ``from`` and ``to`` as JSONL (one record per line), for evaluation."""
    lo, hi = time_range(start, end)
    records = await run_in_threadpool(store.query, tenant, lo, hi)
    name = f"feedback-{tenant}-{lo:%Y%m%d}-{hi:%Y%m%d}.jsonl"
    return StreamingResponse(
        iter(list(to_jsonl(records))),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )

"""Feedback on answers (thumbs up/down and an optional comment), kept for evaluation.

A :class:`FeedbackRecord` holds the rating with everything needed to evaluate the answer later:
the question, the answer, its sources and the model id (copied from the chat history when the
feedback arrives, so it survives the history's TTL). Each submission is one record; a user who
changes their mind creates a second one for the same ``answer_id`` (the latest wins).

Stores (:func:`make_feedback_store`): DynamoDB ``FEEDBACK_TABLE`` (HASH ``TenantId``, RANGE
``FeedbackId`` = ``<ISO time UTC>#<uuid>``, so a time range is one ``Query``), SQLite
``FEEDBACK_URL=sqlite:///path``, or memory. :func:`to_jsonl` writes the export format.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from rag.settings import Settings
from rag.stores.sqlite import SharedConnections
from rag.stores.usage import iso_utc

MAX_COMMENT_CHARS = 2000
Rating = Literal["up", "down"]


class FeedbackUnavailableError(RuntimeError):
    """The feedback backend failed."""


@dataclass(frozen=True)
class FeedbackRecord:
    """One rating of one answer.

    Attributes:
        tenant: tenant id.
        feedback_id: ``<ISO time>#<uuid>`` (sorts by time).
        created_at: ISO 8601 UTC.
        session_id: the chat session.
        user: the user's e-mail (from the session id).
        answer_id: the rated answer.
        turn_index: position of the turn in the session's history (0-based), when known.
        rating: ``"up"`` or ``"down"``.
        comment: optional free text (≤ 2000 characters).
        question: the question asked.
        answer: the answer given.
        sources: the answer's sources.
        model_id: the model that answered.
    """

    tenant: str
    feedback_id: str
    created_at: str
    session_id: str
    user: str
    answer_id: str
    rating: str
    comment: str = ""
    question: str = ""
    answer: str = ""
    sources: list[dict[str, Any]] = field(default_factory=list)
    model_id: str = ""
    turn_index: int | None = None


class FeedbackStore(Protocol):
    """Where feedback lives. Blocking: call from a worker thread in async code."""

    def put(self, record: FeedbackRecord) -> None:
        """Store one record."""

    def query(self, tenant: str, start: datetime, end: datetime) -> list[FeedbackRecord]:
        """The tenant's records with ``start <= created_at < end``, oldest first."""


class InMemoryFeedbackStore:
    """Feedback in a list (tests, demo)."""

    def __init__(self) -> None:
        self.records: list[FeedbackRecord] = []
        self._lock = threading.Lock()

    def put(self, record: FeedbackRecord) -> None:
        """See :class:`FeedbackStore`."""
        with self._lock:
            self.records.append(record)

    def query(self, tenant: str, start: datetime, end: datetime) -> list[FeedbackRecord]:
        """See :class:`FeedbackStore`."""
        lo, hi = iso_utc(start), iso_utc(end)
        with self._lock:
            found = [r for r in self.records if r.tenant == tenant and lo <= r.created_at < hi]
        return sorted(found, key=lambda r: r.feedback_id)


def _from_item(tenant: str, item: dict[str, Any]) -> FeedbackRecord:
    try:
        sources = json.loads(item.get("sources") or "[]")
    except ValueError:
        sources = []
    turn = item.get("turn_index")
    return FeedbackRecord(
        tenant=tenant,
        feedback_id=str(item.get("FeedbackId") or item.get("feedback_id", "")),
        created_at=str(item.get("created_at", "")),
        session_id=str(item.get("session_id", "")),
        user=str(item.get("user", "")),
        answer_id=str(item.get("answer_id", "")),
        rating=str(item.get("rating", "")),
        comment=str(item.get("comment", "")),
        question=str(item.get("question", "")),
        answer=str(item.get("answer", "")),
        sources=sources if isinstance(sources, list) else [],
        model_id=str(item.get("model_id", "")),
        turn_index=int(turn) if turn is not None and str(turn) != "" else None,
    )


def _to_item(record: FeedbackRecord) -> dict[str, Any]:
    item = {k: v for k, v in asdict(record).items() if k not in ("tenant", "feedback_id") and v not in (None, "")}
    item["sources"] = json.dumps(record.sources, ensure_ascii=False)
    return item


class DynamoDBFeedbackStore:
    """Feedback in DynamoDB (HASH ``TenantId``, RANGE ``FeedbackId``).

    Args:
        table: a boto3 DynamoDB ``Table`` resource.
    """

    def __init__(self, table: Any) -> None:
        self.table = table

    def put(self, record: FeedbackRecord) -> None:
        """See :class:`FeedbackStore`: one ``PutItem``."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.table.put_item(Item={"TenantId": record.tenant, "FeedbackId": record.feedback_id, **_to_item(record)})
        except (ClientError, BotoCoreError) as exc:
            raise FeedbackUnavailableError(f"feedback (DynamoDB) failed: {exc}") from exc

    def query(self, tenant: str, start: datetime, end: datetime) -> list[FeedbackRecord]:
        """See :class:`FeedbackStore`: a paginated ``Query`` on the sort key."""
        from boto3.dynamodb.conditions import Key
        from botocore.exceptions import BotoCoreError, ClientError

        lo, hi = iso_utc(start), iso_utc(end)
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("TenantId").eq(tenant) & Key("FeedbackId").between(lo, hi)
        }
        records = []
        try:
            while True:
                page = self.table.query(**kwargs)
                records += [_from_item(tenant, i) for i in page.get("Items", [])]
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except (ClientError, BotoCoreError) as exc:
            raise FeedbackUnavailableError(f"feedback (DynamoDB) failed: {exc}") from exc
        return [r for r in records if lo <= r.created_at < hi]


class SQLiteFeedbackStore:
    """Feedback in a SQLite file (one row per record, the record as JSON).

    Args:
        path: database file (created on first use).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._connections = SharedConnections(
            self.path,
            "CREATE TABLE IF NOT EXISTS feedback (tenant TEXT NOT NULL, feedback_id TEXT NOT NULL, "
            "created_at TEXT NOT NULL, record TEXT NOT NULL, PRIMARY KEY (tenant, feedback_id))",
            error=FeedbackUnavailableError,
            label="feedback",
        )

    def put(self, record: FeedbackRecord) -> None:
        """See :class:`FeedbackStore`."""
        self._connections.execute(
            "INSERT OR REPLACE INTO feedback VALUES (?, ?, ?, ?)",
            (record.tenant, record.feedback_id, record.created_at, json.dumps(asdict(record), ensure_ascii=False)),
        )

    def query(self, tenant: str, start: datetime, end: datetime) -> list[FeedbackRecord]:
        """See :class:`FeedbackStore`."""
        rows = self._connections.execute(
            "SELECT record FROM feedback WHERE tenant = ? AND created_at >= ? AND created_at < ? ORDER BY feedback_id",
            (tenant, iso_utc(start), iso_utc(end)),
        ).fetchall()
        return [FeedbackRecord(**json.loads(r[0])) for r in rows]


def make_feedback_store(settings: Settings, *, dynamodb_resource: Any = None) -> FeedbackStore:
    """``FEEDBACK_URL`` (SQLite) wins over ``FEEDBACK_TABLE`` (DynamoDB); neither → in memory."""
    if settings.feedback_url:
        return SQLiteFeedbackStore(settings.feedback_url.removeprefix("sqlite:///"))
    if settings.feedback_table:
        from rag.aws import make_resource

        resource = dynamodb_resource or make_resource("dynamodb", settings)
        return DynamoDBFeedbackStore(resource.Table(settings.feedback_table))
    return InMemoryFeedbackStore()


def to_jsonl(records: Iterable[FeedbackRecord]) -> Iterator[str]:
    """One JSON object per line (the export format; ``tenant`` included)."""
    for record in records:
        yield json.dumps(asdict(record), ensure_ascii=False) + "\n"

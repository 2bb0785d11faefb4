"""Feedback on answers (thumbs up/down and an optional comment), kept for evaluation.

A :class:`FeedbackRecord` holds the rating with everything needed to evaluate the answer later:
the question, the answer, its sources and the model id (copied from the chat history when the
feedback arrives, so it survives the history's TTL).

**One record per answer.** The record's key is :func:`feedback_key` of the rated answer (its
``answer_id``), so a second submission for the same answer (the rating changed, a comment added)
*updates* that record: the rating and comment are the latest submission's, ``created_at`` stays the
first one's and ``updated_at`` moves on. :meth:`FeedbackStore.get_many` reads the records of a
session's answers back (the API shows them with the session's messages, so the page can show the
rating again after a reload).

Stores (:func:`make_feedback_store`): DynamoDB ``FEEDBACK_TABLE`` (HASH ``TenantId``, RANGE
``FeedbackId`` = the answer's key: ``UpdateItem`` upserts, ``BatchGetItem`` reads a session's, a
time range is a ``Query`` of the tenant's partition filtered on ``created_at``), SQLite
``FEEDBACK_URL=sqlite:///path`` (one row per answer, upserted), or memory. Records written before
this scheme (keyed ``<ISO time>#<uuid>``, one per submission) stay readable and exportable.
:func:`to_jsonl` writes the export format.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from rag.settings import Settings
from rag.stores.base import StoreUnavailableError, dynamodb_errors, dynamodb_table, select_backend
from rag.stores.sqlite import SharedConnections
from rag.stores.usage import iso_utc

MAX_COMMENT_CHARS = 2000
Rating = Literal["up", "down"]
#: Keys per ``BatchGetItem`` request (DynamoDB's limit:
#: https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html).
BATCH_GET_KEYS = 100
#: Rounds of ``UnprocessedKeys`` retried before the read counts as failed.
BATCH_GET_ROUNDS = 5


class FeedbackUnavailableError(StoreUnavailableError):
    """The feedback backend failed."""

    code = "feedback_unavailable"
    public_message = "Feedback is unavailable right now; retry later."


def feedback_key(session_id: str, answer_id: str, turn_index: int | None = None) -> str:
    """The key of the one feedback record of an answer, unique within the tenant.

    Args:
        session_id: ``<tenant>:<user>:<uuid>`` of the conversation.
        answer_id: the answer's id (32 hex characters from the API), or ``""`` for a turn stored
            before answers had ids.
        turn_index: the turn's position in the session (0-based); used only without an answer id.

    Returns:
        ``answer_id`` when there is one, else ``<session_id>#turn-<turn_index>``.
    """
    return answer_id if answer_id else f"{session_id}#turn-{turn_index}"


@dataclass(frozen=True)
class FeedbackRecord:
    """The rating of one answer.

    Attributes:
        tenant: tenant id.
        feedback_id: the record's key, :func:`feedback_key` of the answer (older records:
            ``<ISO time>#<uuid>``).
        created_at: first submission, ISO 8601 UTC.
        session_id: the chat session.
        user: the user (from the session id).
        answer_id: the rated answer.
        rating: ``"up"`` or ``"down"`` (the latest submission's).
        comment: optional free text (≤ 2000 characters; the latest submission's).
        question: the question asked.
        answer: the answer given.
        sources: the answer's sources.
        model_id: the model that answered.
        turn_index: position of the turn in the session's history (0-based), when known.
        updated_at: latest submission, ISO 8601 UTC (``created_at`` for the first).
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
    updated_at: str = ""


_FIELDS = frozenset(f.name for f in fields(FeedbackRecord))


class FeedbackStore(Protocol):
    """Where feedback lives. Blocking: call from a worker thread in async code."""

    def put(self, record: FeedbackRecord) -> None:
        """Create the answer's record, or update it (rating, comment, ``updated_at``; ``created_at`` kept)."""

    def get_many(self, tenant: str, feedback_ids: Sequence[str]) -> dict[str, FeedbackRecord]:
        """The tenant's records with these keys (absent ones left out), by ``feedback_id``."""

    def query(self, tenant: str, start: datetime, end: datetime) -> list[FeedbackRecord]:
        """The tenant's records with ``start <= created_at < end``, oldest first."""


def _stored(record: FeedbackRecord, previous: FeedbackRecord | None) -> FeedbackRecord:
    """``record`` as it is stored over ``previous``: the first ``created_at`` kept, ``updated_at`` set."""
    updated = record.updated_at or record.created_at
    created = previous.created_at if previous is not None else record.created_at
    return replace(record, created_at=created, updated_at=updated)


class InMemoryFeedbackStore:
    """Feedback in a dict (tests, demo)."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], FeedbackRecord] = {}
        self._lock = threading.Lock()

    @property
    def records(self) -> list[FeedbackRecord]:
        """Every record, in the order they were first stored."""
        with self._lock:
            return list(self._records.values())

    def put(self, record: FeedbackRecord) -> None:
        """See :class:`FeedbackStore`."""
        key = (record.tenant, record.feedback_id)
        with self._lock:
            self._records[key] = _stored(record, self._records.get(key))

    def get_many(self, tenant: str, feedback_ids: Sequence[str]) -> dict[str, FeedbackRecord]:
        """See :class:`FeedbackStore`."""
        with self._lock:
            found = (self._records.get((tenant, k)) for k in feedback_ids)
            return {r.feedback_id: r for r in found if r is not None}

    def query(self, tenant: str, start: datetime, end: datetime) -> list[FeedbackRecord]:
        """See :class:`FeedbackStore`."""
        lo, hi = iso_utc(start), iso_utc(end)
        with self._lock:
            found = [r for r in self._records.values() if r.tenant == tenant and lo <= r.created_at < hi]
        return sorted(found, key=lambda r: (r.created_at, r.feedback_id))


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
        updated_at=str(item.get("updated_at") or item.get("created_at", "")),
    )


class DynamoDBFeedbackStore:
    """Feedback in DynamoDB (HASH ``TenantId``, RANGE ``FeedbackId`` = the answer's :func:`feedback_key`).

    Args:
        table: a boto3 DynamoDB ``Table`` resource.
    """

    def __init__(self, table: Any) -> None:
        self.table = table

    def put(self, record: FeedbackRecord) -> None:
        """See :class:`FeedbackStore`: one ``UpdateItem`` (empty attributes removed, ``created_at`` if new)."""
        record = _stored(record, None)
        values = {k: v for k, v in asdict(record).items() if k not in ("tenant", "feedback_id", "created_at")}
        values["sources"] = json.dumps(record.sources, ensure_ascii=False)
        names = {f"#{k}": k for k in [*values, "created_at"]}  # COMMENT and USER are reserved words
        sets = [f"#{k} = :{k}" for k, v in values.items() if v not in (None, "")]
        removes = [f"#{k}" for k, v in values.items() if v in (None, "")]
        expression = "SET " + ", ".join([*sets, "#created_at = if_not_exists(#created_at, :created_at)"])
        if removes:
            expression += " REMOVE " + ", ".join(removes)
        with dynamodb_errors(FeedbackUnavailableError, "feedback"):
            self.table.update_item(
                Key={"TenantId": record.tenant, "FeedbackId": record.feedback_id},
                UpdateExpression=expression,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={
                    ":created_at": record.created_at,
                    **{f":{k}": v for k, v in values.items() if v not in (None, "")},
                },
            )

    def get_many(self, tenant: str, feedback_ids: Sequence[str]) -> dict[str, FeedbackRecord]:
        """See :class:`FeedbackStore`: ``BatchGetItem`` in pages of :data:`BATCH_GET_KEYS`, unprocessed keys retried.

        Raises:
            FeedbackUnavailableError: DynamoDB failed, or keys stayed unprocessed for
                :data:`BATCH_GET_ROUNDS` rounds (throttling).
        """
        # the resource's client takes and returns plain Python values (boto3 serialises them)
        client, name = self.table.meta.client, self.table.name
        unique = list(dict.fromkeys(feedback_ids))
        found: dict[str, FeedbackRecord] = {}
        with dynamodb_errors(FeedbackUnavailableError, "feedback"):
            for start in range(0, len(unique), BATCH_GET_KEYS):
                keys = [{"TenantId": tenant, "FeedbackId": k} for k in unique[start : start + BATCH_GET_KEYS]]
                request: dict[str, Any] = {name: {"Keys": keys, "ConsistentRead": True}}
                for _ in range(BATCH_GET_ROUNDS):
                    page = client.batch_get_item(RequestItems=request)
                    for item in page.get("Responses", {}).get(name, []):
                        found[str(item["FeedbackId"])] = _from_item(tenant, item)
                    request = page.get("UnprocessedKeys") or {}
                    if not request:
                        break
                else:
                    raise FeedbackUnavailableError(
                        f"feedback (DynamoDB): keys still unprocessed after {BATCH_GET_ROUNDS} rounds"
                    )
        return found

    def query(self, tenant: str, start: datetime, end: datetime) -> list[FeedbackRecord]:
        """See :class:`FeedbackStore`: a paginated ``Query`` of the tenant's partition, filtered on ``created_at``.

        The sort key is the answer, not the time, so the whole partition is read (one item per
        rated answer: an export reads about 1 MB per 300-1000 records).
        """
        from boto3.dynamodb.conditions import Attr, Key

        lo, hi = iso_utc(start), iso_utc(end)
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("TenantId").eq(tenant),
            "FilterExpression": Attr("created_at").gte(lo) & Attr("created_at").lt(hi),
        }
        records = []
        with dynamodb_errors(FeedbackUnavailableError, "feedback"):
            while True:
                page = self.table.query(**kwargs)
                records += [_from_item(tenant, i) for i in page.get("Items", [])]
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted((r for r in records if lo <= r.created_at < hi), key=lambda r: (r.created_at, r.feedback_id))


class SQLiteFeedbackStore:
    """Feedback in a SQLite file (one row per answer, the record as JSON), upserted.

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

    @staticmethod
    def _record(raw: str) -> FeedbackRecord:
        data = {k: v for k, v in json.loads(raw).items() if k in _FIELDS}
        data.setdefault("updated_at", data.get("created_at", ""))
        return FeedbackRecord(**data)

    def put(self, record: FeedbackRecord) -> None:
        """See :class:`FeedbackStore`: one upsert (the first ``created_at`` is kept, in the column and the JSON)."""
        record = _stored(record, None)
        self._connections.execute(
            "INSERT INTO feedback VALUES (?, ?, ?, ?) ON CONFLICT (tenant, feedback_id) DO UPDATE SET "
            "record = json_set(excluded.record, '$.created_at', feedback.created_at)",
            (record.tenant, record.feedback_id, record.created_at, json.dumps(asdict(record), ensure_ascii=False)),
        )

    def get_many(self, tenant: str, feedback_ids: Sequence[str]) -> dict[str, FeedbackRecord]:
        """See :class:`FeedbackStore`."""
        unique = list(dict.fromkeys(feedback_ids))
        found: dict[str, FeedbackRecord] = {}
        for start in range(0, len(unique), BATCH_GET_KEYS):  # well below SQLite's 32766 host parameters
            chunk = unique[start : start + BATCH_GET_KEYS]
            rows = self._connections.execute(
                # only "?" placeholders are put into the SQL; the keys travel as parameters
                f"SELECT record FROM feedback WHERE tenant = ? AND feedback_id IN ({', '.join('?' * len(chunk))})",  # noqa: S608
                (tenant, *chunk),
            )
            found.update((r.feedback_id, r) for r in (self._record(row[0]) for row in rows))
        return found

    def query(self, tenant: str, start: datetime, end: datetime) -> list[FeedbackRecord]:
        """See :class:`FeedbackStore`."""
        rows = self._connections.execute(
            "SELECT record FROM feedback WHERE tenant = ? AND created_at >= ? AND created_at < ? "
            "ORDER BY created_at, feedback_id",
            (tenant, iso_utc(start), iso_utc(end)),
        )
        return [self._record(r[0]) for r in rows]


def make_feedback_store(settings: Settings, *, dynamodb_resource: Any = None) -> FeedbackStore:
    """``FEEDBACK_URL`` (SQLite) wins over ``FEEDBACK_TABLE`` (DynamoDB); neither → in memory."""
    return select_backend(
        settings.feedback_url,
        settings.feedback_table,
        sqlite=SQLiteFeedbackStore,
        dynamodb=lambda name: DynamoDBFeedbackStore(dynamodb_table(settings, name, dynamodb_resource)),
        memory=InMemoryFeedbackStore,
        names="FEEDBACK_URL or FEEDBACK_TABLE",
    )


def to_jsonl(records: Iterable[FeedbackRecord]) -> Iterator[str]:
    """One JSON object per line (the export format; ``tenant`` included)."""
    for record in records:
        yield json.dumps(asdict(record), ensure_ascii=False) + "\n"

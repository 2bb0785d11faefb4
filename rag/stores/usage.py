"""Token usage and its estimated cost, per tenant, user, session and model.

Every answer is one :class:`UsageRecord` (input/output tokens as the model reported them:
Bedrock's Converse ``usage``; estimated at ~4 characters per token for local models). Its cost is
an **estimate** from a price table (:class:`PriceTable`: built-in list prices of the default models,
overridable with ``PRICE_TABLE_JSON``); the bill from AWS is the reference.

Stores, chosen like every store (:func:`make_usage_store`, :func:`rag.stores.base.select_backend`):

* DynamoDB (``USAGE_TABLE``, HASH key ``TenantId``, RANGE key ``UsageKey`` =
  ``<ISO time UTC>#<answer id>``, TTL attribute ``expires_at``): one ``PutItem`` per answer; a time
  range is one ``Query`` on the sort key (ISO timestamps in UTC sort as strings);
* SQLite (``USAGE_URL=sqlite:///path``): one row per answer;
* in memory (neither set): per process, for tests and the demo.

:func:`summarize` turns records into the ``GET /api/v1/usage`` body: totals and breakdowns per
user, per day and per model.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from rag.settings import Settings
from rag.stores.base import StoreUnavailableError, dynamodb_errors, dynamodb_table, select_backend
from rag.stores.sqlite import SharedConnections

#: List prices in USD per 1000 tokens (Bedrock on-demand, us-east-1, as published in 2025). Estimates:
#: override or extend with PRICE_TABLE_JSON. Keys are model ids; inference profiles
#: (``us.anthropic...``) are looked up without their geography prefix.
DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "anthropic.claude-3-haiku-20240307-v1:0": {"input_per_1k": 0.00025, "output_per_1k": 0.00125},
    "anthropic.claude-3-5-haiku-20241022-v1:0": {"input_per_1k": 0.0008, "output_per_1k": 0.004},
    "anthropic.claude-3-sonnet-20240229-v1:0": {"input_per_1k": 0.003, "output_per_1k": 0.015},
    "anthropic.claude-3-5-sonnet-20240620-v1:0": {"input_per_1k": 0.003, "output_per_1k": 0.015},
    "anthropic.claude-3-5-sonnet-20241022-v2:0": {"input_per_1k": 0.003, "output_per_1k": 0.015},
    "anthropic.claude-3-7-sonnet-20250219-v1:0": {"input_per_1k": 0.003, "output_per_1k": 0.015},
    "extractive": {"input_per_1k": 0.0, "output_per_1k": 0.0},
}
COST_NOTE = (
    "estimated_cost_usd is an estimate from the configured price table (PRICE_TABLE_JSON over built-in "
    "list prices); your AWS bill is authoritative. Tokens of local models are estimated too."
)
_GEO_PREFIXES = ("us.", "eu.", "apac.", "jp.", "au.", "ca.", "us-gov.", "global.")


class UsageUnavailableError(StoreUnavailableError):
    """The usage backend failed (DynamoDB or SQLite)."""

    code = "usage_unavailable"
    public_message = "Usage data is unavailable right now; retry later."


class PriceTable:
    """USD per 1000 input/output tokens by model id.

    Args:
        prices: ``{"<model id>": {"input_per_1k": float, "output_per_1k": float}}``.
    """

    def __init__(self, prices: dict[str, dict[str, float]]) -> None:
        self.prices = prices

    @classmethod
    def from_settings(cls, settings: Settings) -> PriceTable:
        """The defaults with ``PRICE_TABLE_JSON`` merged over them (validated by the settings)."""
        prices = {k: dict(v) for k, v in DEFAULT_PRICES.items()}
        if settings.price_table_json:
            for model, entry in json.loads(settings.price_table_json).items():
                prices[model] = {
                    "input_per_1k": float(entry.get("input_per_1k", 0)),
                    "output_per_1k": float(entry.get("output_per_1k", 0)),
                }
        return cls(prices)

    def lookup(self, model_id: str) -> dict[str, float] | None:
        """The prices of ``model_id`` (also for an inference profile of a listed model), or None."""
        if model_id in self.prices:
            return self.prices[model_id]
        for prefix in _GEO_PREFIXES:
            if model_id.startswith(prefix) and model_id[len(prefix) :] in self.prices:
                return self.prices[model_id[len(prefix) :]]
        return None

    def cost(self, model_id: str, input_tokens: int, output_tokens: int) -> float:
        """Estimated USD for these tokens; 0.0 for a model without a price (see :meth:`lookup`)."""
        prices = self.lookup(model_id)
        if prices is None:
            return 0.0
        return round(input_tokens / 1000 * prices["input_per_1k"] + output_tokens / 1000 * prices["output_per_1k"], 8)


@dataclass(frozen=True)
class UsageRecord:
    """The tokens of one answer.

    Attributes:
        tenant: the tenant id.
        user: the user's e-mail (from the session id).
        session_id: ``<tenant>:<subject>:<uuid>``.
        answer_id: the answer's id (as in the ``done`` event).
        model_id: the answering model.
        input_tokens: prompt tokens (condense + answer calls).
        output_tokens: generated tokens.
        cost_usd: estimated cost, USD.
        at: when the answer completed, ISO 8601 UTC with milliseconds.
        grounded: False when the answer said the documents do not cover the question
            (``rag.answer.grounding``); what users ask that the documents lack.
    """

    tenant: str
    user: str
    session_id: str
    answer_id: str
    model_id: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    at: str
    grounded: bool = True


def iso_utc(moment: datetime) -> str:
    """``moment`` in UTC as ISO 8601 with milliseconds (sorts as a string)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


class UsageStore(Protocol):
    """Where usage records live. Blocking: call from a worker thread in async code."""

    def record(self, record: UsageRecord) -> None:
        """Store one record."""

    def query(self, tenant: str, start: datetime, end: datetime) -> list[UsageRecord]:
        """The tenant's records with ``start <= at < end``, oldest first."""


class InMemoryUsageStore:
    """Usage records in a list (tests, demo; per process)."""

    def __init__(self) -> None:
        self.records: list[UsageRecord] = []
        self._lock = threading.Lock()

    def record(self, record: UsageRecord) -> None:
        """See :class:`UsageStore`."""
        with self._lock:
            self.records.append(record)

    def query(self, tenant: str, start: datetime, end: datetime) -> list[UsageRecord]:
        """See :class:`UsageStore`."""
        lo, hi = iso_utc(start), iso_utc(end)
        with self._lock:
            return sorted((r for r in self.records if r.tenant == tenant and lo <= r.at < hi), key=lambda r: r.at)


class DynamoDBUsageStore:
    """Usage in a DynamoDB table (HASH ``TenantId``, RANGE ``UsageKey``, TTL ``expires_at``).

    Args:
        table: a boto3 DynamoDB ``Table`` resource.
        ttl_seconds: how long a record is kept.
    """

    def __init__(self, table: Any, *, ttl_seconds: int) -> None:
        self.table = table
        self.ttl_seconds = ttl_seconds

    def record(self, record: UsageRecord) -> None:
        """See :class:`UsageStore`: one ``PutItem``."""
        item = {k: v for k, v in asdict(record).items() if k != "tenant" and v != ""}
        item["cost_usd"] = Decimal(str(record.cost_usd))
        with dynamodb_errors(UsageUnavailableError, "usage"):
            self.table.put_item(
                Item={
                    "TenantId": record.tenant,
                    "UsageKey": f"{record.at}#{record.answer_id}",
                    **item,
                    "expires_at": int(time.time()) + self.ttl_seconds,
                }
            )

    def query(self, tenant: str, start: datetime, end: datetime) -> list[UsageRecord]:
        """See :class:`UsageStore`: a paginated ``Query`` on the sort key."""
        from boto3.dynamodb.conditions import Key

        lo, hi = iso_utc(start), iso_utc(end)
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("TenantId").eq(tenant) & Key("UsageKey").between(lo, hi)
        }
        records = []
        with dynamodb_errors(UsageUnavailableError, "usage"):
            while True:
                page = self.table.query(**kwargs)
                for item in page.get("Items", []):
                    rec = UsageRecord(
                        tenant=tenant,
                        user=str(item.get("user", "")),
                        session_id=str(item.get("session_id", "")),
                        answer_id=str(item.get("answer_id", "")),
                        model_id=str(item.get("model_id", "")),
                        input_tokens=int(item.get("input_tokens", 0)),
                        output_tokens=int(item.get("output_tokens", 0)),
                        cost_usd=float(item.get("cost_usd", 0)),
                        at=str(item.get("at", "")),
                        grounded=bool(item.get("grounded", True)),
                    )
                    if lo <= rec.at < hi:
                        records.append(rec)
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return records


class SQLiteUsageStore:
    """Usage in a SQLite file: one row per answer.

    Args:
        path: database file (created on first use).
        ttl_seconds: rows older than this are purged on write.
    """

    _SCHEMA = """
    CREATE TABLE IF NOT EXISTS usage (
        tenant TEXT NOT NULL, at TEXT NOT NULL, answer_id TEXT NOT NULL, user TEXT NOT NULL,
        session_id TEXT NOT NULL, model_id TEXT NOT NULL, input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL, expires_at INTEGER NOT NULL,
        grounded INTEGER NOT NULL DEFAULT 1,
        PRIMARY KEY (tenant, at, answer_id)
    );
    """

    def __init__(self, path: str | Path, *, ttl_seconds: int) -> None:
        self.path = Path(path)
        self.ttl_seconds = ttl_seconds
        self._connections = SharedConnections(self.path, self._SCHEMA, error=UsageUnavailableError, label="usage")
        columns = {row[1] for row in self._connections.execute("PRAGMA table_info(usage)")}
        if "grounded" not in columns:  # a file written before grounded answers existed
            self._connections.execute("ALTER TABLE usage ADD COLUMN grounded INTEGER NOT NULL DEFAULT 1")

    def record(self, record: UsageRecord) -> None:
        """See :class:`UsageStore`."""
        now = int(time.time())
        self._connections.execute(
            "INSERT OR REPLACE INTO usage (tenant, at, answer_id, user, session_id, model_id, input_tokens, "
            "output_tokens, cost_usd, expires_at, grounded) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.tenant,
                record.at,
                record.answer_id,
                record.user,
                record.session_id,
                record.model_id,
                record.input_tokens,
                record.output_tokens,
                record.cost_usd,
                now + self.ttl_seconds,
                int(record.grounded),
            ),
        )
        self._connections.execute("DELETE FROM usage WHERE expires_at < ?", (now,))

    def query(self, tenant: str, start: datetime, end: datetime) -> list[UsageRecord]:
        """See :class:`UsageStore`."""
        rows = self._connections.execute(
            "SELECT user, session_id, answer_id, model_id, input_tokens, output_tokens, cost_usd, at, grounded "
            "FROM usage WHERE tenant = ? AND at >= ? AND at < ? ORDER BY at",
            (tenant, iso_utc(start), iso_utc(end)),
        )
        return [
            UsageRecord(tenant, u, s, a, m, int(i), int(o), float(c), at, bool(g))
            for u, s, a, m, i, o, c, at, g in rows
        ]


def make_usage_store(settings: Settings, *, dynamodb_resource: Any = None) -> UsageStore:
    """``USAGE_URL`` (SQLite) wins over ``USAGE_TABLE`` (DynamoDB); neither → in memory."""
    ttl = settings.usage_ttl_seconds
    return select_backend(
        settings.usage_url,
        settings.usage_table,
        sqlite=lambda path: SQLiteUsageStore(path, ttl_seconds=ttl),
        dynamodb=lambda name: DynamoDBUsageStore(dynamodb_table(settings, name, dynamodb_resource), ttl_seconds=ttl),
        memory=InMemoryUsageStore,
        names="USAGE_URL or USAGE_TABLE",
    )


def _bucket() -> dict[str, Any]:
    return {
        "requests": 0,
        "ungrounded": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "total_tokens": 0,
        "estimated_cost_usd": 0.0,
    }


def _add(bucket: dict[str, Any], record: UsageRecord) -> None:
    bucket["requests"] += 1
    bucket["ungrounded"] += not record.grounded
    bucket["input_tokens"] += record.input_tokens
    bucket["output_tokens"] += record.output_tokens
    bucket["total_tokens"] += record.input_tokens + record.output_tokens
    bucket["estimated_cost_usd"] = round(bucket["estimated_cost_usd"] + record.cost_usd, 8)


def summarize(tenant: str, records: list[UsageRecord], start: datetime, end: datetime) -> dict[str, Any]:
    """The ``GET /api/v1/usage`` body: totals, and breakdowns by user, day (UTC) and model."""
    totals = _bucket()
    by_user: dict[str, dict[str, Any]] = defaultdict(_bucket)
    by_day: dict[str, dict[str, Any]] = defaultdict(_bucket)
    by_model: dict[str, dict[str, Any]] = defaultdict(_bucket)
    for record in records:
        _add(totals, record)
        _add(by_user[record.user], record)
        _add(by_day[record.at[:10]], record)
        _add(by_model[record.model_id], record)
    return {
        "tenant": tenant,
        "from": iso_utc(start),
        "to": iso_utc(end),
        "totals": totals,
        "by_user": [{"user": k, **v} for k, v in sorted(by_user.items())],
        "by_day": [{"day": k, **v} for k, v in sorted(by_day.items())],
        "by_model": [{"model_id": k, **v} for k, v in sorted(by_model.items())],
        "note": COST_NOTE,
    }

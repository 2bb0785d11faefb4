"""Quotas and rate limits per tenant and per user: requests per minute and tokens per day.

Limits come from settings (``QUOTA_TENANT_RPM``, ``QUOTA_USER_RPM``, ``QUOTA_TENANT_TOKENS_PER_DAY``,
``QUOTA_USER_TOKENS_PER_DAY``; 0 = unlimited). Counters are fixed windows (a UTC minute, a UTC
day) with keys such as ``<tenant>#user#<subject>#rpm#<YYYYmmddTHHMM>``:

* **requests per minute**: admitting a request is one atomic conditional increment per scope
  (DynamoDB ``UpdateItem`` ``ADD #count :one`` with ``attribute_not_exists(#count) OR #count <
  :limit``), so concurrent requests are never over-admitted; when the tenant window is full after
  the user's was incremented, the user's increment is given back;
* **tokens per day**: checked before answering (refused when the day's total already reached the
  limit) and the answer's actual tokens are added after it (``ADD``): one answer may overshoot
  the limit, the next request is refused.

Backends (:func:`make_quota_store`): DynamoDB ``QUOTA_TABLE`` (HASH key ``QuotaKey``, TTL attribute
``expires_at``), SQLite ``QUOTA_URL=sqlite:///path`` (one upsert per increment, atomic), or memory
(per process: with several gunicorn workers each enforces the limit on its own).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from rag.settings import Settings
from rag.stores.base import StoreUnavailableError, dynamodb_errors, dynamodb_table, select_backend
from rag.stores.sqlite import SharedConnections

#: Counters outlive their window by this much (seconds) before TTL removes them.
TTL_GRACE_SECONDS = 3600


class QuotaUnavailableError(StoreUnavailableError):
    """The counter backend failed (the answer path admits the request anyway: quotas fail open)."""

    code = "quota_unavailable"
    public_message = "Usage limits cannot be checked right now; retry later."


_CONDITION_FAILED = frozenset({"ConditionalCheckFailedException"})


class QuotaExceededError(Exception):
    """A limit is reached.

    Attributes:
        scope: ``"tenant"`` or ``"user"``.
        kind: ``"rpm"`` (requests per minute) or ``"tokens_per_day"``.
        limit: the configured limit.
        retry_after: whole seconds until the window resets (at least 1).
        message: a sentence for the user.
    """

    def __init__(self, scope: str, kind: str, limit: int, retry_after: int) -> None:
        self.scope, self.kind, self.limit, self.retry_after = scope, kind, limit, max(1, retry_after)
        who = "your organisation" if scope == "tenant" else "you"
        if kind == "rpm":
            what = f"the limit of {limit} questions per minute for {who}"
        else:
            what = f"the daily limit of {limit} model tokens for {who}"
        self.message = f"Usage limit reached: {what}. Try again in {self.retry_after} seconds."
        super().__init__(self.message)


class CounterStore(Protocol):
    """Atomic counters with an expiry. Blocking: call from a worker thread in async code."""

    def increment_if_below(self, key: str, limit: int, expires_at: int) -> bool:
        """Add 1 when the counter is below ``limit``; False (unchanged) otherwise."""

    def add(self, key: str, amount: int, expires_at: int) -> None:
        """Add ``amount`` (negative gives back) unconditionally."""

    def get(self, key: str) -> int:
        """The counter's value (0 when absent). Windows are part of the keys: expiry only cleans up."""


class InMemoryCounterStore:
    """Counters in a dict under a lock (per process)."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def _current(self, key: str) -> int:
        return self._values.get(key, (0, 0))[0]

    def increment_if_below(self, key: str, limit: int, expires_at: int) -> bool:
        """See :class:`CounterStore`."""
        with self._lock:
            value = self._current(key)
            if value >= limit:
                return False
            self._values[key] = (value + 1, expires_at)
            return True

    def add(self, key: str, amount: int, expires_at: int) -> None:
        """See :class:`CounterStore`."""
        with self._lock:
            self._values[key] = (self._current(key) + amount, expires_at)
            now = time.time()
            for stale in [k for k, (_, exp) in self._values.items() if exp < now]:
                del self._values[stale]

    def get(self, key: str) -> int:
        """See :class:`CounterStore`."""
        with self._lock:
            return self._current(key)


class DynamoDBCounterStore:
    """Counters in a DynamoDB table (HASH ``QuotaKey``, attribute ``count``, TTL ``expires_at``).

    Args:
        table: a boto3 DynamoDB ``Table`` resource.
    """

    def __init__(self, table: Any) -> None:
        self.table = table

    def increment_if_below(self, key: str, limit: int, expires_at: int) -> bool:
        """See :class:`CounterStore`: one conditional ``UpdateItem``."""
        from botocore.exceptions import ClientError

        try:
            with dynamodb_errors(QuotaUnavailableError, "quota counters", passthrough=_CONDITION_FAILED):
                self.table.update_item(
                    Key={"QuotaKey": key},
                    UpdateExpression="ADD #count :one SET expires_at = :exp",
                    ConditionExpression="attribute_not_exists(#count) OR #count < :limit",
                    ExpressionAttributeNames={"#count": "count"},  # COUNT is a reserved word
                    ExpressionAttributeValues={":one": 1, ":limit": limit, ":exp": expires_at},
                )
        except ClientError:  # only ConditionalCheckFailedException passes through: the window is full
            return False
        return True

    def add(self, key: str, amount: int, expires_at: int) -> None:
        """See :class:`CounterStore`: one ``UpdateItem`` ``ADD``."""
        with dynamodb_errors(QuotaUnavailableError, "quota counters"):
            self.table.update_item(
                Key={"QuotaKey": key},
                UpdateExpression="ADD #count :n SET expires_at = :exp",
                ExpressionAttributeNames={"#count": "count"},
                ExpressionAttributeValues={":n": amount, ":exp": expires_at},
            )

    def get(self, key: str) -> int:
        """See :class:`CounterStore`: a strongly consistent ``GetItem``."""
        with dynamodb_errors(QuotaUnavailableError, "quota counters"):
            item = self.table.get_item(Key={"QuotaKey": key}, ConsistentRead=True).get("Item")
        return int(item.get("count", 0)) if item else 0


class SQLiteCounterStore:
    """Counters in a SQLite file: each increment is one atomic upsert.

    Args:
        path: database file (created on first use).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._connections = SharedConnections(
            self.path,
            "CREATE TABLE IF NOT EXISTS quota (key TEXT PRIMARY KEY, count INTEGER NOT NULL, "
            "expires_at INTEGER NOT NULL)",
            error=QuotaUnavailableError,
            label="quota counters",
        )
        self._run = self._connections.execute

    def increment_if_below(self, key: str, limit: int, expires_at: int) -> bool:
        """See :class:`CounterStore`."""
        rows = self._run(
            "INSERT INTO quota (key, count, expires_at) VALUES (?, 1, ?) ON CONFLICT(key) DO UPDATE SET "
            "count = quota.count + 1, expires_at = excluded.expires_at WHERE quota.count < ? RETURNING count",
            (key, expires_at, limit),
        )
        # RETURNING gives a row only when the insert or the conditional update happened; unlike
        # rowcount (sqlite3_changes() of the connection) it is per statement, so it stays right when
        # threads share the connection (SQLite >= 3.35).
        return bool(rows)

    def add(self, key: str, amount: int, expires_at: int) -> None:
        """See :class:`CounterStore`."""
        self._run(
            "INSERT INTO quota (key, count, expires_at) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
            "count = quota.count + excluded.count, expires_at = excluded.expires_at",
            (key, amount, expires_at),
        )
        self._run("DELETE FROM quota WHERE expires_at < ?", (int(time.time()),))

    def get(self, key: str) -> int:
        """See :class:`CounterStore`."""
        rows = self._run("SELECT count FROM quota WHERE key = ?", (key,))
        return int(rows[0][0]) if rows else 0


@dataclass(frozen=True)
class QuotaLimits:
    """The four limits (0 = unlimited)."""

    tenant_rpm: int = 0
    user_rpm: int = 0
    tenant_tokens_per_day: int = 0
    user_tokens_per_day: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> QuotaLimits:
        """From ``QUOTA_*``."""
        return cls(
            tenant_rpm=settings.quota_tenant_rpm,
            user_rpm=settings.quota_user_rpm,
            tenant_tokens_per_day=settings.quota_tenant_tokens_per_day,
            user_tokens_per_day=settings.quota_user_tokens_per_day,
        )

    @property
    def enabled(self) -> bool:
        """True when any limit is set."""
        return any((self.tenant_rpm, self.user_rpm, self.tenant_tokens_per_day, self.user_tokens_per_day))


class QuotaService:
    """Applies :class:`QuotaLimits` with a :class:`CounterStore`.

    Args:
        store: the counters.
        limits: the limits.
        clock: seconds since the epoch (tests pass a fake).
    """

    def __init__(self, store: CounterStore, limits: QuotaLimits, clock: Any = time.time) -> None:
        self.store = store
        self.limits = limits
        self.clock = clock

    @staticmethod
    def _windows(now: float) -> tuple[str, int, str, int]:
        moment = datetime.fromtimestamp(now, UTC)
        minute_end = (int(now) // 60 + 1) * 60
        day_end = (int(now) // 86_400 + 1) * 86_400
        return moment.strftime("%Y%m%dT%H%M"), minute_end, moment.strftime("%Y%m%d"), day_end

    def admit(self, tenant: str, user: str) -> None:
        """Count one request, or refuse it.

        Raises:
            QuotaExceededError: a limit is reached (nothing is counted then).
            QuotaUnavailableError: the counters failed.
        """
        limits = self.limits
        if not limits.enabled:
            return
        now = self.clock()
        minute, minute_end, day, day_end = self._windows(now)
        for scope, limit, key in (
            ("user", limits.user_tokens_per_day, f"{tenant}#user#{user}#tpd#{day}"),
            ("tenant", limits.tenant_tokens_per_day, f"{tenant}#tenant#tpd#{day}"),
        ):
            if limit and self.store.get(key) >= limit:
                raise QuotaExceededError(scope, "tokens_per_day", limit, int(day_end - now) + 1)
        user_key = f"{tenant}#user#{user}#rpm#{minute}"
        expires = minute_end + TTL_GRACE_SECONDS
        if limits.user_rpm and not self.store.increment_if_below(user_key, limits.user_rpm, expires):
            raise QuotaExceededError("user", "rpm", limits.user_rpm, int(minute_end - now) + 1)
        tenant_key = f"{tenant}#tenant#rpm#{minute}"
        if limits.tenant_rpm and not self.store.increment_if_below(tenant_key, limits.tenant_rpm, expires):
            if limits.user_rpm:
                self.store.add(user_key, -1, expires)  # not admitted: give the user's slot back
            raise QuotaExceededError("tenant", "rpm", limits.tenant_rpm, int(minute_end - now) + 1)

    def add_tokens(self, tenant: str, user: str, tokens: int) -> None:
        """Add an answer's tokens to the day's counters (only those with a limit).

        Raises:
            QuotaUnavailableError: the counters failed.
        """
        limits = self.limits
        if tokens <= 0 or not (limits.tenant_tokens_per_day or limits.user_tokens_per_day):
            return
        _, _, day, day_end = self._windows(self.clock())
        expires = day_end + TTL_GRACE_SECONDS
        if limits.user_tokens_per_day:
            self.store.add(f"{tenant}#user#{user}#tpd#{day}", tokens, expires)
        if limits.tenant_tokens_per_day:
            self.store.add(f"{tenant}#tenant#tpd#{day}", tokens, expires)


def make_quota_store(settings: Settings, *, dynamodb_resource: Any = None) -> CounterStore:
    """``QUOTA_URL`` (SQLite) wins over ``QUOTA_TABLE`` (DynamoDB); neither → in memory."""
    return select_backend(
        settings.quota_url,
        settings.quota_table,
        sqlite=SQLiteCounterStore,
        dynamodb=lambda name: DynamoDBCounterStore(dynamodb_table(settings, name, dynamodb_resource)),
        memory=InMemoryCounterStore,
        names="QUOTA_URL or QUOTA_TABLE",
    )

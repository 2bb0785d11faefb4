"""What every store shares: the unavailable-error family, the DynamoDB error mapping, the backend choice.

A store (history, sessions, usage, quota, feedback) is a ``Protocol`` in its module with two or
three backends beside it. What they have in common lives here, once:

* :class:`StoreUnavailableError`: the one error family for "the backend failed" (DynamoDB throttled,
  unreachable or timing out; SQLite locked or unwritable). Each store subclasses it with its own
  machine :attr:`~StoreUnavailableError.code` (``history_unavailable``, ...) and sentence; the API
  maps the whole family to ``503`` + ``Retry-After`` in one place (``api/errors.py``).
* :func:`dynamodb_errors`: the one translation of botocore's errors (``ClientError`` after
  botocore's own bounded retries, connection errors, connect/read timeouts) into the store's error.
* :class:`~rag.settings.SqliteUrl`: the ``sqlite:///path`` URL type of ``HISTORY_URL``,
  ``SESSIONS_URL``, ``USAGE_URL``, ``QUOTA_URL`` and ``FEEDBACK_URL`` (defined with the settings,
  the kernel, re-exported here); :mod:`rag.stores.sqlite` opens the files.
* :func:`select_backend`: a URL → SQLite, else a table → DynamoDB, else memory where that is allowed.

A new store therefore declares its error class (name, code, message) and its backends, and copies
nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from rag.settings import Settings, SqliteUrl

__all__ = [
    "RETRY_AFTER_SECONDS",
    "SqliteUrl",
    "StoreUnavailableError",
    "dynamodb_errors",
    "dynamodb_table",
    "select_backend",
]

T = TypeVar("T")

#: Seconds a client should wait before retrying when a store is down (``Retry-After`` of the 503).
RETRY_AFTER_SECONDS = 2


class StoreUnavailableError(RuntimeError):
    """A store's backend failed; retrying later may help. ``str(error)`` is for logs, not users.

    Subclasses set the class attributes; the API answers ``503`` with ``{"error": code,
    "message": public_message}`` and ``Retry-After: retry_after``.

    Attributes:
        code: machine-readable error code, e.g. ``history_unavailable``.
        public_message: a sentence for users (no backend detail).
        retry_after: seconds until a retry may help.
    """

    code: ClassVar[str] = "store_unavailable"
    public_message: ClassVar[str] = "A data store is unavailable right now; retry shortly."
    retry_after: ClassVar[int] = RETRY_AFTER_SECONDS


@contextmanager
def dynamodb_errors(
    error: type[StoreUnavailableError], label: str, *, passthrough: frozenset[str] = frozenset()
) -> Iterator[None]:
    """Translate botocore errors raised inside the block into ``error``.

    botocore has already retried what it retries (throttling, 5xx, connection errors) with the
    ``AWS_DATA_*`` budget of :func:`rag.aws.client_config` when an error reaches this point, so it is
    final for this request.

    Args:
        error: the store's :class:`StoreUnavailableError` subclass.
        label: what failed, for the log message (e.g. ``"chat history"``).
        passthrough: ``ClientError`` codes that are answers, not failures, re-raised unchanged
            (e.g. ``ConditionalCheckFailedException`` for a conditional write).

    Raises:
        StoreUnavailableError: ``error``, for any ``ClientError`` (not in ``passthrough``) or
            ``BotoCoreError`` (``EndpointConnectionError``, ``ConnectTimeoutError``,
            ``ReadTimeoutError``, ...). https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in passthrough:
            raise
        raise error(f"{label} (DynamoDB) failed: {exc}") from exc
    except BotoCoreError as exc:
        raise error(f"{label} (DynamoDB) failed: {exc}") from exc


def dynamodb_table(settings: Settings, name: str, resource: Any = None) -> Any:
    """The boto3 ``Table`` resource ``name``, from ``resource`` or a new one of :func:`rag.aws.make_resource`.

    Args:
        settings: region, endpoint and the ``AWS_DATA_*`` timeouts.
        name: the table name (validated by the settings).
        resource: a boto3 DynamoDB service resource to reuse (tests, shared clients).
    """
    if resource is None:
        from rag.aws import make_resource

        resource = make_resource("dynamodb", settings)
    return resource.Table(name)


def select_backend(
    url: SqliteUrl | None,
    table: str | None,
    *,
    sqlite: Callable[[Path], T],
    dynamodb: Callable[[str], T],
    memory: Callable[[], T] | None,
    names: str,
) -> T:
    """The one rule for picking a store's backend: a SQLite URL wins, then a table, then memory.

    Args:
        url: the store's ``*_URL`` (``sqlite:///path``), or None.
        table: the store's ``*_TABLE``, or None.
        sqlite: builds the SQLite backend from the database path.
        dynamodb: builds the DynamoDB backend from the table name.
        memory: builds the in-memory backend; None when the store needs persistence.
        names: the two variables, for the error message (e.g. ``"SESSIONS_TABLE or SESSIONS_URL"``).

    Raises:
        ValueError: neither is set and ``memory`` is None.
    """
    if url:
        return sqlite(SqliteUrl.parse(url).path)
    if table:
        return dynamodb(table)
    if memory is None:
        raise ValueError(f"{names}: one of them is required")
    return memory()

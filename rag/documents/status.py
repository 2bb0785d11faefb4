"""The ingestion status object beside the index: ``<index root>/ingestion.json``.

Written by the ingestion job (``python -m ingest``: ``running`` with progress every few seconds,
then ``succeeded`` or ``failed``), read by the RAG API (``GET /api/v1/ingestions/latest``, the
Documents page) and ``rag status``. It is one small JSON object, replaced with one PUT (atomic in
S3, ``os.replace`` locally), so a reader sees the previous or the next state, never half of one.
The chatbot's role may read it but never write it (it writes only under ``documents/``).
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from rag.documents.contract import IngestionStatus
from rag.index.store import BlobStore

log = logging.getLogger(__name__)

#: Key of the status object, relative to the index root.
STATUS_KEY = "ingestion.json"
#: Largest status object a reader accepts (bytes); a hostile object cannot exhaust memory.
MAX_STATUS_BYTES = 4 * 1024 * 1024


class StatusUnreadableError(RuntimeError):
    """The status object exists but is not a valid :class:`IngestionStatus`."""


def read_status(store: BlobStore) -> IngestionStatus | None:
    """The last run's status, or None when no run ever wrote one.

    Raises:
        StatusUnreadableError: too large, not JSON, or not the model's shape.
        OSError, botocore.exceptions.ClientError: the store failed.
    """
    try:
        data = store.read(STATUS_KEY)
    except FileNotFoundError:
        return None
    if len(data) > MAX_STATUS_BYTES:
        raise StatusUnreadableError(f"{STATUS_KEY} is larger than {MAX_STATUS_BYTES} bytes")
    try:
        return IngestionStatus.model_validate_json(data)
    except ValidationError as exc:
        raise StatusUnreadableError(f"{STATUS_KEY} is malformed ({exc.error_count()} errors)") from None


def write_status(store: BlobStore, status: IngestionStatus) -> None:
    """Replace the status object with ``status`` (one write).

    Raises:
        OSError, botocore.exceptions.ClientError: the store failed.
    """
    store.write(STATUS_KEY, status.model_dump_json(exclude_none=True).encode())

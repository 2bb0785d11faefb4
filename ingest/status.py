"""The job's side of the ingestion status object (:mod:`rag.documents.status`).

:class:`StatusReporter` writes ``running`` when the job starts, progress at most every
:data:`PROGRESS_INTERVAL_SECONDS`, and ``succeeded`` (counts, version, skipped files) or ``failed``
(errors, skipped files) at the end. A failed status write is logged and never fails the run: the
index is what matters, the status only describes it.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from ingest.pipeline import IngestSummary
from rag.documents.contract import (
    MAX_LISTED_PROBLEMS,
    MAX_REASON_CHARS,
    IngestionCounts,
    IngestionProgress,
    IngestionState,
    IngestionStatus,
    SkippedFile,
    new_run_id,
)
from rag.documents.status import write_status
from rag.index.store import BlobStore

log = logging.getLogger(__name__)

#: Seconds between progress writes (each is one small PUT).
PROGRESS_INTERVAL_SECONDS = 2.0


def _skipped(summary: IngestSummary | None) -> list[SkippedFile]:
    if summary is None:
        return []
    return [
        SkippedFile(source=uri[:2048], reason=reason[:MAX_REASON_CHARS])
        for uri, reason in summary.skipped[:MAX_LISTED_PROBLEMS]
    ]


class StatusReporter:
    """Writes one run's status beside the index.

    Args:
        store: the index root.
        tenant: the tenant id.
        run_id: the id the API queued (``INGESTION_RUN_ID``); None makes a new one.
        trigger: ``web``, ``schedule``, ``cli`` or ``job``.
        clock: seconds (monotonic) for throttling progress writes (tests).
    """

    def __init__(
        self,
        store: BlobStore,
        *,
        tenant: str,
        run_id: str | None = None,
        trigger: str = "job",
        clock: object = time.monotonic,
    ) -> None:
        self.store = store
        now = datetime.now(UTC)
        self.status = IngestionStatus(
            run_id=run_id or new_run_id(now),
            tenant=tenant,
            state=IngestionState.RUNNING,
            trigger=trigger,
            started_at=now,
            updated_at=now,
        )
        self._clock = clock
        self._last_write = float("-inf")

    def _write(self, **changes: object) -> None:
        self.status = self.status.model_copy(update={**changes, "updated_at": datetime.now(UTC)})
        try:
            write_status(self.store, self.status)
        except Exception as exc:  # the status is informational: never fail the run for it
            log.warning("could not write the ingestion status: %s", exc)

    def started(self) -> None:
        """Write ``running``."""
        self._write()
        self._last_write = self._clock()

    def progress(self, phase: str, done: int, total: int) -> None:
        """Record progress (written at most every :data:`PROGRESS_INTERVAL_SECONDS`, always at a phase start)."""
        phase_changed = self.status.progress is None or self.status.progress.phase != phase
        now = self._clock()
        if not phase_changed and now - self._last_write < PROGRESS_INTERVAL_SECONDS:
            self.status = self.status.model_copy(
                update={"progress": IngestionProgress(phase=phase, done=done, total=total)}
            )
            return
        self._write(progress=IngestionProgress(phase=phase, done=done, total=total))
        self._last_write = now

    def succeeded(self, summary: IngestSummary) -> None:
        """Write ``succeeded`` with the summary's counts, version and skipped files."""
        self._write(
            state=IngestionState.SUCCEEDED,
            finished_at=datetime.now(UTC),
            progress=None,
            version=summary.version,
            unchanged=summary.unchanged,
            counts=IngestionCounts(
                sources=summary.sources,
                documents=summary.documents,
                chunks=summary.chunks,
                embedded_chunks=summary.embedded_chunks,
                reused_chunks=summary.reused_chunks,
                removed_sources=len(summary.removed_sources),
            ),
            skipped=_skipped(summary),
        )

    def failed(self, error: str, summary: IngestSummary | None = None) -> None:
        """Write ``failed`` with ``error`` (first line kept, truncated) and the skipped files."""
        self._write(
            state=IngestionState.FAILED,
            finished_at=datetime.now(UTC),
            progress=None,
            errors=[error.strip().splitlines()[0][:MAX_REASON_CHARS] if error.strip() else "failed"],
            skipped=_skipped(summary),
        )

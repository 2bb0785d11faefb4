"""What the lifespan builds once per worker: the index holder (with hot reload) and the chain.

:class:`IndexHolder` keeps the tenant's current :class:`rag.answer.retrieval.TenantIndex`. The first load
happens during start-up; when it fails (S3 unreachable, nothing published yet) the app still
starts, ``/readyz`` says 503, and a background task retries until it succeeds. After that the task
polls ``LATEST`` every ``INDEX_POLL_SECONDS`` and swaps a new version in; loading runs in a worker
thread, and a failed reload keeps the old index (logged and counted in
``ragapi_index_reload_failures_total``).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from api import metrics
from rag.answer.chain import AnswerChain
from rag.answer.readers import FaissIndexReader
from rag.index.backend import IndexReader, SearchIndex
from rag.index.store import BlobStore
from rag.settings import Settings
from rag.stores.feedback import FeedbackStore, InMemoryFeedbackStore
from rag.stores.history import HistoryStore
from rag.stores.quota import InMemoryCounterStore, QuotaLimits, QuotaService
from rag.stores.usage import DEFAULT_PRICES, InMemoryUsageStore, PriceTable, UsageStore

logger = logging.getLogger("api.index")

#: Seconds between attempts while no index is loaded (capped by INDEX_POLL_SECONDS when smaller).
INITIAL_RETRY_SECONDS = 5.0


def freeze_long_lived_objects() -> None:
    """Move everything alive now (modules, clients, the loaded index) out of the garbage collector's reach.

    Python's cyclic collector walks every tracked object in a full (generation 2) collection; with
    a loaded index, botocore's service models and LangChain's classes that is millions of objects,
    and each full collection stopped the worker's event loop for 80-130 ms (measured under
    ``benchmarks/api_bench.py``), which every stream in flight felt. Called after each index load:
    ``gc.unfreeze()`` + ``gc.collect()`` first, so the previous index and its garbage are collected
    once, then ``gc.freeze()``. Reference counting still frees frozen objects that are not in
    cycles. See https://docs.python.org/3/library/gc.html#gc.freeze.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    release_free_heap()


def release_free_heap() -> bool:
    """Give the C heap's free pages back to the kernel (glibc ``malloc_trim(0)``); False where there is none.

    The index is loaded in a worker thread, whose allocations come from one of glibc's per-thread
    arenas; what a load frees there (the float32 vectors a float16 serving copy replaced, the
    batches copied between them, a replaced index version) stays resident in the arena until it is
    trimmed: measured at 10k x 1024 dims, the float16 copy saved 3 MiB of the worker's PSS without
    this and 19 MiB with it (see docs/api.md "Workers and memory"). Since glibc 2.8 ``malloc_trim``
    walks every arena (https://man7.org/linux/man-pages/man3/malloc_trim.3.html). Other C libraries
    (musl) have no ``malloc_trim``: nothing is done.

    Returns:
        True when ``malloc_trim`` was called.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return False
    trim(0)
    return True


class IndexHolder:
    """The current index of this worker and the loop that keeps it fresh.

    Args:
        store: the FAISS index root (local directory or S3 prefix); None when ``reader`` is given.
        tenant: this pod's tenant id.
        embedding_model: the query embedding model id (the manifest must match).
        prebuild_bm25: build the BM25 side while loading (hybrid retrieval), not on the first query.
        freeze_heap: call :func:`freeze_long_lived_objects` after each load (the server does; tests
            that run many apps in one process need not).
        ef_search: HNSW candidate list per query for HNSW indexes (``HNSW_EF_SEARCH``).
        on_loaded: called with each newly loaded index before the heap is frozen (e.g.
            :meth:`rag.answer.chain.LiveRetriever.prime`, which also drops its reference to the old index).
        reader: the backend to poll and load from (:func:`rag.index.backend.open_index_reader`,
            e.g. pgvector); default: a :class:`rag.index.backend.FaissIndexReader` over ``store``.
    """

    def __init__(
        self,
        store: BlobStore | None = None,
        *,
        tenant: str,
        embedding_model: str,
        prebuild_bm25: bool,
        freeze_heap: bool = False,
        ef_search: int = 128,
        on_loaded: Callable[[SearchIndex], None] | None = None,
        reader: IndexReader | None = None,
    ) -> None:
        if reader is None:
            if store is None:
                raise ValueError("IndexHolder needs a store or a reader")
            reader = FaissIndexReader(
                store, tenant=tenant, embedding_model=embedding_model, ef_search=ef_search, prebuild_bm25=prebuild_bm25
            )
        self.reader = reader
        self.uri = reader.uri
        self.on_loaded = on_loaded
        self.freeze_heap = freeze_heap
        self.ef_search = ef_search
        self.store = store if store is not None else getattr(reader, "store", None)  # FAISS: the index root
        self.tenant = tenant
        self.embedding_model = embedding_model
        self.prebuild_bm25 = prebuild_bm25
        self.current: SearchIndex | None = None
        self.last_error: str | None = None
        self._lock = asyncio.Lock()

    def get(self) -> SearchIndex | None:
        """The index to search now (None until the first successful load)."""
        return self.current

    def _load(self, version: str) -> SearchIndex:
        return self.reader.load(version)

    async def unavailable(self) -> str | None:
        """Why the loaded index cannot serve now (the vector database is down or slow), else None.

        FAISS indexes live in memory: always None. For pgvector one pooled ``SELECT 1``, bounded
        by ``PG_CONNECT_TIMEOUT_SECONDS``.
        """
        from rag.index.backend import VectorStoreUnavailableError

        try:
            await asyncio.to_thread(self.reader.check)
        except VectorStoreUnavailableError as exc:
            return str(exc)
        return None

    async def refresh(self) -> bool:
        """Load ``LATEST`` if it differs from the current version.

        Returns:
            True when a new version was swapped in. Errors are logged, counted and kept in
            ``last_error``; they never propagate (the old index keeps serving).
        """
        async with self._lock:
            try:
                latest = await asyncio.to_thread(self.reader.latest_version_id)
                if self.current is not None and self.current.version.version == latest:
                    return False
                loaded = await asyncio.to_thread(self._load, latest)
            except Exception as exc:
                metrics.INDEX_RELOAD_FAILURES.inc()
                self.last_error = f"{type(exc).__name__}: {exc}"
                keeping = f"keeping {self.current.version.version}" if self.current else "no index loaded"
                logger.warning("index load from %s failed (%s): %s", self.uri, keeping, self.last_error)
                return False
            previous, self.current, self.last_error = self.current, loaded, None
            manifest = loaded.version.manifest
            replaced = ""
            if previous is not None:
                pm, replaced = previous.version.manifest, previous.version.version
                metrics.INDEX_INFO.labels(pm.tenant, replaced, pm.embedding_model).set(0)
                previous = None  # let the old index go before the collection below
            metrics.INDEX_INFO.labels(manifest.tenant, loaded.version.version, manifest.embedding_model).set(1)
            metrics.INDEX_CHUNKS.set(manifest.count)
            metrics.INDEX_RELOADS.inc()
            if self.on_loaded is not None:
                try:
                    self.on_loaded(loaded)
                except Exception:
                    logger.warning("index loaded, but preparing the retriever failed", exc_info=True)
            if self.freeze_heap:
                freeze_long_lived_objects()
            logger.info(
                "index version %s loaded (%d chunks, %s)%s",
                loaded.version.version,
                manifest.count,
                manifest.embedding_model,
                f", replacing {replaced}" if replaced else "",
            )
            return True

    async def run(self, poll_seconds: float) -> None:
        """Retry the first load, then poll ``LATEST`` every ``poll_seconds`` (0: stop once loaded)."""
        while True:
            if self.current is None:
                delay = min(INITIAL_RETRY_SECONDS, poll_seconds) if poll_seconds > 0 else INITIAL_RETRY_SECONDS
            elif poll_seconds > 0:
                delay = poll_seconds
            else:
                return
            await asyncio.sleep(delay)
            await self.refresh()


@dataclass
class RagState:
    """Per-worker objects built by the lifespan (kept on ``app.state.rag``).

    Attributes:
        settings: the validated settings.
        chain: the conversational retrieval chain (built once).
        history: the chat history store.
        index: the index holder.
        model_id: the model id reported in responses.
        chat_model: the underlying chat model (for diagnostics).
        usage: where each answer's tokens and estimated cost are recorded.
        quota: request and token limits per tenant and user.
        feedback: where ratings of answers are stored.
        prices: the price table for cost estimates.
        chain_executor: the threads answers run in (one per answer in flight; None: the loop's default).
    """

    settings: Settings
    chain: AnswerChain
    history: HistoryStore
    index: IndexHolder
    model_id: str
    chat_model: Any = None
    usage: UsageStore = field(default_factory=InMemoryUsageStore)
    quota: QuotaService = field(default_factory=lambda: QuotaService(InMemoryCounterStore(), QuotaLimits()))
    feedback: FeedbackStore = field(default_factory=InMemoryFeedbackStore)
    prices: PriceTable = field(default_factory=lambda: PriceTable(DEFAULT_PRICES))
    chain_executor: Executor | None = None

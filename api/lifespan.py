"""Start-up and shutdown: build settings, clients, embeddings, model, history, index and chain once.

Nothing here runs at import time. Blocking constructors (boto3 clients, the local embedding model,
the first index load) run in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from langchain_core.embeddings import Embeddings
from langchain_core.language_models.chat_models import BaseChatModel

from api.services.answer import AnswerService
from api.services.documents import build_document_services
from api.state import IndexHolder, RagState
from rag.answer.chain import AnswerChain, LiveRetriever, refers_back
from rag.answer.grounding import floor_for
from rag.answer.models import make_chat_model, model_id_of
from rag.answer.readers import open_index_reader
from rag.answer.retrieval import make_retriever, one_search_thread
from rag.answer.tracing import setup_tracing
from rag.contract import MAX_MATCHING_DOCS
from rag.index.store import open_store
from rag.logs import set_log_context
from rag.settings import Settings, SettingsError, get_settings
from rag.stores.feedback import FeedbackStore, InMemoryFeedbackStore, make_feedback_store
from rag.stores.history import HistoryStore, InMemoryHistoryStore, make_history_store
from rag.stores.quota import CounterStore, InMemoryCounterStore, QuotaLimits, QuotaService, make_quota_store
from rag.stores.usage import InMemoryUsageStore, PriceTable, UsageStore, make_usage_store

logger = logging.getLogger("api")


@dataclass
class Components:
    """Optional ready-made parts (tests, benchmarks); anything left None is built from settings.

    Attributes:
        settings: instead of :func:`rag.settings.get_settings`.
        embeddings: query embedding model (its ``model_id`` must match the index manifest).
        chat_model: answering model.
        condense_model: follow-up rewriting model (default: ``chat_model``).
        history: chat history store.
        s3_client: S3 client for an ``s3://`` index URI.
        bedrock_client: ``bedrock-runtime`` client for embeddings and the model.
        dynamodb_resource: DynamoDB resource for the history, usage, quota and feedback tables.
        usage: usage store (``USAGE_URL`` / ``USAGE_TABLE``).
        quota_counters: quota counter store (``QUOTA_URL`` / ``QUOTA_TABLE``).
        feedback: feedback store (``FEEDBACK_URL`` / ``FEEDBACK_TABLE``).
        document_store: the tenant's documents (default from ``DOCUMENTS_URI`` / the bucket).
        ingestion_runner: starts ingestion runs (default from ``INGESTION_RUNNER``).
        clock: seconds since the epoch for quota windows (tests).
        freeze_heap: freeze the heap after each index load (:func:`api.state.freeze_long_lived_objects`);
            on in the served app, off for apps created by tests.
    """

    settings: Settings | None = None
    embeddings: Embeddings | None = None
    chat_model: BaseChatModel | None = None
    condense_model: BaseChatModel | None = None
    history: HistoryStore | None = None
    s3_client: Any = None
    bedrock_client: Any = None
    dynamodb_resource: Any = None
    usage: UsageStore | None = None
    quota_counters: CounterStore | None = None
    feedback: FeedbackStore | None = None
    clock: Any = None
    freeze_heap: bool = False
    # --- documents area: the tenant's document store and the ingestion runner (tests pass fakes) ---
    document_store: Any = None
    ingestion_runner: Any = None


def _needs_bedrock(settings: Settings, parts: Components) -> bool:
    return (parts.embeddings is None and settings.embeddings_provider == "bedrock") or (
        parts.chat_model is None and settings.llm_provider == "bedrock"
    )


async def build_state(parts: Components) -> RagState:
    """Create every long-lived object of one worker.

    Raises:
        SettingsError: invalid configuration (the process should stop).
    """
    settings = parts.settings or get_settings()
    from rag.aws import make_client
    from rag.index.embeddings import make_embeddings

    bedrock = parts.bedrock_client
    if bedrock is None and _needs_bedrock(settings, parts):
        bedrock = await asyncio.to_thread(
            # one connection per answer in flight (each runs in its own thread: embedding, then the model)
            lambda: make_client(settings.bedrock_service, settings, max_pool_connections=settings.max_inflight_answers)
        )
    embeddings = parts.embeddings or await asyncio.to_thread(make_embeddings, settings, bedrock_client=bedrock)
    chat_model = parts.chat_model or await asyncio.to_thread(make_chat_model, settings, bedrock_client=bedrock)
    condense_model = parts.condense_model
    if condense_model is None and settings.condense_model_id and settings.llm_provider == "bedrock":
        condense_model = await asyncio.to_thread(
            make_chat_model, settings, bedrock_client=bedrock, model_id=settings.condense_model_id
        )
    history = parts.history or await asyncio.to_thread(
        make_history_store, settings, dynamodb_resource=parts.dynamodb_resource
    )
    if isinstance(history, InMemoryHistoryStore) and parts.history is None:
        logger.warning("no HISTORY_URL or CHATHISTORY_TABLE: chat history is kept in memory only")
    ddb = parts.dynamodb_resource
    usage = parts.usage or await asyncio.to_thread(make_usage_store, settings, dynamodb_resource=ddb)
    counters = parts.quota_counters or await asyncio.to_thread(make_quota_store, settings, dynamodb_resource=ddb)
    feedback = parts.feedback or await asyncio.to_thread(make_feedback_store, settings, dynamodb_resource=ddb)
    limits = QuotaLimits.from_settings(settings)
    if limits.enabled and isinstance(counters, InMemoryCounterStore):
        logger.warning("no QUOTA_URL or QUOTA_TABLE: quotas are counted per worker process (in memory)")
    if isinstance(usage, InMemoryUsageStore) and parts.usage is None:
        logger.warning("no USAGE_URL or USAGE_TABLE: token usage is kept in memory only")
    if isinstance(feedback, InMemoryFeedbackStore) and parts.feedback is None:
        logger.warning("no FEEDBACK_URL or FEEDBACK_TABLE: feedback is kept in memory only")
    quota = QuotaService(counters, limits, **({"clock": parts.clock} if parts.clock else {}))
    s3 = parts.s3_client
    if s3 is None and settings.vector_store == "faiss" and settings.resolved_index_uri.startswith("s3://"):
        s3 = await asyncio.to_thread(make_client, "s3", settings)
    embedding_model = getattr(embeddings, "model_id", None) or settings.effective_embedding_model_id
    reader = await asyncio.to_thread(
        lambda: open_index_reader(
            settings, embedding_model=embedding_model, s3_client=s3, prebuild_bm25=settings.retriever_mode == "hybrid"
        )
    )
    holder = IndexHolder(
        tenant=settings.tenant_id,
        embedding_model=embedding_model,
        prebuild_bm25=settings.retriever_mode == "hybrid",
        freeze_heap=parts.freeze_heap,
        ef_search=settings.hnsw_ef_search,
        reader=reader,
    )
    retriever = LiveRetriever(
        index_provider=holder.get,
        embeddings=embeddings,
        mode=settings.retriever_mode,
        # k=MAX_K so an optional reranker keeps enough; each request copies it with its own k.
        retriever_factory=lambda index: make_retriever(settings, index, embeddings, k=MAX_MATCHING_DOCS),
    )
    holder.on_loaded = retriever.prime
    floor = floor_for(embedding_model, settings.relevance_floor)
    if floor is None:
        logger.warning(
            "no relevance floor for %s: only the model's own refusals mark ungrounded answers", embedding_model
        )
    chain = AnswerChain(
        retriever=retriever,
        llm=chat_model,
        condense_llm=condense_model,
        needs_condense=refers_back,
        relevance_floor=floor,
        condense_max_tokens=settings.condense_max_tokens,
    )
    return RagState(
        settings=settings,
        chain=chain,
        history=history,
        index=holder,
        model_id=model_id_of(settings),
        chat_model=chat_model,
        usage=usage,
        quota=quota,
        feedback=feedback,
        prices=PriceTable.from_settings(settings),
    )


def make_lifespan(parts: Components) -> Any:
    """The lifespan context for :func:`api.main.create_app`."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            state = await build_state(parts)
        except SettingsError as exc:
            logger.error("invalid configuration: %s", str(exc).replace("\n", "; "))
            raise
        set_log_context(tenant=state.settings.tenant_id)
        if state.settings.log_format != "json":
            from api.middleware import configure_logging

            configure_logging(logging.getLevelName(logging.getLogger().level), state.settings.log_format)
        setup_tracing(state.settings)
        # Each answer holds one thread of its own pool for its whole run (quota, history, embedding,
        # search, model stream, history write: blocking calls); one thread per admitted answer
        # (MAX_INFLIGHT_ANSWERS); the loop's default executor stays free for index loads.
        # One FAISS thread per search: requests already run in parallel, and OpenMP's team of threads
        # made a 10k-vector search 5x slower on 2 vCPUs (measured: 16 ms vs 3 ms). The OpenMP thread
        # count is per thread, and searches run only in the chain threads: each sets its own.
        executor = ThreadPoolExecutor(
            max_workers=state.settings.max_inflight_answers,
            thread_name_prefix="ragapi-chain",
            initializer=one_search_thread,
        )
        state.chain_executor = executor
        await state.index.refresh()  # first load; on failure the app starts unready and retries
        app.state.rag = state
        app.state.answers = AnswerService(state)
        status_root = state.index.store  # where ingestion status objects live: the FAISS index root
        settings = state.settings
        if status_root is None and (settings.index_uri or settings.contextual_data_bucket):  # pgvector
            from rag.aws import make_client

            status_root = open_store(
                settings.resolved_index_uri,
                s3_client=parts.s3_client
                or (make_client("s3", settings) if settings.resolved_index_uri.startswith("s3://") else None),
            )
        app.state.documents = await asyncio.to_thread(  # documents area (api/services/documents.py)
            build_document_services,
            state.settings,
            status_root,
            s3_client=parts.s3_client or getattr(status_root, "client", None),
            store=parts.document_store,
            runner=parts.ingestion_runner,
        )
        poller = asyncio.create_task(state.index.run(state.settings.index_poll_seconds), name="index-poller")
        logger.info(
            "ragapi started: tenant=%s index=%s model=%s ready=%s",
            state.settings.tenant_id,
            state.index.uri,
            state.model_id,
            state.index.get() is not None,
        )
        try:
            yield
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            executor.shutdown(wait=False, cancel_futures=True)
            close = getattr(getattr(state.index.reader, "backend", None), "close", None)
            if close is not None:  # the pgvector connection pool
                await asyncio.to_thread(close)

    return lifespan

"""The ingestion pipeline: list sources → load → chunk → embed (new sources only) → publish a version.

Incremental: a source whose fingerprint (ETag or sha256) equals the one in the published
version's manifest reuses that version's chunks and vectors; a source that is gone is left out of
the new version. A failure anywhere before the final ``LATEST`` write leaves the published index
as it was (a half-written version folder is never pointed to).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_text_splitters import RecursiveCharacterTextSplitter
from tqdm import tqdm

from ingest.embedder import embed_in_batches
from ingest.loaders import LoaderError, is_supported, load_file
from ingest.sources import LocalSource, S3Source, SourceFile
from rag.index.backend import FaissIndexWriter, IndexWriter, as_index_writer
from rag.index.store import (
    HNSW_EF_CONSTRUCTION,
    HNSW_M,
    BlobStore,
    SourceRecord,
    index_params_of,
    resolve_index_type,
)
from rag.tenant import validate_tenant_id

log = logging.getLogger(__name__)


class NothingIngestedError(RuntimeError):
    """No valid document was found: nothing is published and the job exits non-zero.

    Attributes:
        summary: the run's :class:`IngestSummary` (skipped files and their reasons), when known.
    """

    summary: IngestSummary | None = None


@dataclass
class IngestSummary:
    """What a run did. Counts are of the new version (reused plus newly embedded)."""

    tenant: str
    source_uri: str
    index_uri: str
    version: str | None = None
    sources: int = 0
    documents: int = 0
    chunks: int = 0
    characters: int = 0
    embedded_chunks: int = 0
    reused_chunks: int = 0
    removed_sources: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    dry_run: bool = False
    unchanged: bool = False

    @property
    def chunks_per_second(self) -> float:
        """Newly embedded chunks per second of the whole run."""
        return self.embedded_chunks / self.seconds if self.seconds > 0 else 0.0

    def render(self) -> str:
        """A human-readable multi-line summary."""
        lines = [
            f"tenant            {self.tenant}",
            f"source            {self.source_uri}",
            f"index             {self.index_uri}",
            f"version           {self.version or ('(dry run: nothing written)' if self.dry_run else '-')}"
            + (" (unchanged: nothing to publish)" if self.unchanged else ""),
            f"sources           {self.sources}",
            f"documents         {self.documents}",
            f"chunks            {self.chunks} ({self.embedded_chunks} embedded, {self.reused_chunks} reused)",
            f"characters        {self.characters}",
            f"seconds           {self.seconds:.2f}",
            f"chunks/s          {self.chunks_per_second:.1f}",
        ]
        if self.removed_sources:
            lines.append(f"removed sources   {len(self.removed_sources)}")
            lines += [f"  - {uri}" for uri in self.removed_sources]
        if self.skipped:
            lines.append(f"skipped files     {len(self.skipped)}")
            lines += [f"  - {uri}: {reason}" for uri, reason in self.skipped]
        return "\n".join(lines)


def make_splitter(chunk_size: int, chunk_overlap: int) -> RecursiveCharacterTextSplitter:
    """LangChain's recursive character splitter (sizes in characters), recording ``start_index``.

    See https://python.langchain.com/docs/how_to/recursive_text_splitter/.
    """
    return RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap, add_start_index=True)


def chunk_documents(documents: list[Document], splitter: RecursiveCharacterTextSplitter) -> list[Document]:
    """Split documents into chunks; each chunk keeps its document's metadata and gets a stable ``id``.

    The id is ``<12 hex of sha256(source)>-<ordinal within the source>`` so it is unique in the
    index and the same across runs for an unchanged source.
    """
    chunks = splitter.split_documents(documents)
    counters: dict[str, int] = {}
    for chunk in chunks:
        source = str(chunk.metadata["source"])
        ordinal = counters.get(source, 0)
        counters[source] = ordinal + 1
        chunk.metadata["id"] = f"{hashlib.sha256(source.encode()).hexdigest()[:12]}-{ordinal:06d}"
    return chunks


def _document_key(doc: Document) -> tuple[str, object, object]:
    return (str(doc.metadata.get("source")), doc.metadata.get("row"), doc.metadata.get("page"))


def run_ingestion(
    *,
    tenant: str,
    source: LocalSource | S3Source,
    store: BlobStore | IndexWriter,
    embeddings: Embeddings,
    embedding_model: str,
    chunk_size: int = 1500,
    chunk_overlap: int = 150,
    batch_size: int = 32,
    concurrency: int = 4,
    dry_run: bool = False,
    keep_versions: int = 5,
    progress: bool = True,
    index_type: str = "auto",
    hnsw_m: int = HNSW_M,
    hnsw_ef_construction: int = HNSW_EF_CONSTRUCTION,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> IngestSummary:
    """Ingest every supported file under ``source`` into a new index version for ``tenant``.

    Args:
        tenant: tenant id (validated before anything is read).
        source: where the documents are (:func:`ingest.sources.open_source`).
        store: the index root (:func:`rag.index.store.open_store`), or any
            :class:`rag.index.backend.IndexWriter` (e.g. the tenant's pgvector schema,
            :func:`rag.index.backend.open_index_writer`).
        embeddings: the embedding model; ``embedding_model`` is its id, recorded in the manifest.
        embedding_model: e.g. ``amazon.titan-embed-text-v2:0``.
        chunk_size: characters per chunk (a CSV row shorter than this stays one chunk).
        chunk_overlap: characters shared by neighbouring chunks.
        batch_size: texts per embedding task.
        concurrency: embedding tasks in flight.
        dry_run: load and chunk only; embed nothing, write nothing.
        keep_versions: complete versions kept after publishing (older ones are deleted; the
            published one is always kept).
        progress: show a tqdm progress bar on stderr.
        index_type: ``"flat"`` (exact), ``"hnsw"`` (approximate, for large tenants) or ``"auto"``
            (HNSW from :data:`rag.index.store.HNSW_AUTO_MIN_CHUNKS` chunks on); see
            :func:`rag.index.store.build_faiss_index`.
        hnsw_m: HNSW graph degree.
        hnsw_ef_construction: HNSW build-time candidate list.
        on_progress: called with ``(phase, done, total)`` as the run advances: ``"loading"`` per
            source file, ``"embedding"`` per batch of chunks, ``"publishing"`` once (the status object).

    Returns:
        The run's :class:`IngestSummary`.

    Raises:
        NothingIngestedError: no supported, parsable file with text (nothing is published).
        botocore.exceptions.ClientError: S3 or Bedrock failed after retries (nothing is published).
    """
    validate_tenant_id(tenant)
    resolve_index_type(index_type, 0)  # an unknown type fails here, before any paid embedding call
    started = time.perf_counter()
    writer = as_index_writer(store)
    summary = IngestSummary(tenant=tenant, source_uri=source.uri, index_uri=writer.uri, dry_run=dry_run)
    previous = writer.previous(tenant, embedding_model)
    chunking = {"chunk_size": chunk_size, "chunk_overlap": chunk_overlap}
    if previous and previous.manifest.chunking != chunking:
        log.info("chunking changed (%s -> %s): every source is chunked and embedded again",
                 previous.manifest.chunking, chunking)  # fmt: skip
        previous = None
    previous_sources = {s.uri: s for s in previous.manifest.sources} if previous else {}
    splitter = make_splitter(chunk_size, chunk_overlap)

    files: list[SourceFile] = []
    for item in source.list():
        if is_supported(item.uri):
            files.append(item)
        else:
            summary.skipped.append((item.uri, "unsupported file type"))

    kept_chunks: list[Document] = []  # reused chunks, in order
    kept_positions: list[int] = []  # their positions in the previous index
    new_chunks: list[Document] = []
    records: list[SourceRecord] = []
    previous_positions: dict[str, list[int]] = {}
    if previous:
        for position, doc in enumerate(previous.documents):
            previous_positions.setdefault(str(doc.metadata.get("source")), []).append(position)

    report = on_progress or (lambda phase, done, total: None)
    for number, item in enumerate(files):
        report("loading", number, len(files))
        old = previous_sources.get(item.uri)
        if old and old.etag_or_sha256 == item.fingerprint and previous_positions.get(item.uri):
            positions = previous_positions[item.uri]
            kept_positions += positions
            kept_chunks += [previous.documents[p] for p in positions]
            records.append(SourceRecord(uri=item.uri, etag_or_sha256=item.fingerprint, chunks=len(positions)))
            continue
        try:
            with source.fetch(item) as path:
                documents = load_file(path, item.uri)
        except LoaderError as exc:
            summary.skipped.append((item.uri, str(exc).removeprefix(f"{item.uri}: ")))
            continue
        chunks = chunk_documents(documents, splitter)
        new_chunks += chunks
        records.append(SourceRecord(uri=item.uri, etag_or_sha256=item.fingerprint, chunks=len(chunks)))

    current = {r.uri for r in records}
    summary.removed_sources = sorted(uri for uri in previous_sources if uri not in current)
    all_chunks = kept_chunks + new_chunks
    summary.sources = len(records)
    summary.documents = len({_document_key(c) for c in all_chunks})
    summary.chunks = len(all_chunks)
    summary.characters = sum(len(c.page_content) for c in all_chunks)
    summary.reused_chunks = len(kept_chunks)
    if not all_chunks:
        summary.seconds = time.perf_counter() - started
        error = NothingIngestedError(f"no valid document under {source.uri}\n{summary.render()}")
        error.summary = summary
        raise error
    if dry_run:
        summary.seconds = time.perf_counter() - started
        return summary
    wanted_type = resolve_index_type(index_type, len(all_chunks))
    same_index = previous is not None and (previous.manifest.index_type, previous.manifest.index_params) == (
        wanted_type,
        index_params_of(wanted_type, hnsw_m, hnsw_ef_construction),
    )
    if previous and not new_chunks and not summary.removed_sources and same_index:
        summary.version = previous.version  # nothing changed: keep serving the published version
        summary.unchanged = True
        summary.seconds = time.perf_counter() - started
        return summary

    texts = [c.page_content for c in new_chunks]
    embedded = [0]
    report("embedding", 0, len(texts))

    def batch_done(count: int) -> None:
        embedded[0] += count
        report("embedding", embedded[0], len(texts))

    with tqdm(total=len(texts), unit="chunk", desc=f"embedding {tenant}", disable=not progress) as bar:
        new_vectors = embed_in_batches(
            embeddings,
            texts,
            batch_size=batch_size,
            concurrency=concurrency,
            on_batch_done=lambda count: (bar.update(count), batch_done(count)),
        )
    report("publishing", 0, 1)
    summary.embedded_chunks = len(new_chunks)
    summary.version = writer.publish(
        tenant=tenant,
        embedding_model=embedding_model,
        previous=previous,
        kept_positions=kept_positions,
        new_vectors=np.asarray(new_vectors, dtype=np.float32)
        if new_chunks
        else np.zeros((0, previous.manifest.dim if previous else 0), dtype=np.float32),
        documents=all_chunks,
        sources=records,
        chunking=chunking,
        index_type=index_type,
        hnsw_m=hnsw_m,
        hnsw_ef_construction=hnsw_ef_construction,
    )
    writer.prune(keep_versions)
    summary.seconds = time.perf_counter() - started
    return summary


def _prune_versions(store: BlobStore, keep: int) -> None:
    """Delete all but the ``keep`` newest FAISS versions; never the published one. Failures only log."""
    FaissIndexWriter(store).prune(keep)

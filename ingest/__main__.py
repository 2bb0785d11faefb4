"""``python -m ingest``: turn a tenant's documents into a new version of its index (FAISS files, or
the tenant's PostgreSQL schema with ``VECTOR_STORE=pgvector``).

Usage::

    python -m ingest --tenant tenanta --source ../shared/data/tenanta --index-uri .demo/tenanta/index
    python -m ingest --tenant tenanta            # s3://$CONTEXTUAL_DATA_BUCKET/documents/ → .../faiss_index/

Exit codes: 0 published (or dry run ok); 1 nothing valid ingested or a failure (nothing published);
2 bad arguments or configuration.
"""

from __future__ import annotations

import argparse
import logging
import sys

from botocore.exceptions import BotoCoreError, ClientError

from ingest.pipeline import NothingIngestedError, run_ingestion
from ingest.sources import open_source
from ingest.status import StatusReporter
from rag.index.backend import FaissIndexWriter, IndexWriter, VectorStoreUnavailableError, open_index_writer
from rag.index.store import open_store
from rag.settings import SettingsError, load_settings
from rag.tenant import InvalidTenantIdError, validate_tenant_id

log = logging.getLogger("ingest")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (flags fall back to ``TENANT_ID``, ``INDEX_URI``/``CONTEXTUAL_DATA_BUCKET``)."""
    parser = argparse.ArgumentParser(prog="python -m ingest", description=__doc__.split("\n")[0])
    parser.add_argument("--tenant", help="tenant id (default: $TENANT_ID)")
    parser.add_argument(
        "--source", help="s3://bucket/prefix/ or a directory (default: s3://$CONTEXTUAL_DATA_BUCKET/documents/)"
    )
    parser.add_argument(
        "--index-uri",
        help="s3://bucket/prefix/ or a directory (default: $INDEX_URI or s3://$CONTEXTUAL_DATA_BUCKET/faiss_index/)",
    )
    parser.add_argument("--dry-run", action="store_true", help="load and chunk only; embed and write nothing")
    parser.add_argument("--batch-size", type=int, help="texts per embedding task (default: $EMBED_BATCH_SIZE or 32)")
    parser.add_argument("--concurrency", type=int, help="embedding tasks in flight (default: $EMBED_CONCURRENCY or 4)")
    parser.add_argument(
        "--keep-versions",
        type=int,
        help="complete index versions to keep (default: 5 FAISS versions; 1 with pgvector, whose old "
        "versions are dropped after the switch)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--trigger",
        choices=("web", "schedule", "cli", "job"),
        help="who started the run, recorded in the status object (default: $INGESTION_TRIGGER or job)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the job; returns the process exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = build_parser().parse_args(argv)
    overrides: dict[str, object] = {}
    try:
        if args.tenant is not None:
            overrides["tenant_id"] = validate_tenant_id(args.tenant)
        if args.index_uri:
            overrides["index_uri"] = args.index_uri
        if args.batch_size is not None:
            overrides["embed_batch_size"] = args.batch_size
        if args.concurrency is not None:
            overrides["embed_concurrency"] = args.concurrency
        settings = load_settings(**overrides)
        source_uri = args.source or settings.default_source_uri
        # With pgvector the index is in PostgreSQL; the status object still goes to the FAISS index
        # root when one is configured (INDEX_URI or CONTEXTUAL_DATA_BUCKET), else it is not written.
        has_root = settings.vector_store == "faiss" or bool(settings.index_uri or settings.contextual_data_bucket)
        index_uri = settings.resolved_index_uri if has_root else ""
    except (SettingsError, InvalidTenantIdError) as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        return 2

    from rag.aws import make_client
    from rag.index.embeddings import make_embeddings

    reporter: StatusReporter | None = None
    try:
        pgvector = settings.vector_store == "pgvector"
        needs_s3 = source_uri.startswith("s3://") or index_uri.startswith("s3://")
        s3 = make_client("s3", settings) if needs_s3 else None
        blob_root = open_store(index_uri, s3_client=s3) if index_uri else None
        store: IndexWriter = open_index_writer(settings) if pgvector else FaissIndexWriter(blob_root)  # type: ignore[arg-type]
        if not args.dry_run and blob_root is not None:  # the status object: running, then succeeded or failed
            reporter = StatusReporter(
                blob_root,
                tenant=settings.tenant_id,
                run_id=settings.ingestion_run_id,
                trigger=args.trigger or settings.ingestion_trigger,
            )
            reporter.started()
        source = open_source(source_uri, s3_client=s3)
        index_uri = store.uri
        embeddings = make_embeddings(settings)
        concurrency = settings.embed_concurrency if settings.embeddings_provider == "bedrock" else 1
        log.info(
            "tenant=%s embeddings=%s model=%s source=%s index=%s",
            settings.tenant_id, settings.embeddings_provider, embeddings.model_id, source_uri, index_uri,
        )  # fmt: skip
        summary = run_ingestion(
            tenant=settings.tenant_id,
            source=source,
            store=store,
            embeddings=embeddings,
            embedding_model=embeddings.model_id,
            chunk_size=settings.chunk_size,
            chunk_overlap=settings.chunk_overlap,
            batch_size=settings.embed_batch_size,
            concurrency=args.concurrency or concurrency,
            dry_run=args.dry_run,
            keep_versions=args.keep_versions if args.keep_versions is not None else (1 if pgvector else 5),
            progress=not args.no_progress,
            index_type=settings.faiss_index_type,
            hnsw_m=settings.hnsw_m,
            hnsw_ef_construction=settings.hnsw_ef_construction,
            on_progress=reporter.progress if reporter else None,
        )
    except (ValueError, FileNotFoundError, SettingsError) as exc:
        if reporter:
            reporter.failed(str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except VectorStoreUnavailableError as exc:
        if reporter:
            reporter.failed(str(exc))
        print(f"vector database error, index unchanged: {exc}", file=sys.stderr)
        return 1
    except NothingIngestedError as exc:
        if reporter:
            reporter.failed(str(exc), exc.summary)
        print(f"nothing ingested, index unchanged: {exc}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError) as exc:
        if reporter:
            reporter.failed(f"AWS error: {exc}")
        print(f"AWS error, index unchanged: {exc}", file=sys.stderr)
        return 1
    except BaseException as exc:  # anything else (a bug, SIGTERM as SystemExit): say so, then re-raise
        if reporter:
            reporter.failed(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        close = getattr(locals().get("store"), "close", None)
        if close is not None:  # the pgvector connection pool
            close()
    if reporter:
        reporter.succeeded(summary)
    print(summary.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())

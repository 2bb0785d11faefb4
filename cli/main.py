"""``rag``: operate one tenant's knowledge from a shell, with the same settings as the pods.

Commands::

    rag ask    --tenant T [--api-url URL | --index-uri URI] "question"   an answer with its sources
    rag load   --tenant T [--source DIR|s3://...] [--index-uri URI]      ingestion (python -m ingest)
    rag status --tenant T [--index-uri URI] [--json]                    index version, counts, last ingestion
    rag reset  --tenant T [--index-uri URI] --yes                       delete every index version and LATEST

``--tenant`` falls back to ``TENANT_ID``, ``--index-uri`` to ``INDEX_URI`` /
``s3://$CONTEXTUAL_DATA_BUCKET/faiss_index/``; providers (``EMBEDDINGS_PROVIDER``, ``LLM_PROVIDER``, ...)
come from the environment exactly as for the RAG API and the ingestion job.

Exit codes: 0 done; 1 the work failed (no index, API error, nothing ingested); 2 bad arguments or
configuration (including ``reset`` without ``--yes``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from rag.settings import Settings, SettingsError, load_settings
from rag.tenant import InvalidTenantIdError, validate_tenant_id

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: The user (subject) part of session ids ``rag ask`` sends to an API (the CLI has no signed-in user).
CLI_USER = "rag-cli-operator"


class CliError(Exception):
    """A failure to report in one line, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``rag`` and its four commands."""
    parser = argparse.ArgumentParser(
        prog="rag", description="Operate a tenant's knowledge: ask, load, status, reset.",
        epilog="Exit codes: 0 done, 1 failed, 2 bad arguments or configuration.",
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sub: argparse.ArgumentParser, *, index: bool = True) -> None:
        sub.add_argument("--tenant", help="tenant id (default: $TENANT_ID)")
        if index:
            sub.add_argument("--index-uri", help="index root: s3://bucket/prefix/ or a directory (default: settings)")

    ask = commands.add_parser("ask", help="answer a question from the tenant's documents")
    common(ask)
    ask.add_argument("question", help="the question (quote it)")
    ask.add_argument("--api-url", help="ask this RAG API (e.g. http://127.0.0.1:8000) instead of the local index")
    ask.add_argument("--k", type=int, default=3, help="passages retrieved (1-20, default 3)")
    ask.add_argument("--json", action="store_true", help="print the answer and sources as JSON")
    ask.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the API (default 120)")

    load = commands.add_parser("load", help="ingest documents into a new index version")
    common(load)
    load.add_argument("--source", help="directory or s3://bucket/prefix/ (default: $DOCUMENTS_URI or the bucket)")
    load.add_argument("--dry-run", action="store_true", help="load and chunk only; write nothing")

    status = commands.add_parser("status", help="index version, counts and the last ingestion")
    common(status)
    status.add_argument("--json", action="store_true", help="print as JSON")

    reset = commands.add_parser("reset", help="delete every index version, LATEST and the ingestion status")
    common(reset)
    reset.add_argument("--yes", action="store_true", help="really delete (required)")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    try:
        if args.tenant is not None:
            overrides["tenant_id"] = validate_tenant_id(args.tenant)
        if getattr(args, "index_uri", None):
            overrides["index_uri"] = args.index_uri
        return load_settings(**overrides)
    except (SettingsError, InvalidTenantIdError) as exc:
        raise CliError(f"configuration error: {exc}", EXIT_USAGE) from None


def _store(settings: Settings) -> Any:
    from rag.index.store import open_store

    try:
        uri = settings.resolved_index_uri
        s3 = None
        if uri.startswith("s3://"):
            from rag.aws import make_client

            s3 = make_client("s3", settings)
        return open_store(uri, s3_client=s3)
    except (SettingsError, ValueError) as exc:
        raise CliError(f"configuration error: {exc}", EXIT_USAGE) from None


# --- ask ------------------------------------------------------------------------------------------


def _ask_api(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    from rag.contract import RAG_PATH, RagResponse
    from rag.tenant import SessionId

    body = {"q": args.question, "user_session_id": str(SessionId.new(settings.tenant_id, CLI_USER)),
            "max_matching_docs": args.k}  # fmt: skip
    try:
        response = httpx.post(args.api_url.rstrip("/") + RAG_PATH, json=body, timeout=args.timeout)
    except httpx.HTTPError as exc:
        raise CliError(f"the API at {args.api_url} cannot be reached ({type(exc).__name__})") from None
    if response.status_code != 200:
        try:
            error = response.json()
            detail = f"{error.get('error')}: {error.get('message')}"
        except ValueError:
            detail = response.text[:200]
        raise CliError(f"the API answered {response.status_code} ({detail})")
    answer = RagResponse.model_validate(response.json())
    return {"answer": answer.answer, "grounded": answer.grounded, "sources": [s.model_dump() for s in answer.sources]}


def _ask_local(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from rag.answer.chain import AnswerChain
    from rag.answer.models import GenerationParams, make_chat_model
    from rag.answer.retrieval import TenantIndex, make_retriever
    from rag.index.embeddings import make_embeddings
    from rag.index.store import IndexError_, load_index_version

    store = _store(settings)
    embeddings = make_embeddings(settings)
    try:
        version = load_index_version(store, tenant=settings.tenant_id, embedding_model=embeddings.model_id)
    except IndexError_ as exc:
        raise CliError(f"no usable index: {exc}") from None
    index = TenantIndex(version, ef_search=settings.hnsw_ef_search)
    chain = AnswerChain(retriever=make_retriever(settings, index, embeddings, k=args.k), llm=make_chat_model(settings))
    result = chain.run(args.question, k=args.k, generation=GenerationParams(temperature=0.1, max_tokens=512))
    sources = [
        {key: doc.metadata.get(key) for key in ("source", "row", "page", "title", "score") if key in doc.metadata}
        for doc in result.documents
    ]
    return {"answer": result.answer, "grounded": result.grounded, "sources": sources, "index_version": version.version}


def _cite(source: dict[str, Any]) -> str:
    where = [str(source.get("source") or "?")]
    if source.get("page") is not None:
        where.append(f"page {source['page']}")
    if source.get("row") is not None:
        where.append(f"row {source['row']}")
    return ", ".join(where)


def cmd_ask(args: argparse.Namespace) -> int:
    """``rag ask``."""
    if not 1 <= args.k <= 20:
        raise CliError("--k must be between 1 and 20", EXIT_USAGE)
    if args.api_url and args.index_uri:
        raise CliError("give --api-url or --index-uri, not both", EXIT_USAGE)
    settings = _settings(args)
    result = _ask_api(settings, args) if args.api_url else _ask_local(settings, args)
    if args.json:
        print(json.dumps(result, indent=1, default=str))
        return EXIT_OK
    print(result["answer"].strip())
    if result["sources"]:
        print("\nSources:")
        for number, source in enumerate(result["sources"], start=1):
            print(f"  [{number}] {_cite(source)}")
    return EXIT_OK


# --- load -----------------------------------------------------------------------------------------


def cmd_load(args: argparse.Namespace) -> int:
    """``rag load``: the ingestion job's own entry point, run in this process."""
    from ingest.__main__ import main as ingest_main

    argv = ["--no-progress", "--trigger", "cli"]
    for flag, value in (("--tenant", args.tenant), ("--source", args.source), ("--index-uri", args.index_uri)):
        if value:
            argv += [flag, value]
    if args.dry_run:
        argv.append("--dry-run")
    return ingest_main(argv)


# --- status ---------------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    """``rag status``: 0 with a published index, 1 without one (the last ingestion is shown either way)."""
    from rag.documents.status import StatusUnreadableError, read_status
    from rag.index.store import MANIFEST_FILE, IndexError_, IndexManifest, list_versions, read_latest_version_id

    settings = _settings(args)
    store = _store(settings)
    report: dict[str, Any] = {"tenant": settings.tenant_id, "index": store.uri}
    code = EXIT_OK
    try:
        version = read_latest_version_id(store)
        manifest = IndexManifest.from_json(store.read(f"v/{version}/{MANIFEST_FILE}"))
        report.update(
            version=version, created_at=manifest.created_at, embedding_model=manifest.embedding_model,
            chunks=manifest.count, sources=len(manifest.sources), index_type=manifest.index_type,
        )  # fmt: skip
    except (IndexError_, FileNotFoundError) as exc:
        report["version"] = None
        report["problem"] = str(exc)
        code = EXIT_FAILED
    report["versions_stored"] = len(list_versions(store))
    try:
        last = read_status(store)
        report["last_ingestion"] = last.model_dump(mode="json", exclude_none=True) if last else None
    except StatusUnreadableError as exc:
        report["last_ingestion"] = {"problem": str(exc)}
    if args.json:
        print(json.dumps(report, indent=1))
        return code
    for key in ("tenant", "index", "version", "created_at", "embedding_model", "index_type", "chunks", "sources",
                "versions_stored", "problem"):  # fmt: skip
        if report.get(key) is not None:
            print(f"{key:<16} {report[key]}")
    last = report.get("last_ingestion")
    if not last:
        print("last ingestion   none recorded")
    elif "problem" in last:
        print(f"last ingestion   unreadable: {last['problem']}")
    else:
        finished = last.get("finished_at") or last.get("updated_at")
        print(f"last ingestion   {last['state']} ({last['trigger']}, run {last['run_id']}, {finished})")
        for skipped in last.get("skipped", []):
            print(f"  skipped {skipped['source']}: {skipped['reason']}")
        for error in last.get("errors", []):
            print(f"  error   {error}")
    return code


# --- reset ----------------------------------------------------------------------------------------


def cmd_reset(args: argparse.Namespace) -> int:
    """``rag reset --yes``: ``LATEST`` first (readers stop at once), then every version and the status."""
    from rag.documents.status import STATUS_KEY
    from rag.index.store import LATEST, list_versions

    if not args.yes:
        raise CliError("refusing to delete the index without --yes", EXIT_USAGE)
    settings = _settings(args)
    store = _store(settings)
    versions = list_versions(store)
    store.delete([LATEST])
    for version in versions:
        store.delete(store.list(f"v/{version}/"))
    store.delete([STATUS_KEY])
    print(f"deleted {len(versions)} index versions and {LATEST} of tenant {settings.tenant_id} at {store.uri}")
    return EXIT_OK


COMMANDS = {"ask": cmd_ask, "load": cmd_load, "status": cmd_status, "reset": cmd_reset}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``rag``; returns the exit code."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) and usage errors (2)
        return int(exc.code or 0)
    try:
        return COMMANDS[args.command](args)
    except CliError as exc:
        print(f"rag {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except Exception as exc:  # S3, Bedrock, ...: one line, not a traceback
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError | BotoCoreError | OSError):
            print(f"rag {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        raise

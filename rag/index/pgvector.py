"""The tenant index in PostgreSQL with pgvector (``VECTOR_STORE=pgvector``; Aurora in production).

Layout, one schema per tenant (``tenant_<id>``, ``-`` as ``_``), owned by the tenant's login role
of the same name and by nobody else::

    versions(version PK, chunk_table, embedding_model, dim, count, manifest jsonb, created_at)
    current(id = true PK, version FK -> versions, switched_at)       one row: the LATEST pointer
    chunks_<version>(ordinal PK, id UNIQUE, source, text, metadata jsonb, embedding vector(dim),
                     tsv tsvector GENERATED from text)               one table per version
        HNSW index (embedding vector_ip_ops) when the version's index_type is "hnsw"
        GIN index (tsv)

A writer builds a version's table completely (COPY of the new chunks in binary, ``INSERT ...
SELECT`` of the unchanged sources' rows from the published table, then the indexes) and commits
it, then switches readers with one ``UPDATE`` of ``current`` and drops older tables. A reader
reads ``current`` and searches that table in one transaction: a half-written version is never
visible (it is not committed, or not pointed to), and a search never mixes versions (a table it
has touched cannot be dropped before its transaction ends; one dropped before it got there is
retried once with the new pointer).

One table per version rather than one shared ``chunks`` table: pgvector's HNSW scan filters rows
after the graph search (pgvector 0.6/0.7 have no iterative scans), so a ``WHERE version = ...``
next to other versions' rows would return fewer than ``k`` neighbours; a per-version table also
builds its HNSW graph once over the complete data (faster than row by row) and is removed with a
``DROP TABLE`` instead of a ``DELETE`` plus vacuum.

Vectors are L2-normalised, so inner product is cosine similarity, as in the FAISS index:
``embedding <#> q`` is the *negative* inner product (https://github.com/pgvector/pgvector#querying).
Keyword search is PostgreSQL full-text search (``to_tsvector('english', text)``; the query's
words ORed, ranked with ``ts_rank_cd``, https://www.postgresql.org/docs/16/textsearch-controls.html).

Connections: ``psycopg_pool`` with ``connect_timeout``, a server-side ``statement_timeout`` and
TCP keepalives, so a database that is down or slow turns into :class:`VectorStoreUnavailableError`
(HTTP 503 + ``Retry-After``) within seconds, never a hang. In production the password is an RDS
IAM auth token (``rds.generate_db_auth_token``, valid 15 minutes, made per new connection) over
TLS (``sslmode=require`` or stricter):
https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/UsingWithRDS.IAMDBAuth.Connecting.Python.html
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import psycopg
from langchain_core.documents import Document
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg_pool import ConnectionPool

from rag.index.backend import Candidates, SearchIndex, VectorStoreUnavailableError, published_or_none, unit_length
from rag.index.store import (
    HNSW_EF_CONSTRUCTION,
    HNSW_M,
    VERSION_RE,
    IndexIntegrityError,
    IndexManifest,
    IndexNotFoundError,
    IndexVersion,
    SourceRecord,
    index_params_of,
    new_version_id,
    resolve_index_type,
)
from rag.tenant import validate_tenant_id
from rag.text import content_words

if TYPE_CHECKING:
    from rag.settings import Settings

log = logging.getLogger(__name__)

SCHEMA_PREFIX = "tenant_"
CHUNK_TABLE_PREFIX = "chunks_"
#: pgvector's upper bound of ``hnsw.ef_search`` (https://github.com/pgvector/pgvector#query-options).
MAX_EF_SEARCH = 1000
#: Text search configuration of the ``tsv`` column and of queries (stemming, English stop words).
TS_CONFIG = "english"
#: ``ts_rank_cd`` normalisation (https://www.postgresql.org/docs/16/textsearch-controls.html#TEXTSEARCH-RANKING):
#: 1 divides the rank by 1 + log(chunk length). Measured on the dev sets (hybrid, MRR, tenanta /
#: tenantb): 0 (raw cover density, favours long chunks) 0.775 / 0.649; 1: 0.771 / 0.741; 2: 0.689 /
#: 0.694; 4: 0.761 / 0.701; 16: 0.769 / 0.738 (FAISS + BM25: 0.781 / 0.839).
RANK_NORMALIZATION = 1
#: ``lock_timeout`` while dropping an old version's table: readers in flight hold it for milliseconds.
DROP_LOCK_TIMEOUT_MS = 10_000
#: Statement timeout of the one-pass vocabulary read at load (seconds; a search's is ``PG_STATEMENT_TIMEOUT``).
VOCABULARY_TIMEOUT_SECONDS = 300
_IDENT_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def schema_for(tenant: str) -> str:
    """The tenant's schema (and login role) name: ``tenant_`` + the id with ``-`` as ``_``.

    Raises:
        InvalidTenantIdError: not a valid tenant id (:func:`rag.tenant.validate_tenant_id`).
    """
    name = SCHEMA_PREFIX + validate_tenant_id(tenant).replace("-", "_")
    if not _IDENT_RE.fullmatch(name):  # cannot happen for a valid id (3-32 chars of [a-z0-9-])
        raise ValueError(f"bad schema name {name!r}")
    return name


#: The login role has the schema's name (one role per tenant, owner of that schema only).
role_for = schema_for


def table_for(version: str) -> str:
    """The chunk table of ``version``: ``chunks_`` + the id lower-cased with ``-`` as ``_``.

    Raises:
        IndexIntegrityError: ``version`` is not a well-formed version id.
    """
    if not VERSION_RE.fullmatch(version):
        raise IndexIntegrityError(f"invalid version id {version[:40]!r}")
    return CHUNK_TABLE_PREFIX + version.lower().replace("-", "_")


def redact_url(url: str) -> str:
    """``url`` without its password, for logs and ``/readyz``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[1]}"))


@dataclass(frozen=True)
class PgVersion:
    """A published version as the API sees it (the FAISS ``IndexVersion`` has the same two fields).

    Attributes:
        version: the version id.
        manifest: its manifest (``files`` is empty: the data is in ``chunk_table``).
        chunk_table: the table holding its chunks.
    """

    version: str
    manifest: IndexManifest
    chunk_table: str


def _manifest_json(manifest: IndexManifest) -> str:
    body = json.loads(manifest.to_json())
    body["files"] = {}
    return json.dumps(body, sort_keys=True)


def _manifest_from(raw: dict[str, Any]) -> IndexManifest:
    try:
        return IndexManifest(
            tenant=str(raw["tenant"]),
            embedding_model=str(raw["embedding_model"]),
            dim=int(raw["dim"]),
            count=int(raw["count"]),
            created_at=str(raw["created_at"]),
            sources=[
                SourceRecord(uri=str(s["uri"]), etag_or_sha256=str(s["etag_or_sha256"]), chunks=int(s["chunks"]))
                for s in raw["sources"]
            ],
            files={},
            chunking={str(k): int(v) for k, v in raw["chunking"].items()} if raw.get("chunking") else None,
            index_type=str(raw.get("index_type", "flat")),
            index_params={str(k): int(v) for k, v in raw["index_params"].items()} if raw.get("index_params") else None,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IndexIntegrityError(f"versions.manifest is malformed: {type(exc).__name__}") from exc


def _unavailable(exc: BaseException) -> VectorStoreUnavailableError:
    detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return VectorStoreUnavailableError(f"vector database unavailable: {type(exc).__name__}: {detail}")


class PgVectorIndex:
    """One tenant's index in its PostgreSQL schema: reading, writing, switching and pruning versions.

    Args:
        tenant: the tenant id (validated; decides the schema).
        conninfo: libpq connection string or URL (without a password when ``password_factory`` is set).
        password_factory: returns the password for each new connection (an RDS IAM token).
        connect_timeout: seconds to open a connection, and to wait for a free pooled one.
        statement_timeout: seconds any statement may run (0: no limit, for ingestion's index builds).
        pool_max_size: connections kept by this process at most.
        maintenance_work_mem: memory for index builds (e.g. ``"1GB"``; None: the server's default).
            pgvector builds HNSW much faster when the graph fits in it.
        label: how the database is named in logs (a URL without its password).
        options: more server settings for every session (``-c name=value``, e.g.
            ``{"enable_seqscan": "off"}`` to make small tables use their HNSW index in tests).
    """

    def __init__(
        self,
        *,
        tenant: str,
        conninfo: str,
        password_factory: Callable[[], str] | None = None,
        connect_timeout: float = 3.0,
        statement_timeout: float = 5.0,
        pool_max_size: int = 10,
        maintenance_work_mem: str | None = None,
        label: str | None = None,
        options: dict[str, str] | None = None,
    ) -> None:
        self.tenant = validate_tenant_id(tenant)
        self.schema = schema_for(tenant)
        self.uri = f"{label or redact_url(conninfo)}#{self.schema}"
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self.maintenance_work_mem = maintenance_work_mem
        self.options = dict(options or {})
        for name, value in self.options.items():
            if not re.fullmatch(r"[a-z_][a-z0-9_.]*", name) or not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
                raise ValueError(f"bad server option {name}={value}")
        self._password_factory = password_factory
        self.pool = ConnectionPool(
            conninfo,
            kwargs=self._connect_kwargs,
            min_size=1,
            max_size=max(1, pool_max_size),
            open=False,
            timeout=connect_timeout,
            configure=self._configure,
            check=ConnectionPool.check_connection,
            reconnect_timeout=365 * 86_400.0,  # keep trying in the background while the database is away
            name=f"pgvector-{self.tenant}",
        )
        self._opened = False

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def from_settings(cls, settings: Settings, *, purpose: Literal["serve", "ingest"]) -> PgVectorIndex:
        """Build from ``PGVECTOR_URL`` (local) or ``PG_HOST``/``PG_*`` (Aurora with IAM auth).

        Args:
            settings: the validated settings.
            purpose: ``"serve"`` (the API: ``PG_STATEMENT_TIMEOUT_SECONDS``) or ``"ingest"`` (the
                job: no statement timeout, 1 GB for index builds).

        Raises:
            SettingsError: ``PG_HOST`` with IAM auth but no ``AWS_DEFAULT_REGION``.
        """
        ingest = purpose == "ingest"
        common: dict[str, Any] = {
            "tenant": settings.tenant_id,
            "connect_timeout": settings.pg_connect_timeout_seconds,
            "statement_timeout": 0.0 if ingest else settings.pg_statement_timeout_seconds,
            "pool_max_size": 2 if ingest else settings.pg_pool_max_size,
            "maintenance_work_mem": "1GB" if ingest else None,
        }
        if settings.pgvector_url:
            return cls(conninfo=settings.pgvector_url, **common)
        user = settings.pg_user or role_for(settings.tenant_id)
        params = {"host": settings.pg_host, "port": settings.pg_port, "dbname": settings.pg_database, "user": user}
        params["sslmode"] = settings.pg_sslmode
        if settings.pg_sslrootcert:
            params["sslrootcert"] = settings.pg_sslrootcert
        conninfo = psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})
        label = f"postgresql://{user}@{settings.pg_host}:{settings.pg_port}/{settings.pg_database}"
        factory = None
        if settings.pg_iam_auth:
            factory = rds_iam_token_factory(settings, host=str(settings.pg_host), port=settings.pg_port, user=user)
        return cls(conninfo=conninfo, password_factory=factory, label=label, **common)

    def _connect_kwargs(self) -> dict[str, Any]:
        options = f"-c statement_timeout={int(self.statement_timeout * 1000)}"
        options += "".join(f" -c {name}={value}" for name, value in self.options.items())
        kwargs: dict[str, Any] = {
            "connect_timeout": max(1, round(self.connect_timeout)),
            "options": options,
            "application_name": f"tenant-rag-{self.tenant}",
            # A peer that vanishes mid-query (no RST) is noticed in seconds, not after TCP's ~15 minutes.
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 2,
        }
        if self.statement_timeout > 0:
            kwargs["tcp_user_timeout"] = int((self.statement_timeout + self.connect_timeout) * 1000)
        if self._password_factory is not None:
            kwargs["password"] = self._password_factory()
        return kwargs

    @staticmethod
    def _configure(conn: psycopg.Connection) -> None:
        register_vector(conn)  # binary dumpers/loaders for vector (numpy arrays in, out)
        conn.commit()

    def open(self) -> None:
        """Open the pool (idempotent; connections are made in the background)."""
        if not self._opened:
            self.pool.open(wait=False)
            self._opened = True

    def close(self) -> None:
        """Close the pool and its connections."""
        if self._opened:
            self.pool.close()
            self._opened = False

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[psycopg.Connection]:
        """A pooled connection in a transaction (committed on exit, rolled back on error).

        Raises:
            VectorStoreUnavailableError: no connection within ``timeout`` (default ``connect_timeout``),
                the server went away, or a statement hit ``statement_timeout``.
        """
        self.open()
        try:
            with self.pool.connection(timeout=timeout) as conn:
                yield conn
        except psycopg.errors.QueryCanceled as exc:  # statement_timeout: a slow database
            raise _unavailable(exc) from exc
        except psycopg.OperationalError as exc:  # PoolTimeout, refused, reset, admin shutdown
            raise _unavailable(exc) from exc

    def _ident(self, name: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(name))

    # ---- the pointer and the versions ------------------------------------------------------

    def _current(self, conn: psycopg.Connection) -> PgVersion:
        try:
            row = conn.execute(
                sql.SQL(
                    "SELECT v.version, v.chunk_table, v.manifest FROM {} c JOIN {} v USING (version) WHERE c.id"
                ).format(self._ident("current"), self._ident("versions"))
            ).fetchone()
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName) as exc:
            raise IndexNotFoundError(f"no index published in {self.uri} (no versions table)") from exc
        if row is None:
            raise IndexNotFoundError(f"no index published in {self.uri} (the current pointer is empty)")
        version, chunk_table, manifest = row
        if chunk_table != table_for(version):
            raise IndexIntegrityError(f"version {version} points at an unexpected table {chunk_table[:70]!r}")
        return PgVersion(version=version, manifest=_manifest_from(manifest), chunk_table=chunk_table)

    def latest_version_id(self) -> str:
        """The published version id (the ``current`` pointer).

        Raises:
            IndexNotFoundError: nothing published.
            VectorStoreUnavailableError: the database is unreachable or slow.
        """
        with self.connection() as conn:
            return self._current(conn).version

    def current_version(self, *, embedding_model: str | None = None) -> PgVersion:
        """The published version with its manifest, checked against this tenant and ``embedding_model``.

        Raises:
            IndexNotFoundError: nothing published.
            IndexIntegrityError: the version is for another tenant or embedding model.
            VectorStoreUnavailableError: the database is unreachable or slow.
        """
        with self.connection() as conn:
            return self._checked(self._current(conn), embedding_model)

    def _checked(self, current: PgVersion, embedding_model: str | None) -> PgVersion:
        manifest = current.manifest
        if manifest.tenant != self.tenant:
            raise IndexIntegrityError(f"index version {current.version} belongs to tenant {manifest.tenant!r}")
        if embedding_model is not None and manifest.embedding_model != embedding_model:
            raise IndexIntegrityError(
                f"index version {current.version} was built with {manifest.embedding_model!r}, "
                f"but this process embeds with {embedding_model!r}: re-ingest or fix EMBEDDING_MODEL_ID"
            )
        return current

    def versions(self) -> list[str]:
        """Every committed version id, oldest first (published or not)."""
        with self.connection() as conn:
            try:
                rows = conn.execute(
                    sql.SQL("SELECT version FROM {} ORDER BY version").format(self._ident("versions"))
                ).fetchall()
            except psycopg.errors.UndefinedTable:
                return []
        return [r[0] for r in rows]

    def check(self) -> None:
        """Raise :class:`VectorStoreUnavailableError` unless a pooled connection answers now."""
        with self.connection() as conn:
            conn.execute("SELECT 1")

    # ---- search -----------------------------------------------------------------------------

    def vocabulary(self, version: PgVersion) -> frozenset[str]:
        """Every content word (:func:`rag.text.content_words`) of ``version``'s chunks.

        Runs once per version and pod when the API loads it, under a statement timeout of
        :data:`VOCABULARY_TIMEOUT_SECONDS` instead of the per-search one.

        The database splits the texts into distinct lower-cased ``\\W+`` tokens (one pass over the
        table, only distinct words cross the wire); each token is then filtered with the same
        :func:`~rag.text.content_words` as the FAISS path, so both backends judge alike.

        Raises:
            psycopg.errors.UndefinedTable: the version's table was dropped (a newer one is current).
            VectorStoreUnavailableError: the database is unreachable or did not answer in time.
        """
        rows = self._load_pass(
            version, "SELECT DISTINCT w FROM {}, regexp_split_to_table(lower(text), '\\W+') AS w WHERE w <> ''"
        )
        return frozenset(word for (token,) in rows for word in content_words(token))

    def centroid(self, version: PgVersion) -> np.ndarray | None:
        """The unit-length mean of ``version``'s chunk vectors (``dim`` float32s), None when it has none.

        pgvector's ``avg(vector)`` aggregate (https://github.com/pgvector/pgvector#aggregates) in one
        pass, under the same load-time statement timeout as :meth:`vocabulary`.

        Raises:
            psycopg.errors.UndefinedTable: the version's table was dropped (a newer one is current).
            VectorStoreUnavailableError: the database is unreachable or did not answer in time.
        """
        ((mean,),) = self._load_pass(version, "SELECT avg(embedding) FROM {}")
        if mean is None:
            return None
        # pgvector's adapter gives numpy arrays for columns, a ``pgvector.Vector`` for an aggregate's result
        return unit_length(np.asarray(mean.to_numpy() if hasattr(mean, "to_numpy") else mean))

    def _load_pass(self, version: PgVersion, template: str) -> list[tuple[Any, ...]]:
        """Rows of one load-time pass over ``version``'s table (``{}`` in ``template``), under
        :data:`VOCABULARY_TIMEOUT_SECONDS`: longer than a search may take (a background load, not a request)."""
        if version.chunk_table != table_for(version.version):
            raise IndexIntegrityError(f"version {version.version} points at an unexpected table")
        with self.connection() as conn, conn.transaction():
            conn.execute(
                sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(f"{VOCABULARY_TIMEOUT_SECONDS}s"))
            )
            return conn.execute(sql.SQL(template).format(self._ident(version.chunk_table))).fetchall()

    def search(
        self,
        query: str,
        vector: list[float] | np.ndarray,
        *,
        dense_k: int,
        keyword_k: int,
        ef_search: int = 128,
        embedding_model: str | None = None,
    ) -> Candidates:
        """Dense (HNSW or exact, inner product) and full-text candidates from the current version.

        Args:
            query: the question (keyword side: its words ORed, ``ts_rank_cd``).
            vector: the query embedding, ``dim`` floats of unit length.
            dense_k: nearest chunks to return (``LIMIT``).
            keyword_k: best full-text matches to return (0: none).
            ef_search: ``hnsw.ef_search`` for this transaction (raised to ``dense_k``, at most 1000).
            embedding_model: when given, the version must have been built with it.

        Returns:
            :class:`Candidates` whose positions are the chunks' ordinals in their version.

        Raises:
            IndexNotFoundError: nothing published.
            IndexIntegrityError: the published version is for another model or tenant.
            VectorStoreUnavailableError: the database is unreachable or did not answer in time.
        """
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        for attempt in (1, 2):
            try:
                with self.connection() as conn:
                    return self._search(conn, query, q, dense_k, keyword_k, ef_search, embedding_model)
            except psycopg.errors.UndefinedTable:
                # The version read from ``current`` was dropped before this transaction touched its
                # table: the pointer has moved on, so a second read finds the new version.
                if attempt == 2:
                    raise
                log.info("index version switched during a search; searching the new one")
        raise AssertionError("unreachable")

    def _search(
        self,
        conn: psycopg.Connection,
        query: str,
        q: np.ndarray,
        dense_k: int,
        keyword_k: int,
        ef_search: int,
        embedding_model: str | None,
    ) -> Candidates:
        # One round trip: the pointer, the columns the search checks (not the manifest: its source
        # list grows with the tenant) and hnsw.ef_search for this transaction.
        try:
            row = conn.execute(
                sql.SQL(
                    "SELECT v.version, v.chunk_table, v.embedding_model, v.dim, set_config('hnsw.ef_search', %s, true) "
                    "FROM {} c JOIN {} v USING (version) WHERE c.id"
                ).format(self._ident("current"), self._ident("versions")),
                (str(min(MAX_EF_SEARCH, max(ef_search, dense_k))),),
            ).fetchone()
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName) as exc:
            raise IndexNotFoundError(f"no index published in {self.uri} (no versions table)") from exc
        if row is None:
            raise IndexNotFoundError(f"no index published in {self.uri} (the current pointer is empty)")
        version, chunk_table, model, dim, _ = row
        if chunk_table != table_for(version):
            raise IndexIntegrityError(f"version {version} points at an unexpected table {chunk_table[:70]!r}")
        if embedding_model is not None and model != embedding_model:
            raise IndexIntegrityError(
                f"index version {version} was built with {model!r}, but this process embeds with "
                f"{embedding_model!r}: re-ingest or fix EMBEDDING_MODEL_ID"
            )
        if q.shape[0] != dim:
            raise ValueError(f"query vector has {q.shape[0]} dimensions, the index {dim}")
        table = self._ident(chunk_table)
        documents: dict[int, Document] = {}
        cosines: dict[int, float] = {}
        dense: list[tuple[int, float]] = []
        keyword: list[tuple[int, float]] = []
        if dense_k > 0:
            rows = conn.execute(
                sql.SQL(
                    "SELECT ordinal, id, text, metadata, (embedding <#> %(q)s) * -1 FROM {} "
                    "ORDER BY embedding <#> %(q)s LIMIT %(k)s"
                ).format(table),
                {"q": q, "k": dense_k},
                binary=True,
            ).fetchall()
            for ordinal, chunk_id, text, metadata, score in rows:
                documents[ordinal] = _document(chunk_id, text, metadata)
                cosines[ordinal] = float(score)
                dense.append((ordinal, float(score)))
        if keyword_k > 0 and query.strip():
            rows = conn.execute(
                sql.SQL(
                    "WITH q AS (SELECT replace(plainto_tsquery({cfg}, %(text)s)::text, ' & ', ' | ')::tsquery"
                    " AS query) "
                    "SELECT c.ordinal, c.id, c.text, c.metadata, (c.embedding <#> %(q)s) * -1, "
                    "ts_rank_cd(c.tsv, q.query, {norm}) AS rank FROM {table} c, q WHERE c.tsv @@ q.query "
                    "ORDER BY rank DESC, c.ordinal LIMIT %(k)s"
                ).format(cfg=sql.Literal(TS_CONFIG), table=table, norm=sql.Literal(RANK_NORMALIZATION)),
                {"text": query, "q": q, "k": keyword_k},
                binary=True,
            ).fetchall()
            for ordinal, chunk_id, text, metadata, cosine, rank in rows:
                documents.setdefault(ordinal, _document(chunk_id, text, metadata))
                cosines.setdefault(ordinal, float(cosine))
                keyword.append((ordinal, float(rank)))
        return Candidates(
            dense=dense, keyword=keyword, documents=documents, cosine=cosines.__getitem__, version=version
        )

    # ---- ingestion --------------------------------------------------------------------------

    def ensure_tables(self, conn: psycopg.Connection) -> None:
        """Create ``versions`` and ``current`` in the tenant's schema when missing (the schema itself
        is made by onboarding, :func:`provision_sql`)."""
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {versions} ("
                " version text PRIMARY KEY,"
                " chunk_table text NOT NULL UNIQUE,"
                " embedding_model text NOT NULL,"
                " dim integer NOT NULL CHECK (dim > 0),"
                " count integer NOT NULL CHECK (count >= 0),"
                " manifest jsonb NOT NULL,"
                " created_at timestamptz NOT NULL DEFAULT now())"
            ).format(versions=self._ident("versions"))
        )
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {current} ("
                " id boolean PRIMARY KEY DEFAULT true CHECK (id),"
                " version text NOT NULL REFERENCES {versions} (version),"
                " switched_at timestamptz NOT NULL DEFAULT now())"
            ).format(current=self._ident("current"), versions=self._ident("versions"))
        )

    def previous(self, tenant: str, embedding_model: str) -> IndexVersion | None:
        """The published version for incremental ingestion (see :class:`rag.index.backend.IndexWriter`).

        Its ``documents`` are the chunks in ordinal order (positions = ordinals); ``index`` is None:
        reused vectors never leave the database (:meth:`publish` copies them with ``INSERT ... SELECT``).
        """
        if validate_tenant_id(tenant) != self.tenant:
            raise ValueError(f"this index serves tenant {self.tenant!r}, not {tenant!r}")

        def load() -> tuple[PgVersion, list[Any]]:
            with self.connection() as conn:
                current = self._checked(self._current(conn), embedding_model)
                rows = conn.execute(
                    sql.SQL("SELECT ordinal, id, text, metadata FROM {} ORDER BY ordinal").format(
                        self._ident(current.chunk_table)
                    )
                ).fetchall()
            return current, rows

        published = published_or_none(load)
        if published is None:
            return None
        current, rows = published
        if [r[0] for r in rows] != list(range(len(rows))) or len(rows) != current.manifest.count:
            log.warning("published version %s has gaps in its ordinals: embedding everything again", current.version)
            return None
        documents = [_document(chunk_id, text, metadata) for _, chunk_id, text, metadata in rows]
        return IndexVersion(version=current.version, manifest=current.manifest, index=None, documents=documents)

    def publish(
        self,
        *,
        tenant: str,
        embedding_model: str,
        previous: IndexVersion | None,
        kept_positions: list[int],
        new_vectors: np.ndarray,
        documents: list[Document],
        sources: list[SourceRecord],
        chunking: dict[str, int],
        index_type: str,
        hnsw_m: int = HNSW_M,
        hnsw_ef_construction: int = HNSW_EF_CONSTRUCTION,
        switch: bool = True,
    ) -> str:
        """Write a complete version table, commit it, then point ``current`` at it (one ``UPDATE``).

        ``documents[:len(kept_positions)]`` are the reused chunks (their rows are copied from
        ``previous``'s table with ``INSERT ... SELECT``, vectors included); the rest are new and
        arrive with ``new_vectors`` (``(n_new, dim)``, normalised here) through binary ``COPY``.
        ``index_type`` ``"hnsw"`` (or ``"auto"`` from 20,000 chunks) builds an HNSW index with
        ``vector_ip_ops``; ``"flat"`` leaves dense search an exact scan.

        Returns:
            The new version id.

        Raises:
            ValueError: inconsistent shapes or ids, or another tenant.
            VectorStoreUnavailableError: the database failed (nothing is switched).
        """
        from rag.index.embeddings import l2_normalize

        if validate_tenant_id(tenant) != self.tenant:
            raise ValueError(f"this index serves tenant {self.tenant!r}, not {tenant!r}")
        kept = len(kept_positions)
        fresh = documents[kept:]
        if len(new_vectors) != len(fresh):
            raise ValueError(f"{len(new_vectors)} new vectors but {len(fresh)} new documents")
        ids = [str(d.metadata.get("id", "")) for d in documents]
        if any(not i for i in ids) or len(set(ids)) != len(ids):
            raise ValueError("every document needs a unique metadata['id']")
        if kept and previous is None:
            raise ValueError("kept_positions without a previous version")
        dim = int(new_vectors.shape[1]) if len(fresh) else int(previous.manifest.dim)  # type: ignore[union-attr]
        if previous is not None and kept and previous.manifest.dim != dim:
            raise ValueError(f"new vectors have {dim} dimensions, the reused ones {previous.manifest.dim}")
        matrix = l2_normalize(new_vectors) if len(fresh) else np.zeros((0, dim), dtype=np.float32)
        resolved = resolve_index_type(index_type, len(documents))
        version = new_version_id()
        chunk_table = table_for(version)
        manifest = IndexManifest(
            tenant=self.tenant,
            embedding_model=embedding_model,
            dim=dim,
            count=len(documents),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            sources=sorted(sources, key=lambda s: s.uri),
            files={},
            chunking=chunking,
            index_type=resolved,
            index_params=index_params_of(resolved, hnsw_m, hnsw_ef_construction),
        )
        table = self._ident(chunk_table)
        with self.connection() as conn:
            self.ensure_tables(conn)
            if self.maintenance_work_mem:
                conn.execute("SELECT set_config('maintenance_work_mem', %s, true)", (self.maintenance_work_mem,))
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {table} ("
                    " ordinal integer PRIMARY KEY,"
                    " id text NOT NULL UNIQUE,"
                    " source text NOT NULL,"
                    " text text NOT NULL,"
                    " metadata jsonb NOT NULL,"
                    " embedding vector({dim}) NOT NULL,"
                    " tsv tsvector GENERATED ALWAYS AS (to_tsvector({cfg}, text)) STORED)"
                ).format(table=table, dim=sql.Literal(dim), cfg=sql.Literal(TS_CONFIG))
            )
            if kept:
                old_table = self._ident(table_for(previous.version))  # type: ignore[union-attr]
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {new} (ordinal, id, source, text, metadata, embedding) "
                        "SELECT m.new_ordinal, o.id, o.source, o.text, o.metadata, o.embedding FROM {old} o "
                        "JOIN unnest(%s::integer[], %s::integer[]) AS m(old_ordinal, new_ordinal) "
                        "ON o.ordinal = m.old_ordinal"
                    ).format(new=table, old=old_table),
                    (kept_positions, list(range(kept))),
                )
            with conn.cursor() as cur:
                copy_sql = sql.SQL(
                    "COPY {} (ordinal, id, source, text, metadata, embedding) FROM STDIN WITH (FORMAT BINARY)"
                ).format(table)
                with cur.copy(copy_sql) as copy:
                    copy.set_types(["int4", "text", "text", "text", "jsonb", "vector"])
                    for offset, (doc, embedding) in enumerate(zip(fresh, matrix, strict=True)):
                        metadata = {k: v for k, v in doc.metadata.items() if k != "id"}
                        copy.write_row(
                            [
                                kept + offset,
                                str(doc.metadata["id"]),
                                str(doc.metadata.get("source", "")),
                                doc.page_content,
                                json.dumps(metadata, ensure_ascii=False),
                                embedding,
                            ]
                        )
            loaded = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()[0]
            if loaded != len(documents):
                raise IndexIntegrityError(f"version {version} holds {loaded} rows, expected {len(documents)}")
            if resolved == "hnsw":
                conn.execute(
                    sql.SQL(
                        "CREATE INDEX {name} ON {table} USING hnsw (embedding vector_ip_ops) "
                        "WITH (m = {m}, ef_construction = {ef})"
                    ).format(
                        name=sql.Identifier(f"{chunk_table}_hnsw"),
                        table=table,
                        m=sql.Literal(hnsw_m),
                        ef=sql.Literal(hnsw_ef_construction),
                    )
                )
            conn.execute(
                sql.SQL("CREATE INDEX {name} ON {table} USING gin (tsv)").format(
                    name=sql.Identifier(f"{chunk_table}_tsv"), table=table
                )
            )
            conn.execute(sql.SQL("ANALYZE {}").format(table))
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (version, chunk_table, embedding_model, dim, count, manifest) "
                    "VALUES (%s, %s, %s, %s, %s, %s::jsonb)"
                ).format(self._ident("versions")),
                (version, chunk_table, embedding_model, dim, len(documents), _manifest_json(manifest)),
            )
        if switch:
            self.switch(version)
        return version

    def switch(self, version: str) -> None:
        """Point readers at ``version`` (committed before): one ``INSERT ... ON CONFLICT UPDATE``.

        Raises:
            IndexNotFoundError: ``version`` is not a committed version of this tenant.
        """
        table_for(version)
        with self.connection() as conn:
            try:
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {} (id, version) VALUES (true, %s) "
                        "ON CONFLICT (id) DO UPDATE SET version = excluded.version, switched_at = now()"
                    ).format(self._ident("current")),
                    (version,),
                )
            except psycopg.errors.ForeignKeyViolation as exc:
                raise IndexNotFoundError(f"version {version} does not exist in {self.uri}") from exc

    def prune(self, keep: int = 1) -> None:
        """Drop all but the ``keep`` newest versions (at least the published one stays).

        Each old table is dropped in its own transaction with a ``lock_timeout``: a search still
        reading it finishes first. Failures only log (the next run tries again).
        """
        try:
            published = self.latest_version_id()
            old = [v for v in self.versions()[: -max(keep, 1)] if v != published]
            for version in old:
                with self.connection() as conn:
                    conn.execute("SELECT set_config('lock_timeout', %s, true)", (str(DROP_LOCK_TIMEOUT_MS),))
                    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._ident(table_for(version))))
                    conn.execute(
                        sql.SQL("DELETE FROM {} WHERE version = %s").format(self._ident("versions")), (version,)
                    )
                log.info("dropped index version %s", version)
        except (IndexNotFoundError, IndexIntegrityError, VectorStoreUnavailableError, psycopg.Error) as exc:
            log.warning("could not prune old index versions: %s", exc)

    # ---- serving ------------------------------------------------------------------------------

    def reader(self, *, embedding_model: str, ef_search: int = 128) -> PgIndexReader:
        """The API side (:class:`rag.index.backend.IndexReader`) for ``embedding_model``."""
        return PgIndexReader(self, embedding_model=embedding_model, ef_search=ef_search)


def _document(chunk_id: str, text: str, metadata: dict[str, Any] | str) -> Document:
    meta = json.loads(metadata) if isinstance(metadata, str) else dict(metadata)
    return Document(page_content=text, metadata={**meta, "id": chunk_id}, id=chunk_id)


@dataclass
class PgTenantIndex(SearchIndex):
    """The retriever's view of a pgvector tenant index (:class:`rag.index.backend.SearchIndex`).

    Every :meth:`search` reads the ``current`` pointer in its own transaction, so readers switch
    versions at the writer's commit, in every pod at once; ``version`` is what the API's poller
    saw last (``/readyz``, metrics).

    Attributes:
        backend: the tenant's :class:`PgVectorIndex`.
        version: the version loaded by the index holder.
        embedding_model: the query embedding model (a version built with another is refused).
        ef_search: ``hnsw.ef_search`` per query.
    """

    backend: PgVectorIndex
    version: PgVersion
    embedding_model: str
    ef_search: int = 128

    _vocabulary: frozenset[str] | None = field(default=None, repr=False)

    def vocabulary(self) -> frozenset[str] | None:
        """See :meth:`rag.index.backend.SearchIndex.vocabulary`: :meth:`PgVectorIndex.vocabulary` of
        ``version``, read once (None when that version was dropped meanwhile: the next load reads it)."""
        if self._vocabulary is None:
            try:
                self._vocabulary = self.backend.vocabulary(self.version)
            except psycopg.errors.UndefinedTable:
                return None
        return self._vocabulary

    _centroid: np.ndarray | None = field(default=None, repr=False)

    def centroid(self) -> np.ndarray | None:
        """See :meth:`rag.index.backend.SearchIndex.centroid`: :meth:`PgVectorIndex.centroid` of
        ``version``, read once (None when that version was dropped meanwhile or is empty)."""
        if self._centroid is None:
            try:
                self._centroid = self.backend.centroid(self.version)
            except psycopg.errors.UndefinedTable:
                return None
        return self._centroid

    def search(self, query: str, vector: list[float] | np.ndarray, *, dense_k: int, keyword_k: int) -> Candidates:
        """See :meth:`PgVectorIndex.search`."""
        return self.backend.search(
            query, vector, dense_k=dense_k, keyword_k=keyword_k, ef_search=self.ef_search,
            embedding_model=self.embedding_model,
        )  # fmt: skip


class PgIndexReader:
    """:class:`rag.index.backend.IndexReader` over a tenant's schema.

    Args:
        backend: the tenant's :class:`PgVectorIndex`.
        embedding_model: the query embedding model id.
        ef_search: ``hnsw.ef_search`` per query.
    """

    def __init__(self, backend: PgVectorIndex, *, embedding_model: str, ef_search: int = 128) -> None:
        self.backend = backend
        self.uri = backend.uri
        self.embedding_model = embedding_model
        self.ef_search = ef_search

    def latest_version_id(self) -> str:
        """See :class:`rag.index.backend.IndexReader`."""
        return self.backend.latest_version_id()

    def load(self, version: str) -> PgTenantIndex:
        """See :class:`rag.index.backend.IndexReader`: reads the version's manifest (not its rows)."""
        current = self.backend.current_version(embedding_model=self.embedding_model)
        if current.version != version:  # switched again since the pointer was read: take the newer
            log.info("index version %s superseded by %s while loading", version, current.version)
        loaded = PgTenantIndex(self.backend, current, self.embedding_model, self.ef_search)
        loaded.vocabulary()  # the grounding check's word list, read here rather than on the first question
        loaded.centroid()  # and its corpus centroid
        return loaded

    def check(self) -> None:
        """See :class:`rag.index.backend.IndexReader`."""
        self.backend.check()


def rds_iam_token_factory(settings: Settings, *, host: str, port: int, user: str) -> Callable[[], str]:
    """A function returning a fresh RDS IAM auth token for ``user`` (signed locally with the pod's
    IRSA credentials; valid 15 minutes, used only to open a connection).

    Raises:
        SettingsError: no ``AWS_DEFAULT_REGION``.
    """
    from rag.aws import make_client

    client = make_client("rds", settings)

    def token() -> str:
        return client.generate_db_auth_token(
            DBHostname=host, Port=port, DBUsername=user, Region=settings.aws_default_region
        )

    return token


# ------------------------------------------------------------------------------------------------
# onboarding and offboarding (run by an administrator role, e.g. the cluster's master user)


def provision_sql(tenant: str, *, database: str, iam: bool, password: str | None = None) -> list[sql.Composed]:
    """Statements that create the tenant's login role and schema, idempotently.

    The role can connect to ``database``, owns its schema and nothing else; ``PUBLIC`` loses
    ``CONNECT`` on the database and ``CREATE`` on ``public``, so one tenant's role cannot read or
    create anything outside its own schema. With ``iam`` the role gets ``rds_iam`` (its password
    is then an IAM token:
    https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/UsingWithRDS.IAMDBAuth.DBAccounts.html).

    Args:
        tenant: tenant id (validated).
        database: the database name.
        iam: grant ``rds_iam`` (Aurora/RDS only).
        password: a password for local tests (never with ``iam``).

    Raises:
        ValueError: both ``iam`` and ``password``, or a bad database name.
    """
    if iam and password:
        raise ValueError("an IAM-authenticated role has no password")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", database):
        raise ValueError(f"bad database name {database!r}")
    role = sql.Identifier(role_for(tenant))
    schema = sql.Identifier(schema_for(tenant))
    db = sql.Identifier(database)
    create_role = sql.SQL(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {name}) THEN CREATE ROLE {role} LOGIN; "
        "END IF; END $$"
    ).format(name=sql.Literal(role_for(tenant)), role=role)
    statements = [
        sql.SQL("CREATE EXTENSION IF NOT EXISTS vector"),
        create_role,
        sql.SQL("ALTER ROLE {} NOSUPERUSER NOCREATEDB NOCREATEROLE CONNECTION LIMIT 200").format(role),
        # The administrator becomes a member, so it may create the role's schema and offboarding may
        # drop what the role owns (PostgreSQL 16 no longer makes a role's creator a member of it).
        sql.SQL("GRANT {} TO CURRENT_USER").format(role),
        sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db),
        sql.SQL("REVOKE CREATE ON SCHEMA public FROM PUBLIC"),
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, role),
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(schema, role),
        sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(schema),
        sql.SQL("ALTER ROLE {} SET search_path = {}, public").format(role, schema),
    ]
    if iam:
        statements.append(sql.SQL("GRANT rds_iam TO {}").format(role))
    if password:
        statements.append(sql.SQL("ALTER ROLE {} PASSWORD {}").format(role, sql.Literal(password)))
    return statements


def deprovision_sql(tenant: str, *, database: str) -> list[sql.Composed]:
    """Statements that remove the tenant's schema (all its versions) and its role, idempotently."""
    role_name = role_for(tenant)
    role = sql.Identifier(role_name)
    return [
        sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema_for(tenant))),
        sql.SQL(
            "DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = {name}) THEN "
            "EXECUTE format('DROP OWNED BY %I', {name}); EXECUTE format('REVOKE ALL ON DATABASE %I FROM %I', "
            "{db}, {name}); END IF; END $$"
        ).format(name=sql.Literal(role_name), db=sql.Literal(database)),
        sql.SQL("DROP ROLE IF EXISTS {}").format(role),
    ]


def run_statements(conn: psycopg.Connection, statements: list[sql.Composed]) -> None:
    """Execute ``statements`` in order on an administrator connection and commit."""
    for statement in statements:
        conn.execute(statement)
    conn.commit()


def main(argv: list[str] | None = None) -> int:
    """``python -m rag.index.pgvector {provision,deprovision} --tenant T --database DB [--iam]``:
    print the SQL for onboarding/offboarding (the deploy scripts pipe it into ``psql``)."""
    parser = argparse.ArgumentParser(prog="python -m rag.index.pgvector", description=main.__doc__)
    parser.add_argument("action", choices=("provision", "deprovision"))
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--database", default="rag")
    parser.add_argument("--iam", action="store_true", help="grant rds_iam (Aurora/RDS IAM authentication)")
    args = parser.parse_args(argv)
    try:
        if args.action == "provision":
            statements = provision_sql(args.tenant, database=args.database, iam=args.iam)
        else:
            statements = deprovision_sql(args.tenant, database=args.database)
    except ValueError as exc:  # InvalidTenantIdError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for statement in statements:
        print(statement.as_string(None) + ";")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The tenant index format and its stores (a local directory or an S3 prefix). No pickle.

Layout under an index root (``INDEX_URI``, default ``s3://$CONTEXTUAL_DATA_BUCKET/faiss_index/``)::

    LATEST                      text: the current version id
    v/<version>/index.faiss     faiss.write_index over L2-normalised vectors: an exact IndexFlatIP, or
                                an IndexHNSWFlat (inner product) when manifest.index_type is "hnsw"
    v/<version>/docstore.jsonl  one line per vector, in vector order: {"id", "text", "metadata"}
    v/<version>/manifest.json   {"format": 1, "tenant", "embedding_model", "dim", "count",
                                 "created_at", "sources": [...], "files": {name: sha256}}

A writer uploads the version folder first and replaces ``LATEST`` last (one PUT; S3 gives
read-after-write consistency for it, https://aws.amazon.com/s3/consistency/). A reader checks the
sha256 of every file, the tenant, the embedding model, the dimensions and the counts before it
serves anything. A pickled docstore (LangChain's ``FAISS.save_local``) would let anyone who can
write the bucket run code in the pod, hence JSON lines.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import faiss
import numpy as np
from langchain_core.documents import Document

from rag.tenant import validate_tenant_id

FORMAT_VERSION = 1
LATEST = "LATEST"
INDEX_FILE = "index.faiss"
DOCSTORE_FILE = "docstore.jsonl"
MANIFEST_FILE = "manifest.json"
VERSION_RE = re.compile(r"^\d{8}T\d{6}(\d{6})?Z-[0-9a-f]{8}$")
#: Upper bounds on what a reader accepts, so a hostile or broken object cannot exhaust memory.
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_INDEX_BYTES = 8 * 1024 * 1024 * 1024
MAX_METADATA_KEYS = 32


class IndexError_(RuntimeError):
    """Base class of index store errors."""


class IndexNotFoundError(IndexError_):
    """No ``LATEST`` (nothing was ever published) or the version folder is missing."""


class IndexIntegrityError(IndexError_):
    """A version is corrupt, incomplete, for another tenant or for another embedding model."""


class BlobStore(Protocol):
    """Minimal key/value object store; keys are ``/``-separated paths relative to the index root."""

    uri: str

    def read(self, key: str) -> bytes:
        """Return the object's bytes. Raises ``FileNotFoundError`` when absent."""

    def write(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing it atomically for readers."""

    def exists(self, key: str) -> bool:
        """True when ``key`` exists."""

    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (relative to the root)."""

    def delete(self, keys: Iterable[str]) -> None:
        """Delete ``keys``; missing keys are ignored."""


def _safe_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"unsafe object key {key!r}")
    return key


def write_file_atomically(path: Path, data: bytes, *, suffix: str = ".tmp") -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, never half of one.

    A hidden temporary file (``.<name>.<random><suffix>``) in the same directory is written,
    fsynced and moved over ``path`` with ``os.replace`` (atomic on POSIX,
    https://docs.python.org/3/library/os.html#os.replace); it is removed when anything fails.

    Args:
        path: the target file; its parent directories are created.
        data: the whole content.
        suffix: the temporary file's ending.

    Raises:
        OSError: the disk failed (``path`` is then unchanged).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def s3_prefix(prefix: str) -> str:
    """``prefix`` as an S3 key prefix: no leading ``/``, one trailing ``/`` ("" for the bucket root)."""
    return prefix.strip("/") + "/" if prefix.strip("/") else ""


def s3_checksum_sha256(data: bytes) -> str:
    """The ``ChecksumSHA256`` of a ``PutObject`` (base64 of the SHA-256 digest), which S3 verifies
    before it stores the object (https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html).
    """
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def s3_object_exists(client: Any, bucket: str, key: str) -> bool:
    """True when ``HeadObject`` finds ``key`` in ``bucket``; False on 404 / ``NoSuchKey`` / ``NotFound``.

    Raises:
        botocore.exceptions.ClientError: any other S3 error (access denied, throttling).
    """
    from botocore.exceptions import ClientError

    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


class LocalBlobStore:
    """A directory on disk. Writes go to a temporary file then ``os.replace`` (atomic on POSIX).

    Args:
        root: the index root directory (created on first write).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / _safe_key(key)

    def read(self, key: str) -> bytes:
        """See :class:`BlobStore`."""
        return self._path(key).read_bytes()

    def write(self, key: str, data: bytes) -> None:
        """See :class:`BlobStore`."""
        write_file_atomically(self._path(key), data)

    def exists(self, key: str) -> bool:
        """See :class:`BlobStore`."""
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        """See :class:`BlobStore`."""
        base = self.root / prefix if prefix else self.root
        if not base.exists():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file())

    def delete(self, keys: Iterable[str]) -> None:
        """See :class:`BlobStore`."""
        for key in keys:
            self._path(key).unlink(missing_ok=True)


class S3BlobStore:
    """An S3 prefix, through a boto3 S3 client.

    Args:
        client: a boto3 ``s3`` client (from :func:`rag.aws.make_client`).
        bucket: bucket name.
        prefix: key prefix of the index root, e.g. ``"faiss_index/"`` (a trailing ``/`` is added).
    """

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = s3_prefix(prefix)
        self.uri = f"s3://{bucket}/{self.prefix}"

    def read(self, key: str) -> bytes:
        """See :class:`BlobStore`."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + _safe_key(key))
        except self.client.exceptions.NoSuchKey as exc:
            raise FileNotFoundError(f"{self.uri}{key}") from exc
        return response["Body"].read()

    def write(self, key: str, data: bytes) -> None:
        """See :class:`BlobStore`. One PutObject: readers see the old or the new object, never half."""
        self.client.put_object(
            Bucket=self.bucket,
            Key=self.prefix + _safe_key(key),
            Body=data,
            ChecksumSHA256=s3_checksum_sha256(data),
        )

    def exists(self, key: str) -> bool:
        """See :class:`BlobStore`."""
        return s3_object_exists(self.client, self.bucket, self.prefix + _safe_key(key))

    def list(self, prefix: str) -> list[str]:
        """See :class:`BlobStore`."""
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            keys.extend(obj["Key"][len(self.prefix) :] for obj in page.get("Contents", []))
        return sorted(keys)

    def delete(self, keys: Iterable[str]) -> None:
        """See :class:`BlobStore`."""
        batch = [{"Key": self.prefix + _safe_key(k)} for k in keys]
        for start in range(0, len(batch), 1000):  # DeleteObjects takes at most 1000 keys
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch[start : start + 1000]})


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/prefix/`` into ``("bucket", "prefix/")``.

    Raises:
        ValueError: not an ``s3://`` URI or no bucket.
    """
    match = re.fullmatch(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(.*))?", uri)
    if not match:
        raise ValueError(f"not a valid s3:// URI: {uri!r}")
    return match.group(1), match.group(2) or ""


def open_store(uri: str, *, s3_client: Any = None) -> BlobStore:
    """Open the store behind ``uri``: ``s3://bucket/prefix/`` or a local directory path.

    Args:
        uri: index root.
        s3_client: required for ``s3://`` URIs (from :func:`rag.aws.make_client`).

    Raises:
        ValueError: malformed URI, or an ``s3://`` URI without a client.
    """
    if uri.startswith("s3://"):
        if s3_client is None:
            raise ValueError("an S3 client is required for s3:// index URIs")
        bucket, prefix = parse_s3_uri(uri)
        return S3BlobStore(s3_client, bucket, prefix)
    if "://" in uri:
        raise ValueError(f"unsupported index URI scheme: {uri!r} (use s3:// or a directory path)")
    return LocalBlobStore(uri)


# --------------------------------------------------------------------------------------------
# the format


@dataclass(frozen=True)
class SourceRecord:
    """One ingested source file: its URI, its ETag (S3) or sha256 (local), and its chunk count."""

    uri: str
    etag_or_sha256: str
    chunks: int


@dataclass(frozen=True)
class IndexManifest:
    """``manifest.json`` of one index version (see the module docstring)."""

    tenant: str
    embedding_model: str
    dim: int
    count: int
    created_at: str
    sources: list[SourceRecord]
    files: dict[str, str]
    format: int = FORMAT_VERSION
    #: How the chunks were cut (``{"chunk_size": int, "chunk_overlap": int}``, characters); an
    #: optional extension: a re-ingestion with other values embeds every source again.
    chunking: dict[str, int] | None = None
    #: The FAISS index in ``index.faiss``: ``"flat"`` (``IndexFlatIP``; also when the field is
    #: absent) or ``"hnsw"`` (``IndexHNSWFlat`` with inner product); an optional extension.
    index_type: str = "flat"
    #: HNSW build parameters (``{"m": int, "ef_construction": int}``) when ``index_type`` is ``"hnsw"``.
    index_params: dict[str, int] | None = None

    def to_json(self) -> bytes:
        """Serialise as UTF-8 JSON (sorted keys, so equal manifests are equal bytes)."""
        body = {
            "format": self.format,
            "tenant": self.tenant,
            "embedding_model": self.embedding_model,
            "dim": self.dim,
            "count": self.count,
            "created_at": self.created_at,
            "sources": [s.__dict__ for s in self.sources],
            "files": self.files,
        }
        if self.chunking is not None:
            body["chunking"] = self.chunking
        if self.index_type != "flat":
            body["index_type"] = self.index_type
        if self.index_params:
            body["index_params"] = self.index_params
        return json.dumps(body, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> IndexManifest:
        """Parse and type-check ``manifest.json``.

        Raises:
            IndexIntegrityError: not JSON, wrong types, or an unknown format number.
        """
        if len(data) > MAX_MANIFEST_BYTES:
            raise IndexIntegrityError("manifest.json is too large")
        try:
            raw = json.loads(data)
            if raw.get("format") != FORMAT_VERSION:
                raise IndexIntegrityError(f"unsupported index format {raw.get('format')!r}")
            sources = [
                SourceRecord(uri=str(s["uri"]), etag_or_sha256=str(s["etag_or_sha256"]), chunks=int(s["chunks"]))
                for s in raw["sources"]
            ]
            files = {str(k): str(v) for k, v in dict(raw["files"]).items()}
            manifest = cls(
                tenant=str(raw["tenant"]),
                embedding_model=str(raw["embedding_model"]),
                dim=int(raw["dim"]),
                count=int(raw["count"]),
                created_at=str(raw["created_at"]),
                sources=sources,
                files=files,
                chunking={str(k): int(v) for k, v in raw["chunking"].items()} if raw.get("chunking") else None,
                index_type=str(raw.get("index_type", "flat")),
                index_params={str(k): int(v) for k, v in raw["index_params"].items()}
                if raw.get("index_params")
                else None,
            )
        except IndexIntegrityError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError) as exc:
            raise IndexIntegrityError(f"manifest.json is malformed: {type(exc).__name__}") from exc
        if manifest.dim <= 0 or manifest.count < 0 or set(files) != {INDEX_FILE, DOCSTORE_FILE}:
            raise IndexIntegrityError("manifest.json has invalid dim, count or files")
        if manifest.index_type not in INDEX_TYPES:
            raise IndexIntegrityError(f"manifest.json has an unknown index_type {manifest.index_type[:20]!r}")
        return manifest


@dataclass
class IndexVersion:
    """One loaded, verified index version.

    Attributes:
        version: the version id (``YYYYMMDDTHHMMSSZ-xxxxxxxx``).
        manifest: its manifest.
        index: the FAISS ``IndexFlatIP`` or ``IndexHNSWFlat`` (``ntotal == manifest.count``,
            ``d == manifest.dim``, inner product).
        documents: one ``Document`` per vector, in vector order; ``metadata["id"]`` is the chunk id.
    """

    version: str
    manifest: IndexManifest
    index: faiss.Index
    documents: list[Document] = field(repr=False)

    def vectors(self) -> np.ndarray:
        """All stored vectors, shape ``(count, dim)`` float32 (for incremental re-ingestion)."""
        if self.index.ntotal == 0:
            return np.zeros((0, self.manifest.dim), dtype=np.float32)
        return self.index.reconstruct_n(0, self.index.ntotal)


def new_version_id(now: datetime | None = None) -> str:
    """A sortable, unique version id: UTC time to the microsecond plus 32 random bits,
    e.g. ``20261125T120000123456Z-1a2b3c4d`` (ids without microseconds are still accepted on read)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{secrets.token_hex(4)}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def serialize_documents(documents: list[Document]) -> bytes:
    """``docstore.jsonl`` bytes: one ``{"id", "text", "metadata"}`` per line, in vector order.

    Each document must carry a unique ``metadata["id"]``.
    """
    lines = []
    for doc in documents:
        metadata = dict(doc.metadata)
        doc_id = str(metadata.pop("id"))
        lines.append(json.dumps({"id": doc_id, "text": doc.page_content, "metadata": metadata}, ensure_ascii=False))
    return ("\n".join(lines) + ("\n" if lines else "")).encode()


def _parse_documents(data: bytes) -> list[Document]:
    documents: list[Document] = []
    seen: set[str] = set()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IndexIntegrityError("docstore.jsonl is not UTF-8") from exc
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            row = json.loads(line)
            doc_id, content, metadata = row["id"], row["text"], row["metadata"]
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise IndexIntegrityError(f"docstore.jsonl line {number} is malformed") from exc
        if not isinstance(doc_id, str) or not isinstance(content, str) or not isinstance(metadata, dict):
            raise IndexIntegrityError(f"docstore.jsonl line {number} has wrong types")
        if doc_id in seen:
            raise IndexIntegrityError(f"docstore.jsonl line {number} repeats id {doc_id!r}")
        if len(metadata) > MAX_METADATA_KEYS or not all(
            isinstance(v, str | int | float | bool | type(None)) for v in metadata.values()
        ):
            raise IndexIntegrityError(f"docstore.jsonl line {number} has unsupported metadata")
        seen.add(doc_id)
        documents.append(Document(page_content=content, metadata={**metadata, "id": doc_id}, id=doc_id))
    return documents


#: FAISS index types a version may hold (``manifest.index_type``).
INDEX_TYPES = ("flat", "hnsw")
#: HNSW graph degree and build-time candidate list; the defaults of most vector stores
#: (https://github.com/facebookresearch/faiss/wiki/Guidelines-to-choose-an-index).
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
#: ``index_type="auto"`` writes HNSW from this many chunks on, flat below: a flat scan of 20k
#: 1024-d vectors takes about 3 ms per query on one core, of 100k about 30 ms; HNSW about 0.5 ms
#: (``benchmarks/api_bench.py``).
HNSW_AUTO_MIN_CHUNKS = 20_000


def resolve_index_type(index_type: str, count: int) -> str:
    """``"flat"`` or ``"hnsw"`` for ``index_type`` (``"auto"``, ``"flat"`` or ``"hnsw"``) and ``count`` vectors.

    Raises:
        ValueError: unknown ``index_type``.
    """
    if index_type == "auto":
        return "hnsw" if count >= HNSW_AUTO_MIN_CHUNKS else "flat"
    if index_type not in INDEX_TYPES:
        raise ValueError(f"unknown index type {index_type!r} (expected auto, {', '.join(INDEX_TYPES)})")
    return index_type


def index_params_of(index_type: str, hnsw_m: int, ef_construction: int) -> dict[str, int] | None:
    """The build parameters recorded in the manifest for a resolved ``index_type`` (None for flat)."""
    return {"m": hnsw_m, "ef_construction": ef_construction} if index_type == "hnsw" else None


def build_faiss_index(
    matrix: np.ndarray, index_type: str = "flat", *, hnsw_m: int = HNSW_M, ef_construction: int = HNSW_EF_CONSTRUCTION
) -> faiss.Index:
    """A FAISS inner-product index over ``matrix`` (``(n, dim)`` float32, rows of unit length).

    Args:
        matrix: the vectors, already L2-normalised (inner product = cosine similarity).
        index_type: ``"flat"``: ``IndexFlatIP``, an exact scan (about 4 ms per query at 10k x 1024
            on one core here, 30 ms at 100k); ``"hnsw"``: ``IndexHNSWFlat``, a navigable small-world
            graph (about 0.5 ms per query, approximate: recall depends on ``HNSW_EF_SEARCH`` and on
            the data; build time grows with ``n``). https://github.com/facebookresearch/faiss/wiki/Faiss-indexes
        hnsw_m: HNSW neighbours per node (memory: about ``m * 8`` bytes per vector on top of the vectors).
        ef_construction: HNSW candidate list while building (higher: better graph, slower build).

    Returns:
        The index with ``n`` vectors of ``dim`` floats, inner-product metric.

    Raises:
        ValueError: unknown ``index_type``.
    """
    if index_type == "flat":
        index = faiss.IndexFlatIP(matrix.shape[1])
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(matrix.shape[1], hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
    else:
        raise ValueError(f"unknown index type {index_type!r} (expected one of {', '.join(INDEX_TYPES)})")
    if len(matrix):
        index.add(matrix)
    return index


def write_index_version(
    store: BlobStore,
    *,
    tenant: str,
    embedding_model: str,
    vectors: np.ndarray,
    documents: list[Document],
    sources: list[SourceRecord],
    publish: bool = True,
    chunking: dict[str, int] | None = None,
    index_type: str = "flat",
    hnsw_m: int = HNSW_M,
    hnsw_ef_construction: int = HNSW_EF_CONSTRUCTION,
) -> str:
    """Write a complete version folder, then (if ``publish``) point ``LATEST`` at it.

    Args:
        store: where the index root lives.
        tenant: tenant id (validated).
        embedding_model: the model id that produced ``vectors`` (e.g. ``amazon.titan-embed-text-v2:0``).
        vectors: shape ``(n, dim)``; normalised here to unit length, stored as float32.
        documents: ``n`` documents, each with a unique ``metadata["id"]``.
        sources: what was ingested, for incremental re-ingestion.
        publish: replace ``LATEST`` after the upload (the last write, so readers never see a
            partial version).
        chunking: the splitter settings, recorded so a later run knows whether chunks are reusable.
        index_type: ``"flat"``, ``"hnsw"`` (:func:`build_faiss_index`) or ``"auto"``
            (:func:`resolve_index_type`); the resulting type is recorded in the manifest.
        hnsw_m: HNSW graph degree (``"hnsw"`` only).
        hnsw_ef_construction: HNSW build-time candidate list (``"hnsw"`` only).

    Returns:
        The new version id.

    Raises:
        ValueError: shapes or ids inconsistent, or an invalid tenant id.
    """
    from rag.index.embeddings import l2_normalize

    validate_tenant_id(tenant)
    matrix = l2_normalize(vectors) if len(vectors) else np.zeros((0, vectors.shape[1]), dtype=np.float32)
    if matrix.shape[0] != len(documents):
        raise ValueError(f"{matrix.shape[0]} vectors but {len(documents)} documents")
    ids = [str(d.metadata.get("id", "")) for d in documents]
    if any(not i for i in ids) or len(set(ids)) != len(ids):
        raise ValueError("every document needs a unique metadata['id']")
    index_type = resolve_index_type(index_type, int(matrix.shape[0]))
    index = build_faiss_index(matrix, index_type, hnsw_m=hnsw_m, ef_construction=hnsw_ef_construction)
    index_params = index_params_of(index_type, hnsw_m, hnsw_ef_construction)
    index_bytes = faiss.serialize_index(index).tobytes()
    docstore_bytes = serialize_documents(documents)
    version = new_version_id()
    manifest = IndexManifest(
        tenant=tenant,
        embedding_model=embedding_model,
        dim=int(matrix.shape[1]),
        count=int(matrix.shape[0]),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        sources=sorted(sources, key=lambda s: s.uri),
        files={INDEX_FILE: _sha256(index_bytes), DOCSTORE_FILE: _sha256(docstore_bytes)},
        chunking=chunking,
        index_type=index_type,
        index_params=index_params,
    )
    base = f"v/{version}/"
    store.write(base + INDEX_FILE, index_bytes)
    store.write(base + DOCSTORE_FILE, docstore_bytes)
    store.write(base + MANIFEST_FILE, manifest.to_json())  # the manifest last: it marks completeness
    if publish:
        store.write(LATEST, version.encode())
    return version


def read_latest_version_id(store: BlobStore) -> str:
    """The version id in ``LATEST``.

    Raises:
        IndexNotFoundError: no ``LATEST``.
        IndexIntegrityError: ``LATEST`` does not hold a well-formed version id.
    """
    try:
        raw = store.read(LATEST)
    except FileNotFoundError as exc:
        raise IndexNotFoundError(f"no index published at {store.uri} ({LATEST} is missing)") from exc
    version = raw[:64].decode("ascii", errors="replace").strip()
    if not VERSION_RE.fullmatch(version):
        raise IndexIntegrityError(f"{LATEST} holds an invalid version id {version[:40]!r}")
    return version


def load_index_version(
    store: BlobStore,
    version: str | None = None,
    *,
    tenant: str,
    embedding_model: str,
) -> IndexVersion:
    """Load and verify a version (``LATEST`` when ``version`` is None).

    Args:
        store: index root.
        version: a version id, or None for the published one.
        tenant: the tenant this process serves; the manifest must say the same.
        embedding_model: the model this process embeds queries with; the manifest must match.

    Raises:
        IndexNotFoundError: nothing published or the version folder is missing.
        IndexIntegrityError: checksum, tenant, model, dimension or count mismatch; bad files.
    """
    validate_tenant_id(tenant)
    version = version or read_latest_version_id(store)
    if not VERSION_RE.fullmatch(version):
        raise IndexIntegrityError(f"invalid version id {version[:40]!r}")
    base = f"v/{version}/"
    try:
        manifest = IndexManifest.from_json(store.read(base + MANIFEST_FILE))
    except FileNotFoundError as exc:
        raise IndexNotFoundError(f"index version {version} is missing or incomplete") from exc
    if manifest.tenant != tenant:
        raise IndexIntegrityError(f"index version {version} belongs to tenant {manifest.tenant!r}, not {tenant!r}")
    if manifest.embedding_model != embedding_model:
        raise IndexIntegrityError(
            f"index version {version} was built with {manifest.embedding_model!r}, "
            f"but this process embeds with {embedding_model!r}: re-ingest or fix EMBEDDING_MODEL_ID"
        )
    try:
        index_bytes = store.read(base + INDEX_FILE)
        docstore_bytes = store.read(base + DOCSTORE_FILE)
    except FileNotFoundError as exc:
        raise IndexIntegrityError(f"index version {version} is incomplete: {exc}") from exc
    if len(index_bytes) > MAX_INDEX_BYTES:
        raise IndexIntegrityError(f"{INDEX_FILE} is too large")
    for name, data in ((INDEX_FILE, index_bytes), (DOCSTORE_FILE, docstore_bytes)):
        if _sha256(data) != manifest.files[name]:
            raise IndexIntegrityError(f"{name} of version {version} does not match its sha256 in manifest.json")
    try:
        index = faiss.deserialize_index(np.frombuffer(index_bytes, dtype=np.uint8))
    except (RuntimeError, MemoryError) as exc:  # MemoryError: a header claiming an absurd size
        raise IndexIntegrityError(f"{INDEX_FILE} of version {version} is not a FAISS index") from exc
    if not _index_matches(index, manifest):
        raise IndexIntegrityError(f"{INDEX_FILE} of version {version} does not match its manifest")
    documents = _parse_documents(docstore_bytes)
    if len(documents) != manifest.count:
        raise IndexIntegrityError(f"{DOCSTORE_FILE} has {len(documents)} entries, manifest says {manifest.count}")
    return IndexVersion(version=version, manifest=manifest, index=index, documents=documents)


def _index_matches(index: faiss.Index, manifest: IndexManifest) -> bool:
    """The FAISS class, metric, size and (for HNSW) the vector storage are what the manifest says.

    HNSW computes scores through its ``storage``: it must be a flat inner-product store of the same
    vectors, not a quantiser or a Euclidean index that would turn scores into something else.
    """
    expected = faiss.IndexHNSWFlat if manifest.index_type == "hnsw" else faiss.IndexFlatIP
    if type(index) is not expected or index.metric_type != faiss.METRIC_INNER_PRODUCT:
        return False
    if index.d != manifest.dim or index.ntotal != manifest.count:
        return False
    if expected is faiss.IndexHNSWFlat:
        storage = faiss.downcast_index(index.storage)
        if (
            type(storage) not in (faiss.IndexFlat, faiss.IndexFlatIP)
            or storage.metric_type != faiss.METRIC_INNER_PRODUCT
        ):
            return False
        if storage.d != index.d or storage.ntotal != index.ntotal:
            return False
    return True


def list_versions(store: BlobStore) -> list[str]:
    """All version ids present under ``v/`` (complete or not), oldest first."""
    found = {key.split("/")[1] for key in store.list("v/") if key.count("/") >= 2}
    return sorted(v for v in found if VERSION_RE.fullmatch(v))

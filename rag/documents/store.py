"""Where a tenant's source documents live: ``s3://<bucket>/documents/`` in the cluster, a directory locally.

The ingestion job reads the same place (``DOCUMENTS_URI``, default
``s3://$CONTEXTUAL_DATA_BUCKET/documents/``), and records each file under the same URI this store
reports (:attr:`DocumentInfo.uri`), so a listing can say how many chunks of a file the index holds.

Writes to S3 carry the server-side encryption the bucket is configured with (``DOCUMENTS_SSE``,
default ``aws:kms`` as ``deploy-scripts/onboard-tenant.sh`` sets the bucket's default encryption;
``DOCUMENTS_KMS_KEY_ID`` for a customer managed key) and a SHA-256 checksum S3 verifies
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from rag.documents.rules import normalise_name
from rag.index.store import parse_s3_uri, s3_checksum_sha256, s3_object_exists, s3_prefix, write_file_atomically
from rag.stores.base import StoreUnavailableError

#: Most objects listed (a tenant's documents, not a data lake; the page shows them all).
MAX_LISTED = 10_000


class DocumentStoreUnavailableError(StoreUnavailableError):
    """S3 (or the disk) failed while listing, writing or deleting documents (one of the stores' 503s)."""

    code = "documents_unavailable"
    public_message = "The tenant's documents cannot be reached right now; try again shortly."


@dataclass(frozen=True)
class DocumentInfo:
    """One stored document.

    Attributes:
        name: path relative to the documents root (``guide.pdf``; ``sub/x.md`` for operator-made folders).
        size: bytes.
        last_modified: UTC.
        uri: what the ingestion job records as the source (``s3://b/documents/guide.pdf`` or an absolute path).
    """

    name: str
    size: int
    last_modified: datetime
    uri: str


class DocumentStore(Protocol):
    """The documents of one tenant. Names given to :meth:`put` and :meth:`delete` are plain file
    names (checked by :func:`rag.documents.rules.normalise_name`)."""

    uri: str

    def list(self) -> list[DocumentInfo]:
        """Every document (hidden files left out), sorted by name."""

    def put(self, name: str, data: bytes, content_type: str) -> DocumentInfo:
        """Write (or replace) ``name``; readers see the old or the new file, never half of one."""

    def delete(self, name: str) -> bool:
        """Delete ``name``; False when it did not exist."""

    def uri_of(self, name: str) -> str:
        """The source URI of ``name``."""


class LocalDocumentStore:
    """A directory (the local demo's ``.demo/<tenant>/documents``).

    Args:
        root: the directory (created on first write).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)

    def _path(self, name: str) -> Path:
        return self.root / normalise_name(name)

    def uri_of(self, name: str) -> str:
        """See :class:`DocumentStore`."""
        return str(self.root / name)

    def list(self) -> list[DocumentInfo]:
        """See :class:`DocumentStore`."""
        if not self.root.is_dir():
            return []
        found = []
        for path in sorted(self.root.rglob("*")):
            relative = path.relative_to(self.root)
            if path.is_file() and not path.is_symlink() and not any(p.startswith(".") for p in relative.parts):
                stat = path.stat()
                found.append(
                    DocumentInfo(
                        name=relative.as_posix(),
                        size=stat.st_size,
                        last_modified=datetime.fromtimestamp(stat.st_mtime, UTC),
                        uri=str(path),
                    )
                )
            if len(found) >= MAX_LISTED:
                break
        return found

    def put(self, name: str, data: bytes, content_type: str) -> DocumentInfo:
        """See :class:`DocumentStore` (temporary file, fsync, ``os.replace``)."""
        path = self._path(name)
        write_file_atomically(path, data, suffix=".upload")
        stat = path.stat()
        return DocumentInfo(path.name, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC), str(path))

    def delete(self, name: str) -> bool:
        """See :class:`DocumentStore`."""
        path = self._path(name)
        if not path.is_file():
            return False
        path.unlink()
        return True


class S3DocumentStore:
    """An S3 prefix, by default ``documents/`` of the tenant bucket.

    Args:
        client: a boto3 ``s3`` client (:func:`rag.aws.make_client`).
        bucket: the bucket.
        prefix: the key prefix (``documents/``; a trailing ``/`` is added).
        sse: ``aws:kms``, ``AES256`` or ``none`` (``x-amz-server-side-encryption`` of each PUT).
        kms_key_id: a KMS key id or ARN for ``aws:kms`` (None: the bucket's/AWS managed key).
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "documents/",
        *,
        sse: str = "aws:kms",
        kms_key_id: str | None = None,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = s3_prefix(prefix)
        self.sse = sse
        self.kms_key_id = kms_key_id
        self.uri = f"s3://{bucket}/{self.prefix}"

    def uri_of(self, name: str) -> str:
        """See :class:`DocumentStore`."""
        return f"s3://{self.bucket}/{self.prefix}{name}"

    def list(self) -> list[DocumentInfo]:
        """See :class:`DocumentStore` (folder markers and hidden names left out)."""
        found: list[DocumentInfo] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(self.prefix) :]
                if not name or name.endswith("/") or any(p.startswith(".") for p in name.split("/")):
                    continue
                modified = obj["LastModified"]
                found.append(DocumentInfo(name, int(obj["Size"]), modified.astimezone(UTC), self.uri_of(name)))
                if len(found) >= MAX_LISTED:
                    return sorted(found, key=lambda d: d.name)
        return sorted(found, key=lambda d: d.name)

    def put(self, name: str, data: bytes, content_type: str) -> DocumentInfo:
        """See :class:`DocumentStore`: one ``PutObject`` with SSE and a SHA-256 checksum."""
        key = self.prefix + normalise_name(name)
        extra: dict[str, str] = {}
        if self.sse != "none":
            extra["ServerSideEncryption"] = self.sse
            if self.sse == "aws:kms" and self.kms_key_id:
                extra["SSEKMSKeyId"] = self.kms_key_id
        self.client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType=content_type,
            ChecksumSHA256=s3_checksum_sha256(data),
            **extra,
        )
        head = self.client.head_object(Bucket=self.bucket, Key=key)
        return DocumentInfo(name, int(head["ContentLength"]), head["LastModified"].astimezone(UTC), self.uri_of(name))

    def delete(self, name: str) -> bool:
        """See :class:`DocumentStore` (a ``HeadObject`` first, so a missing name is reported)."""
        key = self.prefix + normalise_name(name)
        if not s3_object_exists(self.client, self.bucket, key):
            return False
        self.client.delete_object(Bucket=self.bucket, Key=key)
        return True


def open_document_store(
    uri: str, *, s3_client: Any = None, sse: str = "aws:kms", kms_key_id: str | None = None
) -> DocumentStore:
    """The store behind ``uri``: ``s3://bucket/prefix/`` (needs ``s3_client``) or a local directory.

    Raises:
        ValueError: another scheme, a malformed S3 URI, or an S3 URI without a client.
    """
    if uri.startswith("s3://"):
        bucket, prefix = parse_s3_uri(uri)
        if s3_client is None:
            raise ValueError("an S3 client is required for s3:// document URIs")
        return S3DocumentStore(s3_client, bucket, prefix, sse=sse, kms_key_id=kms_key_id)
    if "://" in uri:
        raise ValueError(f"unsupported documents URI {uri!r} (use s3:// or a directory)")
    return LocalDocumentStore(uri)

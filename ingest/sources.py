"""Where the documents come from: a local directory or an S3 prefix.

Each source file gets a fingerprint (``etag:<ETag>`` on S3, ``sha256:<hex>`` locally) that the
index manifest records, so a re-ingestion reuses the vectors of unchanged files.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.index.store import parse_s3_uri


@dataclass(frozen=True)
class SourceFile:
    """One candidate source file.

    Attributes:
        uri: ``s3://bucket/key`` or an absolute local path (recorded as ``metadata["source"]``).
        fingerprint: ``etag:<ETag>`` or ``sha256:<hex>``.
        size: bytes.
    """

    uri: str
    fingerprint: str
    size: int


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class LocalSource:
    """All regular files below a directory (recursively; hidden files and folders are ignored).

    Args:
        root: the directory.

    Raises:
        FileNotFoundError: ``root`` is not a directory.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"source directory {self.root} does not exist")
        self.uri = str(self.root)

    def list(self) -> list[SourceFile]:
        """The files, sorted by path."""
        files = []
        for path in sorted(self.root.rglob("*")):
            relative = path.relative_to(self.root)
            if path.is_file() and not path.is_symlink() and not any(p.startswith(".") for p in relative.parts):
                files.append(
                    SourceFile(uri=str(path), fingerprint=f"sha256:{_sha256_file(path)}", size=path.stat().st_size)
                )
        return files

    @contextmanager
    def fetch(self, source: SourceFile) -> Iterator[Path]:
        """The file's local path (no copy)."""
        yield Path(source.uri)


class S3Source:
    """All objects under an S3 prefix (``s3://bucket/documents/``), downloaded one at a time.

    Args:
        uri: the prefix URI.
        client: a boto3 ``s3`` client.
    """

    def __init__(self, uri: str, client: Any) -> None:
        self.bucket, self.prefix = parse_s3_uri(uri)
        self.client = client
        self.uri = uri

    def list(self) -> list[SourceFile]:
        """The objects (folder markers ending in ``/`` left out), sorted by key."""
        files = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
            for obj in page.get("Contents", []):
                if not obj["Key"].endswith("/"):
                    etag = obj["ETag"].strip('"')
                    files.append(
                        SourceFile(uri=f"s3://{self.bucket}/{obj['Key']}", fingerprint=f"etag:{etag}", size=obj["Size"])
                    )
        return sorted(files, key=lambda f: f.uri)

    @contextmanager
    def fetch(self, source: SourceFile) -> Iterator[Path]:
        """Download the object to a temporary file, deleted afterwards."""
        key = source.uri.removeprefix(f"s3://{self.bucket}/")
        suffix = Path(key).suffix
        with tempfile.TemporaryDirectory(prefix="ingest-") as tmp:
            path = Path(tmp) / f"object{suffix}"
            self.client.download_file(self.bucket, key, str(path))
            yield path


def open_source(uri: str, *, s3_client: Any = None) -> LocalSource | S3Source:
    """Open ``s3://bucket/prefix/`` (needs ``s3_client``) or a local directory.

    Raises:
        ValueError: an ``s3://`` URI without a client or another URI scheme.
        FileNotFoundError: the local directory does not exist.
    """
    if uri.startswith("s3://"):
        if s3_client is None:
            raise ValueError("an S3 client is required for s3:// sources")
        return S3Source(uri, s3_client)
    if "://" in uri:
        raise ValueError(f"unsupported source URI {uri!r} (use s3:// or a directory)")
    return LocalSource(uri)

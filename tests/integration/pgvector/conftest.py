"""A real PostgreSQL + pgvector (``pgserver``) for the pgvector backend tests, and tenant helpers."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devstack.postgres import LocalPostgres
from rag.index.pgvector import PgVectorIndex


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    """One PostgreSQL 16 server with the vector extension for the whole session (stopped at the end).

    Its data lives in a fresh ``/tmp`` directory, not under pytest's ``tmp_path`` (whose 0700
    parent the server's system user ``pgserver`` cannot enter).
    """
    root = Path(tempfile.mkdtemp(prefix="tenant-rag-pg-"))
    server = LocalPostgres(root / "data")
    yield server
    server.close()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def new_tenant(postgres: LocalPostgres) -> Iterator[Callable[..., tuple[str, str]]]:
    """``new_tenant()`` → ``(tenant id, URL of its login role)``: a fresh provisioned tenant."""

    def make(prefix: str = "pg") -> tuple[str, str]:
        tenant = f"{prefix}-{secrets.token_hex(4)}"
        return tenant, postgres.provision(tenant)

    yield make


@pytest.fixture
def open_index() -> Iterator[Callable[..., PgVectorIndex]]:
    """``open_index(tenant, url, **kwargs)`` → a :class:`PgVectorIndex`, closed at teardown."""
    opened: list[PgVectorIndex] = []

    def make(tenant: str, url: str, **kwargs: object) -> PgVectorIndex:
        kwargs.setdefault("statement_timeout", 0.0)
        index = PgVectorIndex(tenant=tenant, conninfo=url, **kwargs)  # type: ignore[arg-type]
        opened.append(index)
        return index

    yield make
    for index in opened:
        index.close()


def write_docs(root: Path, files: dict[str, str]) -> Path:
    """Write ``{name: text}`` under ``root`` (created), returning ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    return root

"""The local PostgreSQL for tests: :mod:`devstack.postgres` (``make demo`` with ``VECTOR_STORE=pgvector`` uses it too)."""

from devstack.postgres import DATABASE, LocalPostgres

__all__ = ["DATABASE", "LocalPostgres"]

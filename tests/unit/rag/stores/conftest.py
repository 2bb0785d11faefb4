"""Fixtures for the store tests: the operations tests' API app with inspectable stores (``ops_client``, ``stores``)."""

from __future__ import annotations

from tests.unit.ops.conftest import Stores, metric_value, ops_client, stores

__all__ = ["Stores", "metric_value", "ops_client", "stores"]

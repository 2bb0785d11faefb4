"""Fixtures for the operations tests: an API app with usage, quota and feedback stores to inspect."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from rag.stores.feedback import InMemoryFeedbackStore
from rag.stores.history import InMemoryHistoryStore
from rag.stores.quota import InMemoryCounterStore
from rag.stores.usage import InMemoryUsageStore
from tests.unit.api.fakes import fake_embeddings, make_settings, publish_index, started_clients


class Stores:
    """The stores a test app uses (inspectable)."""

    def __init__(self) -> None:
        self.history = InMemoryHistoryStore()
        self.usage = InMemoryUsageStore()
        self.feedback = InMemoryFeedbackStore()
        self.counters = InMemoryCounterStore()


@pytest.fixture
def stores() -> Stores:
    return Stores()


@pytest.fixture
def ops_client(tmp_path: Path, stores: Stores) -> Iterator[Callable[..., TestClient]]:
    """``ops_client(chat_model=None, clock=None, **settings)`` → a started TestClient sharing ``stores``."""
    root = tmp_path / "index"
    publish_index(root)
    with started_clients() as start:

        def factory(chat_model: Any = None, *, clock: Any = None, **overrides: Any) -> TestClient:
            app = create_app(
                settings=make_settings(root, **overrides),
                embeddings=fake_embeddings(),
                chat_model=chat_model,
                history=stores.history,
                usage=stores.usage,
                feedback=stores.feedback,
                quota_counters=stores.counters,
                clock=clock,
            )
            return start(app)

        yield factory


def metric_value(client: TestClient, name: str, **labels: str) -> float:
    """The value of one sample on ``/metrics`` (0 when absent); metrics are process-wide, compare deltas."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0

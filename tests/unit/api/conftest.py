"""Fixtures for the API unit tests: a tiny local index, fake models, an app factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from langchain_core.language_models.chat_models import BaseChatModel

from api.main import create_app
from rag.stores.history import InMemoryHistoryStore
from tests.unit.api.fakes import fake_embeddings, make_settings, publish_index, started_clients


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    root = tmp_path / "index"
    publish_index(root)
    return root


@pytest.fixture
def history() -> InMemoryHistoryStore:
    return InMemoryHistoryStore()


@pytest.fixture
def make_client(index_dir: Path, history: InMemoryHistoryStore) -> Iterator[Callable[..., TestClient]]:
    """``make_client(chat_model=..., **settings_overrides)`` → a started TestClient (lifespan ran)."""
    with started_clients() as start:

        def factory(
            chat_model: BaseChatModel | None = None, *, history_store: Any = None, **overrides: Any
        ) -> TestClient:
            settings = make_settings(overrides.pop("index_root", index_dir), **overrides)
            app = create_app(
                settings=settings,
                embeddings=fake_embeddings(),
                chat_model=chat_model,
                history=history_store if history_store is not None else history,
            )
            return start(app)

        yield factory

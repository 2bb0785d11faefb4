"""Web chat unit fixtures: a test issuer (RSA key + JWKS, no network), a fake RAG API client,
and an ``AppTest`` runner with request headers patched in."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from rag.contract import DocumentLinkResponse, Usage
from tests.conftest import REPO_ROOT
from tests.support import jwt_issuer
from tests.support.jwt_issuer import CLIENT_ID, EMAIL, ISSUER, SUBJECT, TENANT, Issuer
from webapp import api_client, identity
from webapp.api_client import ApiError, DoneEvent, HistoryMessage, Source, SourcesEvent, TokenEvent

APP_PATH = str(REPO_ROOT / "webapp" / "app.py")
__all__ = ["CLIENT_ID", "EMAIL", "ISSUER", "SUBJECT", "TENANT", "Issuer"]  # re-exported for the tests

rsa_key = jwt_issuer.rsa_key
issuer = jwt_issuer.issuer


@dataclass
class FakeRagApi:
    """Stands in for :class:`webapp.api_client.RagApiClient` (no HTTP)."""

    answer: str = "SageMaker is a managed ML service."
    sources: list[Source] = field(
        default_factory=lambda: [
            Source(
                id="faq-3",
                source="Amazon_SageMaker_FAQs.csv",
                row=3,
                title="What is Amazon SageMaker?",
                score=0.91,
                snippet="Amazon SageMaker is a fully managed service...",
            )
        ]
    )
    history_messages: dict[str, list[HistoryMessage]] = field(default_factory=dict)
    error: ApiError | None = None
    history_error: ApiError | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)
    answer_id: str | None = None  # None: "ans-<n>" for the n-th call (the API's ids are unique)
    feedback: list[dict[str, Any]] = field(default_factory=list)
    feedback_error: ApiError | None = None
    links: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def stream_answer(
        self, question: str, session_id: str, *, request_id: str | None = None, regenerate: bool = False
    ) -> Iterator[Any]:
        self.calls.append({"q": question, "session_id": session_id, "request_id": request_id, "regenerate": regenerate})
        if self.error is not None:
            raise self.error
        for word in self.answer.split(" "):
            yield TokenEvent(text=word + " ")
        yield SourcesEvent(sources=list(self.sources))
        usage = Usage(input_tokens=3, output_tokens=5, total_tokens=8)
        yield DoneEvent(
            session_id=session_id,
            answer=self.answer + " ",
            usage=usage,
            model_id="fake",
            answer_id=self.answer_id if self.answer_id is not None else f"ans-{len(self.calls)}",
        )

    def document_link(self, source: str) -> DocumentLinkResponse:
        self.links.append(source)
        return DocumentLinkResponse(url="https://tenanta-data.s3.amazonaws.com/x?X-Amz-Signature=abc", expires_in=300)

    def history(self, session_id: str) -> list[HistoryMessage]:
        if self.history_error is not None:
            raise self.history_error
        return self.history_messages.get(session_id, [])

    def delete_history(self, session_id: str) -> None:
        self.deleted.append(session_id)
        self.history_messages.pop(session_id, None)

    def ready(self) -> bool:
        return self.error is None

    def send_feedback(self, session_id: str, answer_id: str, rating: str, comment: str = "") -> None:
        if self.feedback_error is not None:
            raise self.feedback_error
        self.feedback.append({"session_id": session_id, "answer_id": answer_id, "rating": rating, "comment": comment})


@pytest.fixture
def fake_api(monkeypatch: pytest.MonkeyPatch) -> FakeRagApi:
    fake = FakeRagApi()
    monkeypatch.setattr(api_client, "client_from_settings", lambda settings: fake)
    return fake


@pytest.fixture
def webapp_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Environment of an OIDC-mode web chat for ``tenanta`` with a SQLite sessions file."""
    db = tmp_path / "sessions.db"
    for name, value in {
        "TENANT_ID": TENANT,
        "TENANT_DISPLAY_NAME": "Tenant A",
        "AUTH_MODE": "oidc",
        "ISSUER_URI": ISSUER,
        "COGNITO_CLIENT_ID": CLIENT_ID,
        "SESSIONS_URL": f"sqlite:///{db}",
        "RAG_API_URL": "http://ragapi.test:8000",
        "EMBEDDINGS_PROVIDER": "local",
        "LLM_PROVIDER": "extractive",
    }.items():
        monkeypatch.setenv(name, value)
    return db


HeadersSetter = Callable[[dict[str, str]], None]


@pytest.fixture
def set_headers(monkeypatch: pytest.MonkeyPatch) -> HeadersSetter:
    """Set the request headers the page sees (names lower-cased, as request_headers() returns)."""
    current: dict[str, str] = {}
    monkeypatch.setattr(identity, "request_headers", lambda: dict(current))

    def setter(headers: dict[str, str]) -> None:
        current.clear()
        current.update({k.lower(): v for k, v in headers.items()})

    setter({})
    return setter


@pytest.fixture
def app(webapp_env: Path, fake_api: FakeRagApi, set_headers: HeadersSetter, issuer: Issuer) -> AppTest:
    """An AppTest of ``webapp/app.py`` (not yet run)."""
    return AppTest.from_file(APP_PATH, default_timeout=30)


def bearer(token: str, email: str | None = EMAIL) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if email:
        headers["X-Auth-Request-Email"] = email
    return headers

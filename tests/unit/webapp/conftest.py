"""Web chat unit fixtures: a test issuer (RSA key + JWKS, no network), a fake RAG API client,
and an ``AppTest`` runner with request headers patched in."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from streamlit.testing.v1 import AppTest

from tests.conftest import REPO_ROOT
from webapp import api_client, identity
from webapp.api_client import ApiError, ChatMessage, DoneEvent, Source, SourcesEvent, TokenEvent

APP_PATH = str(REPO_ROOT / "webapp" / "app.py")
ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TEST"
CLIENT_ID = "webchat-client"
TENANT = "tenanta"
EMAIL = "alice@example.com"


@dataclass
class Issuer:
    """A fake OIDC issuer: signs RS256 tokens and publishes the JWKS."""

    key: rsa.RSAPrivateKey
    kid: str = "test-key-1"
    extra_keys: list[tuple[str, rsa.RSAPrivateKey]] = field(default_factory=list)

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in [(self.kid, self.key), *self.extra_keys]:
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
        return {"keys": keys}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": "0f1e2d3c",
            "aud": CLIENT_ID,
            "token_use": "id",
            "email": EMAIL,
            "custom:tenantid": TENANT,
            "iat": now,
            "exp": now + 3600,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, key: rsa.RSAPrivateKey | None = None, kid: str | None = None, **overrides: Any) -> str:
        return jwt.encode(
            self.claims(**overrides), key or self.key, algorithm="RS256", headers={"kid": kid or self.kid}
        )


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def issuer(rsa_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch) -> Issuer:
    """The test issuer; every PyJWKClient gets its JWKS from it instead of the network."""
    fake = Issuer(key=rsa_key)
    fetches: list[str] = []

    def fetch_data(self: jwt.PyJWKClient) -> Any:
        fetches.append(self.uri)
        data = fake.jwks()
        if self.jwk_set_cache is not None:
            self.jwk_set_cache.put(data)
        return data

    monkeypatch.setattr(jwt.PyJWKClient, "fetch_data", fetch_data)
    fake.fetches = fetches  # type: ignore[attr-defined]
    identity.jwks_client.cache_clear()
    yield fake
    identity.jwks_client.cache_clear()


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
    history_messages: dict[str, list[ChatMessage]] = field(default_factory=dict)
    error: ApiError | None = None
    history_error: ApiError | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)
    answer_id: str = "ans-1"
    grounded: bool = True
    feedback: list[dict[str, Any]] = field(default_factory=list)
    feedback_error: ApiError | None = None

    def stream_answer(self, question: str, session_id: str, *, request_id: str | None = None) -> Iterator[Any]:
        self.calls.append({"q": question, "session_id": session_id, "request_id": request_id})
        if self.error is not None:
            raise self.error
        for word in self.answer.split(" "):
            yield TokenEvent(text=word + " ")
        yield SourcesEvent(sources=tuple(self.sources) if self.grounded else ())
        yield DoneEvent(
            session_id=session_id, answer=self.answer + " ", answer_id=self.answer_id, grounded=self.grounded
        )

    def history(self, session_id: str) -> list[ChatMessage]:
        if self.history_error is not None:
            raise self.history_error
        return self.history_messages.get(session_id, [])

    def delete_history(self, session_id: str) -> None:
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

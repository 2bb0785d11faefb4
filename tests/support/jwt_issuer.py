"""A fake OIDC issuer for unit tests: signs RS256 Cognito-shaped ID tokens and serves the JWKS
to every :class:`jwt.PyJWKClient` (no network)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import rag.identity
from rag.settings import Settings, load_settings

ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TEST"
CLIENT_ID = "webchat-client"
TENANT = "tenanta"
EMAIL = "alice@example.com"
SUBJECT = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"


@dataclass
class Issuer:
    """A fake OIDC issuer: signs RS256 tokens and publishes the JWKS.

    Attributes:
        fetches: the JWKS URLs fetched so far (set by :func:`patch_jwks`).
    """

    key: rsa.RSAPrivateKey
    kid: str = "test-key-1"
    extra_keys: list[tuple[str, rsa.RSAPrivateKey]] = field(default_factory=list)
    fetches: list[str] = field(default_factory=list)

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in [(self.kid, self.key), *self.extra_keys]:
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
        return {"keys": keys}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """Valid Cognito ID token claims for alice of ``tenanta``; a ``None`` override removes a claim."""
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": SUBJECT,
            "aud": CLIENT_ID,
            "token_use": "id",
            "email": EMAIL,
            "email_verified": True,
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


def issuer_settings(**overrides: object) -> Settings:
    """Settings that trust this fake issuer (:data:`ISSUER`, :data:`CLIENT_ID`) for :data:`TENANT`,
    with local embeddings and the extractive answerer; ``overrides`` are further settings fields."""
    values: dict[str, object] = {
        "tenant_id": TENANT,
        "issuer_uri": ISSUER,
        "cognito_client_id": CLIENT_ID,
        "embeddings_provider": "local",
        "llm_provider": "extractive",
    }
    values.update(overrides)
    return load_settings(**values)


def patch_jwks(fake: Issuer, monkeypatch: pytest.MonkeyPatch) -> Issuer:
    """Make every PyJWKClient get its key set from ``fake``, and empty the shared JWKS client cache."""

    def fetch_data(self: jwt.PyJWKClient) -> Any:
        fake.fetches.append(self.uri)
        data = fake.jwks()
        if self.jwk_set_cache is not None:
            self.jwk_set_cache.put(data)
        return data

    monkeypatch.setattr(jwt.PyJWKClient, "fetch_data", fetch_data)
    rag.identity.cached_jwks_client.cache_clear()
    return fake


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# Fixtures: import both into a conftest (``from tests.support.jwt_issuer import issuer, rsa_key``).


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    """One RSA key per test session (generating one takes ~50 ms)."""
    return new_rsa_key()


@pytest.fixture
def issuer(rsa_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch) -> Iterator[Issuer]:
    """The test issuer; every PyJWKClient gets its JWKS from it instead of the network."""
    yield patch_jwks(Issuer(key=rsa_key), monkeypatch)
    rag.identity.cached_jwks_client.cache_clear()

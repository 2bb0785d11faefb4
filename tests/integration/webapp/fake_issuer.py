"""A local OIDC-style issuer: an RSA key, RS256 tokens shaped like Cognito's, and the JWKS served
over HTTP at ``<url>/.well-known/jwks.json`` (reusable by end-to-end tests, e.g. for Envoy)."""

from __future__ import annotations

import json
import time
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.http import ServedFake


def subject_of(email: str) -> str:
    """The fake user's ``sub``: a stable UUID per e-mail address (Cognito's subjects are UUIDs)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"fake-issuer/{email}"))


class FakeIssuer(ServedFake):
    """Signs Cognito-like tokens and serves its JWKS; use as ``with FakeIssuer() as issuer``.

    Args:
        client_id: the app client id put in ``aud`` (id tokens) / ``client_id`` (access tokens).
        kid: the key id in the JWKS and token headers.
    """

    def __init__(self, client_id: str = "webchat-client", kid: str = "it-key-1") -> None:
        self.client_id = client_id
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwks_requests = 0

    def jwks(self) -> dict[str, Any]:
        """The public key set."""
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}]}

    def token(self, email: str, tenant: str, lifetime: int = 3600, **overrides: Any) -> str:
        """An RS256 id token for ``email`` in ``tenant``; ``overrides`` replace claims (None drops one)."""
        now = int(time.time())
        claims = {
            "iss": self.url,
            "sub": subject_of(email),
            "aud": self.client_id,
            "token_use": "id",
            "email": email,
            "email_verified": True,
            "custom:tenantid": tenant,
            "iat": now,
            "exp": now + lifetime,
            **overrides,
        }
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})

    def handler(self) -> type[BaseHTTPRequestHandler]:
        """Serves :meth:`jwks` at ``/.well-known/jwks.json`` (counted in ``jwks_requests``), 404 elsewhere."""
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path != "/.well-known/jwks.json":
                    self.send_error(404)
                    return
                issuer.jwks_requests += 1
                body = json.dumps(issuer.jwks()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

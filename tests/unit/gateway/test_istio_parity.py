"""The local Envoy gateway and the Istio templates cannot drift apart silently.

Renders ``istio/`` with ``deploy-scripts/render.sh`` (and the cluster EnvoyFilter with
``lib.sh:render_file``) for two tenants with *different* user pools and app clients, generates the
Envoy configuration from the same values, and compares every security-relevant value: issuer, JWKS
URI, audiences, token forwarding, claim name and header name, allowed tenant per host, issuer the
policy requires, stripped headers (the Lua code itself) and the position of the strip filter, the
paths routed and allowed (everything else 404), the websocket's required Origin, and the
gateway's timeouts and header limits.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from gateway import envoy_config as ec
from gateway.runner import EnvoyGateway

REPO_ROOT = Path(__file__).resolve().parents[3]
SCRIPTS = REPO_ROOT / "deploy-scripts"
RENDER_ENV = {
    "AWS_REGION": "eu-west-1",
    "ACCOUNT_ID": "123456789012",
    "DOMAIN": "chat.example.com",
    "IMAGE_TAG": "0123456789ab",
    "CLUSTER_NAME": "test-cluster",
    "KUBE_API_CIDR": "10.20.0.0/16",
}
#: Each tenant has its own Cognito user pool and app client (as onboard-tenant.sh creates them).
POOLS = {"tenanta": ("eu-west-1_PoolA1", "clienta111"), "tenantb": ("eu-west-1_PoolB2", "clientb222")}


def _env(**extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", "LC_ALL": "C.UTF-8", **RENDER_ENV, **extra}


def _load(path: Path) -> dict:
    (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return doc


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, dict]]:
    """``{tenant: {kind-file: doc}}`` from render.sh, plus ``{"cluster": {"strip": doc}}``."""
    root = tmp_path_factory.mktemp("istio")
    out: dict[str, dict[str, dict]] = {}
    for tenant, (pool, client) in POOLS.items():
        proc = subprocess.run(
            [str(SCRIPTS / "render.sh"), tenant, str(root / tenant)],
            capture_output=True,
            text=True,
            env=_env(COGNITO_USER_POOL_ID=pool, COGNITO_CLIENT_ID=client),
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        istio = root / tenant / "istio"
        out[tenant] = {p.stem: _load(p) for p in istio.glob("*.yaml")}
    out["cluster"] = {}
    for name, template in (("strip", ec.STRIP_FILTER_TEMPLATE), ("limits", ec.LIMITS_FILTER_TEMPLATE)):
        target = root / f"{name}.yaml"
        script = (
            f'source "{SCRIPTS}/lib.sh"; ISTIO_INGRESS_NAMESPACE=istio-system; '
            f'render_file "{template}" "{target}" ISTIO_INGRESS_NAMESPACE ISTIO_VERSION'
        )
        proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=_env(), check=False)
        assert proc.returncode == 0, proc.stderr
        out["cluster"][name] = _load(target)
    return out


@pytest.fixture(scope="module")
def envoy_config() -> dict:
    """Generated from the same tenant list and values the templates got."""
    routes = [
        ec.TenantRoute(
            t,
            f"{t}.{RENDER_ENV['DOMAIN']}",
            8501 + i,
            ec.cognito_issuer(RENDER_ENV["AWS_REGION"], pool),
            (client,),
            origins=(f"https://{t}.{RENDER_ENV['DOMAIN']}",),
        )
        for i, (t, (pool, client)) in enumerate(POOLS.items())
    ]
    return ec.build_envoy_config(routes, 10000)


@pytest.mark.parametrize("tenant", list(POOLS))
def test_request_authentication_matches_jwt_provider(rendered: dict, envoy_config: dict, tenant: str) -> None:
    host = ec.summarize(envoy_config)["hosts"][f"{tenant}.{RENDER_ENV['DOMAIN']}"]
    (rule,) = rendered[tenant]["requestauthentication"]["spec"]["jwtRules"]
    assert rule["issuer"] == host["issuer"]
    assert rule["jwksUri"] == host["jwks_uri"]
    assert rule["audiences"] == host["audiences"]
    assert rule["forwardOriginalToken"] is True and host["forward"] is True
    istio_claims = {c["claim"]: c["header"] for c in rule["outputClaimToHeaders"]}
    assert istio_claims == {ec.TENANT_CLAIM: ec.TENANT_HEADER} == host["claim_headers"]
    # Istio's RequestAuthentication has no max_lifetime: in the cluster the web chat's own check
    # (rag.identity, ID_TOKEN_VALIDITY_SECONDS) refuses over-long tokens; locally Envoy does too.
    assert "maxLifetime" not in rule and host["max_lifetime"] == f"{ec.MAX_TOKEN_LIFETIME_SECONDS}s"


def test_oauth2_proxy_provides_the_email_header() -> None:
    deployment = (REPO_ROOT / "manifests" / "oauth2-proxy" / "deployment.yaml").read_text()
    assert "--set-xauthrequest=true" in deployment  # -> X-Auth-Request-Email to the upstream


def _istio_paths(paths: list[str]) -> tuple[list[str], list[str]]:
    """AuthorizationPolicy ``paths`` split into exact paths and prefixes (``/static/*`` -> ``/static/``)."""
    return [p for p in paths if not p.endswith("*")], [p[:-1] for p in paths if p.endswith("*")]


@pytest.mark.parametrize("tenant", list(POOLS))
def test_authorization_policy_matches_rbac(rendered: dict, envoy_config: dict, tenant: str) -> None:
    host_name = f"{tenant}.{RENDER_ENV['DOMAIN']}"
    host = ec.summarize(envoy_config)["hosts"][host_name]
    spec = rendered[tenant]["authorizationpolicy"]["spec"]
    assert spec["action"] == "ALLOW"
    assert spec["selector"]["matchLabels"]["app.kubernetes.io/instance"] == tenant
    pages, stream = spec["rules"]
    for rule in (pages, stream):
        (source,) = rule["from"]
        tenant_condition = rule["when"][0]
        assert tenant_condition["key"] == f"request.auth.claims[{ec.TENANT_CLAIM}]"
        assert tenant_condition["values"] == [tenant] == [host["rbac"][ec.TENANT_CLAIM]]
        assert source["source"]["requestPrincipals"] == [f"{host['rbac']['iss']}/*"]
        (operation,) = rule["to"]
        assert operation["operation"]["ports"] == ["8501"]
    # the same paths the gateway routes, and the websocket only with the tenant's Origin
    exact, prefixes = _istio_paths(pages["to"][0]["operation"]["paths"])
    assert (exact, prefixes) == (host["exact_paths"], host["prefix_paths"])
    assert stream["to"][0]["operation"]["paths"] == [host["stream"]["path"]] == [ec.STREAM_PATH]
    assert stream["when"][1] == {"key": "request.headers[origin]", "values": [host["stream"]["origin"]["exact"]]}
    assert len(pages["when"]) == 1
    # the policy's tenant is the tenant of the host the VirtualService routes
    assert rendered[tenant]["virtualservice"]["spec"]["hosts"] == [host_name]
    assert host["tenant"] == tenant


@pytest.mark.parametrize("tenant", list(POOLS))
def test_virtual_service_routes_only_the_chat_paths(rendered: dict, envoy_config: dict, tenant: str) -> None:
    host = ec.summarize(envoy_config)["hosts"][f"{tenant}.{RENDER_ENV['DOMAIN']}"]
    stream, refused_stream, pages, not_found = rendered[tenant]["virtualservice"]["spec"]["http"]
    (match,) = stream["match"]
    assert match["uri"] == {"exact": host["stream"]["path"]}
    assert (
        match["headers"]
        == {"origin": host["stream"]["origin"]}
        == {"origin": {"exact": f"https://{tenant}.{RENDER_ENV['DOMAIN']}"}}
    )
    assert stream["timeout"] == pages["timeout"] == host["timeout"]
    assert refused_stream["match"] == [{"uri": {"exact": ec.STREAM_PATH}}]
    assert refused_stream["directResponse"]["status"] == host["refused"][ec.STREAM_PATH] == 403
    assert [m["uri"]["exact"] for m in pages["match"] if "exact" in m["uri"]] == host["exact_paths"]
    assert [m["uri"]["prefix"] for m in pages["match"] if "prefix" in m["uri"]] == host["prefix_paths"]
    assert "match" not in not_found and not_found["directResponse"]["status"] == host["refused"]["/"] == 404


def test_gateway_limits_are_the_rendered_envoyfilter(rendered: dict, envoy_config: dict) -> None:
    (patch,) = rendered["cluster"]["limits"]["spec"]["configPatches"]
    assert patch["applyTo"] == "NETWORK_FILTER" and patch["match"]["context"] == "GATEWAY"
    assert patch["patch"]["operation"] == "MERGE"
    fields = dict(patch["patch"]["value"]["typed_config"])
    fields.pop("@type")
    assert ec.summarize(envoy_config)["limits"] == fields
    assert fields["request_headers_timeout"] == "10s" and fields["max_request_headers_kb"] == 60


def test_every_rendered_host_and_only_those_is_routed(rendered: dict, envoy_config: dict) -> None:
    istio_hosts = {h for t in POOLS for h in rendered[t]["virtualservice"]["spec"]["hosts"]}
    assert set(ec.summarize(envoy_config)["hosts"]) == istio_hosts


def test_strip_filter_is_identical_and_first(rendered: dict, envoy_config: dict) -> None:
    doc = rendered["cluster"]["strip"]
    (patch,) = doc["spec"]["configPatches"]
    assert patch["applyTo"] == "HTTP_FILTER" and patch["match"]["context"] == "GATEWAY"
    assert patch["patch"]["operation"] == "INSERT_FIRST"
    istio_lua = patch["patch"]["value"]["typed_config"]["default_source_code"]["inline_string"]
    summary = ec.summarize(envoy_config)
    assert summary["strip_first"] is True
    assert summary["strip_lua"] == istio_lua
    assert f'"{ec.STRIPPED_HEADER_PREFIX}"' in istio_lua
    # both headers the gateway trusts are covered by the stripped prefix
    assert ec.TENANT_HEADER.startswith(ec.STRIPPED_HEADER_PREFIX) and ec.EMAIL_HEADER.startswith(
        ec.STRIPPED_HEADER_PREFIX
    )


def test_generated_config_for_cognito_values_is_valid_envoy(envoy_config: dict, tmp_path: Path) -> None:
    EnvoyGateway(envoy_config, tmp_path).validate()

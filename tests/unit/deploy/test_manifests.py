"""The rendered Kubernetes and Istio objects: schemas, policy checks, and the contract they carry."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from cloudcoil.models.istio.networking import v1 as networking_v1
from cloudcoil.models.istio.networking import v1alpha3 as networking_v1alpha3
from cloudcoil.models.istio.security import v1 as security_v1

from .conftest import (
    PGVECTOR_RENDER_ENV,
    PGVECTOR_TENANTS,
    RENDER_ENV,
    REPO_ROOT,
    SCRIPTS,
    TENANTS,
    base_env,
    load_docs,
    tenant_names,
    tool,
)

ISTIO_MODELS = {
    ("networking.istio.io/v1", "Gateway"): networking_v1.Gateway,
    ("networking.istio.io/v1", "VirtualService"): networking_v1.VirtualService,
    ("networking.istio.io/v1alpha3", "EnvoyFilter"): networking_v1alpha3.EnvoyFilter,
    ("security.istio.io/v1", "AuthorizationPolicy"): security_v1.AuthorizationPolicy,
    ("security.istio.io/v1", "RequestAuthentication"): security_v1.RequestAuthentication,
    ("security.istio.io/v1", "PeerAuthentication"): security_v1.PeerAuthentication,
}
CORE_KINDS = {
    "Namespace",
    "ServiceAccount",
    "Deployment",
    "Service",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "Job",
    "CronJob",
    "ConfigMap",  # manifests/pgvector/ (tenantb is rendered with VECTOR_STORE=pgvector)
    "Role",
    "RoleBinding",
}
# checkov findings we accept, each with its reason (everything else must pass):
CHECKOV_SKIPS = {
    # Images are pinned by tag (the git commit) in ECR repositories with IMMUTABLE tags
    # (build-push.sh), so a tag always names one digest; templates cannot know digests in advance.
    "CKV_K8S_43": "Image should use digest",
}
LABELS = ("name", "instance", "component", "part-of", "version")


def strict_validate(model: type, data: dict) -> None:
    """Validate with the pydantic model and reject unknown fields (the models silently ignore them)."""
    obj = model.model_validate(data)
    back = obj.model_dump(by_alias=True, exclude_unset=True, mode="json")

    def diff(a: object, b: object, path: str) -> None:
        if isinstance(a, dict):
            for key, value in a.items():
                if not isinstance(b, dict) or key not in b:
                    raise ValueError(f"unknown field {path}{key}")
                diff(value, b[key], f"{path}{key}.")
        elif isinstance(a, list):
            assert isinstance(b, list) and len(a) == len(b), f"list changed at {path}"
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                diff(x, y, f"{path}{i}.")

    diff(data, back, "")


def pod_specs(obj: dict) -> list[dict]:
    kind = obj["kind"]
    if kind in ("Deployment", "Job"):
        return [obj["spec"]["template"]["spec"]]
    if kind == "CronJob":
        return [obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    return []


def by_kind(objs: list[tuple[Path, dict]], kind: str, name: str | None = None) -> list[dict]:
    return [o for _, o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


# --- rendering --------------------------------------------------------------------------------------


def test_every_template_rendered_one_kind_per_file(rendered: Path) -> None:
    templates = sorted(
        p.relative_to(REPO_ROOT)
        for d in ("manifests", "istio")
        for p in (REPO_ROOT / d).rglob("*.yaml")
        if "cluster" not in p.parts and "observability" not in p.parts  # cluster-wide, not tenant templates
    )
    assert len(templates) >= 20
    for tenant in TENANTS:
        for rel in templates:
            out = rendered / tenant / rel
            if rel.parts[:2] == ("manifests", "pgvector") and tenant not in PGVECTOR_TENANTS:
                assert not out.exists(), f"{rel} rendered for the FAISS tenant {tenant}"
                continue
            assert out.exists(), f"{rel} not rendered for {tenant}"
            docs = load_docs(out)
            assert len(docs) == 1, f"{rel}: one object per file"


def test_no_placeholders_left(rendered: Path) -> None:
    for f in rendered.rglob("*.yaml"):
        text = f.read_text()
        assert "${" not in text and "$(" not in text, f
        assert "<" not in text or "<br" in text, f"dry-run placeholder in {f}"


def test_render_fails_on_unknown_placeholder_and_missing_value(tmp_path: Path) -> None:
    template = tmp_path / "t.yaml"
    template.write_text("a: ${TENANT_ID}\nb: ${NOT_IN_THE_LIST}\n")
    script = f'source "{SCRIPTS}/lib.sh"; TENANT_ID=tenanta render_file "{template}" "{tmp_path}/out.yaml" TENANT_ID'
    proc = subprocess.run(["bash", "-c", script], env=base_env(), capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "placeholders left" in proc.stderr
    env = dict(RENDER_ENV)
    del env["DOMAIN"]
    proc = subprocess.run(
        [str(SCRIPTS / "render.sh"), "tenanta", str(tmp_path / "o")],
        env=base_env(**env),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0 and "DOMAIN" in proc.stderr
    proc = subprocess.run(
        [str(SCRIPTS / "render.sh"), "tenanta", str(tmp_path / "o")],
        env=base_env(**{**RENDER_ENV, "IMAGE_TAG": "latest"}),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0 and "not a pinned tag" in proc.stderr


# --- schemas and linters ----------------------------------------------------------------------------


def test_core_kinds_validate_strict_k8s_1_32(objects: dict) -> None:
    files = sorted({str(f) for t in TENANTS for f, o in objects[t] if o["kind"] in CORE_KINDS})
    kinds = {o["kind"] for t in TENANTS for _, o in objects[t]}
    assert kinds >= CORE_KINDS
    proc = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "-k", "1.32.0", *files], capture_output=True, text=True, check=False
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert out.count("passed for resource") == len(files), out
    assert "WARN" not in out and "ERROR" not in out, out


def test_istio_kinds_validate_strict(objects: dict, tmp_path: Path) -> None:
    # the cluster-level EnvoyFilter too (rendered the way bootstrap-cluster.sh does)
    script = (
        f'source "{SCRIPTS}/lib.sh"; ISTIO_INGRESS_NAMESPACE=istio-system ISTIO_VERSION=1.27.3 render_file '
        f'"{REPO_ROOT}/istio/cluster/envoyfilter-strip-auth-headers.yaml" "{tmp_path}/ef.yaml" '
        "ISTIO_INGRESS_NAMESPACE ISTIO_VERSION"
    )
    subprocess.run(["bash", "-c", script], env=base_env(), check=True)
    docs = [o for t in TENANTS for _, o in objects[t] if "istio.io" in o["apiVersion"]] + load_docs(
        tmp_path / "ef.yaml"
    )
    seen = set()
    for doc in docs:
        model = ISTIO_MODELS[(doc["apiVersion"], doc["kind"])]
        strict_validate(model, doc)
        seen.add(doc["kind"])
    assert seen == {m for _, m in ISTIO_MODELS}, seen


def test_strict_validation_rejects_unknown_field() -> None:
    bad = {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "x", "namespace": "y"},
        "spec": {"mtls": {"mode": "STRICT", "bogus": 1}},
    }
    with pytest.raises(ValueError, match=r"unknown field spec\.mtls\.bogus"):
        strict_validate(security_v1.PeerAuthentication, bad)


def test_checkov_passes_with_short_skip_list(rendered: Path) -> None:
    proc = subprocess.run(
        [
            tool("checkov"),
            "-d",
            str(rendered),
            "--quiet",
            "--compact",
            "--skip-download",
            "--framework",
            "kubernetes",
            "--skip-check",
            ",".join(CHECKOV_SKIPS),
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        env=base_env(),
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    summary = report["summary"] if isinstance(report, dict) else report[0]["summary"]
    assert summary["failed"] == 0 and summary["passed"] > 300, summary
    assert len(CHECKOV_SKIPS) <= 3


def test_yamllint_templates_and_rendered(rendered: Path) -> None:
    targets = [REPO_ROOT / "manifests", REPO_ROOT / "istio", SCRIPTS / "templates", rendered]
    proc = subprocess.run(
        [tool("yamllint"), "-s", "-c", str(Path(__file__).parent / "yamllint.yaml"), *map(str, targets)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- tenant isolation ---------------------------------------------------------------------------------


def test_tenant_names_only_in_own_objects(objects: dict) -> None:
    for tenant in TENANTS:
        other = next(t for t in TENANTS if t != tenant)
        own = tenant_names(tenant)
        for f, obj in objects[tenant]:
            text = yaml.safe_dump(obj)
            assert other not in text, f"{other} appears in {tenant}'s {f.name}"
            assert tenant in text, f"{f.name} does not name its tenant"
            ns = obj["metadata"].get("namespace", obj["metadata"]["name"])
            assert ns in (own["namespace"], own["auth_namespace"], "istio-system"), (f.name, ns)
        text = "\n".join(yaml.safe_dump(o) for _, o in objects[tenant])
        for key in ("namespace", "auth_namespace", "host", "bucket", "chathistory", "sessions"):
            assert own[key] in text, key


def test_cluster_level_files_name_no_tenant() -> None:
    for f in [
        *list((REPO_ROOT / "istio" / "cluster").iterdir()),
        *list((REPO_ROOT / "manifests" / "observability").iterdir()),
        SCRIPTS / "templates" / "eksctl-cluster.yaml",
    ]:
        text = f.read_text()
        for tenant in TENANTS:
            assert tenant not in text, f


def test_nothing_cluster_specific_hard_coded() -> None:
    # account ids, regions, domains, registries, ARNs: all come from variables
    pattern = re.compile(r"\b\d{12}\b|example\.(com|org)|\b[a-z]{2}-[a-z]+-\d\b|dkr\.ecr|arn:aws|cognito-idp\.")
    for d in ("manifests", "istio"):
        for f in (REPO_ROOT / d).rglob("*.yaml"):
            for line in f.read_text().splitlines():
                if line.lstrip().startswith("#"):
                    continue
                assert not pattern.search(line), f"{f}: {line}"


# --- the contract in the objects ----------------------------------------------------------------------


@pytest.mark.parametrize("tenant", TENANTS)
def test_labels_ports_and_hosts(objects: dict, tenant: str) -> None:
    for f, obj in objects[tenant]:
        labels = obj["metadata"].get("labels", {})
        for key in LABELS:
            assert f"app.kubernetes.io/{key}" in labels, (f.name, key)
        for pod in pod_specs(obj):
            for c in pod["containers"]:
                for port in c.get("ports", []):
                    assert port.get("name"), (f.name, c["name"])
    for _, obj in objects[tenant]:
        if obj["kind"] in ("Gateway", "VirtualService"):
            hosts = [h for s in obj["spec"].get("servers", [obj["spec"]]) for h in s["hosts"]]
            assert hosts and all(h == tenant_names(tenant)["host"] for h in hosts), hosts


@pytest.mark.parametrize("tenant", TENANTS)
def test_workloads_hardened(objects: dict, tenant: str) -> None:
    workloads = [o for _, o in objects[tenant] if pod_specs(o)]
    assert {o["kind"] for o in workloads} == {"Deployment", "Job", "CronJob"}
    for obj in workloads:
        for pod in pod_specs(obj):
            psc = pod["securityContext"]
            assert psc["runAsNonRoot"] is True and psc["seccompProfile"]["type"] == "RuntimeDefault"
            expected_sa = {"Deployment": obj["metadata"]["name"], "Job": "ingest", "CronJob": "ingest"}
            assert pod["serviceAccountName"] == expected_sa[obj["kind"]]
            for c in pod["containers"]:
                sc = c["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
                assert sc["capabilities"]["drop"] == ["ALL"] and sc["runAsUser"] not in (0, 1337)
                assert c["resources"]["requests"] and c["resources"]["limits"]
                assert re.search(r":[A-Za-z0-9_][A-Za-z0-9_.-]*$", c["image"]) and not c["image"].endswith(":latest")


@pytest.mark.parametrize("tenant", TENANTS)
def test_chatbot_deployment_contract(objects: dict, tenant: str) -> None:
    names = tenant_names(tenant)
    (dep,) = by_kind(objects[tenant], "Deployment", "chatbot")
    pod = dep["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 30
    containers = {c["name"]: c for c in pod["containers"]}
    assert set(containers) == {"webapp", "ragapi"}
    web, api = containers["webapp"], containers["ragapi"]
    assert web["command"] == [
        "python",
        "-m",
        "webapp.server",
        "--server.port",
        "8501",
        "--server.address",
        "0.0.0.0",
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    assert web["ports"] == [{"name": "http", "containerPort": 8501, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert web[probe]["httpGet"] == {"path": "/_stcore/health", "port": "http"}
    assert api["command"] == ["gunicorn", "-c", "api/gunicorn.conf.py", "api.main:app"]
    assert "ports" not in api, "the RAG API binds 127.0.0.1 and must not look reachable"
    assert api["livenessProbe"]["exec"]["command"] == ["python", "-m", "api.probe", "/healthz"]
    assert api["readinessProbe"]["exec"]["command"] == ["python", "-m", "api.probe", "/readyz"]
    startup = api["startupProbe"]
    assert startup["exec"]["command"] == ["python", "-m", "api.probe", "/readyz"]
    assert startup["failureThreshold"] * startup["periodSeconds"] >= 120 and startup["timeoutSeconds"] > 2
    web_env = {e["name"]: e["value"] for e in web["env"]}
    api_env = {e["name"]: e.get("value", e.get("valueFrom")) for e in api["env"]}
    assert web_env == {
        "TENANT_ID": tenant,
        "SESSIONS_TABLE": names["sessions"],
        "ISSUER_URI": f"https://cognito-idp.eu-west-1.amazonaws.com/{RENDER_ENV['COGNITO_USER_POOL_ID']}",
        "COGNITO_CLIENT_ID": RENDER_ENV["COGNITO_CLIENT_ID"],
        "AUTH_MODE": "oidc",
        "ADMIN_GROUP": "admins",
        "STREAMLIT_CLIENT_TOOLBAR_MODE": "viewer",
        "WEB_ALLOWED_ORIGINS": f"https://{tenant}.chat.example.com",
        "STREAMLIT_SERVER_ALLOWED_HOSTS": f"{tenant}.chat.example.com",
        "LOG_FORMAT": "json",
        "RAG_API_URL": "http://127.0.0.1:8000",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "HOME": "/tmp",
    }
    assert api_env == {
        "TENANT_ID": tenant,
        "CONTEXTUAL_DATA_BUCKET": names["bucket"],
        "EMBEDDING_MODEL_ID": "amazon.titan-embed-text-v2:0",
        "TEXT2TEXT_MODEL_ID": api_env["TEXT2TEXT_MODEL_ID"],
        "BEDROCK_SERVICE": "bedrock-runtime",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "CHATHISTORY_TABLE": names["chathistory"],
        "USAGE_TABLE": f"{tenant}-usage",
        "QUOTA_TABLE": f"{tenant}-quota",
        "FEEDBACK_TABLE": f"{tenant}-feedback",
        "QUOTA_TENANT_RPM": "0",
        "QUOTA_USER_RPM": "0",
        "QUOTA_TENANT_TOKENS_PER_DAY": "0",
        "QUOTA_USER_TOKENS_PER_DAY": "0",
        "LOG_FORMAT": "json",
        "EMBEDDINGS_PROVIDER": "bedrock",
        "LLM_PROVIDER": "bedrock",
        "RETRIEVER_MODE": "dense",
        "INDEX_POLL_SECONDS": "60",
        # documents area: the API checks admins' tokens itself and starts Jobs in its own namespace
        "ISSUER_URI": web_env["ISSUER_URI"],
        "COGNITO_CLIENT_ID": RENDER_ENV["COGNITO_CLIENT_ID"],
        "AUTH_MODE": "oidc",
        "ADMIN_GROUP": "admins",
        "DOCUMENTS_SSE": "aws:kms",
        "INGESTION_RUNNER": "kubernetes",
        "INGESTION_CRONJOB": "ingest",
        "KUBERNETES_NAMESPACE": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        "HOME": "/tmp",
    }
    volumes = {v["name"]: v for v in pod["volumes"]}
    (web_mount,) = web["volumeMounts"]
    assert web_mount["mountPath"] == "/tmp" and "emptyDir" in volumes[web_mount["name"]]
    tmp, token = api["volumeMounts"]
    assert tmp["mountPath"] == "/tmp" and "emptyDir" in volumes[tmp["name"]]
    # the Kubernetes API token reaches the ragapi container only, read-only, bound and expiring
    assert pod["automountServiceAccountToken"] is False
    assert token == {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                     "readOnly": True}  # fmt: skip
    sources = volumes["kube-api-access"]["projected"]["sources"]
    assert sources[0] == {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}
    assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
    selector = dep["spec"]["selector"]["matchLabels"]
    assert "app.kubernetes.io/version" not in selector and "version" not in selector


@pytest.mark.parametrize("tenant", TENANTS)
def test_service_namespace_serviceaccount(objects: dict, tenant: str) -> None:
    names = tenant_names(tenant)
    (svc,) = by_kind(objects[tenant], "Service", "chatbot")
    assert svc["spec"]["ports"][0] | {} == {
        "name": "http",
        "port": 80,
        "targetPort": "http",
        "protocol": "TCP",
        "appProtocol": "http",
    }
    namespaces = {o["metadata"]["name"]: o for o in by_kind(objects[tenant], "Namespace")}
    assert set(namespaces) == {names["namespace"], names["auth_namespace"]}
    assert all(n["metadata"]["labels"]["istio-injection"] == "enabled" for n in namespaces.values())
    for name, role in (("chatbot", names["role"]), ("ingest", f"{tenant}-ingest")):
        (sa,) = by_kind(objects[tenant], "ServiceAccount", name)
        assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == (
            f"arn:aws:iam::{RENDER_ENV['ACCOUNT_ID']}:role/{role}"
        )


@pytest.mark.parametrize("tenant", TENANTS)
def test_ingest_job_and_cronjob(objects: dict, tenant: str) -> None:
    for kind in ("Job", "CronJob"):
        (obj,) = by_kind(objects[tenant], kind, "ingest")
        (pod,) = pod_specs(obj)
        (c,) = pod["containers"]
        assert c["command"] == ["python", "-m", "ingest", "--tenant", tenant]
        assert "/chatbot-ragapi:" in c["image"]
        assert pod["restartPolicy"] == "Never"
    (cron,) = by_kind(objects[tenant], "CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"


@pytest.mark.parametrize("tenant", TENANTS)
def test_network_policies(objects: dict, tenant: str) -> None:
    pols = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in by_kind(objects[tenant], "NetworkPolicy")}
    for ns in (tenant_names(tenant)["namespace"], tenant_names(tenant)["auth_namespace"]):
        deny = pols[(ns, "default-deny")]
        assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        ingress = pols[(ns, "allow-ingress-gateway")]["spec"]["ingress"]
        assert len(ingress) == 1
        assert ingress[0]["from"][0]["podSelector"]["matchLabels"] == {"istio": "ingressgateway"}
        egress = pols[(ns, "allow-egress-dns-https")]["spec"]["egress"]
        ports = sorted((p["protocol"], p["port"]) for rule in egress for p in rule["ports"])
        assert ports == [("TCP", 53), ("TCP", 443), ("TCP", 15012), ("UDP", 53)]
    postgres = pols.get((tenant_names(tenant)["namespace"], "allow-egress-postgres"))
    if tenant in PGVECTOR_TENANTS:  # out to the Aurora cluster's VPC on 5432, nothing else
        assert postgres is not None
        assert postgres["spec"]["egress"] == [
            {
                "to": [{"ipBlock": {"cidr": PGVECTOR_RENDER_ENV["PG_EGRESS_CIDR"]}}],
                "ports": [{"protocol": "TCP", "port": 5432}],
            }
        ]
    else:
        assert postgres is None, "a FAISS tenant has no egress to PostgreSQL"


@pytest.mark.parametrize("tenant", TENANTS)
def test_vector_store_settings(objects: dict, tenant: str) -> None:
    """The ragapi and ingest containers take the PG_* settings from the optional ConfigMap, which
    exists (IAM auth, TLS, the tenant's own role) only for a pgvector tenant."""
    containers = [c for d in by_kind(objects[tenant], "Deployment", "chatbot") for c in pod_specs(d)[0]["containers"]]
    containers += [
        c for kind in ("Job", "CronJob") for o in by_kind(objects[tenant], kind) for c in pod_specs(o)[0]["containers"]
    ]
    workers = [c for c in containers if c["name"] in ("ragapi", "ingest")]
    assert len(workers) == 3
    for container in workers:
        assert container["envFrom"] == [{"configMapRef": {"name": "vector-store", "optional": True}}]
    maps = by_kind(objects[tenant], "ConfigMap", "vector-store")
    if tenant not in PGVECTOR_TENANTS:
        assert maps == []
        return
    (config,) = maps
    assert config["metadata"]["namespace"] == tenant_names(tenant)["namespace"]
    assert config["data"] == {
        "VECTOR_STORE": "pgvector",
        "PG_HOST": PGVECTOR_RENDER_ENV["PG_HOST"],
        "PG_PORT": "5432",
        "PG_DATABASE": "rag",
        "PG_USER": f"tenant_{tenant}",
        "PG_SSLMODE": "require",
        "PG_IAM_AUTH": "true",
        "PG_CONNECT_TIMEOUT_SECONDS": "3",
        "PG_STATEMENT_TIMEOUT_SECONDS": "5",
    }
    from rag.settings import load_settings

    settings = load_settings(
        tenant_id=tenant, aws_default_region="eu-west-1", **{k.lower(): v for k, v in config["data"].items()}
    )
    assert settings.uses_pgvector_iam and settings.pg_user == f"tenant_{tenant}"


@pytest.mark.parametrize("tenant", TENANTS)
def test_istio_auth_policies(objects: dict, tenant: str) -> None:
    names = tenant_names(tenant)
    issuer = f"https://cognito-idp.eu-west-1.amazonaws.com/{RENDER_ENV['COGNITO_USER_POOL_ID']}"
    (ra,) = by_kind(objects[tenant], "RequestAuthentication")
    (rule,) = ra["spec"]["jwtRules"]
    assert rule["issuer"] == issuer and rule["jwksUri"] == f"{issuer}/.well-known/jwks.json"
    assert rule["forwardOriginalToken"] is True
    assert rule["outputClaimToHeaders"] == [{"header": "x-auth-request-tenantid", "claim": "custom:tenantid"}]
    allow = by_kind(objects[tenant], "AuthorizationPolicy", "chatbot")[0]["spec"]
    assert allow["action"] == "ALLOW"
    pages, stream = allow["rules"]  # the chat's pages; its websocket (Origin checked too)
    for r in (pages, stream):
        assert r["from"][0]["source"]["principals"] == ["cluster.local/ns/istio-system/sa/istio-ingressgateway"]
        assert r["when"][0] == {"key": "request.auth.claims[custom:tenantid]", "values": [names["claim"]]}
    assert stream["when"][1] == {"key": "request.headers[origin]", "values": [f"https://{tenant}.chat.example.com"]}
    custom = by_kind(objects[tenant], "AuthorizationPolicy", f"ext-authz-{tenant}")[0]
    assert custom["metadata"]["namespace"] == "istio-system" and custom["spec"]["action"] == "CUSTOM"
    assert custom["spec"]["provider"]["name"] == f"oauth2-proxy-{tenant}"
    assert {p["mode"] for p in (o["spec"]["mtls"] for o in by_kind(objects[tenant], "PeerAuthentication"))} == {
        "STRICT"
    }
    (gw,) = by_kind(objects[tenant], "Gateway")
    https = next(s for s in gw["spec"]["servers"] if s["port"]["number"] == 443)
    assert https["tls"] == {"mode": "SIMPLE", "credentialName": f"{tenant}-tls", "minProtocolVersion": "TLSV1_2"}


def test_gateway_strips_client_auth_headers() -> None:
    (ef,) = load_docs(REPO_ROOT / "istio" / "cluster" / "envoyfilter-strip-auth-headers.yaml")
    (patch,) = ef["spec"]["configPatches"]
    assert patch["applyTo"] == "HTTP_FILTER" and patch["match"]["context"] == "GATEWAY"
    assert patch["patch"]["operation"] == "INSERT_FIRST"
    lua = patch["patch"]["value"]["typed_config"]["default_source_code"]["inline_string"]
    assert '"x-auth-request-"' in lua and "headers:remove(name)" in lua


@pytest.mark.parametrize("tenant", TENANTS)
def test_oauth2_proxy(objects: dict, tenant: str) -> None:
    (dep,) = by_kind(objects[tenant], "Deployment", "oauth2-proxy")
    assert dep["metadata"]["namespace"] == f"{tenant}-auth"
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    args = c["args"]
    for flag in (
        "--cookie-secure=true",
        "--cookie-httponly=true",
        "--ssl-insecure-skip-verify=false",
        f"--redirect-url=https://{tenant}.chat.example.com/oauth2/callback",
        "--provider=oidc",
    ):
        assert flag in args
    assert not any(a.startswith(("--client-secret=", "--cookie-secret=")) for a in args)
    assert "env" not in c, "secrets come from the mounted Secret file"
    (vol,) = dep["spec"]["template"]["spec"]["volumes"]
    assert vol["secret"]["secretName"] == "oauth2-proxy"


# --- documents area: the RAG API may start ingestion Jobs, nothing more -------------------------------

#: What the chatbot's Role may do: (apiGroup, resource, verb, resourceName or None for any).
ALLOWED_ACCESS = {("batch", "jobs", verb, None) for verb in ("create", "get", "list", "watch")} | {
    ("batch", "cronjobs", "get", "ingest")
}


def role_grants(role: dict) -> set[tuple[str, str, str, str | None]]:
    """Every (apiGroup, resource, verb, resourceName) the Role grants, wildcards kept as '*'."""
    grants = set()
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, rule  # no nonResourceURLs
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    for name in rule.get("resourceNames") or [None]:
                        grants.add((group, resource, verb, name))
    return grants


@pytest.mark.parametrize("tenant", TENANTS)
def test_ingestion_trigger_role_allows_only_its_jobs_and_cronjob(objects: dict, tenant: str) -> None:
    names = tenant_names(tenant)
    (role,) = by_kind(objects[tenant], "Role")
    assert role["metadata"]["namespace"] == names["namespace"]
    grants = role_grants(role)
    assert grants == ALLOWED_ACCESS
    assert not [g for g in grants if "*" in g], "no wildcards"
    assert not [g for g in grants if g[1] not in ("jobs", "cronjobs")], "no pods, secrets, exec or anything else"
    (cronjob,) = by_kind(objects[tenant], "CronJob")
    assert {g[3] for g in grants if g[1] == "cronjobs"} == {cronjob["metadata"]["name"]}
    assert not by_kind(objects[tenant], "ClusterRole") and not by_kind(objects[tenant], "ClusterRoleBinding")
    (binding,) = by_kind(objects[tenant], "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "chatbot", "namespace": names["namespace"]}]
    assert binding["metadata"]["namespace"] == names["namespace"]


def test_role_check_catches_a_broader_role() -> None:
    broad = {"rules": [{"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": ["create", "delete"]}]}
    assert role_grants(broad) != ALLOWED_ACCESS
    assert ("batch", "cronjobs", "create", None) in role_grants(broad)


@pytest.mark.parametrize("tenant", TENANTS)
def test_ingestion_jobs_are_findable_and_the_api_server_reachable(objects: dict, tenant: str) -> None:
    (cronjob,) = by_kind(objects[tenant], "CronJob")
    template = cronjob["spec"]["jobTemplate"]
    assert template["metadata"]["labels"]["app.kubernetes.io/name"] == "chatbot-ingest"  # api.services.runners
    (container,) = template["spec"]["template"]["spec"]["containers"]
    assert {"name": "INGESTION_TRIGGER", "value": "schedule"} in container["env"]
    (policy,) = by_kind(objects[tenant], "NetworkPolicy", "allow-egress-kube-apiserver")
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "chatbot"
    assert policy["spec"]["egress"] == [
        {"to": [{"ipBlock": {"cidr": RENDER_ENV["KUBE_API_CIDR"]}}], "ports": [{"protocol": "TCP", "port": 443}]}
    ]

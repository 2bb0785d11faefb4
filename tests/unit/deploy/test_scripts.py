"""The deploy scripts, run for real against fake aws/kubectl/helm/eksctl/docker that record their calls."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import SCRIPTS, base_env, tool
from .fakecli import install

ENV = {
    "AWS_REGION": "eu-west-1",
    "CLUSTER_NAME": "test-cluster",
    "DOMAIN": "chat.example.com",
    "IMAGE_TAG": "0123456789ab",
}
TENANT_SCRIPTS = ("onboard-tenant.sh", "apply-tenant.sh", "ingest.sh", "offboard-tenant.sh", "render.sh")
ALL_SCRIPTS = ("bootstrap-cluster.sh", "build-push.sh", *TENANT_SCRIPTS)


class Fakes:
    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.state = root / "state"
        install(self.bin, self.state)
        tls = root / "tls"
        tls.mkdir()
        (tls / "tls.crt").write_text("fake cert")
        (tls / "tls.key").write_text("fake key")
        self.tls = tls

    def run(self, script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
        for t in ("envsubst", "jq", "openssl", "git"):
            tool(t)
        full = base_env(**{**ENV, **env})
        full["PATH"] = f"{self.bin}:{full['PATH']}"
        full["FAKE_STATE"] = str(self.state)
        return subprocess.run(
            [str(SCRIPTS / script), *args], env=full, capture_output=True, text=True, check=False, timeout=120
        )

    def calls(self) -> list[list[str]]:
        f = self.state / "calls.jsonl"
        return [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []

    def clear_calls(self) -> None:
        (self.state / "calls.jsonl").unlink(missing_ok=True)

    def state_keys(self) -> set[str]:
        f = self.state / "state.json"
        return set(json.loads(f.read_text())) if f.exists() else set()

    def state_value(self, key: str) -> dict:
        return json.loads((self.state / "state.json").read_text())[key]

    def helm_values(self) -> list[dict]:
        f = self.state / "helm-values.jsonl"
        return [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []


@pytest.fixture
def fakes(tmp_path: Path) -> Fakes:
    return Fakes(tmp_path)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def deploy(fakes: Fakes, tenant: str) -> None:
    ok(fakes.run("onboard-tenant.sh", tenant))
    ok(
        fakes.run(
            "apply-tenant.sh", tenant, TLS_CERT_FILE=str(fakes.tls / "tls.crt"), TLS_KEY_FILE=str(fakes.tls / "tls.key")
        )
    )


# --- dry run ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("bootstrap-cluster.sh", []),
        ("build-push.sh", []),
        ("onboard-tenant.sh", ["tenanta"]),
        ("apply-tenant.sh", ["tenanta"]),
        ("ingest.sh", ["tenanta"]),
        ("offboard-tenant.sh", ["tenanta"]),
    ],
)
def test_dry_run_prints_calls_and_runs_none(fakes: Fakes, script: str, args: list[str]) -> None:
    proc = ok(fakes.run(script, "--dry-run", *args))
    assert fakes.calls() == [], "a dry run must not call any tool"
    printed = proc.stdout + proc.stderr
    assert re.search(r"^\+ (aws|kubectl|helm|eksctl|docker|ecr_login|apply_secret_files) ", printed, re.M), printed


# --- onboarding, deploy, offboarding ----------------------------------------------------------------


def test_onboard_creates_the_tenant_resources(fakes: Fakes) -> None:
    ok(fakes.run("onboard-tenant.sh", "tenanta"))
    keys = fakes.state_keys()
    bucket = "s3:tenanta-rag-123456789012-eu-west-1"
    assert {
        bucket,
        "dynamodb:tenanta-chathistory",
        "dynamodb:tenanta-sessions",
        "dynamodb:tenanta-usage",
        "dynamodb:tenanta-quota",
        "dynamodb:tenanta-feedback",
        "iam-role:tenanta-chatbot",
        "iam-policy:tenanta-chatbot:access",
        "iam-role:tenanta-ingest",
        "iam-policy:tenanta-ingest:access",
        "secret:tenant-rag/tenanta/oauth2-proxy",
        "cognito-domain:tenanta-123456789012",
    } <= keys
    b = fakes.state_value(bucket)
    assert "put-bucket-encryption" in b and "put-public-access-block" in b
    assert b["put-bucket-versioning"]["versioning-configuration"] == ["Status=Enabled"]
    assert "RestrictPublicBuckets=true" in b["put-public-access-block"]["public-access-block-configuration"][0]
    for t in ("tenanta-chathistory", "tenanta-sessions", "tenanta-usage", "tenanta-quota", "tenanta-feedback"):
        table = fakes.state_value(f"dynamodb:{t}")
        assert table["ttl"] == ["Enabled=true,AttributeName=expires_at"]
        assert table["pitr"] == ["PointInTimeRecoveryEnabled=true"]
    assert fakes.state_value("dynamodb:tenanta-chathistory")["create"]["key-schema"] == [
        "AttributeName=SessionId,KeyType=HASH"
    ]
    sessions = fakes.state_value("dynamodb:tenanta-sessions")["create"]  # as rag.stores.sessions.TABLE_DEFINITION
    assert sessions["key-schema"] == [
        "AttributeName=TenantId,KeyType=HASH",
        "AttributeName=ConversationId,KeyType=RANGE",
    ]
    assert sessions["attribute-definitions"] == [
        "AttributeName=TenantId,AttributeType=S",
        "AttributeName=ConversationId,AttributeType=S",
        "AttributeName=last_activity,AttributeType=N",
    ]
    assert sessions["local-secondary-indexes"] == [
        "IndexName=ByLastActivity,KeySchema=[{AttributeName=TenantId,KeyType=HASH},"
        "{AttributeName=last_activity,KeyType=RANGE}],Projection={ProjectionType=ALL}"
    ]
    assert fakes.state_value("dynamodb:tenanta-quota")["create"]["key-schema"] == [
        "AttributeName=QuotaKey,KeyType=HASH"
    ]
    for t, sort_key in (("tenanta-usage", "UsageKey"), ("tenanta-feedback", "FeedbackId")):
        create = fakes.state_value(f"dynamodb:{t}")["create"]
        assert create["key-schema"] == [
            "AttributeName=TenantId,KeyType=HASH",
            f"AttributeName={sort_key},KeyType=RANGE",
        ]
        assert create["attribute-definitions"] == [
            "AttributeName=TenantId,AttributeType=S",
            f"AttributeName={sort_key},AttributeType=S",
        ]
    (pool,) = [fakes.state_value(k) for k in keys if k.startswith("cognito-pool:")]
    assert pool["name"] == "tenanta-users" and "Name=tenantid" in pool["schema"][0]
    (client,) = [fakes.state_value(k) for k in keys if k.startswith("cognito-client:")]
    assert "custom:tenantid" in client["opts"]["read-attributes"]
    assert "custom:tenantid" not in client["opts"]["write-attributes"], "users must not set their own tenant"
    # issue 16: an e-mail change must not reach ID tokens unverified, and the app client cannot write it
    assert pool["opts"]["user-attribute-update-settings"] == ["AttributesRequireVerificationBeforeUpdate=email"]
    assert client["opts"]["write-attributes"] == ["name"]
    assert client["opts"]["callback-urls"] == ["https://tenanta.chat.example.com/oauth2/callback"]
    secret = json.loads(fakes.state_value("secret:tenant-rag/tenanta/oauth2-proxy")["SecretString"])
    assert set(secret) == {"client-id", "client-secret", "cookie-secret"} and len(secret["cookie-secret"]) == 32
    # the tenant's admins (they manage the documents): one group in the tenant's own pool
    pool_id = next(k for k in keys if k.startswith("cognito-pool:")).split(":", 1)[1]
    assert [k for k in keys if k.startswith("cognito-group:")] == [f"cognito-group:{pool_id}:admins"]


def test_onboard_is_idempotent(fakes: Fakes) -> None:
    ok(fakes.run("onboard-tenant.sh", "tenanta"))
    before = fakes.state_keys()
    fakes.clear_calls()
    ok(fakes.run("onboard-tenant.sh", "tenanta"))
    assert fakes.state_keys() == before
    creates = [c for c in fakes.calls() if c[0] == "aws" and c[2].startswith("create-")]
    assert creates == [], creates


def test_onboard_stops_on_a_sessions_table_of_the_old_one_row_per_user_layout(fakes: Fakes) -> None:
    ok(fakes.run("onboard-tenant.sh", "tenanta"))
    state = json.loads((fakes.state / "state.json").read_text())
    state["dynamodb:tenanta-sessions"]["create"]["key-schema"] = ["AttributeName=TenantId,KeyType=HASH"]
    (fakes.state / "state.json").write_text(json.dumps(state))
    proc = fakes.run("onboard-tenant.sh", "tenanta")
    assert proc.returncode != 0
    assert "table tenanta-sessions has the keys 'TenantId', expected 'TenantId ConversationId'" in proc.stderr


def policy_grants(policy: dict) -> dict[str, set[str]]:
    """action -> resources, from an IAM policy document (Allow statements only)."""
    grants: dict[str, set[str]] = {}
    for st in policy["Statement"]:
        assert st["Effect"] == "Allow"
        res = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        for action in st["Action"]:
            assert "*" not in action, action
            grants.setdefault(action, set()).update(res)
    return grants


def test_iam_policies_name_only_the_tenants_resources(fakes: Fakes) -> None:
    ok(fakes.run("onboard-tenant.sh", "tenanta"))
    ok(fakes.run("onboard-tenant.sh", "tenantb"))
    embed = "arn:aws:bedrock:eu-west-1::foundation-model/amazon.titan-embed-text-v2:0"
    chat = "arn:aws:bedrock:eu-west-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"
    for tenant, other in (("tenanta", "tenantb"), ("tenantb", "tenanta")):
        bucket = f"arn:aws:s3:::{tenant}-rag-123456789012-eu-west-1"
        tables = {
            f"arn:aws:dynamodb:eu-west-1:123456789012:table/{tenant}-{t}"
            for t in ("chathistory", "sessions", "usage", "quota", "feedback")
        }
        chatbot = policy_grants(fakes.state_value(f"iam-policy:{tenant}-chatbot:access"))
        ingest = policy_grants(fakes.state_value(f"iam-policy:{tenant}-ingest:access"))
        for grants in (chatbot, ingest):
            assert all(other not in r for res in grants.values() for r in res)
        # the chat pod reads the index, uses its tables and both models; it writes and deletes only
        # the admins' documents (documents/), never the index (faiss_index/)
        assert chatbot["s3:ListBucket"] == {bucket} and chatbot["s3:GetObject"] == {f"{bucket}/*"}
        assert chatbot["s3:PutObject"] == {f"{bucket}/documents/*"}
        assert chatbot["s3:DeleteObject"] == {f"{bucket}/documents/*"}
        assert not [
            a
            for a in chatbot
            if a.startswith("s3:")
            and a not in ("s3:ListBucket", "s3:GetBucketLocation", "s3:GetObject", "s3:PutObject", "s3:DeleteObject")
        ]
        assert chatbot["dynamodb:PutItem"] == tables and chatbot["dynamodb:Query"] == tables
        assert chatbot["bedrock:InvokeModel"] == {embed, chat}
        # the ingestion Job writes the index and embeds; no tables, no chat model
        assert ingest["s3:PutObject"] == {f"{bucket}/*"} and ingest["s3:ListBucket"] == {bucket}
        assert not [a for a in ingest if a.startswith("dynamodb:")]
        assert ingest["bedrock:InvokeModel"] == {embed}
        for role, sa in (("chatbot", "chatbot"), ("ingest", "ingest")):
            trust = fakes.state_value(f"iam-role:{tenant}-{role}")["trust"]
            cond = trust["Statement"][0]["Condition"]["StringEquals"]
            assert cond["oidc.eks.eu-west-1.amazonaws.com/id/FAKE:sub"] == f"system:serviceaccount:{tenant}-ns:{sa}"
            assert cond["oidc.eks.eu-west-1.amazonaws.com/id/FAKE:aud"] == "sts.amazonaws.com"


def test_iam_policy_with_inference_profile(fakes: Fakes) -> None:
    ok(fakes.run("onboard-tenant.sh", "tenanta", TEXT2TEXT_MODEL_ID="eu.anthropic.claude-3-7-sonnet-20250219-v1:0"))
    policy = fakes.state_value("iam-policy:tenanta-chatbot:access")
    (bedrock,) = [s for s in policy["Statement"] if s["Sid"] == "BedrockModels"]
    assert bedrock["Resource"] == [
        "arn:aws:bedrock:eu-west-1::foundation-model/amazon.titan-embed-text-v2:0",
        "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.anthropic.claude-3-7-sonnet-20250219-v1:0",
        "arn:aws:bedrock:*::foundation-model/anthropic.claude-3-7-sonnet-20250219-v1:0",
    ]


def test_apply_deploys_everything_and_registers_the_provider(fakes: Fakes) -> None:
    deploy(fakes, "tenanta")
    keys = fakes.state_keys()
    k8s = {k for k in keys if k.startswith("k8s:")}
    for expected in (
        "k8s:/Namespace/tenanta-ns",
        "k8s:/Namespace/tenanta-auth",
        "k8s:tenanta-ns/Deployment/chatbot",
        "k8s:tenanta-auth/Secret/oauth2-proxy",
        "k8s:istio-system/Secret/tenanta-tls",
        "k8s:istio-system/AuthorizationPolicy/ext-authz-tenanta",
        "k8s:tenanta-ns/CronJob/ingest",
    ):
        assert expected in k8s, expected
    assert "k8s:tenanta-ns/Job/ingest" not in k8s, "the one-off Job is started by ingest.sh only"
    calls = fakes.calls()
    kube = [c for c in calls if c[0] == "kubectl"]
    assert not [c for c in kube if c[1] == "create" and "--dry-run=client" not in c]
    assert any(c[1:3] == ["apply", "--dry-run=server"] for c in kube), "server-side dry run before applying"
    assert any(c[1:3] == ["rollout", "status"] for c in kube)
    (helm_call,) = fakes.helm_values()
    assert helm_call["args"][:3] == ["upgrade", "--install", "istiod"] and "--version" in helm_call["args"]
    providers = yaml.safe_load(helm_call["values"][-1])["meshConfig"]["extensionProviders"]
    assert [p["name"] for p in providers] == ["oauth2-proxy-tenanta"]
    assert providers[0]["envoyExtAuthzHttp"]["service"] == "oauth2-proxy.tenanta-auth.svc.cluster.local"
    # the provider is registered before the CUSTOM policy that names it is applied
    order = [c[0] for c in calls if c[0] == "helm" or (c[0] == "kubectl" and c[1:2] == ["apply"] and len(c) > 6)]
    assert order.index("helm") < order.index("kubectl")
    # apply twice: the same objects (kubectl apply only)
    ok(
        fakes.run(
            "apply-tenant.sh",
            "tenanta",
            TLS_CERT_FILE=str(fakes.tls / "tls.crt"),
            TLS_KEY_FILE=str(fakes.tls / "tls.key"),
        )
    )
    assert fakes.state_keys() == keys


def test_ingest_replaces_and_waits_for_the_job(fakes: Fakes) -> None:
    deploy(fakes, "tenanta")
    fakes.clear_calls()
    ok(fakes.run("ingest.sh", "tenanta"))
    kube = [c[1:] for c in fakes.calls() if c[0] == "kubectl"]
    verbs = [c[0] for c in kube]
    assert verbs.index("delete") < verbs.index("apply") < verbs.index("wait")
    assert kube[verbs.index("wait")][:5] == ["wait", "--for=condition=complete", "job/ingest", "-n", "tenanta-ns"]
    assert "k8s:tenanta-ns/Job/ingest" in fakes.state_keys()


def test_onboard_then_offboard_leaves_nothing_behind(fakes: Fakes) -> None:
    deploy(fakes, "tenantb")
    keep = fakes.state_keys()
    fakes.clear_calls()  # from here on, every call is about tenanta
    deploy(fakes, "tenanta")
    ok(fakes.run("ingest.sh", "tenanta"))
    assert fakes.state_keys() > keep
    ok(fakes.run("offboard-tenant.sh", "--yes", "tenanta"))
    assert fakes.state_keys() == keep, "offboarding tenanta must remove exactly what tenanta added"
    assert not [k for k in fakes.state_keys() if "tenanta" in k]
    providers = yaml.safe_load(fakes.helm_values()[-1]["values"][-1])["meshConfig"]["extensionProviders"]
    assert [p["name"] for p in providers] == ["oauth2-proxy-tenantb"]
    # every AWS create-* call of tenanta has a matching delete-* call
    aws = [c for c in fakes.calls() if c[0] == "aws"]
    created = {c[2].removeprefix("create-") for c in aws if c[2].startswith("create-")}
    deleted = {c[2].removeprefix("delete-") for c in aws if c[2].startswith("delete-")}
    assert created == {
        "user-pool",
        "user-pool-domain",
        "user-pool-client",
        "group",
        "secret",
        "bucket",
        "table",
        "role",
    }
    # a pool's clients and groups go with the pool
    assert created - {"user-pool-client", "group"} <= deleted, created - deleted
    assert not [c for c in fakes.calls() if "tenantb" in " ".join(c)], "tenanta's scripts touched tenantb"
    ok(fakes.run("offboard-tenant.sh", "--yes", "tenanta"))  # again: nothing left to do, no error
    ok(fakes.run("offboard-tenant.sh", "--yes", "tenantb"))
    assert fakes.state_keys() == set()


def test_offboard_needs_yes(fakes: Fakes) -> None:
    proc = fakes.run("offboard-tenant.sh", "tenanta")
    assert proc.returncode != 0 and "--yes" in proc.stderr
    assert fakes.calls() == []


@pytest.mark.parametrize("script", TENANT_SCRIPTS)
@pytest.mark.parametrize(
    "bad",
    [
        "A",
        "ab",
        "Tenanta",
        "-tenant",
        "tenant-",
        "tenant_a",
        "tenanta;id",
        "../etc",
        "tenant a",
        "t" * 33,
        "",
        "tenanta\n",
    ],
)
def test_bad_tenant_refused_before_any_call(fakes: Fakes, script: str, bad: str, tmp_path: Path) -> None:
    args = [bad, str(tmp_path / "out")] if script == "render.sh" else [bad]
    if script == "offboard-tenant.sh":
        args.insert(0, "--yes")
    proc = fakes.run(script, *args)
    assert proc.returncode != 0
    refusal = "unknown option" if bad.startswith("-") else "invalid tenant id"
    assert refusal in proc.stderr, proc.stderr
    assert fakes.calls() == []


def test_build_push_pinned_tag_and_immutable_repos(fakes: Fakes) -> None:
    ok(fakes.run("build-push.sh", IMAGE_TAG="0123456789ab"))
    calls = fakes.calls()
    repos = [c for c in calls if c[:3] == ["aws", "ecr", "create-repository"]]
    assert len(repos) == 2 and all("IMMUTABLE" in c for c in repos)
    builds = [c for c in calls if c[:2] == ["docker", "build"]]
    assert {c[c.index("-f") + 1].rsplit("/", 1)[1] for c in builds} == {"Dockerfile.chatbot", "Dockerfile.ragapi"}
    pushes = [c[2] for c in calls if c[:2] == ["docker", "push"]]
    assert sorted(pushes) == [
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/tenant-rag/chatbot-ragapi:0123456789ab",
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/tenant-rag/chatbot-webapp:0123456789ab",
    ]
    proc = fakes.run("build-push.sh", IMAGE_TAG="latest")
    assert proc.returncode != 0 and "pinned" in proc.stderr


def test_bootstrap_pins_istio_and_sets_up_irsa(fakes: Fakes) -> None:
    ok(fakes.run("bootstrap-cluster.sh"))
    calls = fakes.calls()
    assert any(c[:3] == ["eksctl", "create", "cluster"] for c in calls)
    assert any(c[:3] == ["eksctl", "utils", "associate-iam-oidc-provider"] and "--approve" in c for c in calls)
    helm = [c for c in calls if c[0] == "helm"]
    assert {c[3] for c in helm} == {"istio-base", "istio-cni", "istiod", "istio-ingressgateway"}
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", c[c.index("--version") + 1]) for c in helm)
    assert any(c[:2] == ["kubectl", "apply"] for c in calls), "the header-stripping EnvoyFilter"


# --- pgvector: Aurora in the bootstrap, schema + role in onboarding, removal in offboarding ---------

PGVECTOR = {"VECTOR_STORE": "pgvector", "PYTHON": sys.executable}
AURORA = "rds-cluster:test-cluster-rag-pg"


def psql_runs(fakes: Fakes) -> list[dict]:
    f = fakes.state / "psql.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []


def test_bootstrap_without_the_flag_creates_no_database(fakes: Fakes) -> None:
    ok(fakes.run("bootstrap-cluster.sh"))
    assert not [c for c in fakes.calls() if c[0] == "aws" and c[1] in ("rds", "ec2")]


def test_bootstrap_with_aurora_creates_a_serverless_v2_cluster_once(fakes: Fakes) -> None:
    ok(fakes.run("bootstrap-cluster.sh", "--with-aurora"))
    cluster = fakes.state_value(AURORA)["opts"]
    assert cluster["engine"] == ["aurora-postgresql"] and cluster["engine-version"] == ["16.6"]
    assert cluster["serverless-v2-scaling-configuration"] == ["MinCapacity=0.5,MaxCapacity=16"]
    for flag in ("enable-iam-database-authentication", "storage-encrypted", "manage-master-user-password"):
        assert flag in cluster, flag
    assert cluster["vpc-security-group-ids"] == ["sg-0rag"] and cluster["database-name"] == ["rag"]
    instance = fakes.state_value("rds-instance:test-cluster-rag-pg-1")
    assert instance["db-instance-class"] == ["db.serverless"] and "no-publicly-accessible" in instance
    group = fakes.state_value("ec2-sg:test-cluster-rag-pg")
    assert group["ingress"] == ["IpProtocol=tcp,FromPort=5432,ToPort=5432,UserIdGroupPairs=[{GroupId=sg-0cluster}]"]
    assert fakes.state_value("rds-subnet-group:test-cluster-rag-pg")["subnet-ids"] == ["subnet-0a", "subnet-0b"]
    fakes.clear_calls()
    ok(fakes.run("bootstrap-cluster.sh", "--with-aurora"))
    creates = [c for c in fakes.calls() if c[0] == "aws" and c[1] in ("rds", "ec2") and c[2].startswith("create-")]
    assert creates == [], creates


def test_pgvector_onboarding_makes_schema_role_and_iam_for_that_tenant_only(fakes: Fakes) -> None:
    ok(fakes.run("bootstrap-cluster.sh", "--with-aurora"))
    ok(fakes.run("onboard-tenant.sh", "tenanta", **PGVECTOR))
    ok(fakes.run("onboard-tenant.sh", "tenant-b", **PGVECTOR))
    runs = psql_runs(fakes)
    assert len(runs) == 2
    for run, role in zip(runs, ("tenant_tenanta", "tenant_tenant_b"), strict=True):
        assert f'CREATE SCHEMA IF NOT EXISTS "{role}" AUTHORIZATION "{role}"' in run["sql"]
        assert f'GRANT rds_iam TO "{role}"' in run["sql"] and "CREATE EXTENSION IF NOT EXISTS vector" in run["sql"]
        assert run["password"] == "fake-pw" and run["sslmode"] == "require"
        assert "fake-pw" not in " ".join(run["args"]), "the master password must not be on a command line"
        assert "test-cluster-rag-pg.cluster-fake.eu-west-1.rds.amazonaws.com" in run["args"]
    other_role = "tenant_tenant_b"
    assert other_role not in runs[0]["sql"]
    for tenant, role in (("tenanta", "tenant_tenanta"), ("tenant-b", "tenant_tenant_b")):
        for kind in ("chatbot", "ingest"):
            grants = policy_grants(fakes.state_value(f"iam-policy:{tenant}-{kind}:access"))
            assert grants["rds-db:connect"] == {
                f"arn:aws:rds-db:eu-west-1:123456789012:dbuser:cluster-FAKERESOURCEID/{role}"
            }


def test_faiss_onboarding_touches_no_database(fakes: Fakes) -> None:
    ok(fakes.run("onboard-tenant.sh", "tenanta"))
    assert psql_runs(fakes) == []
    assert "rds-db:connect" not in policy_grants(fakes.state_value("iam-policy:tenanta-chatbot:access"))


def test_pgvector_offboarding_drops_the_schema_and_role(fakes: Fakes) -> None:
    ok(fakes.run("bootstrap-cluster.sh", "--with-aurora"))
    ok(fakes.run("onboard-tenant.sh", "tenanta", **PGVECTOR))
    ok(fakes.run("offboard-tenant.sh", "--yes", "tenanta", **PGVECTOR))
    last = psql_runs(fakes)[-1]["sql"]
    assert 'DROP SCHEMA IF EXISTS "tenant_tenanta" CASCADE' in last and 'DROP ROLE IF EXISTS "tenant_tenanta"' in last
    assert AURORA in fakes.state_keys(), "offboarding one tenant keeps the shared cluster"

"""The Kubernetes runner against a local stand-in of the Kubernetes API (HTTPS, bearer token, RBAC).

The stand-in serves the rendered ``manifests/cronjob-ingest.yaml``, records every request, checks
the ServiceAccount token, and authorizes each request against the rendered
``manifests/role-ingestion-trigger.yaml`` as the API server's RBAC would (403 otherwise). The
runner uses the official ``kubernetes`` client with its in-cluster loader (token file, CA file,
``KUBERNETES_SERVICE_HOST``/``PORT``), as in the pod.
"""

from __future__ import annotations

import copy
import datetime
import ipaddress
import json
import re
import ssl
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from kubernetes import client as k8s
from kubernetes.config.incluster_config import InClusterConfigLoader

from api.main import create_app
from api.services.runners import RUN_ID_LABEL, KubernetesIngestionRunner, RunnerUnavailableError
from rag.documents.contract import new_run_id
from tests.conftest import REPO_ROOT
from tests.unit.api.fakes import fake_embeddings, make_settings, publish_index

pytestmark = pytest.mark.integration

NAMESPACE = "tenanta-ns"
VALUES = {
    "NAMESPACE": NAMESPACE, "TENANT_ID": "tenanta", "APP_VERSION": "abc123", "IMAGE_REGISTRY": "registry.example",
    "IMAGE_TAG": "abc123", "INGEST_SCHEDULE": "0 3 * * *", "CONTEXTUAL_DATA_BUCKET": "tenanta-rag-bucket",
    "EMBEDDING_MODEL_ID": "amazon.titan-embed-text-v2:0", "AWS_REGION": "eu-west-1",
}  # fmt: skip


def render(name: str) -> dict:
    text = (REPO_ROOT / "manifests" / name).read_text()
    return yaml.safe_load(re.sub(r"\$\{(\w+)\}", lambda m: VALUES[m.group(1)], text))


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = tmp / "ca.crt", tmp / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@dataclass
class FakeApiServer:
    """Records requests; answers CronJob get, Job create and Job list; enforces token and Role."""

    token: str
    role: dict
    cronjob: dict
    requests: list[dict] = field(default_factory=list)
    jobs: dict[str, dict] = field(default_factory=dict)

    def allowed(self, verb: str, resource: str, name: str | None) -> bool:
        for rule in self.role["rules"]:
            if "batch" in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]:
                names = rule.get("resourceNames")
                if not names or name in names:
                    return True
        return False

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
        parts = urlsplit(target)
        record = {"method": method, "path": parts.path, "query": parse_qs(parts.query),
                  "authorization": headers.get("authorization"), "body": json.loads(body) if body else None}  # fmt: skip
        self.requests.append(record)
        scheme, _, presented = (headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or presented != self.token:  # RFC 7235: the scheme is case-insensitive
            return 401, {"kind": "Status", "status": "Failure", "reason": "Unauthorized", "code": 401}
        match = re.fullmatch(r"/apis/batch/v1/namespaces/([^/]+)/(jobs|cronjobs)(?:/([^/]+))?", parts.path)
        if not match:
            return 404, {"kind": "Status", "code": 404, "reason": "NotFound"}
        namespace, resource, name = match.groups()
        verb = {"POST": "create", "GET": "get" if name else "list"}.get(method, method.lower())
        if namespace != NAMESPACE or not self.allowed(verb, resource, name):
            record["denied"] = True
            return 403, {"kind": "Status", "code": 403, "reason": "Forbidden",
                         "message": f"{verb} {resource}/{name} in {namespace} is forbidden"}  # fmt: skip
        if resource == "cronjobs":
            return (200, self.cronjob) if name == self.cronjob["metadata"]["name"] else (404, {"code": 404})
        if method == "POST":
            job = copy.deepcopy(record["body"])
            job["metadata"]["uid"] = str(uuid.uuid4())
            job["status"] = {}
            self.jobs[job["metadata"]["name"]] = job
            return 201, job
        selector = dict(s.split("=", 1) for s in record["query"].get("labelSelector", [""])[0].split(",") if s)
        items = [j for j in self.jobs.values() if all(j["metadata"]["labels"].get(k) == v for k, v in selector.items())]
        return 200, {"apiVersion": "batch/v1", "kind": "JobList", "metadata": {}, "items": items}


@pytest.fixture
def apiserver(tmp_path: Path) -> Iterator[tuple[FakeApiServer, dict[str, str], Path]]:
    cert, key = self_signed(tmp_path)
    cronjob = render("cronjob-ingest.yaml")
    cronjob["metadata"]["uid"] = "cron-uid-1"
    fake = FakeApiServer(token="sa-token-123", role=render("role-ingestion-trigger.yaml"), cronjob=cronjob)

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            status, payload = fake.handle(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                          self.rfile.read(length) if length else b"")  # fmt: skip
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    token_file = tmp_path / "token"
    token_file.write_text(fake.token)
    environ = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(server.server_address[1])}
    try:
        yield fake, environ, cert
    finally:
        server.shutdown()
        server.server_close()


def in_cluster_api(environ: dict[str, str], token_file: Path, cert: Path) -> k8s.BatchV1Api:
    configuration = k8s.Configuration()
    InClusterConfigLoader(str(token_file), str(cert), environ=environ).load_and_set(configuration)
    return k8s.BatchV1Api(k8s.ApiClient(configuration))


def test_runner_creates_a_job_from_the_cronjob_with_only_the_roles_rights(apiserver, tmp_path):
    fake, environ, cert = apiserver
    runner = KubernetesIngestionRunner(NAMESPACE, "ingest", in_cluster_api(environ, tmp_path / "token", cert))
    run_id = new_run_id()
    name = runner.start(run_id)
    assert name == f"ingest-web-{run_id.lower()}"
    (created,) = [r for r in fake.requests if r["method"] == "POST"]
    job = created["body"]
    assert created["path"] == f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"
    assert job["metadata"]["labels"][RUN_ID_LABEL] == run_id
    assert job["metadata"]["labels"]["app.kubernetes.io/name"] == "chatbot-ingest"
    assert job["metadata"]["annotations"] == {"cronjob.kubernetes.io/instantiate": "manual"}
    (owner,) = job["metadata"]["ownerReferences"]
    assert owner["kind"] == "CronJob" and owner["name"] == "ingest" and owner["uid"] == "cron-uid-1"
    template = fake.cronjob["spec"]["jobTemplate"]["spec"]
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ingest" and pod["restartPolicy"] == "Never"
    assert job["spec"]["activeDeadlineSeconds"] == template["activeDeadlineSeconds"]
    (container,) = pod["containers"]
    assert container["command"] == template["template"]["spec"]["containers"][0]["command"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["INGESTION_RUN_ID"] == run_id and env["INGESTION_TRIGGER"] == "web"  # not "schedule"
    assert env["CONTEXTUAL_DATA_BUCKET"] == "tenanta-rag-bucket"

    assert runner.active_runs() == [run_id]
    fake.jobs[name]["status"] = {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}
    assert runner.active_runs() == []

    # every call carried the mounted token, and the Role allowed each one
    assert {r["authorization"].lower() for r in fake.requests} == {"bearer sa-token-123"}
    assert not [r for r in fake.requests if r.get("denied")]
    assert {(r["method"], r["path"].rsplit("/", 1)[-1]) for r in fake.requests} == {
        ("GET", "ingest"),
        ("POST", "jobs"),
        ("GET", "jobs"),
    }


def test_refusals_become_runner_errors(apiserver, tmp_path):
    fake, environ, cert = apiserver
    (tmp_path / "wrong").write_text("not-the-token")
    runner = KubernetesIngestionRunner(NAMESPACE, "ingest", in_cluster_api(environ, tmp_path / "wrong", cert))
    with pytest.raises(RunnerUnavailableError, match="401"):
        runner.start(new_run_id())
    other = KubernetesIngestionRunner(NAMESPACE, "other-cronjob", in_cluster_api(environ, tmp_path / "token", cert))
    with pytest.raises(RunnerUnavailableError, match="403"):  # the Role names only the ingest CronJob
        other.start(new_run_id())
    assert fake.jobs == {}


def test_api_starts_one_job_and_answers_409_while_it_runs(apiserver, tmp_path):
    fake, environ, cert = apiserver
    runner = KubernetesIngestionRunner(NAMESPACE, "ingest", in_cluster_api(environ, tmp_path / "token", cert))
    index = tmp_path / "index"
    publish_index(index)
    (tmp_path / "docs").mkdir()
    settings = make_settings(index, auth_mode="dev", documents_uri=str(tmp_path / "docs"))
    with TestClient(create_app(settings=settings, embeddings=fake_embeddings(), ingestion_runner=runner)) as api:
        first = api.post("/api/v1/ingestions")
        assert first.status_code == 202, first.text
        second = api.post("/api/v1/ingestions")
        assert second.status_code == 409 and second.json()["error"] == "ingestion_running"
        latest = api.get("/api/v1/ingestions/latest").json()
        assert latest["state"] == "queued" and latest["run_id"] == first.json()["run_id"]
    assert [r["method"] for r in fake.requests].count("POST") == 1

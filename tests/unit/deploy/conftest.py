"""Fixtures for the deployment tests: tool lookup, rendered manifests for two tenants, fake CLIs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
SCRIPTS = REPO_ROOT / "deploy-scripts"
TENANTS = ("tenanta", "tenantb")

# Cluster/account values for rendering: made up, never real.
RENDER_ENV = {
    "AWS_REGION": "eu-west-1",
    "ACCOUNT_ID": "123456789012",
    "DOMAIN": "chat.example.com",
    "IMAGE_TAG": "0123456789ab",
    "COGNITO_USER_POOL_ID": "eu-west-1_TestPool1",
    "COGNITO_CLIENT_ID": "testclient123",
    "CLUSTER_NAME": "test-cluster",
    "KUBE_API_CIDR": "10.20.0.0/16",
}
#: tenantb is rendered with the pgvector backend (VECTOR_STORE=pgvector), tenanta with FAISS.
PGVECTOR_TENANTS = ("tenantb",)
PGVECTOR_RENDER_ENV = {
    "VECTOR_STORE": "pgvector",
    "PG_HOST": "test-cluster-rag-pg.cluster-abc123.eu-west-1.rds.amazonaws.com",
    "PG_EGRESS_CIDR": "192.168.0.0/16",
}


def tool(name: str) -> str:
    """Path of a CLI tool: the venv's bin/ first, then PATH. A missing tool fails the test (no skip)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        pytest.fail(
            f"required tool {name!r} not found (venv bin/ or PATH); see docs/deploy.md for the test prerequisites"
        )
    return found


def base_env(**extra: str) -> dict[str, str]:
    """A clean environment for the scripts: PATH and HOME only, plus the given values."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"), "LC_ALL": "C.UTF-8"}
    env.update(extra)
    return env


def tenant_names(tenant: str) -> dict[str, str]:
    """The names deploy-scripts/lib.sh derives for a tenant (the tests check they stay in its objects)."""
    return {
        "namespace": f"{tenant}-ns",
        "auth_namespace": f"{tenant}-auth",
        "host": f"{tenant}.{RENDER_ENV['DOMAIN']}",
        "claim": tenant,
        "bucket": f"{tenant}-rag-{RENDER_ENV['ACCOUNT_ID']}-{RENDER_ENV['AWS_REGION']}",
        "chathistory": f"{tenant}-chathistory",
        "sessions": f"{tenant}-sessions",
        "role": f"{tenant}-chatbot",
    }


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every template rendered by deploy-scripts/render.sh for both tenants: <root>/<tenant>/{manifests,istio}/...
    (tenantb with ``VECTOR_STORE=pgvector``, so its extra objects go through every check too)."""
    tool("envsubst")
    root = tmp_path_factory.mktemp("rendered")
    for tenant in TENANTS:
        proc = subprocess.run(
            [str(SCRIPTS / "render.sh"), tenant, str(root / tenant)],
            env=base_env(**RENDER_ENV, **(PGVECTOR_RENDER_ENV if tenant in PGVECTOR_TENANTS else {})),
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
    return root


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(scope="session")
def objects(rendered: Path) -> dict[str, list[tuple[Path, dict]]]:
    """tenant -> [(file, object)] for every rendered object."""
    out: dict[str, list[tuple[Path, dict]]] = {}
    for tenant in TENANTS:
        out[tenant] = [(f, d) for f in sorted((rendered / tenant).rglob("*.yaml")) for d in load_docs(f)]
    return out

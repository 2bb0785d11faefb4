"""Malformed tenant ids are refused at every entry point: RAG API start, ingestion, deploy scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

BAD_IDS = ["../tenanta", "tenant/a", "TenantA", "a" * 64]
LAYER = "entry point"
SCRIPTS = {
    "onboard-tenant.sh": ["--dry-run", "{t}"],
    "apply-tenant.sh": ["--dry-run", "{t}"],
    "ingest.sh": ["--dry-run", "{t}"],
    "offboard-tenant.sh": ["--dry-run", "--yes", "{t}"],
    "render.sh": ["{t}", "{out}"],
}
SCRIPT_ENV = {
    "AWS_REGION": "eu-west-1",
    "ACCOUNT_ID": "123456789012",
    "DOMAIN": "chat.example.com",
    "IMAGE_TAG": "0123456789ab",
    "CLUSTER_NAME": "test-cluster",
    "COGNITO_USER_POOL_ID": "eu-west-1_Pool1",
    "COGNITO_CLIENT_ID": "client1",
    "KUBE_API_CIDR": "10.20.0.0/16",
}


def _short(tenant: str) -> str:
    return tenant if len(tenant) < 20 else f"{tenant[:3]}... ({len(tenant)} chars)"


def _env(**extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", "LC_ALL": "C.UTF-8", **extra}


@pytest.mark.parametrize("tenant", BAD_IDS)
def test_rag_api_refuses_to_start(tenant: str, tmp_path: Path, attempts) -> None:
    env = _env(
        TENANT_ID=tenant,
        INDEX_URI=str(tmp_path / "index"),
        HISTORY_URL=f"sqlite:///{tmp_path}/h.db",
        EMBEDDINGS_PROVIDER="local",
        LLM_PROVIDER="extractive",
        HF_HUB_OFFLINE="1",
        PYTHONPATH=str(REPO_ROOT),
        HOME=str(tmp_path),
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "api/gunicorn.conf.py",
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "1",
            "api.main:app",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = proc.stdout + proc.stderr
    refused = proc.returncode != 0 and "TENANT_ID: invalid tenant id" in output
    assert attempts.record(
        LAYER,
        f"RAG API (gunicorn) with TENANT_ID={_short(tenant)}",
        "exits, names TENANT_ID",
        "exits, names TENANT_ID" if refused else f"rc={proc.returncode}",
    ), output[-2000:]


@pytest.mark.parametrize("tenant", BAD_IDS)
def test_ingestion_refuses(tenant: str, tmp_path: Path, attempts) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ingest",
            "--tenant",
            tenant,
            "--source",
            str(tmp_path),
            "--index-uri",
            str(tmp_path / "index"),
            "--dry-run",
        ],
        cwd=REPO_ROOT,
        env=_env(PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    refused = proc.returncode != 0 and "invalid tenant id" in proc.stdout + proc.stderr
    assert attempts.record(
        LAYER,
        f"python -m ingest --tenant {_short(tenant)}",
        "refused",
        "refused" if refused else f"rc={proc.returncode}",
    ), proc.stderr[-2000:]
    assert not (tmp_path / "index").exists()


@pytest.mark.parametrize("script", list(SCRIPTS))
@pytest.mark.parametrize("tenant", BAD_IDS)
def test_deploy_scripts_refuse(script: str, tenant: str, tmp_path: Path, attempts) -> None:
    args = [a.format(t=tenant, out=tmp_path / "out") for a in SCRIPTS[script]]
    proc = subprocess.run(
        [str(REPO_ROOT / "deploy-scripts" / script), *args],
        env=_env(**SCRIPT_ENV),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    refused = proc.returncode != 0 and "invalid tenant id" in proc.stderr and "+ " not in proc.stdout
    assert attempts.record(
        LAYER,
        f"deploy-scripts/{script} {_short(tenant)}",
        "refused before any call",
        "refused before any call" if refused else f"rc={proc.returncode}",
    ), proc.stderr
    assert not (tmp_path / "out").exists()

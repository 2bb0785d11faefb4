"""Start the RAG API under real gunicorn for a test, and make sure nothing outlives the test."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT


def start_gunicorn(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen:
    """``gunicorn -c api/gunicorn.conf.py api.main:app`` as in the pod, logging to ``tmp_path/gunicorn.log``.

    The process gets its own process group so :func:`kill_gunicorn` reaches the workers too.
    """
    log = (tmp_path / "gunicorn.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "api/gunicorn.conf.py", "api.main:app"],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_gunicorn(proc: subprocess.Popen) -> None:
    """SIGKILL gunicorn's whole process group (master and workers) if anything is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def gunicorn_env(tmp_path: Path, index: Path, bedrock_endpoint: str, port: int, **extra: str) -> dict[str, str]:
    """Environment of the ragapi container (fake Bedrock for model and Titan, SQLite history);
    ``extra`` adds variables or overrides these."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "HF_HUB_OFFLINE": "1",
        "TENANT_ID": "tenanta",
        "INDEX_URI": str(index),
        "INDEX_POLL_SECONDS": "0.5",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": bedrock_endpoint,
        "LLM_PROVIDER": "bedrock",
        "EMBEDDINGS_PROVIDER": "bedrock",
        "TEXT2TEXT_MODEL_ID": "anthropic.claude-3-haiku-20240307-v1:0",
        "HISTORY_URL": f"sqlite:///{tmp_path}/history.db",
        "RAGAPI_PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
        **extra,
    }

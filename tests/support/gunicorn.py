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

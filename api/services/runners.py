"""Running the ingestion job on demand: one interface, two implementations.

- :class:`KubernetesIngestionRunner` (``INGESTION_RUNNER=kubernetes``, in the cluster): creates a
  Job from the tenant's CronJob template in the pod's own namespace, as ``kubectl create job
  --from=cronjob/ingest`` does, through the official ``kubernetes`` client with the in-cluster
  configuration (the ServiceAccount token the Deployment projects into the ``ragapi`` container).
  The Role ``manifests/role-ingestion-trigger.yaml`` allows exactly this: create/get/list/watch
  Jobs, get that one CronJob.
- :class:`LocalIngestionRunner` (``INGESTION_RUNNER=local``, ``make demo``): ``python -m ingest`` as
  a child process with the API's own environment.

Both pass the run id and the trigger to the job (``INGESTION_RUN_ID``, ``INGESTION_TRIGGER=web``),
which writes them into the status object (:mod:`rag.documents.status`).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from rag.settings import Settings

log = logging.getLogger("api.ingestion")

#: Label on every ingestion Job (the CronJob's template carries it too), used to find running ones.
JOB_NAME_LABEL = "app.kubernetes.io/name"
JOB_NAME_VALUE = "chatbot-ingest"
#: Label with the run id on Jobs the API creates.
RUN_ID_LABEL = "tenant-rag.io/ingestion-run-id"
#: Where the in-cluster configuration finds the pod's namespace.
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class RunnerUnavailableError(RuntimeError):
    """The job could not be started or inspected (Kubernetes API unreachable or refusing, disabled)."""


class IngestionRunner(Protocol):
    """Starts ingestion runs and says which are still going."""

    def start(self, run_id: str) -> str:
        """Start a run; returns its handle (Job name or process id).

        Raises:
            RunnerUnavailableError: nothing was started.
        """

    def active_runs(self) -> list[str]:
        """Run ids of runs not finished yet (runs without a known id, e.g. scheduled ones, as ``""``).

        Raises:
            RunnerUnavailableError: the state cannot be read.
        """


class DisabledRunner:
    """``INGESTION_RUNNER=none``: re-indexing on demand is off (the CronJob still runs)."""

    def start(self, run_id: str) -> str:
        """Always refuses."""
        raise RunnerUnavailableError("re-indexing on demand is disabled here (INGESTION_RUNNER=none)")

    def active_runs(self) -> list[str]:
        """Nothing is known to run."""
        return []


class LocalIngestionRunner:
    """``python -m ingest --tenant T`` as a child process (its output goes to the API's stderr).

    Args:
        tenant: the tenant id.
        python: the interpreter (default: this one).
        env: the child's environment (default: this process's).
    """

    def __init__(self, tenant: str, *, python: str = sys.executable, env: dict[str, str] | None = None) -> None:
        self.tenant = tenant
        self.python = python
        self.env = dict(os.environ if env is None else env)
        self._runs: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def start(self, run_id: str) -> str:
        """See :class:`IngestionRunner`."""
        env = {**self.env, "INGESTION_RUN_ID": run_id, "INGESTION_TRIGGER": "web", "TENANT_ID": self.tenant}
        root = Path(__file__).resolve().parents[2]
        if (root / "ingest" / "__main__.py").is_file():  # a checkout: make sure the child imports the same tree
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
        argv = [self.python, "-m", "ingest", "--tenant", self.tenant, "--no-progress", "--trigger", "web"]
        try:
            process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)  # noqa: S603 - fixed argv
        except OSError as exc:
            raise RunnerUnavailableError(f"could not start python -m ingest: {exc}") from None
        with self._lock:
            self._runs[run_id] = process
        threading.Thread(target=process.wait, name=f"ingest-{run_id}", daemon=True).start()  # reap it
        log.info("ingestion %s started as process %d", run_id, process.pid)
        return str(process.pid)

    def active_runs(self) -> list[str]:
        """See :class:`IngestionRunner` (only this process's children are known)."""
        with self._lock:
            return [run_id for run_id, process in self._runs.items() if process.poll() is None]


def _job_finished(job: Any) -> bool:
    status = job.status
    if status is None:
        return False
    for condition in status.conditions or []:
        if (
            condition.type in ("Complete", "Failed", "SuccessCriteriaMet", "FailureTarget")
            and condition.status == "True"
        ):
            return True
    return False


class KubernetesIngestionRunner:
    """A Job from the tenant's CronJob template, in the pod's namespace.

    Args:
        namespace: the tenant namespace (``<tenant>-ns``).
        cronjob: the CronJob's name (``INGESTION_CRONJOB``, default ``ingest``).
        batch_api: a ``kubernetes.client.BatchV1Api`` (tests pass one configured for a stub server).
    """

    def __init__(self, namespace: str, cronjob: str, batch_api: Any) -> None:
        self.namespace = namespace
        self.cronjob = cronjob
        self.batch = batch_api

    def _job(self, cron: Any, run_id: str) -> Any:
        from kubernetes import client

        template = cron.spec.job_template
        spec = template.spec
        for container in spec.template.spec.containers:
            env = [e for e in container.env or [] if e.name not in ("INGESTION_RUN_ID", "INGESTION_TRIGGER")]
            container.env = [
                *env,
                client.V1EnvVar(name="INGESTION_RUN_ID", value=run_id),
                client.V1EnvVar(name="INGESTION_TRIGGER", value="web"),
            ]
        labels = dict((template.metadata.labels if template.metadata else None) or {})
        labels.update({JOB_NAME_LABEL: JOB_NAME_VALUE, RUN_ID_LABEL: run_id})
        owner = client.V1OwnerReference(
            api_version="batch/v1",
            kind="CronJob",
            name=cron.metadata.name,
            uid=cron.metadata.uid,
            controller=True,
            block_owner_deletion=False,
        )
        return client.V1Job(
            api_version="batch/v1",
            kind="Job",
            metadata=client.V1ObjectMeta(
                name=f"{self.cronjob}-web-{run_id.lower()}",
                namespace=self.namespace,
                labels=labels,
                annotations={"cronjob.kubernetes.io/instantiate": "manual"},
                owner_references=[owner],
            ),
            spec=spec,
        )

    def start(self, run_id: str) -> str:
        """See :class:`IngestionRunner`: read the CronJob, create the Job."""
        with kubernetes_errors("the ingestion Job"):
            cron = self.batch.read_namespaced_cron_job(self.cronjob, self.namespace)
            job = self.batch.create_namespaced_job(self.namespace, self._job(cron, run_id))
        log.info("ingestion %s started as Job %s/%s", run_id, self.namespace, job.metadata.name)
        return str(job.metadata.name)

    def active_runs(self) -> list[str]:
        """See :class:`IngestionRunner`: unfinished Jobs labelled ``app.kubernetes.io/name=chatbot-ingest``."""
        with kubernetes_errors("to list Jobs"):
            jobs = self.batch.list_namespaced_job(self.namespace, label_selector=f"{JOB_NAME_LABEL}={JOB_NAME_VALUE}")
        return [str((job.metadata.labels or {}).get(RUN_ID_LABEL, "")) for job in jobs.items if not _job_finished(job)]


@contextmanager
def kubernetes_errors(refused: str) -> Iterator[None]:
    """Turn the Kubernetes client's failures inside the block into :class:`RunnerUnavailableError`.

    Args:
        refused: what the API refused, completing "the Kubernetes API refused ..." (``"the ingestion Job"``).

    Raises:
        RunnerUnavailableError: for an ``ApiException`` (an HTTP error status, with its status and reason)
            or a transport failure (urllib3 ``HTTPError``, ``OSError``; the message names only the
            exception's type).
    """
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as exc:
        raise RunnerUnavailableError(f"the Kubernetes API refused {refused} ({exc.status} {exc.reason})") from None
    except (HTTPError, OSError) as exc:
        raise RunnerUnavailableError(f"the Kubernetes API is unreachable ({type(exc).__name__})") from None


def in_cluster_batch_api() -> Any:
    """A ``BatchV1Api`` with the in-cluster configuration (ServiceAccount token, CA, ``KUBERNETES_SERVICE_HOST``).

    Raises:
        RunnerUnavailableError: not in a pod, or no token mounted.
    """
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException as exc:
        raise RunnerUnavailableError(f"no in-cluster Kubernetes configuration ({exc})") from None
    return client.BatchV1Api()


def make_runner(settings: Settings, *, batch_api: Any = None) -> IngestionRunner:
    """The runner ``INGESTION_RUNNER`` names.

    Args:
        settings: ``INGESTION_RUNNER``, ``INGESTION_CRONJOB``, ``KUBERNETES_NAMESPACE``, ``TENANT_ID``.
        batch_api: for ``kubernetes``: a ready client (default: :func:`in_cluster_batch_api`).

    Raises:
        RunnerUnavailableError: ``kubernetes`` outside a cluster, or no namespace known.
    """
    if settings.ingestion_runner == "none":
        return DisabledRunner()
    if settings.ingestion_runner == "local":
        return LocalIngestionRunner(settings.tenant_id)
    namespace = settings.kubernetes_namespace
    if namespace is None and NAMESPACE_FILE.is_file():
        namespace = NAMESPACE_FILE.read_text().strip()
    if not namespace:
        raise RunnerUnavailableError("KUBERNETES_NAMESPACE is not set and no in-cluster namespace file exists")
    return KubernetesIngestionRunner(namespace, settings.ingestion_cronjob, batch_api or in_cluster_batch_api())

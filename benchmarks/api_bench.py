"""RAG API benchmark: answers/s, overhead and time to first token by kind of question, CPU per answer, PSS.

Not a test: it starts the fake Bedrock endpoint (``tests/support/fake_bedrock.py``: fixed time to
first token, token rate and embedding latency), writes a synthetic index (Titan v2 size vectors,
FAQ-like texts), runs the API under gunicorn exactly as in the pod (``api/gunicorn.conf.py``,
uvicorn workers) and drives it with closed-loop virtual users (first question, then a follow-up in
the same session, alternately one that refers back and one that stands alone) at several stream
counts, and prints Markdown tables: answers/s, TTFT and overhead p50/p95 per kind, API CPU per
answer (master + workers), errors by kind, connections per worker, PSS per process idle and under
load (``/proc/<pid>/smaps_rollup``), and with ``--profile`` py-spy's top frames of one worker.

"Overhead" is the API's latency minus the fake model's own latency measured by the same client at
the same concurrency (ConverseStream called directly): what retrieval, the chain, history and
server-sent events add (a follow-up that refers back also pays the condense call).

``--compare DIR`` serves another checkout first (e.g. ``git worktree add /tmp/before main``), so
"before" and "after" run back to back under the same conditions. ``--rounds N`` repeats that N times,
alternating which tree goes first, and adds a table of the median and range of CPU per answer: on a
shared VM the run-to-run spread (±15 % measured) hides differences under ~2 ms at one stream.

    .venv/bin/python benchmarks/api_bench.py                                # 1/16/64/128 streams, 1 worker
    .venv/bin/python benchmarks/api_bench.py --workers 1 2 --seconds 20
    .venv/bin/python benchmarks/api_bench.py --compare /tmp/before --profile
    .venv/bin/python benchmarks/api_bench.py --compare /tmp/before --rounds 4 --concurrency 1 16 --seconds 10
    .venv/bin/python benchmarks/api_bench.py --index-report                 # + index load/search table
    .venv/bin/python benchmarks/api_bench.py --stream-floor 1 16            # + boto3 reading the stream alone
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import faiss
import httpx
import numpy as np
import psutil
from botocore.eventstream import EventStreamBuffer
from langchain_core.documents import Document

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rag.answer.retrieval import TenantIndex, half_precision_flat  # noqa: E402
from rag.index.store import SourceRecord, load_index_version, open_store, write_index_version  # noqa: E402

#: HNSW_EF_SEARCH used by the API (its default).
EF_SEARCH = 128

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
TITAN = "amazon.titan-embed-text-v2:0"
DIM = 1024
WORDS = [
    "sagemaker",
    "model",
    "training",
    "endpoint",
    "notebook",
    "studio",
    "pipeline",
    "feature",
    "store",
    "data",
    "wrangler",
    "inference",
    "autopilot",
    "clarify",
    "debugger",
    "instance",
    "spot",
    "gpu",
    "cpu",
    "region",
    "pricing",
    "billing",
    "encryption",
    "kms",
    "vpc",
    "iam",
    "role",
    "bucket",
    "s3",
    "emr",
    "spark",
    "cluster",
    "hadoop",
    "hive",
    "presto",
    "yarn",
    "emrfs",
    "step",
    "bootstrap",
    "node",
    "core",
    "task",
    "scaling",
    "serverless",
    "kubernetes",
    "container",
    "image",
    "registry",
    "batch",
    "transform",
    "processing",
    "job",
    "experiment",
    "lineage",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def synthetic_vectors(n: int, seed: int) -> np.ndarray:
    """Unit vectors around 500 random centres (text embeddings cluster by topic; uniform noise in
    1024 dimensions would be the worst case for HNSW)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((500, DIM), dtype=np.float32)
    vectors = centres[rng.integers(0, 500, n)] + 0.6 * rng.standard_normal((n, DIM), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def build_index(root: Path, chunks: int, index_type: str = "flat") -> float:
    """Publish a synthetic index of ``chunks`` FAQ-like texts; returns seconds to write it."""
    rnd = random.Random(7)
    docs = []
    for i in range(chunks):
        question = " ".join(rnd.choices(WORDS, k=8)).capitalize() + "?"
        answer = " ".join(rnd.choices(WORDS, k=45)) + "."
        docs.append(
            Document(f"{question}\n{answer}", metadata={"id": f"c{i}", "source": "s3://b/docs/faq.csv", "row": i})
        )
    vectors = synthetic_vectors(chunks, seed=7)
    started = time.perf_counter()
    write_index_version(
        open_store(str(root)),
        tenant="tenanta",
        embedding_model=TITAN,
        vectors=vectors,
        documents=docs,
        sources=[SourceRecord("s3://b/docs/faq.csv", "0" * 64, chunks)],
        index_type=index_type,
    )
    return time.perf_counter() - started


def index_load_seconds(root: Path) -> tuple[float, float, TenantIndex]:
    """(load + verify, BM25 build) in seconds, in this process, and the loaded index."""
    started = time.perf_counter()
    version = load_index_version(open_store(str(root)), tenant="tenanta", embedding_model=TITAN)
    loaded = time.perf_counter()
    index = TenantIndex(version, ef_search=EF_SEARCH)
    index.bm25()
    return loaded - started, time.perf_counter() - loaded, index


def search_stats(index: TenantIndex, exact: TenantIndex | None, queries: np.ndarray) -> tuple[float, float | None]:
    """(ms per dense search of 30 candidates, one thread; recall@10 against ``exact`` or None)."""
    faiss.omp_set_num_threads(1)  # as in the API
    for q in queries[:5]:
        index.dense_search(q, 30)
    started = time.perf_counter()
    for q in queries:
        index.dense_search(q, 30)
    ms = (time.perf_counter() - started) * 1000 / len(queries)
    if exact is None:
        return ms, None
    hits = [
        len({p for p, _ in index.dense_search(q, 10)} & {p for p, _ in exact.dense_search(q, 10)}) / 10 for q in queries
    ]
    return ms, float(np.mean(hits))


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * len(values) + 0.5) - 1))]


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _loop_cpu(worker: psutil.Process) -> float:
    """CPU seconds of a worker's main thread (uvicorn's event loop: HTTP, SSE, the token relay's wake-ups)."""
    return next((t.user_time + t.system_time for t in worker.threads() if t.id == worker.pid), 0.0)


def pss_mib(pid: int) -> float:
    """Proportional set size of one process (MiB), from ``/proc/<pid>/smaps_rollup``: shared pages
    (copy-on-write after fork, libraries) are divided among the processes that map them."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no Pss in /proc/{pid}/smaps_rollup")


def server_processes(master_pid: int) -> list[psutil.Process]:
    """The gunicorn master and its workers."""
    master = psutil.Process(master_pid)
    return [master, *sorted(master.children(), key=lambda p: p.pid)]


def start_fake_bedrock(ttft: float, tps: float, words: int, embed_ms: float = 0.0) -> tuple[subprocess.Popen, str]:
    """The fake Bedrock endpoint in its own process: (process, endpoint URL)."""
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_bedrock", "--ttft", str(ttft), "--tps", str(tps),
         "--words", str(words), "--embed-ms", str(embed_ms)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    return fake, fake.stdout.readline().strip()


def start_gunicorn(
    index: Path, work: Path, fake_endpoint: str, workers: int, mode: str, app_dir: Path = REPO,
    extra_env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen, str, int]:  # fmt: skip
    """gunicorn as in the pod (``api/gunicorn.conf.py``) serving ``app_dir``'s code: (process, base URL, port)."""
    port = free_port()
    prom = work / f"prom-{port}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "PYTHONPATH"},
        "PYTHONPATH": str(app_dir),
        "TENANT_ID": "tenanta",
        "INDEX_URI": str(index),
        "INDEX_POLL_SECONDS": "0",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": fake_endpoint,
        "LLM_PROVIDER": "bedrock",
        "EMBEDDINGS_PROVIDER": "bedrock",
        "TEXT2TEXT_MODEL_ID": MODEL,
        "RETRIEVER_MODE": mode,
        "HISTORY_URL": f"sqlite:///{work}/history-{port}.db",
        "RAGAPI_PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        "PROMETHEUS_MULTIPROC_DIR": str(prom),
        "LOG_LEVEL": "warning",
        **(extra_env or {}),
    }
    log = (work / f"gunicorn-{port}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "api/gunicorn.conf.py", "api.main:app"],
        cwd=app_dir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return proc, f"http://127.0.0.1:{port}", port


# --------------------------------------------------------------------------------------------
# closed-loop clients: each virtual user asks a first question, then a follow-up in the same session

#: Kinds of question: a first question (new session), a follow-up that refers back to the previous
#: turn ("it", "that": needs the condense step) and a follow-up that stands alone.
KINDS = ("first", "follow-up (refers back)", "follow-up (stands alone)")


@dataclass
class Sample:
    kind: str
    ttft: float
    total: float
    error: str | None  # None: the answer ended with `done`
    retry_after: float = 0.0  # seconds the API asked the client to wait (503 + Retry-After)


def _question(kind: str) -> str:
    words = random.choices(WORDS, k=8)
    if kind == "follow-up (refers back)":
        return f"And how is it priced for {words[0]} {words[1]}?"
    return " ".join(words).capitalize() + "?"


async def api_stream(client: httpx.AsyncClient, base: str, kind: str, session: str) -> Sample:
    body = {"q": _question(kind), "user_session_id": session}
    started = time.perf_counter()
    ttft = None
    error: str | None = "no done event"
    retry_after = 0.0
    try:
        async with client.stream("POST", f"{base}/api/v1/llm/rag/stream", json=body) as response:
            if response.status_code != 200:
                data = json.loads(await response.aread() or b"{}")
                error = f"HTTP {response.status_code} {data.get('error', '')}".strip()
                retry_after = float(response.headers.get("retry-after") or 0)
            else:
                event = None
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                        if ttft is None and event == "token":
                            ttft = time.perf_counter() - started
                        elif event == "done":
                            error = None
                    elif line.startswith("data: ") and event == "error":
                        error = f"stream error {json.loads(line[6:]).get('error')}"
    except httpx.HTTPError as exc:
        error = f"client {type(exc).__name__}"
    total = time.perf_counter() - started
    return Sample(kind, ttft if ttft is not None else total, total, error, retry_after)


async def model_stream(client: httpx.AsyncClient, endpoint: str) -> Sample:
    """The fake model alone: ConverseStream over HTTP, parsed with botocore's event-stream buffer."""
    body = {"messages": [{"role": "user", "content": [{"text": " ".join(random.choices(WORDS, k=40))}]}]}
    started = time.perf_counter()
    ttft = None
    buffer = EventStreamBuffer()
    async with client.stream("POST", f"{endpoint}/model/{MODEL}/converse-stream", json=body) as response:
        async for data in response.aiter_bytes():
            buffer.add_data(data)
            for message in buffer:
                if ttft is None and message.headers.get(":event-type") == "contentBlockDelta":
                    ttft = time.perf_counter() - started
    total = time.perf_counter() - started
    return Sample("model", ttft or total, total, None)


#: Idle seconds before the client drops a pooled connection: below the server's keep-alive
#: (``keepalive`` in api/gunicorn.conf.py, 5 s), so a late reader never reuses one the server is closing.
CLIENT_KEEPALIVE_EXPIRY = 2.0


def _limits(concurrency: int) -> httpx.Limits:
    return httpx.Limits(
        max_connections=concurrency + 4,
        max_keepalive_connections=concurrency + 4,
        keepalive_expiry=CLIENT_KEEPALIVE_EXPIRY,
    )


async def run_api_level(base: str, concurrency: int, seconds: float, on_tick: Any = None) -> list[Sample]:
    """``concurrency`` virtual users for ``seconds``: first question, then a follow-up (alternately one
    that refers back and one that stands alone), then a new session."""
    samples: list[Sample] = []
    async with httpx.AsyncClient(timeout=120, limits=_limits(concurrency)) as client:
        deadline = time.perf_counter() + seconds

        async def user(n: int) -> None:
            follow = KINDS[1 + n % 2]
            while time.perf_counter() < deadline:
                session = f"tenanta:bench@example.com:{uuid.uuid4()}"
                first = await api_stream(client, base, "first", session)
                samples.append(first)
                if first.error is None and time.perf_counter() < deadline:
                    samples.append(second := await api_stream(client, base, follow, session))
                    first = second
                    follow = KINDS[1] if follow == KINDS[2] else KINDS[2]
                if first.retry_after:  # shed: wait as Retry-After asks
                    await asyncio.sleep(first.retry_after)

        async def ticker() -> None:
            while time.perf_counter() < deadline:
                await asyncio.sleep(2)
                if on_tick is not None:
                    on_tick()

        await asyncio.gather(ticker(), *(user(n) for n in range(concurrency)))
    return samples


async def run_model_level(endpoint: str, concurrency: int, seconds: float) -> list[Sample]:
    samples: list[Sample] = []
    async with httpx.AsyncClient(timeout=120, limits=_limits(concurrency)) as client:
        deadline = time.perf_counter() + seconds

        async def user() -> None:
            while time.perf_counter() < deadline:
                samples.append(await model_stream(client, endpoint))

        await asyncio.gather(*(user() for _ in range(concurrency)))
    return samples


def _connections(worker: psutil.Process, port: int) -> int:
    try:
        return sum(1 for c in worker.net_connections("tcp") if c.laddr.port == port and c.status == "ESTABLISHED")
    except psutil.Error:
        return 0


def py_spy_top(pid: int, seconds: int, out: Path) -> subprocess.Popen | None:
    """``py-spy record`` of one worker (raw collapsed stacks), or None when py-spy is not installed."""
    exe = Path(sys.executable).with_name("py-spy")
    if not exe.exists():
        return None
    return subprocess.Popen(
        [str(exe), "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "100", "--format", "raw",
         "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


#: Innermost frames of a thread that waits (network, locks, the selector) rather than computes.
IDLE_LEAVES = ("SocketIO.readinto", "readinto", "recv", "wait (", "Condition.wait", "Event.wait", "select (",
               "EpollSelector.select", "sleep", "acquire", "_worker (concurrent", "run_forever", "poll (")  # fmt: skip


def top_frames(raw: Path, n: int = 15) -> list[tuple[str, float, float]]:
    """(function, % of busy samples inside it, % of busy samples where it is the innermost frame), top ``n``
    by own share, from py-spy's collapsed stacks; samples of waiting threads (:data:`IDLE_LEAVES`) left out."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")[1:]  # first entry: the thread
        if not frames or any(frames[-1].startswith(i) for i in IDLE_LEAVES):
            continue
        weight = int(count)
        total += weight
        for frame in set(frames):
            inclusive[frame] += weight
        own[frames[-1]] += weight
    if not total:
        return []
    return [(f, 100 * inclusive[f] / total, 100 * c / total) for f, c in own.most_common(n)]


@dataclass
class Level:
    concurrency: int
    samples: list[Sample]
    model: list[Sample]
    seconds: float
    cpu_ms_per_answer: float
    connections: list[int]
    pss_load: list[float]
    loop_cpu_ms_per_answer: float = 0.0  # the workers' event-loop threads; the rest is the chain threads


@dataclass
class Config:
    label: str
    workers: int
    levels: list[Level]
    pss_idle: list[float]
    profile: list[tuple[str, float, float]]


def run_config(args: argparse.Namespace, label: str, app_dir: Path, workers: int, index: Path, work: Path,
               fake_endpoint: str) -> Config:  # fmt: skip
    proc, base, port = start_gunicorn(index, work, fake_endpoint, workers, args.mode, app_dir)
    try:
        wait_http(f"{base}/readyz")
        asyncio.run(run_api_level(base, max(2, workers), 3))  # warm-up: every worker answers once
        procs = server_processes(proc.pid)
        pss_idle = [pss_mib(p.pid) for p in procs]
        levels, profile = [], []
        for c in args.concurrency:
            model = asyncio.run(run_model_level(fake_endpoint, c, args.seconds / 2))
            connections = [0] * (len(procs) - 1)
            pss_load = list(pss_idle)

            def tick(pss_load: list[float] = pss_load, connections: list[int] = connections) -> None:
                for i, p in enumerate(procs):
                    pss_load[i] = max(pss_load[i], pss_mib(p.pid))
                for i, worker in enumerate(procs[1:]):
                    connections[i] = max(connections[i], _connections(worker, port))

            before, loop_before = sum(_cpu(p) for p in procs), sum(_loop_cpu(p) for p in procs[1:])
            started = time.perf_counter()
            samples = asyncio.run(run_api_level(base, c, args.seconds, tick))
            elapsed = time.perf_counter() - started
            cpu = sum(_cpu(p) for p in procs) - before
            loop_cpu = sum(_loop_cpu(p) for p in procs[1:]) - loop_before
            answers = sum(s.error is None for s in samples)
            if args.profile and c == args.profile_concurrency:  # an extra run: py-spy costs the worker CPU
                out = work / f"profile-{label.replace(' ', '-')}.txt"
                spy = py_spy_top(procs[1].pid, int(args.seconds) - 2, out)
                asyncio.run(run_api_level(base, c, args.seconds))
                if spy is not None and spy.wait(timeout=60) == 0:
                    profile = top_frames(out)
            levels.append(Level(c, samples, model, elapsed, cpu * 1000 / max(1, answers), connections, pss_load,
                                loop_cpu * 1000 / max(1, answers)))  # fmt: skip
        return Config(label, workers, levels, pss_idle, profile)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=10_000, help="index size served")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 128])
    parser.add_argument("--seconds", type=float, default=20.0, help="closed-loop seconds per concurrency level")
    parser.add_argument("--ttft", type=float, default=0.3, help="fake model time to first token, seconds")
    parser.add_argument("--tps", type=float, default=50.0, help="fake model tokens per second")
    parser.add_argument("--words", type=int, default=60, help="tokens per answer")
    parser.add_argument("--embed-ms", type=float, default=20.0, help="fake embedding call, milliseconds")
    parser.add_argument("--workers", type=int, nargs="+", default=[1], help="gunicorn workers (one config each)")
    parser.add_argument("--mode", choices=["hybrid", "dense"], default="dense", help="RETRIEVER_MODE (API default)")
    parser.add_argument("--compare", type=Path, default=None,
                        help="another checkout of the project (e.g. `git worktree add /tmp/before main`): served "
                             "first, as the 'before' of the same run")  # fmt: skip
    parser.add_argument("--compare-workers", type=int, nargs="+", default=None,
                        help="gunicorn workers of the --compare tree (default: --workers)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=1,
                        help="serve the trees this many times, alternating their order (before, after, after, "
                             "before, ...); prints the median and range of CPU per answer")  # fmt: skip
    parser.add_argument("--profile", action="store_true", help="py-spy one worker at --profile-concurrency")
    parser.add_argument("--profile-concurrency", type=int, default=64)
    parser.add_argument("--stream-floor", type=int, nargs="*", default=None, metavar="THREADS",
                        help="also botocore's ConverseStream read alone (no API): thread CPU per answer with this many "
                             "concurrent readers (default 1 16)")  # fmt: skip
    parser.add_argument("--index-report", action="store_true",
                        help="also the index table (flat, HNSW; 10k, 100k)")  # fmt: skip
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="api-bench-"))
    fake, fake_endpoint = start_fake_bedrock(args.ttft, args.tps, args.words, args.embed_ms)
    configs: list[Config] = []
    try:
        index = work / "index"
        build_index(index, args.chunks, "flat")
        trees = ([("before", args.compare)] if args.compare else []) + [("after" if args.compare else "this", REPO)]
        for round_ in range(max(1, args.rounds)):
            # alternate the order: on a VM the tree served second can be slower for reasons of its own
            for label, tree in trees if round_ % 2 == 0 else trees[::-1]:
                for workers in (args.compare_workers or args.workers) if label == "before" else args.workers:
                    name = f"{label} w{workers}" + (f" #{round_ + 1}" if args.rounds > 1 else "")
                    configs.append(run_config(args, name, tree, workers, index, work, fake_endpoint))
        floor_threads = [] if args.stream_floor is None else args.stream_floor or [1, 16]
        floor = [(n, stream_read_floor(fake_endpoint, n)) for n in floor_threads]
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    print_report(args, configs)
    if args.rounds > 1:
        print_rounds(configs)
    if floor:
        print("\n| ConverseStream read alone (boto3, no API): concurrent readers | thread CPU ms / answer |")
        print("|---:|---:|")
        for threads, ms in floor:
            print(f"| {threads} | {ms:.2f} |")
    if args.index_report:
        print_index_report(work)
    raw = [
        {"config": cfg.label, "c": lv.concurrency, "cpu_ms_per_answer": lv.cpu_ms_per_answer,
         "samples": [s.__dict__ for s in lv.samples], "model": [s.__dict__ for s in lv.model]}
        for cfg in configs for lv in cfg.levels
    ]  # fmt: skip
    (work / "raw.json").write_text(json.dumps(raw))
    print(f"\nraw samples: {work / 'raw.json'}")


def stream_read_floor(endpoint: str, threads: int, answers_each: int = 4) -> float:
    """The part of an answer's CPU no change to the API can remove: boto3 reading one ConverseStream answer
    (the request, the HTTP chunks, botocore's event-stream parser), in ``threads`` concurrent threads of
    this process, as the API's chain threads read it. Returns thread CPU milliseconds per answer.

    At a paced token rate every event arrives on its own after the reader slept, so its cost depends on
    how busy the machine is (cold caches on an idle VM): compare it with the API's CPU at a similar
    concurrency, in the same run.
    """
    client = boto3.client(
        "bedrock-runtime", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="bench", aws_secret_access_key="bench",
        config=botocore.config.Config(max_pool_connections=threads + 1),
    )  # fmt: skip
    messages = [{"role": "user", "content": [{"text": " ".join(random.choices(WORDS, k=40))}]}]
    spent: list[float] = []

    def reader() -> None:
        for _ in range(answers_each):
            started = time.thread_time()
            for _event in client.converse_stream(modelId=MODEL, messages=messages)["stream"]:
                pass
            spent.append(time.thread_time() - started)

    for _event in client.converse_stream(modelId=MODEL, messages=messages)["stream"]:  # warm-up: connection, shapes
        pass
    workers = [threading.Thread(target=reader) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return 1000 * sum(spent) / len(spent)


def _ms(values: list[float], q: float) -> float:
    return pct(values, q) * 1000 if values else float("nan")


def print_report(args: argparse.Namespace, configs: list[Config]) -> None:
    """Markdown: per config and concurrency, answers/s, overhead and TTFT by kind, CPU, errors, PSS."""
    try:
        model_name = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model_name = platform.processor() or platform.machine()
    print(f"\n### RAG API benchmark ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)\n")
    print(
        f"Machine: {os.cpu_count()} vCPU ({model_name}), {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, "
        f"Python {platform.python_version()}; client, fake model and API share the machine. Fake Bedrock: TTFT "
        f"{args.ttft * 1000:.0f} ms, {args.tps:.0f} tokens/s, {args.words} tokens per answer, embeddings "
        f"{args.embed_ms:.0f} ms. {args.chunks:,} chunks ({args.mode}), SQLite history, {args.seconds:.0f} s closed "
        "loop per level; each virtual user: first question, then a follow-up in the same session. Overhead = API "
        "latency minus the fake model's own (ConverseStream alone at the same concurrency); a follow-up that refers "
        "back also pays the condense call. CPU = API processes (master + workers) per completed answer; "
        "in brackets the workers' event-loop threads' share (the rest: the chain threads).\n"
    )
    print(
        "| config | streams | answers/s | kind | n | TTFT p50 / p95 (ms) | overhead p50 / p95 (ms) "
        "| API CPU ms / answer (event loop) | errors | connections per worker |"
    )
    print("|---|---:|---:|---|---:|---|---|---:|---|---|")
    for cfg in configs:
        for lv in cfg.levels:
            ok = [s for s in lv.samples if s.error is None]
            m_total = [s.total for s in lv.model]
            errors = Counter(s.error for s in lv.samples if s.error)
            for i, kind in enumerate(KINDS):
                mine = [s for s in ok if s.kind == kind]
                if not mine:
                    continue
                ttft = [s.ttft for s in mine]
                total = [s.total for s in mine]
                head = f"| {cfg.label} | {lv.concurrency} | {len(ok) / lv.seconds:.1f} |" if i == 0 else "| | | |"
                tail = (
                    f" {lv.cpu_ms_per_answer:.1f} ({lv.loop_cpu_ms_per_answer:.1f}) | "
                    f"{', '.join(f'{k}: {v}' for k, v in errors.items()) or 0} | "
                    f"{'/'.join(map(str, lv.connections))} |"
                    if i == 0
                    else " | | |"
                )
                print(
                    f"{head} {kind} | {len(mine)} | {_ms(ttft, 50):.0f} / {_ms(ttft, 95):.0f} | "
                    f"{_ms(total, 50) - _ms(m_total, 50):.0f} / {_ms(total, 95) - _ms(m_total, 95):.0f} |{tail}"
                )
    print("\n| config | PSS idle, MiB (master, workers…) | PSS under load (max) | pod total idle / load |")
    print("|---|---|---|---|")
    for cfg in configs:
        load = [max(lv.pss_load[i] for lv in cfg.levels) for i in range(len(cfg.pss_idle))]
        print(
            f"| {cfg.label} | {', '.join(f'{v:.0f}' for v in cfg.pss_idle)} | {', '.join(f'{v:.0f}' for v in load)} | "
            f"{sum(cfg.pss_idle):.0f} / {sum(load):.0f} |"
        )
    for cfg in configs:
        if cfg.profile:
            print(f"\npy-spy, one worker of '{cfg.label}' at {args.profile_concurrency} streams (busy samples only):\n")
            print("| function | % inclusive | % own |")
            print("|---|---:|---:|")
            for frame, inclusive, own in cfg.profile:
                print(f"| `{frame[:110]}` | {inclusive:.1f} | {own:.1f} |")


def print_rounds(configs: list[Config]) -> None:
    """Markdown: per tree and concurrency, the median and range over ``--rounds`` of CPU per answer."""
    levels: dict[tuple[str, int], list[Level]] = {}
    for cfg in configs:
        for lv in cfg.levels:
            levels.setdefault((cfg.label.rsplit(" #", 1)[0], lv.concurrency), []).append(lv)
    print("\n| config | streams | rounds | API CPU ms / answer: median (min–max) | event loop, median | answers/s |")
    print("|---|---:|---:|---|---:|---:|")
    for (label, concurrency), runs in levels.items():
        cpu = sorted(lv.cpu_ms_per_answer for lv in runs)
        loop = statistics.median(lv.loop_cpu_ms_per_answer for lv in runs)
        rate = statistics.median(sum(s.error is None for s in lv.samples) / lv.seconds for lv in runs)
        print(f"| {label} | {concurrency} | {len(runs)} | {statistics.median(cpu):.1f} ({cpu[0]:.1f}–{cpu[-1]:.1f}) | "
              f"{loop:.1f} | {rate:.1f} |")  # fmt: skip


def print_index_report(work: Path) -> None:
    """Index size, load, BM25 build, search time and recall for flat and HNSW at 10k and 100k chunks."""
    queries = synthetic_vectors(200, seed=11)
    print("\n| index | chunks | write (s) | load + verify (s) | BM25 (s) | search, 1 thread (ms) | recall@10 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for chunks in (10_000, 100_000):
        exact = None
        for index_type in ("flat", "hnsw"):
            root = work / f"index-{index_type}-{chunks}"
            write_s = build_index(root, chunks, index_type)
            load_s, bm25_s, index = index_load_seconds(root)
            search_ms, recall = search_stats(index, exact, queries)
            exact = exact or index
            print(
                f"| {index_type} | {chunks:,} | {write_s:.2f} | {load_s:.2f} | {bm25_s:.2f} | {search_ms:.2f} | "
                f"{'exact' if recall is None else f'{recall:.3f}'} |"
            )
            if index_type == "flat":  # what the API serves by default (FLAT_SEARCH_PRECISION=float16)
                started = time.perf_counter()
                half = TenantIndex(replace(index.version, index=half_precision_flat(index.version.index)))
                copy_s = time.perf_counter() - started
                half_ms, half_recall = search_stats(half, exact, queries)
                print(f"| flat, float16 copy (served) | {chunks:,} | – | +{copy_s:.2f} | – | {half_ms:.2f} | "
                      f"{half_recall:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()

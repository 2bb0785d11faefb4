"""RAG API benchmark: latency, time to first token and overhead over the model; RSS; index load time.

Not a test: it starts the fake Bedrock endpoint (``tests/support/fake_bedrock.py``, fixed time to
first token and token rate), writes synthetic indexes (Titan v2 size vectors, FAQ-like texts), runs
the API under gunicorn exactly as in the pod (``api/gunicorn.conf.py``, uvicorn workers), streams
answers at several concurrencies with an async HTTP client, and prints a Markdown table.

Each index type (``--index-types flat hnsw``) is written, loaded, searched in this process
(time per query, recall@10 against the exact flat scan) and served. Synthetic vectors cluster
around 500 centres (text embeddings cluster by topic).

"Overhead" is the API's latency minus the fake model's own latency measured by the same client at
the same concurrency (ConverseStream called directly): what retrieval, the chain, history and
server-sent events add.

    .venv/bin/python benchmarks/api_bench.py                   # 10k and 100k chunks, c = 1, 16, 64
    .venv/bin/python benchmarks/api_bench.py --chunks 10000 --concurrency 1 16
    .venv/bin/python benchmarks/api_bench.py --chunks 10000 --words 200    # realistic answer length
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
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import faiss
import httpx
import numpy as np
import psutil
from botocore.eventstream import EventStreamBuffer
from langchain_core.documents import Document

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rag.answer.retrieval import TenantIndex  # noqa: E402
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


@dataclass
class Sample:
    ttft: float
    total: float
    ok: bool


async def api_stream(client: httpx.AsyncClient, base: str) -> Sample:
    body = {
        "q": " ".join(random.choices(WORDS, k=8)) + "?",
        "user_session_id": f"tenanta:bench@example.com:{uuid.uuid4()}",
    }
    started = time.perf_counter()
    ttft = None
    ok = False
    async with client.stream("POST", f"{base}/api/v1/llm/rag/stream", json=body) as response:
        async for line in response.aiter_lines():
            if ttft is None and line.startswith("event: token"):
                ttft = time.perf_counter() - started
            if line.startswith("event: done"):
                ok = True
            if line.startswith("event: error"):
                ok = False
    total = time.perf_counter() - started
    return Sample(ttft if ttft is not None else total, total, ok)


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
    return Sample(ttft or total, total, True)


async def run_level(kind: str, target: str, concurrency: int, requests: int) -> tuple[list[Sample], float]:
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        for _ in range(min(concurrency, 4)):  # warm-up
            await (api_stream(client, target) if kind == "api" else model_stream(client, target))
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(requests):
            queue.put_nowait(i)
        samples: list[Sample] = []

        async def worker() -> None:
            while not queue.empty():
                queue.get_nowait()
                samples.append(await (api_stream(client, target) if kind == "api" else model_stream(client, target)))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return samples, time.perf_counter() - started


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * len(values) + 0.5) - 1))]


def workers_cpu_seconds(master_pid: int) -> float:
    """User + system CPU seconds of all gunicorn workers so far."""
    return sum(_cpu(c) for c in psutil.Process(master_pid).children())


def worker_rss_mib(master_pid: int) -> list[float]:
    children = psutil.Process(master_pid).children()
    return sorted(c.memory_info().rss / 2**20 for c in children)


def start_fake_bedrock(ttft: float, tps: float, words: int) -> tuple[subprocess.Popen, str]:
    """The fake Bedrock endpoint in its own process: (process, endpoint URL)."""
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_bedrock", "--ttft", str(ttft), "--tps", str(tps),
         "--words", str(words)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    return fake, fake.stdout.readline().strip()


def start_gunicorn(
    index: Path, work: Path, fake_endpoint: str, workers: int, mode: str
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
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
        "HISTORY_URL": f"sqlite:///{work}/history.db",
        "RAGAPI_PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        "PROMETHEUS_MULTIPROC_DIR": str(work / "prom"),
        "LOG_LEVEL": "warning",
    }
    log = (work / "gunicorn.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "api/gunicorn.conf.py", "api.main:app"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return proc, f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--index-types", nargs="+", choices=["flat", "hnsw"], default=["flat", "hnsw"],
                        help="FAISS index types to compare (FAISS_INDEX_TYPE)")  # fmt: skip
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--rounds", type=int, default=8, help="requests per concurrency level = rounds * c (min 30)")
    parser.add_argument("--ttft", type=float, default=0.3, help="fake model time to first token, seconds")
    parser.add_argument("--tps", type=float, default=50.0, help="fake model tokens per second")
    parser.add_argument("--words", type=int, default=20, help="tokens per answer")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mode", choices=["hybrid", "dense"], default="hybrid", help="RETRIEVER_MODE")
    parser.add_argument("--latency-chunks", type=int, default=10_000, help="index size used for latency runs")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="api-bench-"))
    fake, fake_endpoint = start_fake_bedrock(args.ttft, args.tps, args.words)
    fake_proc, client_proc = psutil.Process(fake.pid), psutil.Process()
    queries = synthetic_vectors(200, seed=11)
    index_rows = []
    latency_rows = []
    try:
        for chunks in args.chunks:
            exact: TenantIndex | None = None
            for index_type in args.index_types:
                root = work / f"index-{index_type}-{chunks}"
                write_s = build_index(root, chunks, index_type)
                load_s, bm25_s, index = index_load_seconds(root)
                search_ms, recall = search_stats(index, exact, queries)
                if index_type == "flat":
                    exact = index
                proc, base = start_gunicorn(root, work, fake_endpoint, args.workers, args.mode)
                t0 = time.perf_counter()
                wait_http(f"{base}/readyz")
                ready_s = time.perf_counter() - t0
                asyncio.run(run_level("api", base, 2, 4))  # touch every worker
                rss = worker_rss_mib(proc.pid)
                index_rows.append((index_type, chunks, write_s, load_s, bm25_s, ready_s, rss, search_ms, recall))
                if chunks == args.latency_chunks:
                    for c in args.concurrency:
                        n = max(30, args.rounds * c)
                        model, _model_wall = asyncio.run(run_level("model", fake_endpoint, c, n))
                        before = (workers_cpu_seconds(proc.pid), _cpu(fake_proc), _cpu(client_proc))
                        api, api_wall = asyncio.run(run_level("api", base, c, n))
                        after = (workers_cpu_seconds(proc.pid), _cpu(fake_proc), _cpu(client_proc))
                        per_request = [(b - a) * 1000 / (n + min(c, 4)) for a, b in zip(before, after, strict=True)]
                        latency_rows.append((index_type, c, n, model, per_request, api, api_wall))
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    print_report(args, index_rows, latency_rows)
    raw = {
        "latency": [
            {"index_type": t, "c": c, "n": n, "api_ttft": [s.ttft for s in api], "api_total": [s.total for s in api],
             "model_ttft": [s.ttft for s in model], "model_total": [s.total for s in model], "cpu_ms": cpu}
            for t, c, n, model, cpu, api, _ in latency_rows
        ]
    }  # fmt: skip
    (work / "raw.json").write_text(json.dumps(raw))
    print(f"\nraw samples: {work / 'raw.json'}")


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def print_report(args: argparse.Namespace, index_rows: list, latency_rows: list) -> None:
    """Markdown tables: latency by index type and concurrency, then index size, load and search."""
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
        f"Python {platform.python_version()}. gunicorn {args.workers} uvicorn workers; client, fake model and API "
        f"share the machine. Fake model: TTFT {args.ttft * 1000:.0f} ms, {args.tps:.0f} tokens/s, "
        f"{args.words} tokens per answer. Retrieval: {args.mode}, Titan v2 size (1024-d) vectors, "
        f"index of {args.latency_chunks:,} chunks; SQLite history; every request a new session. "
        "CPU per request: API workers / fake model / load-generating client.\n"
    )
    print(
        "| index | concurrency | requests | req/s | TTFT p50 / p95 (ms) | latency p50 / p95 (ms) "
        "| model alone latency p50 / p95 | overhead latency p50 / p95 (ms) | overhead TTFT p50 / p95 (ms) "
        "| CPU ms per request: API / model / client | errors |"
    )
    print("|---|---:|---:|---:|---|---|---|---|---|---|---:|")
    for index_type, c, n, model, cpu, api, api_wall in latency_rows:
        a_t = [s.ttft * 1000 for s in api]
        a_l = [s.total * 1000 for s in api]
        m_t = [s.ttft * 1000 for s in model]
        m_l = [s.total * 1000 for s in model]
        errors = sum(not s.ok for s in api)
        print(
            f"| {index_type} | {c} | {n} | {n / api_wall:.1f} | {pct(a_t, 50):.0f} / {pct(a_t, 95):.0f} | "
            f"{pct(a_l, 50):.0f} / {pct(a_l, 95):.0f} | {pct(m_l, 50):.0f} / {pct(m_l, 95):.0f} | "
            f"{pct(a_l, 50) - pct(m_l, 50):.1f} / {pct(a_l, 95) - pct(m_l, 95):.1f} | "
            f"{pct(a_t, 50) - pct(m_t, 50):.1f} / {pct(a_t, 95) - pct(m_t, 95):.1f} | "
            f"{cpu[0]:.1f} / {cpu[1]:.1f} / {cpu[2]:.1f} | {errors} |"
        )
    print(
        "\n| index | chunks | write (s) | load + verify (s) | BM25 build (s) | gunicorn start → ready (s) "
        "| RSS per worker (MiB) | dense search, 1 thread (ms) | speed-up vs flat | recall@10 vs flat |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    flat_ms = {chunks: ms for t, chunks, *_, ms, _ in index_rows if t == "flat"}
    for index_type, chunks, write_s, load_s, bm25_s, ready_s, rss, search_ms, recall in index_rows:
        ratio = f"{flat_ms[chunks] / search_ms:.1f}x" if chunks in flat_ms else "-"
        print(
            f"| {index_type} | {chunks:,} | {write_s:.2f} | {load_s:.2f} | {bm25_s:.2f} | {ready_s:.1f} | "
            f"{', '.join(f'{r:.0f}' for r in rss)} | {search_ms:.2f} | {ratio} | "
            f"{'exact' if recall is None else f'{recall:.3f}'} |"
        )


if __name__ == "__main__":
    main()

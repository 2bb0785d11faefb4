"""Load test: N concurrent chat streams against one ragapi pod's gunicorn, bounded in time.

Not a test (not in the pass/fail run). It starts the fake Bedrock endpoint in its own process
(``tests/support/fake_bedrock.py``: streaming Claude via ConverseStream, Titan embeddings), publishes
a synthetic index, runs the API exactly as the pod does (``gunicorn -c api/gunicorn.conf.py``,
``WEB_CONCURRENCY`` uvicorn workers, SQLite history) on 127.0.0.1, and drives it with a closed-loop
asyncio httpx client: ``--concurrency`` streams in flight all the time, for ``--duration`` seconds.
Every request is a new session (no condense call). Prints a Markdown table: requests/s, error rate
(non-200, ``event: error``, or a broken/timed-out stream), p50/p95/p99 latency and time to first
token.

    .venv/bin/python benchmarks/load_test.py                          # 200 streams for 60 s
    .venv/bin/python benchmarks/load_test.py --concurrency 50 200 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import api_bench as ab  # fake model, index, gunicorn helpers shared with the API benchmark


@dataclass
class Result:
    ok: bool
    total: float
    ttft: float | None
    error: str | None


async def one_stream(client: httpx.AsyncClient, base: str, timeout: float) -> Result:
    body = {
        "q": " ".join(ab.random.choices(ab.WORDS, k=8)) + "?",
        "user_session_id": f"tenanta:load@example.com:{uuid.uuid4()}",
    }
    started = time.perf_counter()
    ttft = None
    try:
        async with asyncio.timeout(timeout):
            async with client.stream("POST", f"{base}/api/v1/llm/rag/stream", json=body) as response:
                if response.status_code != 200:
                    await response.aread()
                    return Result(False, time.perf_counter() - started, None, f"HTTP {response.status_code}")
                outcome = "no done event"
                async for line in response.aiter_lines():
                    if ttft is None and line.startswith("event: token"):
                        ttft = time.perf_counter() - started
                    elif line.startswith("event: done"):
                        outcome = None
                    elif line.startswith("event: error"):
                        outcome = "event: error"
    except TimeoutError:
        outcome = "client timeout"
    except httpx.HTTPError as exc:
        outcome = type(exc).__name__
    return Result(outcome is None, time.perf_counter() - started, ttft, outcome)


async def run(base: str, concurrency: int, duration: float, timeout: float) -> tuple[list[Result], float]:
    limits = httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency + 8)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        await asyncio.gather(*(one_stream(client, base, timeout) for _ in range(min(concurrency, 8))))  # warm-up
        results: list[Result] = []
        deadline = time.perf_counter() + duration

        async def user() -> None:
            while time.perf_counter() < deadline:
                results.append(await one_stream(client, base, timeout))

        started = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(concurrency)))
        return results, time.perf_counter() - started


def pct(values: list[float], q: float) -> float:
    return ab.pct(values, q) * 1000 if values else float("nan")


def start_stack(args: argparse.Namespace, work: Path) -> tuple[subprocess.Popen, subprocess.Popen, str]:
    fake, endpoint = ab.start_fake_bedrock(args.ttft, args.tps, args.words)
    root = work / "index"
    ab.build_index(root, args.chunks)
    proc, base, _ = ab.start_gunicorn(root, work, endpoint, args.workers, args.mode)
    ab.wait_http(f"{base}/readyz")
    return fake, proc, base


def stop_stack(fake: subprocess.Popen, proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
    fake.terminate()
    fake.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[200])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per concurrency level")
    parser.add_argument("--timeout", type=float, default=120.0, help="client timeout per stream, seconds")
    parser.add_argument("--chunks", type=int, default=2000, help="synthetic index size")
    parser.add_argument("--ttft", type=float, default=0.3, help="fake model time to first token, seconds")
    parser.add_argument("--tps", type=float, default=50.0, help="fake model tokens per second")
    parser.add_argument("--words", type=int, default=20, help="tokens per answer")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")))
    parser.add_argument("--mode", choices=["hybrid", "dense"], default="hybrid")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="load-test-"))
    fake, proc, base = start_stack(args, work)
    rows = []
    try:
        for c in args.concurrency:
            results, wall = asyncio.run(run(base, c, args.duration, args.timeout))
            ok = [r for r in results if r.ok]
            errors = collections.Counter(r.error for r in results if not r.ok)
            rows.append((c, results, ok, errors, wall))
    finally:
        stop_stack(fake, proc)

    print(f"\nLoad test {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
          f"{args.workers} gunicorn workers, "
          f"{args.chunks} chunks ({args.mode}), fake model TTFT {args.ttft * 1000:.0f} ms, {args.tps:g} tokens/s, "
          f"{args.words} tokens per answer, {args.duration:g} s per level\n")  # fmt: skip
    print("| concurrent streams | requests | req/s | errors | error rate | latency p50 / p95 / p99 (ms) "
          "| TTFT p50 / p95 / p99 (ms) | error kinds |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---|---|---|")
    for c, results, ok, errors, wall in rows:
        lat = [r.total for r in ok]
        ttft = [r.ttft for r in ok if r.ttft is not None]
        kinds = ", ".join(f"{k}: {v}" for k, v in errors.most_common()) or "-"
        print(
            f"| {c} | {len(results)} | {len(results) / wall:.1f} | {len(results) - len(ok)} "
            f"| {(len(results) - len(ok)) / max(1, len(results)):.2%} "
            f"| {pct(lat, 50):.0f} / {pct(lat, 95):.0f} / {pct(lat, 99):.0f} "
            f"| {pct(ttft, 50):.0f} / {pct(ttft, 95):.0f} / {pct(ttft, 99):.0f} | {kinds} |"
        )


if __name__ == "__main__":
    main()

"""Soak test: steady chat-stream load for ``--duration`` seconds; RSS and open fds must stay flat.

Not a test (not in the pass/fail run). Same stack as ``load_test.py`` (fake Bedrock in its own
process, synthetic index, ``gunicorn -c api/gunicorn.conf.py`` on 127.0.0.1). A closed-loop client
keeps ``--concurrency`` streams in flight; every ``--interval`` seconds the script samples, for the
gunicorn master and each worker, ``VmRSS`` from ``/proc/<pid>/status`` and the number of entries
in ``/proc/<pid>/fd``. After ``--warmup`` seconds (index loaded, thread pools and connection pools
filled) the first sample is the baseline; the verdict compares the mean of the last three samples
with it: growth under 5 % for RSS (and fds) of every process passes.

    .venv/bin/python benchmarks/soak_test.py --duration 600             # 10 minutes
    .venv/bin/python benchmarks/soak_test.py --duration 120 --warmup 30 # a quick check
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load_test as lt

GROWTH_LIMIT = 0.05


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    return sorted(int(p) for p in children.read_text().split()) if children.exists() else []


def sample(master: int) -> dict[str, tuple[int, int]]:
    """``{"master": (rss KiB, fds), "worker <pid>": ...}``."""
    out = {"master": (rss_kib(master), fd_count(master))}
    for pid in worker_pids(master):
        try:
            out[f"worker {pid}"] = (rss_kib(pid), fd_count(pid))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


async def soak(base: str, master: int, args: argparse.Namespace) -> tuple[list, list[tuple[float, dict]], float]:
    limits = httpx.Limits(max_connections=args.concurrency + 8, max_keepalive_connections=args.concurrency + 8)
    results: list[lt.Result] = []
    samples: list[tuple[float, dict]] = []
    async with httpx.AsyncClient(timeout=args.timeout, limits=limits) as client:
        started = time.perf_counter()
        deadline = started + args.duration

        async def user() -> None:
            while time.perf_counter() < deadline:
                results.append(await lt.one_stream(client, base, args.timeout))

        async def sampler() -> None:
            while time.perf_counter() < deadline:
                await asyncio.sleep(args.interval)
                elapsed = time.perf_counter() - started
                samples.append((elapsed, sample(master)))
                done = len(results)
                errors = sum(1 for r in results if not r.ok)
                rss = sum(v[0] for v in samples[-1][1].values()) / 1024
                print(f"  t={elapsed:6.0f}s requests={done} errors={errors} total RSS={rss:.0f} MiB", flush=True)

        await asyncio.gather(sampler(), *(user() for _ in range(args.concurrency)))
        return results, samples, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the baseline sample")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--ttft", type=float, default=0.3)
    parser.add_argument("--tps", type=float, default=50.0)
    parser.add_argument("--words", type=int, default=20)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")))
    parser.add_argument("--mode", choices=["hybrid", "dense"], default="hybrid")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="soak-test-"))
    fake, proc, base = lt.start_stack(args, work)
    try:
        results, samples, wall = asyncio.run(soak(base, proc.pid, args))
    finally:
        lt.stop_stack(fake, proc)

    baseline = next((s for t, s in samples if t >= args.warmup), samples[0][1])
    tail = [s for _, s in samples[-3:]]
    ok = [r for r in results if r.ok]
    errors = collections.Counter(r.error for r in results if not r.ok)
    print(f"\nSoak test {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
          f"{args.workers} gunicorn workers, "
          f"{args.concurrency} concurrent streams for {wall:.0f} s (warm-up {args.warmup:g} s, sample every "
          f"{args.interval:g} s), {args.chunks} chunks ({args.mode})\n")  # fmt: skip
    lat = [r.total for r in ok]
    print("| requests | req/s | errors | latency p50 / p99 (ms) | error kinds |")
    print("|---:|---:|---:|---|---|")
    kinds = ", ".join(f"{k}: {v}" for k, v in errors.most_common()) or "-"
    print(
        f"| {len(results)} | {len(results) / wall:.1f} | {len(results) - len(ok)} "
        f"| {lt.pct(lat, 50):.0f} / {lt.pct(lat, 99):.0f} | {kinds} |\n"
    )
    print(
        "| process | RSS after warm-up (MiB) | RSS at end (MiB) | RSS growth "
        "| fds after warm-up | fds at end | fd growth |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    verdict = True
    for name, (rss0, fd0) in baseline.items():
        ends = [s[name] for s in tail if name in s]
        if not ends:
            print(f"| {name} | {rss0 / 1024:.1f} | (gone) | - | {fd0} | (gone) | - |")
            verdict = False
            continue
        rss1 = sum(e[0] for e in ends) / len(ends)
        fd1 = sum(e[1] for e in ends) / len(ends)
        g_rss, g_fd = rss1 / rss0 - 1, fd1 / fd0 - 1
        verdict &= g_rss < GROWTH_LIMIT and g_fd < GROWTH_LIMIT
        print(f"| {name} | {rss0 / 1024:.1f} | {rss1 / 1024:.1f} | {g_rss:+.1%} | {fd0} | {fd1:.0f} | {g_fd:+.1%} |")
    print(f"\nverdict: {'PASS' if verdict else 'FAIL'} (every process under {GROWTH_LIMIT:.0%} growth after warm-up)")
    sys.exit(0 if verdict else 1)


if __name__ == "__main__":
    main()

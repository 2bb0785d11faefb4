"""Vector store benchmark: FAISS flat, FAISS HNSW and pgvector HNSW side by side.

Not a test. For each size it makes synthetic unit vectors (clustered around 500 centres, as text
embeddings cluster by topic) with short FAQ-like texts, then per backend measures:

- ingestion rows/s: FAISS = build + serialise + write the version (``write_index_version``);
  pgvector = ``PgVectorIndex.publish`` (binary COPY, HNSW and GIN builds, ANALYZE, pointer switch);
- load/switch seconds: FAISS = ``load_index_version`` in a fresh serving process (read, verify
  sha256, deserialise); pgvector = the pointer switch (one UPDATE) plus the reader's manifest load;
- query p50/p95 (ms, ``k=10``, one thread, ``ef_search=128`` for both HNSW) and recall@10 against
  the exact flat scan over the same vectors;
- RSS of a process serving the index (a fresh Python process that loads it and answers queries):
  FAISS holds every vector; pgvector's client holds a connection pool, the database the data
  (its size on disk is reported too).

PostgreSQL is ``pgserver`` (PostgreSQL 16 + pgvector 0.6, Unix socket, default ``shared_buffers``
128 MB) on the same machine; ``maintenance_work_mem`` 2 GB for the HNSW build (``--maintenance-work-mem``:
pgvector builds the graph in memory only while it fits, then goes on much slower; a NOTICE in the
server log, printed after the build). Each HNSW index is built once and served once per
``--ef-search`` value; progress lines (UTC, seconds per phase) go to stdout as the run goes.

    .venv/bin/python benchmarks/vector_bench.py                         # 100k and 1M, dim 384
    .venv/bin/python benchmarks/vector_bench.py --sizes 100000 --dim 384 --ef-search 128 400
    .venv/bin/python benchmarks/vector_bench.py --sizes 1000000 --maintenance-work-mem 6GB
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from langchain_core.documents import Document

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rag.index.pgvector import PgIndexReader, PgVectorIndex  # noqa: E402
from rag.index.store import HNSW_EF_CONSTRUCTION, HNSW_M, SourceRecord, open_store, write_index_version  # noqa: E402

EF_SEARCH = 128
MODEL = "synthetic-unit-vectors"
WORDS = ["sagemaker", "studio", "notebook", "training", "endpoint", "pricing", "region", "spark", "cluster", "emr"]


def synthetic_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """``n`` unit vectors of ``dim`` floats around 500 random centres (float32)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((500, dim), dtype=np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):  # in blocks: 1M x 384 noise at once would double the peak memory
        stop = min(n, start + 100_000)
        block = centres[rng.integers(0, 500, stop - start)] + 0.6 * rng.standard_normal(
            (stop - start, dim), dtype=np.float32
        )
        out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def documents(n: int) -> list[Document]:
    rnd = random.Random(7)
    return [
        Document(
            " ".join(rnd.choices(WORDS, k=20)), metadata={"id": f"c{i}", "source": "s3://b/docs/faq.csv", "row": i}
        )
        for i in range(n)
    ]


def percentiles(ms: list[float]) -> tuple[float, float]:
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def progress(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def recall(found: list[list[int]], exact: list[list[int]]) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, exact, strict=True)]))


SERVE_FAISS = r"""
import json, sys, time, numpy as np, psutil, faiss
sys.path.insert(0, sys.argv[1])
from rag.index.store import open_store, load_index_version
from rag.answer.retrieval import TenantIndex
faiss.omp_set_num_threads(1)
t = time.perf_counter()
version = load_index_version(open_store(sys.argv[2]), tenant="bench", embedding_model=sys.argv[3])
load = time.perf_counter() - t
index = TenantIndex(version, ef_search=int(sys.argv[4]))
queries = np.load(sys.argv[5])
ms, found = [], []
for q in queries:
    s = time.perf_counter(); hits = index.dense_search(q, 10); ms.append((time.perf_counter() - s) * 1000)
    found.append([p for p, _ in hits])
print(json.dumps({"load": load, "ms": ms, "found": found, "rss": psutil.Process().memory_info().rss}))
"""

SERVE_PG = r"""
import json, sys, time, numpy as np, psutil
sys.path.insert(0, sys.argv[1])
from rag.index.pgvector import PgVectorIndex, PgIndexReader
backend = PgVectorIndex(tenant="bench", conninfo=sys.argv[2], statement_timeout=60, pool_max_size=2)
t = time.perf_counter()
reader = PgIndexReader(backend, embedding_model=sys.argv[3], ef_search=int(sys.argv[4]))
index = reader.load(reader.latest_version_id())
load = time.perf_counter() - t
queries = np.load(sys.argv[5])
for q in queries[:10]:
    index.search("", q, dense_k=10, keyword_k=0)
ms, found = [], []
for q in queries:
    s = time.perf_counter()
    c = index.search("", q, dense_k=10, keyword_k=0)
    ms.append((time.perf_counter() - s) * 1000)
    found.append([p for p, _ in c.dense])
print(json.dumps({"load": load, "ms": ms, "found": found, "rss": psutil.Process().memory_info().rss}))
backend.close()
"""


def serve(script: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", script, str(REPO), *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_size(n: int, dim: int, work: Path, pg, queries_n: int, types: list[str], ef_values: list[int],
             maintenance_work_mem: str, on_row: Any = None) -> list[dict]:  # fmt: skip
    print(f"\n== {n:,} vectors x {dim} dims ==", flush=True)
    t = time.perf_counter()
    vectors = synthetic_vectors(n, dim, seed=7)
    docs = documents(n)
    rng = np.random.default_rng(3)
    queries = vectors[rng.integers(0, n, queries_n)] + 0.3 * rng.standard_normal((queries_n, dim), dtype=np.float32)
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    qfile = work / f"queries-{n}.npy"
    np.save(qfile, queries)
    progress(f"vectors and documents: {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    exact_index = faiss.IndexFlatIP(dim)
    exact_index.add(vectors)
    _, exact_ids = exact_index.search(queries, 10)
    exact = [list(map(int, row)) for row in exact_ids]
    del exact_index
    progress(f"exact top-10 of {queries_n} queries: {time.perf_counter() - t:.1f} s")
    sources = [SourceRecord("s3://b/docs/faq.csv", "sha256:0", n)]
    rows = []
    for kind in types:
        efs = [None] if kind == "faiss-flat" else ef_values
        served_by_ef: dict[int | None, dict] = {}
        if kind.startswith("faiss"):
            index_type = kind.split("-")[1]
            root = work / f"faiss-{index_type}-{n}"
            faiss.omp_set_num_threads(2)
            progress(f"{kind}: building and writing the version")
            started = time.perf_counter()
            write_index_version(open_store(str(root)), tenant="bench", embedding_model=MODEL, vectors=vectors,
                                documents=docs, sources=sources, index_type=index_type)  # fmt: skip
            ingest_s = time.perf_counter() - started
            progress(f"{kind}: written in {ingest_s:.1f} s ({n / ingest_s:,.0f} rows/s)")
            for ef in efs:
                t = time.perf_counter()
                served_by_ef[ef] = serve(SERVE_FAISS, str(root), MODEL, str(ef or EF_SEARCH), str(qfile))
                progress(f"{kind}: served (ef_search={ef}) in {time.perf_counter() - t:.1f} s")
            size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
            switch = {ef: served["load"] for ef, served in served_by_ef.items()}
            shutil.rmtree(root)
        else:
            tenant_url = pg.provision("bench")
            with pg.admin() as admin:  # pgvector's "graph no longer fits" is a NOTICE: into the server log
                admin.execute("ALTER SYSTEM SET log_min_messages = 'notice'")
                admin.execute("SELECT pg_reload_conf()")
            backend = PgVectorIndex(
                tenant="bench", conninfo=tenant_url, statement_timeout=0, maintenance_work_mem=maintenance_work_mem
            )
            progress(f"{kind}: COPY + HNSW + GIN + ANALYZE (maintenance_work_mem {maintenance_work_mem})")
            started = time.perf_counter()
            version = backend.publish(tenant="bench", embedding_model=MODEL, previous=None, kept_positions=[],
                                      new_vectors=vectors, documents=docs, sources=sources,
                                      chunking={"chunk_size": 1500, "chunk_overlap": 150}, index_type="hnsw",
                                      switch=False)  # fmt: skip
            ingest_s = time.perf_counter() - started
            progress(f"{kind}: published in {ingest_s:.1f} s ({n / ingest_s:,.0f} rows/s)")
            log = pg.root / "log"
            for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
                if "hnsw" in line.lower() or "maintenance_work_mem" in line:
                    progress(f"{kind}: server log: {line.strip()}")
            t = time.perf_counter()
            backend.switch(version)
            PgIndexReader(backend, embedding_model=MODEL).load(version)
            switch_s = time.perf_counter() - t
            with backend.connection() as conn:
                size = conn.execute("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n "
                                    "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
                                    (backend.schema,)).fetchone()[0]  # fmt: skip
            backend.close()
            for ef in efs:
                t = time.perf_counter()
                served_by_ef[ef] = serve(SERVE_PG, tenant_url, MODEL, str(ef), str(qfile))
                progress(f"{kind}: served (ef_search={ef}) in {time.perf_counter() - t:.1f} s")
            switch = dict.fromkeys(efs, switch_s)
            with pg.admin() as admin:
                admin.execute("DROP SCHEMA tenant_bench CASCADE")
        for ef, served in served_by_ef.items():
            p50, p95 = percentiles(served["ms"])
            row = {
                "backend": kind, "n": n, "dim": dim, "ingest_rows_s": n / ingest_s, "ingest_s": ingest_s,
                "load_switch_s": switch[ef], "p50_ms": p50, "p95_ms": p95, "recall10": recall(served["found"], exact),
                "serving_rss_mib": served["rss"] / 2**20, "stored_mib": int(size) / 2**20, "ef_search": ef,
                "maintenance_work_mem": maintenance_work_mem if kind.startswith("pgvector") else None,
            }  # fmt: skip
            print(json.dumps(row), flush=True)
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


def main() -> None:
    global EF_SEARCH
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--backends", nargs="+", default=["faiss-flat", "faiss-hnsw", "pgvector-hnsw"])
    parser.add_argument("--json", type=Path, help="append result rows to this JSON-lines file")
    parser.add_argument("--ef-search", type=int, nargs="+", default=[EF_SEARCH],
                        help="HNSW candidates per query (both HNSW), one serving run each")  # fmt: skip
    parser.add_argument("--maintenance-work-mem", default="2GB", help="pgvector's HNSW build memory")
    args = parser.parse_args()
    EF_SEARCH = args.ef_search[0]
    from devstack.postgres import LocalPostgres

    work = Path(tempfile.mkdtemp(prefix="vector-bench-"))
    pg = LocalPostgres(work / f"pg-{secrets.token_hex(3)}")
    rows: list[dict] = []

    def on_row(row: dict) -> None:
        if args.json:
            with args.json.open("a") as handle:
                handle.write(json.dumps(row) + "\n")

    try:
        for n in args.sizes:
            rows += run_size(n, args.dim, work, pg, args.queries, args.backends, args.ef_search,
                             args.maintenance_work_mem, on_row)  # fmt: skip
    finally:
        pg.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, {faiss.__version__=}, HNSW m={HNSW_M} "
          f"ef_construction={HNSW_EF_CONSTRUCTION} ef_search={args.ef_search} "
          f"maintenance_work_mem={args.maintenance_work_mem}\n")  # fmt: skip
    print(
        "| backend | vectors | ef_search | ingest rows/s | load/switch s | p50 ms | p95 ms | recall@10 "
        "| serving RSS MiB | stored MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['n']:,} x {r['dim']} | {r['ef_search'] or '–'} | {r['ingest_rows_s']:,.0f} | "
              f"{r['load_switch_s']:.2f} | "
              f"{r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['recall10']:.3f} | {r['serving_rss_mib']:.0f} | "
              f"{r['stored_mib']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()

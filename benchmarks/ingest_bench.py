"""Ingestion benchmark: prints Markdown tables (not part of the test run).

1. chunks/s of a full ingestion of both demo corpora with the local all-MiniLM-L6-v2 model;
2. chunks/s with a fake Bedrock (a real ``bedrock-runtime`` client whose ``invoke_model`` sleeps
   50 ms and returns a Titan v2 body, so LangChain's ``BedrockEmbeddings`` code path runs) at
   concurrency 1, 4 and 16, with the speed-up against concurrency 1;
3. ``rag.eval`` time and recall/MRR for both tenants, dense and hybrid.

Usage: ``.venv/bin/python benchmarks/ingest_bench.py`` (offline; ~1-2 minutes on 2 cores).
"""

from __future__ import annotations

import io
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("SHARED_DIR", REPO.parent / "shared"))

import boto3  # noqa: E402
from botocore.response import StreamingBody  # noqa: E402

from ingest.embedder import embed_in_batches  # noqa: E402
from ingest.pipeline import run_ingestion  # noqa: E402
from ingest.sources import LocalSource  # noqa: E402
from rag.answer.retrieval import TenantIndex, TenantRetriever  # noqa: E402
from rag.eval import evaluate, load_questions  # noqa: E402
from rag.index.embeddings import make_embeddings  # noqa: E402
from rag.index.store import LocalBlobStore, load_index_version  # noqa: E402
from rag.settings import Settings  # noqa: E402

CORPORA = {"tenanta": "Amazon_SageMaker_FAQs.csv", "tenantb": "Amazon_EMR_FAQs.csv"}
FAKE_LATENCY = 0.050
FAKE_TEXTS = 128


def bench_local(work: Path) -> tuple[str, dict[str, LocalBlobStore], object]:
    started = time.perf_counter()
    emb = make_embeddings(Settings(tenant_id="tenanta", embeddings_provider="local"))
    emb.embed_documents(["warm up"])
    load_s = time.perf_counter() - started
    lines = [
        f"Local model load (incl. imports): {load_s:.1f} s\n",
        "| tenant | documents | chunks | characters | ingestion s | chunks/s |",
        "|---|---|---|---|---|---|",
    ]
    stores = {}
    for tenant, name in CORPORA.items():
        (work / tenant / "docs").mkdir(parents=True)
        shutil.copy(SHARED / "data" / name, work / tenant / "docs" / name)
        store = LocalBlobStore(work / tenant / "index")
        s = run_ingestion(tenant=tenant, source=LocalSource(work / tenant / "docs"), store=store, embeddings=emb,
                          embedding_model=emb.model_id, concurrency=1, progress=False)  # fmt: skip
        stores[tenant] = store
        lines.append(
            f"| {tenant} | {s.documents} | {s.chunks} | {s.characters} | {s.seconds:.1f} | {s.chunks_per_second:.1f} |"
        )
    return "\n".join(lines), stores, emb


def _titan_invoke(**kwargs):
    time.sleep(FAKE_LATENCY)
    text = json.loads(kwargs["body"])["inputText"]
    vector = [float((hash(text) >> i) & 1) + 0.1 for i in range(1024)]
    raw = json.dumps({"embedding": vector, "inputTextTokenCount": len(text.split())}).encode()
    return {"body": StreamingBody(io.BytesIO(raw), len(raw)), "contentType": "application/json"}


def bench_fake_bedrock(texts: list[str]) -> str:
    client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    emb = make_embeddings(Settings(tenant_id="tenanta", aws_default_region="us-east-1"), bedrock_client=client)
    lines = [
        f"Fake Bedrock: {len(texts)} chunks, one InvokeModel per chunk at {FAKE_LATENCY * 1000:.0f} ms, "
        "batch size 4 (real `BedrockEmbeddings` code path)\n",
        "| concurrency | seconds | chunks/s | speed-up vs 1 | ideal |",
        "|---|---|---|---|---|",
    ]
    base = None
    with mock.patch.object(client, "invoke_model", side_effect=_titan_invoke):
        for concurrency in (1, 4, 16):
            started = time.perf_counter()
            out = embed_in_batches(emb, texts, batch_size=4, concurrency=concurrency)
            seconds = time.perf_counter() - started
            assert out.shape == (len(texts), 1024)
            base = base or seconds
            rate = len(texts) / seconds
            lines.append(f"| {concurrency} | {seconds:.2f} | {rate:.1f} | {base / seconds:.2f}x | {concurrency}x |")
    return "\n".join(lines)


def bench_eval(stores: dict[str, LocalBlobStore], emb) -> str:
    lines = [
        "| tenant | mode | questions | recall@1 | recall@4 | recall@10 | MRR | eval s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for tenant, store in stores.items():
        index = TenantIndex(load_index_version(store, tenant=tenant, embedding_model=emb.model_id))
        questions = load_questions(SHARED / "eval" / f"dev_{tenant}.jsonl")
        for mode in ("dense", "hybrid"):
            started = time.perf_counter()
            r = evaluate(TenantRetriever(index=index, embeddings=emb, mode=mode), questions)
            seconds = time.perf_counter() - started
            lines.append(
                f"| {tenant} | {mode} | {r.questions} | {r.recall[1]:.3f} | {r.recall[4]:.3f} | "
                f"{r.recall[10]:.3f} | {r.mrr:.3f} | {seconds:.2f} |"
            )
    return "\n".join(lines)


def main() -> int:
    print(f"# Ingestion benchmark\n\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}\n")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        local_table, stores, emb = bench_local(Path(tmp))
        print("## Local model (all-MiniLM-L6-v2, CPU, concurrency 1)\n")
        print(local_table + "\n")
        index = load_index_version(stores["tenanta"], tenant="tenanta", embedding_model=emb.model_id)
        texts = [d.page_content for d in index.documents][:FAKE_TEXTS]
        print("## Fake Bedrock (fixed latency): concurrency\n")
        print(bench_fake_bedrock(texts) + "\n")
        print("## Retrieval evaluation (rag.eval, local model, dev sets)\n")
        print(bench_eval(stores, emb))
    return 0


if __name__ == "__main__":
    sys.exit(main())

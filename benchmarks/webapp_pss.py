"""Web chat memory: PSS of the Streamlit process idle, with N browser sessions open, and while they all ask.

Not a test. Starts the fake Bedrock endpoint and the RAG API (as in ``benchmarks/api_bench.py``), the web
chat (``streamlit run webapp/app.py``, ``AUTH_MODE=dev``), opens ``--sessions`` pages in Debian's
headless Chromium (Playwright) and has each ask one question, sampling the Streamlit process's PSS
(``/proc/<pid>/smaps_rollup``: shared pages divided among the processes that map them) every 0.5 s.

    .venv/bin/python benchmarks/webapp_pss.py --sessions 1 10 20
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import api_bench as ab  # noqa: E402

from tests.integration.webapp.browser import (  # noqa: E402
    CHAT_INPUT,
    assistant_messages,
    running_browser,
    wait_for_answer,
)
from tests.integration.webapp.servers import streamlit_app  # noqa: E402


def _listener(port: int) -> psutil.Process:
    for conn in psutil.net_connections("tcp"):
        if conn.laddr.port == port and conn.status == "LISTEN" and conn.pid:
            return psutil.Process(conn.pid)
    raise RuntimeError(f"nothing listens on {port}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 10, 20])
    parser.add_argument("--words", type=int, default=60, help="tokens per answer of the fake model")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="webapp-pss-"))
    fake, endpoint = ab.start_fake_bedrock(0.3, 50, args.words, 20)
    index = work / "index"
    ab.build_index(index, 10_000)
    api, base, _ = ab.start_gunicorn(index, work, endpoint, 1, "hybrid")
    rows = []
    try:
        ab.wait_http(f"{base}/readyz")
        env = {
            "TENANT_ID": "tenanta",
            "AUTH_MODE": "dev",
            "SESSIONS_URL": f"sqlite:///{work}/sessions.db",
            "RAG_API_URL": base,
            "EMBEDDINGS_PROVIDER": "local",
            "LLM_PROVIDER": "extractive",
        }
        with streamlit_app(env, log_name="bench-webapp.log") as url, running_browser() as browser:
            proc = _listener(int(url.rsplit(":", 1)[1]))
            idle = ab.pss_mib(proc.pid)
            for n in args.sessions:
                pages = []
                for _ in range(n):
                    page = browser.new_page()
                    page.goto(url)
                    page.locator(CHAT_INPUT).wait_for(timeout=60_000)
                    pages.append(page)
                opened = ab.pss_mib(proc.pid)
                peak = [opened]
                done = threading.Event()

                def sample(peak: list[float] = peak, done: threading.Event = done) -> None:
                    while not done.wait(0.5):
                        peak[0] = max(peak[0], ab.pss_mib(proc.pid))

                sampler = threading.Thread(target=sample, daemon=True)
                sampler.start()
                started = time.perf_counter()
                before = [assistant_messages(page).count() for page in pages]
                for page in pages:  # Playwright's sync API is single-threaded: send all, then wait for each
                    page.locator(CHAT_INPUT).fill("What is SageMaker Studio?")
                    page.locator(CHAT_INPUT).press("Enter")
                for page, count in zip(pages, before, strict=True):
                    wait_for_answer(page, count, timeout=120)
                elapsed = time.perf_counter() - started
                done.set()
                sampler.join()
                rows.append((n, opened, peak[0], elapsed))
                print(f"sessions={n}: idle {idle:.0f} MiB, open {opened:.0f} MiB, peak {peak[0]:.0f} MiB, "
                      f"answered in {elapsed:.1f} s", flush=True)  # fmt: skip
                for page in pages:
                    page.close()
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=60)
        fake.terminate()
    print(f"\n### Web chat PSS ({os.cpu_count()} vCPU, Streamlit process only; idle: {idle:.0f} MiB)\n")
    print("| sessions | PSS with the pages open (MiB) | PSS peak while all answer (MiB) | all answered after (s) |")
    print("|---:|---:|---:|---:|")
    for n, opened, peak_mib, elapsed in rows:
        print(f"| {n} | {opened:.0f} | {peak_mib:.0f} | {elapsed:.1f} |")


if __name__ == "__main__":
    main()

"""End to end with ``VECTOR_STORE=pgvector``: ``make demo``'s stack with each tenant's index in PostgreSQL.

The same stack as ``test_demo_stack.py`` (real ingestion, gunicorn RAG API, Streamlit web chat,
Chromium) but the indexes live in a local PostgreSQL with pgvector (``pgserver``), one schema and
login role per tenant; FAISS files are never written.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser
from psycopg import sql

from devstack.stack import DemoStack
from rag.answer.grounding import NO_ANSWER
from rag.index.pgvector import schema_for
from tests.conftest import EVAL_DIR
from tests.integration.e2e.test_demo_stack import _free_base_port
from tests.integration.webapp.browser import ask, open_chat, running_browser, sources


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    workdir = tmp_path_factory.mktemp("demo-pgvector")
    env = {"INDEX_POLL_SECONDS": "0", "VECTOR_STORE": "pgvector"}
    with DemoStack(workdir=workdir, base_port=_free_base_port(), env=env) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with running_browser() as b:
        yield b


def _rows(source_lines: list[str]) -> list[int]:
    """0-based csv rows behind source cards that show "row N" (1-based)."""
    return [int(m.group(1)) - 1 for line in source_lines for m in [re.search(r"row (\d+)", line)] if m]


def test_each_tenants_index_is_served_from_its_own_schema(stack: DemoStack) -> None:
    assert not any(stack.workdir.glob("*/index/LATEST"))  # no FAISS version was written
    for tenant, ep in stack.endpoints.items():
        with urllib.request.urlopen(f"{ep.api_url}/readyz", timeout=10) as response:
            ready = json.load(response)
        schema = sql.Identifier(schema_for(tenant))
        with stack.postgres.admin() as conn:
            (pointer,) = conn.execute(sql.SQL("SELECT version FROM {}.current").format(schema)).fetchone()
        assert ready["status"] == "ready" and ready["tenant"] == tenant
        assert ready["index_version"] == pointer  # the API serves the version the database points at
        assert ready["chunks"] > 100


def test_tenantb_answers_from_the_emr_rows_in_postgres(stack: DemoStack, browser: Browser) -> None:
    question = json.loads((EVAL_DIR / "dev_tenantb.jsonl").read_text().splitlines()[0])
    page = open_chat(browser, stack.endpoints["tenantb"].web_url)
    ask(page, question["question"], timeout=90)
    lines = sources(page)
    assert lines and all("Amazon_EMR_FAQs.csv" in line for line in lines), lines
    assert set(question["relevant_rows"]) & set(_rows(lines)), lines
    page.close()


def test_an_unanswerable_question_is_refused_with_pgvector_too(stack: DemoStack, browser: Browser) -> None:
    page = open_chat(browser, stack.endpoints["tenanta"].web_url)
    answer = ask(page, "who won the football game last night?", timeout=90)
    assert answer == NO_ANSWER
    assert sources(page) == []
    page.close()

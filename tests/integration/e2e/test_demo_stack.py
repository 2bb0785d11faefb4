"""End to end: the real demo stack (ingestion, gunicorn RAG API, Streamlit web chat) in Chromium.

This is what `make demo` starts, on real data from ../shared/data, with the offline providers
(local embeddings, extractive answers, SQLite history and sessions).
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from devstack.stack import DemoStack
from rag.answer.grounding import NO_ANSWER
from tests.conftest import EVAL_DIR
from tests.integration.webapp.browser import ASSISTANT, EXPANDER, ask, open_chat, running_browser, screenshot, sources
from webapp.ui import UNGROUNDED_HINT


def _free_base_port() -> int:
    """A base port p such that p, p+1, p+100 and p+101 are free on 127.0.0.1."""
    for base in range(21000, 40000, 211):
        ports = (base, base + 1, base + 100, base + 101)
        free = True
        for port in ports:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    free = False
                    break
        if free:
            return base
    raise RuntimeError("no free ports")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    workdir = tmp_path_factory.mktemp("demo")
    with DemoStack(workdir=workdir, base_port=_free_base_port(), env={"INDEX_POLL_SECONDS": "0"}) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with running_browser() as b:
        yield b


def _dev_questions(tenant: str) -> list[dict]:
    lines = (EVAL_DIR / f"dev_{tenant}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _rows(source_lines: list[str]) -> list[int]:
    """The 0-based csv rows (as the eval sets count them) behind source cards that show "row N", 1-based."""
    return [int(m.group(1)) - 1 for line in source_lines for m in [re.search(r"row (\d+)", line)] if m]


def test_tenanta_answers_with_the_right_faq_row_and_keeps_context(stack: DemoStack, browser: Browser) -> None:
    page = open_chat(browser, stack.endpoints["tenanta"].web_url)
    question = next(q for q in _dev_questions("tenanta") if q["relevant_rows"] == [9])  # the R / reticulate row
    answer = ask(page, question["question"], timeout=90)
    first_sources = sources(page)
    screenshot(page, "e2e-tenanta-answer")
    assert "Extractive answer" in answer  # the offline answerer says what it is
    assert any(k in answer.lower() for k in question["answer_keywords"]), answer
    assert 9 in _rows(first_sources), first_sources
    assert all("Amazon_SageMaker_FAQs.csv" in line for line in first_sources), first_sources

    # A follow-up that only makes sense with the first turn: the condensed question carries it.
    follow_up = ask(page, "which package makes that possible?", timeout=90)
    follow_sources = sources(page)
    screenshot(page, "e2e-tenanta-follow-up")
    assert 9 in _rows(follow_sources), (follow_up, follow_sources)
    assert "reticulate" in follow_up.lower()
    page.close()


def test_tenantb_answers_from_the_emr_corpus_only(stack: DemoStack, browser: Browser) -> None:
    page = open_chat(browser, stack.endpoints["tenantb"].web_url)
    question = _dev_questions("tenantb")[0]
    answer = ask(page, question["question"], timeout=90)
    lines = sources(page)
    screenshot(page, "e2e-tenantb-answer")
    assert lines and all("Amazon_EMR_FAQs.csv" in line for line in lines), lines
    assert set(question["relevant_rows"]) & set(_rows(lines)), (answer, lines)
    # A SageMaker-only question asked of tenantb still gets EMR sources only.
    ask(page, "can I drive the sagemaker python sdk from R code with reticulate?", timeout=90)
    assert all("Amazon_EMR_FAQs.csv" in line for line in sources(page))
    page.close()


def test_an_unanswerable_question_gets_the_no_answer_reply_without_sources(stack: DemoStack, browser: Browser) -> None:
    page = open_chat(browser, stack.endpoints["tenanta"].web_url)
    answer = ask(page, "who won the football game last night?", timeout=90)
    screenshot(page, "e2e-tenanta-no-answer")
    assert answer == NO_ANSWER
    assert sources(page) == []  # no citations under the reply
    bubble = page.locator(ASSISTANT).last
    expect(bubble.locator(EXPANDER)).to_have_count(0)
    expect(bubble).to_contain_text(UNGROUNDED_HINT)
    # the next, answerable question is answered with sources again
    ask(page, "What is Amazon SageMaker?", timeout=90)
    assert sources(page)
    page.close()


def test_history_survives_a_page_reload(stack: DemoStack, browser: Browser) -> None:
    page = open_chat(browser, stack.endpoints["tenanta"].web_url)
    question = "What is Amazon SageMaker?"
    ask(page, question, timeout=90)
    page.reload()
    page.get_by_text(question).first.wait_for(timeout=30_000)
    screenshot(page, "e2e-tenanta-after-reload")
    assert page.get_by_text(question).count() >= 1
    page.close()


def test_demo_logs_name_the_providers(stack: DemoStack) -> None:
    log = Path(stack.log_dir / "tenanta-ragapi.log").read_text(errors="replace")
    assert "extractive" in log and "tenanta" in log

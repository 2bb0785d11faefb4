"""The chat people expect, end to end: the real demo stack (ingestion, gunicorn RAG API, Streamlit) in Chromium.

Conversations (create, list, rename, resume, delete), the answer actions (copy, regenerate, stop), input
that cannot go wrong, citations that scroll to their card, feedback that survives a reload, and a request
log proving the page talks to no host but the stack's. The answering model is the offline extractive
one; ``tests.support.slow_model`` streams questions marked ``(slowly)`` slowly so Stop can be pressed.
Screenshots (desktop, 390 px, dark) go to ``test-artifacts/``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from devstack.stack import DemoStack
from rag.contract import MAX_QUESTION_CHARS
from tests.integration.e2e.test_demo_stack import _free_base_port
from tests.integration.webapp.browser import (
    ALERT,
    CHAT_INPUT,
    USER,
    ask,
    assistant_messages,
    running_browser,
    screenshot,
    send,
    wait_for_answer,
)
from tests.support.slow_model import SLOW_MARKER
from webapp import ui
from webapp.conversations import URL_PARAM

#: The stack ingests and starts in this module's first fixture: minutes on a busy 2-core machine.
pytestmark = pytest.mark.timeout(900)
DEV_USER = "demo@example.com"
Q1 = "Can I use R with SageMaker?"
Q2 = "What is Amazon SageMaker Studio?"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    # CHAT_E2E_WORKDIR reuses a workdir between runs (incremental ingestion: nothing embedded twice)
    workdir = Path(os.environ.get("CHAT_E2E_WORKDIR") or tmp_path_factory.mktemp("chat-demo"))
    env = {"INDEX_POLL_SECONDS": "0", "LLM_PROVIDER": "tests.support.slow_model:make", "DEV_USER_EMAIL": DEV_USER}
    with DemoStack(workdir=workdir, tenants=("tenanta",), base_port=_free_base_port(), env=env) as running:
        yield running


@pytest.fixture(scope="module")
def requests_seen() -> list[str]:
    return []


@pytest.fixture(scope="module")
def context(stack: DemoStack, requests_seen: list[str]) -> Iterator[BrowserContext]:
    with running_browser() as browser:
        ctx = browser.new_context(
            viewport={"width": 1280, "height": 900}, permissions=["clipboard-read", "clipboard-write"]
        )
        ctx.on("request", lambda request: requests_seen.append(request.url))
        yield ctx
        ctx.close()


@pytest.fixture
def page(context: BrowserContext, stack: DemoStack) -> Iterator[Page]:
    page = context.new_page()
    page.goto(stack.endpoints["tenanta"].web_url)
    page.locator(CHAT_INPUT).wait_for(timeout=60_000)
    yield page
    page.close()


def api_messages(stack: DemoStack, page: Page) -> list[dict]:
    """The open conversation's messages as the API's history store has them."""
    uuid = dict(p.split("=", 1) for p in urlsplit(page.url).query.split("&") if "=" in p)[URL_PARAM]
    sid = quote(f"tenanta:{DEV_USER}:{uuid}", safe="")
    url = f"{stack.endpoints['tenanta'].api_url}/api/v1/sessions/{sid}/messages"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())["messages"]


def api_history(stack: DemoStack, page: Page) -> list[tuple[str, str]]:
    """``[(role, content), ...]`` of :func:`api_messages`."""
    return [(m["role"], m["content"]) for m in api_messages(stack, page)]


def sidebar_titles(page: Page) -> list[str]:
    buttons = page.locator('[data-testid="stSidebar"] [class*="st-key-conv_"] button[data-testid^="stBaseButton"]')
    return [t.strip() for t in buttons.all_inner_texts() if t.strip()]


def new_chat(page: Page) -> None:
    page.get_by_role("button", name="New chat").click()
    expect(page.locator(USER)).to_have_count(0, timeout=15_000)


def test_first_screen_names_the_tenant_once_and_example_questions_send(page: Page, stack: DemoStack):
    new_chat(page)
    name = stack.endpoints["tenanta"].display_name
    assert page.title() == name
    expect(page.get_by_role("heading", name=name, exact=True)).to_have_count(1)
    expect(page.get_by_text("every answer cites the passages")).to_be_visible()
    examples = page.locator('[class*="st-key-example_"] button')
    assert 3 <= examples.count() <= 4
    screenshot(page, "chat-first-screen")
    first = examples.first.locator('[data-testid="stMarkdownContainer"]').inner_text().strip()  # no icon name
    before = assistant_messages(page).count()
    examples.first.click()
    expect(page.locator(USER).last).to_contain_text(first, timeout=30_000)
    wait_for_answer(page, before, timeout=120)


def test_two_conversations_listed_renamed_resumed_deleted(page: Page, stack: DemoStack):
    new_chat(page)
    ask(page, Q1, timeout=120)
    first_history = api_history(stack, page)
    first_url = page.url
    new_chat(page)
    ask(page, Q2, timeout=120)
    expect(page.locator('[data-testid="stSidebar"]')).to_contain_text(Q1)
    titles = sidebar_titles(page)
    assert titles.index(Q2) < titles.index(Q1), titles  # newest first
    screenshot(page, "chat-two-conversations")

    # rename the first one
    first_uuid = first_url.split(f"{URL_PARAM}=")[-1]
    row = page.locator(f'[data-testid="stSidebar"] .st-key-conv_{first_uuid}')
    row.locator('[data-testid="stPopoverButton"]').first.click()
    name_box = page.get_by_label("Name").last
    name_box.fill("R and SageMaker")
    name_box.press("Enter")
    page.get_by_role("button", name="Rename").last.click()
    expect(page.locator('[data-testid="stSidebar"]')).to_contain_text("R and SageMaker", timeout=15_000)
    page.keyboard.press("Escape")

    # resume it: its turns come back, and a follow-up uses its history
    row.get_by_role("button", name="R and SageMaker").click()
    expect(page.locator(USER).first).to_contain_text(Q1, timeout=15_000)
    assert api_history(stack, page) == first_history
    follow_up = ask(page, "which package makes that possible?", timeout=120)
    assert "reticulate" in follow_up.lower()  # only answerable with the first question as context
    assert len(api_history(stack, page)) == 4
    resumed_url = page.url

    # delete it (with confirmation): gone from the list and from the API's history store
    row.locator('[data-testid="stPopoverButton"]').first.click()
    page.get_by_role("button", name="Delete").last.click()
    expect(page.get_by_text("for good?")).to_be_visible()
    page.get_by_role("button", name="Yes, delete").click()
    expect(page.locator('[data-testid="stSidebar"]')).not_to_contain_text("R and SageMaker", timeout=15_000)
    page.goto(resumed_url)  # the deleted conversation's link no longer opens anything
    expect(page.get_by_text("not one of yours")).to_be_visible(timeout=30_000)
    assert first_url.split(f"{URL_PARAM}=")[-1] == resumed_url.split(f"{URL_PARAM}=")[-1]
    uuid = resumed_url.split(f"{URL_PARAM}=")[-1]
    sid = quote(f"tenanta:{DEV_USER}:{uuid}", safe="")
    with urllib.request.urlopen(
        f"{stack.endpoints['tenanta'].api_url}/api/v1/sessions/{sid}/messages", timeout=10
    ) as response:
        assert json.loads(response.read())["messages"] == []


def test_another_users_conversation_from_the_url_is_refused(page: Page, stack: DemoStack):
    base = stack.endpoints["tenanta"].web_url
    page.goto(f"{base}/?{URL_PARAM}=6f1c7c2e-1d2b-4f7e-9a55-0a4f5b8a9d10")
    expect(page.get_by_text("not one of yours")).to_be_visible(timeout=30_000)
    expect(page.locator(USER)).to_have_count(0)
    assert f"{URL_PARAM}=" not in page.url


def test_copy_puts_the_answer_with_footnotes_on_the_clipboard(page: Page):
    new_chat(page)
    ask(page, Q1, timeout=120)
    page.locator("button.copy-answer").last.click()
    expect(page.locator("button.copy-answer").last).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("Extractive answer")
    assert "\n\n[1] Amazon_SageMaker_FAQs.csv · row " in copied  # citations as footnotes


def test_regenerate_leaves_one_turn(page: Page, stack: DemoStack):
    new_chat(page)
    ask(page, Q1, timeout=120)
    (old_answer,) = [m["answer_id"] for m in api_messages(stack, page) if m["role"] == "assistant"]
    page.get_by_role("button", name="Regenerate").click()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until the API stored the regenerated answer
        messages = api_messages(stack, page)
        if any(m.get("answer_id") not in (None, old_answer) for m in messages):
            break
        page.wait_for_timeout(500)
    assert [m["role"] for m in messages] == ["user", "assistant"]  # one turn, not two
    assert messages[0]["content"] == Q1 and messages[1]["answer_id"] != old_answer
    wait_for_answer(page, 0, timeout=60)
    expect(page.locator(USER)).to_have_count(1)


def test_stop_during_a_slow_stream_saves_nothing(page: Page, stack: DemoStack):
    new_chat(page)
    ask(page, Q2, timeout=120)
    saved = api_history(stack, page)
    question = f"What is Amazon SageMaker Studio? {SLOW_MARKER}"
    send(page, question)
    stop = page.locator('[class*="st-key-stop_answer"] button').last
    expect(stop).to_be_visible(timeout=60_000)
    bubble = assistant_messages(page).last
    expect(bubble).to_contain_text("Extractive", timeout=60_000)  # streaming has started
    screenshot(page, "chat-streaming")
    stop.click()
    expect(page.get_by_text("Stopped. Nothing was saved")).to_be_visible(timeout=30_000)
    expect(page.locator(CHAT_INPUT)).to_have_value(question)  # editable again
    expect(page.locator(USER)).to_have_count(1)
    assert api_history(stack, page) == saved  # nothing saved, even after the slow answer would have ended
    log = (stack.log_dir / "tenanta-ragapi.log").read_text(errors="replace")
    assert "answered (stream)" in log


def test_blank_and_over_long_messages_cannot_be_sent(page: Page):
    new_chat(page)
    box = page.locator(CHAT_INPUT)
    box.fill("   ")
    box.press("Enter")
    expect(page.locator(USER)).to_have_count(0)
    box.click()
    page.keyboard.insert_text("x" * 20_000)  # like a paste
    value = box.input_value()
    assert len(value) <= MAX_QUESTION_CHARS  # the box holds no more than the API accepts
    expect(page.locator(USER)).to_have_count(0)
    expect(page.locator(ALERT).filter(has_text="String should have")).to_have_count(0)
    screenshot(page, "chat-over-long")


def test_citation_scrolls_to_its_card(page: Page):
    new_chat(page)
    ask(page, Q1, timeout=120)
    link = assistant_messages(page).last.locator('a[href^="#src-"]').first
    target = link.get_attribute("href")
    page.mouse.wheel(0, -5000)
    link.click()
    card = page.locator(target)
    expect(card).to_be_attached()
    expect(page.locator(f'[class*="st-key-card_{target[1:]}"]')).to_be_in_viewport(timeout=5_000)


def test_feedback_survives_a_reload_as_one_record(page: Page, stack: DemoStack):
    new_chat(page)
    ask(page, Q2, timeout=120)
    page.locator('[data-testid="stFeedback"] button').first.click()  # thumbs up
    expect(page.get_by_text(ui.FEEDBACK_THANKS)).to_be_visible(timeout=15_000)  # a toast, not hidden
    page.reload()
    page.locator(CHAT_INPUT).wait_for(timeout=60_000)
    expect(page.locator(USER).last).to_contain_text(Q2, timeout=30_000)
    thumbs = page.locator('[data-testid="stFeedback"] button').first
    expect(thumbs).to_have_attribute("aria-checked", "true", timeout=15_000)  # the rating is shown again
    with sqlite3.connect(stack.workdir / "tenanta" / "feedback.sqlite3") as db:
        records = [json.loads(r[0]) for r in db.execute("SELECT record FROM feedback")]
    uuid = page.url.split(f"{URL_PARAM}=")[-1]
    mine = [r for r in records if r["session_id"] == f"tenanta:{DEV_USER}:{uuid}"]
    assert len(mine) == 1 and mine[0]["rating"] == "up"


def test_screenshots_at_390px_and_dark(context: BrowserContext, stack: DemoStack):
    page = context.new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(stack.endpoints["tenanta"].web_url)
    page.locator(CHAT_INPUT).wait_for(timeout=60_000)
    ask(page, Q1, timeout=120)
    screenshot(page, "chat-390px")
    page.emulate_media(color_scheme="dark")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.reload()
    page.locator(CHAT_INPUT).wait_for(timeout=60_000)
    expect(page.locator(USER).last).to_contain_text(Q1, timeout=30_000)
    screenshot(page, "chat-dark")
    page.close()


def test_no_request_leaves_the_stack(requests_seen: list[str], stack: DemoStack):
    """Runs last: every request of this module's chat session went to the web chat itself."""
    assert requests_seen, "the request log is empty"
    web = urlsplit(stack.endpoints["tenanta"].web_url).netloc
    foreign = sorted({urlsplit(u).netloc for u in requests_seen if urlsplit(u).scheme in ("http", "https", "ws", "wss")}
                     - {web})  # fmt: skip
    assert foreign == [], foreign

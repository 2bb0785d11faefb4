"""Playwright helpers for the web chat, driving Debian's Chromium (reusable by end-to-end tests).

Typical use::

    with sync_playwright() as p:
        browser = launch_browser(p)
        page = open_chat(browser, url, headers={"Authorization": "Bearer ..."})
        answer = ask(page, "What is Amazon SageMaker?")
        print(sources(page))
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from playwright.sync_api import Browser, Locator, Page, Playwright, expect, sync_playwright

from tests.integration.conftest import artifacts_dir

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
CHAT_INPUT = '[data-testid="stChatInputTextArea"]'
MESSAGE = '[data-testid="stChatMessage"]'
ASSISTANT = '[data-testid="stChatMessage"]:has([data-testid="stChatMessageAvatarAssistant"])'
USER = '[data-testid="stChatMessage"]:has([data-testid="stChatMessageAvatarUser"])'
EXPANDER = '[data-testid="stExpander"]'
ALERT = '[data-testid="stAlert"]'


def launch_browser(playwright: Playwright, executable: str = CHROMIUM) -> Browser:
    """Headless Debian Chromium (never a downloaded browser)."""
    assert Path(executable).exists(), f"{executable} missing: apt-get install -y chromium"
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)


@contextlib.contextmanager
def running_browser() -> Iterator[Browser]:
    """Playwright plus :func:`launch_browser`, closed on exit (for module-scoped fixtures)."""
    with sync_playwright() as playwright:
        browser = launch_browser(playwright)
        try:
            yield browser
        finally:
            browser.close()


def open_chat(browser: Browser, url: str, headers: dict[str, str] | None = None, timeout: float = 30.0) -> Page:
    """A new page on the web chat (``headers`` reach ``st.context.headers``); waits for the input box."""
    page = browser.new_page(extra_http_headers=headers or {}, viewport={"width": 1200, "height": 900})
    page.goto(url)
    page.locator(CHAT_INPUT).wait_for(timeout=timeout * 1000)
    return page


def assistant_messages(page: Page) -> Locator:
    """The assistant's chat bubbles, oldest first."""
    return page.locator(ASSISTANT)


def answer_text(message: Locator) -> str:
    """The answer's text: the bubble's first Markdown block (the sources are in an expander below)."""
    blocks = message.locator('[data-testid="stChatMessageContent"] [data-testid="stMarkdownContainer"]')
    return blocks.first.inner_text().strip() if blocks.count() else ""


def wait_for_answer(page: Page, count_before: int, timeout: float = 60.0) -> str:
    """Wait until assistant bubble number ``count_before + 1`` is complete; return its text.

    Complete means its sources expander is shown, or its text stopped changing for 1.5 s.

    Raises:
        AssertionError: an error box appeared instead of an answer, or nothing came in time.
    """
    deadline = time.monotonic() + timeout
    last, stable_since = None, time.monotonic()
    while time.monotonic() < deadline:
        errors = page.locator(ALERT).filter(has_text="try again")
        if errors.count():
            raise AssertionError("the chat shows an error: " + errors.first.inner_text())
        bubbles = assistant_messages(page)
        if bubbles.count() > count_before:
            bubble = bubbles.nth(count_before)
            text = answer_text(bubble)
            if bubble.locator(EXPANDER).count() and text:
                return text
            if text != last:
                last, stable_since = text, time.monotonic()
            elif text and time.monotonic() - stable_since > 1.5:
                return text
        time.sleep(0.2)
    raise AssertionError(f"no answer within {timeout}s")


def send(page: Page, question: str) -> None:
    """Type ``question`` into the chat box and press Enter (does not wait)."""
    box = page.locator(CHAT_INPUT)
    box.fill(question)
    box.press("Enter")


def ask(page: Page, question: str, timeout: float = 60.0) -> str:
    """Ask ``question`` and return the streamed answer's text once complete."""
    before = assistant_messages(page).count()
    send(page, question)
    expect(page.locator(USER).last).to_contain_text(question, timeout=timeout * 1000)
    return wait_for_answer(page, before, timeout)


def sources(page: Page, index: int = -1) -> list[str]:
    """The source lines under assistant bubble ``index`` (default: the last), expanding them.

    Each item reads like ``1. What is Amazon SageMaker?\\nAmazon_SageMaker_FAQs.csv · row 0 · score 1.00``
    (the snippets, shown as captions, are left out).
    """
    bubbles = assistant_messages(page)
    bubble = bubbles.nth(index if index >= 0 else bubbles.count() + index)
    expander = bubble.locator(EXPANDER)
    if not expander.count():
        return []
    details = expander.locator("details")
    if details.count() and details.first.get_attribute("open") is None:
        expander.locator("summary").first.click()
    body = expander.locator('[data-testid="stExpanderDetails"]')
    expect(body).to_be_visible()
    texts = body.locator('[data-testid="stMarkdownContainer"]').evaluate_all(
        "els => els.filter(e => !e.closest('[data-testid=\"stCaptionContainer\"]')).map(e => e.innerText)"
    )
    return [t.strip() for t in texts if t.strip()]


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot to ``test-artifacts/<name>.png``."""
    path = artifacts_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path

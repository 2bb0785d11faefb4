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
#: Rendered under an answer only once its ``done`` event arrived (the actions row: copy, regenerate).
ANSWER_DONE = '[class*="st-key-actions_"]'
#: One source card under an answer.
CARD = '[class*="st-key-card_"]'


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
    """The answer's text: the bubble's first Markdown block outside buttons (Stop) and cards."""
    return message.evaluate(
        """bubble => {
            const blocks = Array.from(bubble.querySelectorAll(
                '[data-testid="stChatMessageContent"] [data-testid="stMarkdownContainer"]'))
                .filter(b => !b.closest('button') && !b.closest('[class*="st-key-card_"]'));
            return blocks.length ? blocks[0].innerText.trim() : "";
        }"""
    )


def wait_for_answer(page: Page, count_before: int, timeout: float = 60.0) -> str:
    """Wait until assistant bubble number ``count_before + 1`` shows its answer-complete marker; return its text.

    Complete means the :data:`ANSWER_DONE` marker is in the bubble: the page renders it only after
    the stream's ``done`` event (never "the text stopped changing").

    Raises:
        AssertionError: an error box appeared instead of an answer, or nothing came in time.
    """
    done = assistant_messages(page).nth(count_before).locator(ANSWER_DONE)
    error = page.locator(ALERT).filter(has_text="again")
    try:
        done.or_(error).first.wait_for(timeout=timeout * 1000)
    except Exception as exc:
        raise AssertionError(f"no answer within {timeout}s") from exc
    if error.count() and not done.count():
        raise AssertionError("the chat shows an error: " + error.first.inner_text())
    return answer_text(assistant_messages(page).nth(count_before))


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
    """The source cards under assistant bubble ``index`` (default: the last), in the order shown.

    Each item reads like ``[1] What is Amazon SageMaker?\nAmazon_SageMaker_FAQs.csv · row 1 · score 1.00``
    (the passage, in a collapsed expander, is left out).
    """
    bubbles = assistant_messages(page)
    bubble = bubbles.nth(index if index >= 0 else bubbles.count() + index)
    cards = bubble.locator(CARD)
    texts = cards.evaluate_all(
        """els => els.map(card => Array.from(card.querySelectorAll(
              '[data-testid="stMarkdownContainer"], [data-testid="stCaptionContainer"]'))
            .filter(m => !m.closest('[data-testid="stExpander"]'))
            .filter(m => !m.parentElement.closest('[data-testid="stCaptionContainer"]'))
            .map(m => m.innerText.trim()).filter(t => t).join("\\n"))"""
    )
    return [t.strip() for t in texts if t.strip()]


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot to ``test-artifacts/<name>.png``."""
    path = artifacts_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path

"""The web chat in a real browser: Streamlit server + Debian Chromium + the fake RAG API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.conftest import DATA_DIR
from tests.integration.webapp.browser import (
    ALERT,
    ANSWER_DONE,
    CHAT_INPUT,
    USER,
    answer_text,
    ask,
    assistant_messages,
    open_chat,
    running_browser,
    screenshot,
    send,
    sources,
    wait_for_answer,
)
from tests.integration.webapp.fake_issuer import FakeIssuer, subject_of
from tests.integration.webapp.fake_rag_api import FakeRagApi, load_faq
from tests.integration.webapp.servers import streamlit_app

QUESTION = "What is the service availability of Amazon SageMaker?"  # row 2 of the SageMaker FAQ


@pytest.fixture(scope="module")
def fake_api() -> Iterator[FakeRagApi]:
    rows = load_faq(DATA_DIR / "Amazon_SageMaker_FAQs.csv")
    with FakeRagApi(rows, source="s3://tenanta-data/documents/Amazon_SageMaker_FAQs.csv") as api:
        yield api


@pytest.fixture(scope="module")
def chat_url(fake_api: FakeRagApi, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db: Path = tmp_path_factory.mktemp("webchat") / "sessions.db"
    env = {
        "TENANT_ID": "tenanta",
        "TENANT_DISPLAY_NAME": "Tenant A",
        "AUTH_MODE": "dev",
        "DEV_USER_EMAIL": "demo@example.com",
        "SESSIONS_URL": f"sqlite:///{db}",
        "RAG_API_URL": fake_api.url,
        "RAG_API_TIMEOUT_SECONDS": "10",
        "EMBEDDINGS_PROVIDER": "local",
        "LLM_PROVIDER": "extractive",
    }
    with streamlit_app(env, log_name="webchat-streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with running_browser() as b:
        yield b


@pytest.fixture(autouse=True)
def _healthy_api(fake_api: FakeRagApi) -> None:
    fake_api.fail_with = None
    fake_api.http_error = None


def test_question_streams_answer_with_source_row(browser, chat_url, fake_api):
    page = open_chat(browser, chat_url)
    expect(page.get_by_role("heading", name="Tenant A", exact=True)).to_be_visible()
    assert page.title() == "Tenant A"  # the browser tab names the tenant
    expect(page.get_by_text("Signed in as demo@example.com")).to_be_visible()
    expect(page.get_by_text("Development mode")).to_be_visible()
    screenshot(page, "webchat-empty")

    n_requests = len(fake_api.requests)
    answer = ask(page, QUESTION)
    assert "designed for high availability" in answer
    listed = sources(page)
    assert len(listed) == 3, listed
    assert "Amazon_SageMaker_FAQs.csv · row 3" in listed[0]  # the API's 0-based row 2 is the sheet's line 3
    assert "s3://" not in listed[0]  # the file name, not the full URI
    passage = assistant_messages(page).last.locator('[data-testid="stExpander"]').first
    passage.locator("summary").click()
    expect(passage).to_contain_text("designed for high availability")
    assert passage.locator("pre, code").count() == 0  # the passage is text, not a code block
    screenshot(page, "webchat-answer")

    (request,) = fake_api.requests[n_requests:]
    assert request["q"] == QUESTION
    assert request["user_session_id"].startswith("tenanta:demo@example.com:")
    assert len(request["request_id"]) == 32


def test_answer_arrives_in_pieces(browser, chat_url, fake_api):
    """Streaming: part of the answer is on screen before the rest (and the sources) arrive."""
    page = open_chat(browser, chat_url)
    fake_api.token_delay = 0.25
    try:
        before = assistant_messages(page).count()
        send(page, QUESTION)
        bubble = assistant_messages(page).nth(before)
        expect(bubble).to_contain_text("designed for", timeout=20_000)
        partial = answer_text(bubble)
        assert bubble.locator(ANSWER_DONE).count() == 0, "the whole answer arrived at once"
        final = wait_for_answer(page, before)
    finally:
        fake_api.token_delay = 0.03
    assert final.startswith(partial.strip())
    assert len(partial) < len(final)


def test_reload_shows_earlier_messages_and_new_chat_clears(browser, chat_url, fake_api):
    page = open_chat(browser, chat_url)
    ask(page, "Can I use R with SageMaker?")
    sid = fake_api.requests[-1]["user_session_id"]

    page.reload()
    page.locator('[data-testid="stChatInputTextArea"]').wait_for()
    expect(page.locator(USER).filter(has_text="Can I use R with SageMaker?").first).to_be_visible(timeout=15_000)
    assert assistant_messages(page).count() >= 1
    screenshot(page, "webchat-after-reload")

    page.get_by_role("button", name="New chat").click()
    expect(page.locator(USER)).to_have_count(0, timeout=15_000)
    ask(page, "Which regions is SageMaker available in?")
    assert fake_api.requests[-1]["user_session_id"] != sid


def test_api_422_is_a_sentence_without_retry(browser, chat_url, fake_api):
    page = open_chat(browser, chat_url)
    page.get_by_role("button", name="New chat").click()
    fake_api.http_error = (
        422,
        {"error": "validation_error", "message": "q: String should have at most 4000 characters"},
    )
    send(page, QUESTION)
    alert = page.locator(ALERT).filter(has_text="could not be sent")
    expect(alert).to_be_visible(timeout=20_000)
    expect(page.get_by_text("String should have")).to_have_count(0)  # no raw API text
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)  # retrying a 4xx cannot help
    expect(page.locator(CHAT_INPUT)).to_have_value(QUESTION)  # back in the box to edit
    screenshot(page, "webchat-api-422")


def test_api_failure_shows_message_and_retry(browser, chat_url, fake_api):
    page = open_chat(browser, chat_url)
    page.get_by_role("button", name="New chat").click()
    fake_api.fail_with = (503, "bedrock_unavailable")
    send(page, QUESTION)
    alert = page.locator(ALERT).filter(has_text="not available right now")
    expect(alert).to_be_visible(timeout=20_000)
    retry = page.get_by_role("button", name="Retry")
    expect(retry).to_be_visible()
    screenshot(page, "webchat-api-down")

    fake_api.fail_with = None
    before = assistant_messages(page).count()
    retry.click()
    expect(alert).to_have_count(0, timeout=20_000)  # the stale error box goes once the rerun starts
    answer = wait_for_answer(page, before)
    assert "designed for high availability" in answer
    screenshot(page, "webchat-after-retry")


@pytest.fixture(scope="module")
def oidc_chat(fake_api: FakeRagApi, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, FakeIssuer]]:
    db: Path = tmp_path_factory.mktemp("webchat-oidc") / "sessions.db"
    with FakeIssuer() as issuer:
        env = {
            "TENANT_ID": "tenanta",
            "AUTH_MODE": "oidc",
            "ISSUER_URI": issuer.url,
            "COGNITO_CLIENT_ID": issuer.client_id,
            "SESSIONS_URL": f"sqlite:///{db}",
            "RAG_API_URL": fake_api.url,
            "EMBEDDINGS_PROVIDER": "local",
            "LLM_PROVIDER": "extractive",
        }
        with streamlit_app(env, log_name="webchat-oidc-streamlit.log") as url:
            yield url, issuer


def test_oidc_headers_reach_the_page(browser, oidc_chat, fake_api):
    url, issuer = oidc_chat
    token = issuer.token("alice@example.com", "tenanta")
    page = open_chat(
        browser, url, headers={"Authorization": f"Bearer {token}", "X-Auth-Request-Email": "alice@example.com"}
    )
    expect(page.get_by_text("Signed in as alice@example.com")).to_be_visible()
    expect(page.get_by_text("Development mode")).to_have_count(0)
    assert "designed for high availability" in ask(page, QUESTION)
    assert fake_api.requests[-1]["user_session_id"].startswith(f"tenanta:{subject_of('alice@example.com')}:")
    assert issuer.jwks_requests >= 1
    screenshot(page, "webchat-oidc")


@pytest.mark.parametrize(
    ("headers", "title"),
    [
        (lambda issuer: {}, "Not signed in"),
        (lambda issuer: {"Authorization": "Bearer " + issuer.token("bob@example.com", "tenantb")}, "Not allowed"),
        (
            lambda issuer: {"Authorization": "Bearer " + issuer.token("a@example.com", "tenanta", -120)},
            "Sign-in expired",
        ),
    ],
    ids=["no-token", "other-tenant", "expired"],
)
def test_oidc_refusals_show_a_page(browser, oidc_chat, headers, title):
    url, issuer = oidc_chat
    page = browser.new_page(extra_http_headers=headers(issuer))
    page.goto(url)
    expect(page.get_by_role("heading", name=title)).to_be_visible(timeout=30_000)
    expect(page.locator('[data-testid="stChatInputTextArea"]')).to_have_count(0)
    expect(page.get_by_text("Traceback")).to_have_count(0)
    screenshot(page, f"webchat-refused-{title.lower().replace(' ', '-')}")
    page.close()

"""The web chat page under Streamlit's AppTest: identity pages, a chat turn, failures, conversations."""

from __future__ import annotations

import re
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from rag.stores import sessions
from rag.tenant import parse_session_id
from tests.unit.webapp.conftest import EMAIL, SUBJECT, TENANT, FakeRagApi, bearer
from webapp import api_client, ui
from webapp.api_client import ApiError, HistoryMessage, Source


def unescape(text: str) -> str:
    """Markdown source → the text a reader sees (drops the backslash escapes of plain text)."""
    return re.sub(r"\\(.)", r"\1", text)


def texts(at) -> str:
    """All visible text of the page or block (titles, markdown, captions, alerts, code), escapes removed."""
    parts = []
    for kind in ("title", "markdown", "caption", "error", "warning", "info", "code"):
        parts.extend(str(el.value) for el in getattr(at, kind))
    return unescape("\n".join(parts))


def assert_denied(at, title: str, message: str) -> None:
    """The page is the ``title`` refusal, names the specific ``message`` and offers no chat."""
    assert not at.exception
    assert [t.value for t in at.title] == [title]
    assert [e.value for e in at.error] == [message]
    assert len(at.chat_input) == 0


def test_no_identity_shows_sign_in_page(app):
    assert_denied(app.run(), "Not signed in", "No sign-in token was sent with the request.")


def test_email_header_without_token_is_not_signed_in(app, set_headers):
    set_headers({"X-Auth-Request-Email": EMAIL})
    assert_denied(app.run(), "Not signed in", "No sign-in token was sent with the request.")


def test_token_for_another_tenant_is_denied(app, set_headers, issuer):
    set_headers(bearer(issuer.token(**{"custom:tenantid": "tenantb"})))
    assert_denied(app.run(), "Not allowed", "Your account does not belong to this tenant.")


def test_expired_token_is_denied(app, set_headers, issuer):
    past = int(time.time()) - 7200
    set_headers(bearer(issuer.token(iat=past, exp=past + 3600)))
    assert_denied(app.run(), "Sign-in expired", "Your sign-in has expired.")


def test_alg_none_is_denied(app, set_headers, issuer):
    unsigned = jwt.encode(issuer.claims(), key=None, algorithm="none")
    set_headers(bearer(unsigned))
    assert_denied(app.run(), "Not allowed", "The sign-in token uses an unsupported algorithm.")


def test_hs256_with_public_jwk_is_denied(app, set_headers, issuer):
    forged = jwt.encode(issuer.claims(), "s" * 32, algorithm="HS256", headers={"kid": issuer.kid})
    set_headers(bearer(forged))
    assert_denied(app.run(), "Not allowed", "The sign-in token uses an unsupported algorithm.")


def test_wrong_issuer_is_denied(app, set_headers, issuer):
    set_headers(bearer(issuer.token(iss="https://evil.example.com/pool")))
    assert_denied(app.run(), "Not allowed", "The sign-in token comes from another issuer.")


def test_bad_signature_is_denied(app, set_headers, issuer):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    set_headers(bearer(issuer.token(key=other)))  # right kid, wrong key
    assert_denied(app.run(), "Not allowed", "The sign-in token's signature is invalid.")


def test_email_header_disagreeing_with_token_is_denied(app, set_headers, issuer):
    set_headers(bearer(issuer.token(), email="mallory@example.com"))
    assert_denied(app.run(), "Not allowed", "The e-mail header does not match the sign-in token.")


def test_unverified_email_is_not_allowed(app, set_headers, issuer):
    set_headers(bearer(issuer.token(email_verified=False)))
    assert_denied(app.run(), "Not allowed", "The e-mail address of your account is not verified.")


@pytest.mark.parametrize("email", ["alice@exa\r\nmple.com", "alice\x07@example.com", "x" * 2048 + "@example.com"])
def test_unusable_email_is_not_allowed_page(app, set_headers, issuer, email):
    set_headers(bearer(issuer.token(email=email), email=None))
    assert_denied(app.run(), "Not allowed", "The e-mail address of your account is not allowed.")


def test_overlong_token_lifetime_is_not_allowed(app, set_headers, issuer):
    now = int(time.time())
    set_headers(bearer(issuer.token(iat=now, exp=now + 100 * 365 * 86400)))
    assert_denied(app.run(), "Not allowed", "The sign-in token lives longer than this pool allows.")


def test_two_token_cookies_are_not_allowed(app, set_headers, issuer):
    token = issuer.token()
    set_headers({**bearer(token), "Cookie": f"id_token={token}; id_token={issuer.token(sub='mallory')}"})
    assert_denied(app.run(), "Not allowed", "The request carries more than one sign-in cookie.")


def test_same_email_with_another_subject_gets_another_session(app, set_headers, issuer, fake_api):
    set_headers(bearer(issuer.token()))
    alice = app.run()
    alice.chat_input[0].set_value("mine").run()
    set_headers(bearer(issuer.token(sub="9a8b7c6d-0000-4000-8000-000000000001")))
    other = app.run()  # same browser session, same e-mail, another user
    assert not other.exception
    assert [m.name for m in other.chat_message if m.name == "user"] == []
    other.chat_input[0].set_value("theirs").run()
    first, second = (parse_session_id(c["session_id"]) for c in fake_api.calls)
    assert (first.subject, second.subject) == (SUBJECT, "9a8b7c6d-0000-4000-8000-000000000001")
    assert first.session_uuid != second.session_uuid


def test_valid_token_shows_chat_with_tenant_and_email(app, set_headers, issuer):
    set_headers(bearer(issuer.token()))
    at = app.run()
    assert not at.exception
    assert len(at.chat_input) == 1
    assert [t.value for t in at.title] == ["Tenant A"]  # the display name once, no "assistant" suffix
    page = texts(at)
    assert EMAIL in page
    assert "Development mode" not in page
    assert at.button(key="new_chat")


def test_chat_turn_renders_answer_and_source_card(app, set_headers, issuer, fake_api: FakeRagApi):
    set_headers(bearer(issuer.token()))
    at = app.run()
    at.chat_input[0].set_value("What is SageMaker?").run()
    assert not at.exception
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    reply = at.chat_message[1]
    assert "SageMaker is a managed ML service." in " ".join(md.value for md in reply.markdown)
    card = texts(reply)
    assert "**[1]** What is Amazon SageMaker?" in card
    assert "Amazon_SageMaker_FAQs.csv · row 4 · score 0.91" in card  # the API's 0-based row 3 is line 4
    (passage,) = reply.expander
    assert passage.label == "Passage"
    assert "fully managed service" in unescape(passage.markdown[0].value)
    assert not reply.code  # the passage is text, not a code block
    (call,) = fake_api.calls
    assert call["q"] == "What is SageMaker?"
    assert call["regenerate"] is False
    sid = parse_session_id(call["session_id"])
    assert (sid.tenant, sid.subject) == (TENANT, SUBJECT)
    assert len(call["request_id"]) == 32
    # the conversation survives a rerun (replayed from session_state)
    at.run()
    assert [m.name for m in at.chat_message] == ["user", "assistant"]


def test_api_down_shows_message_and_retry(app, set_headers, issuer, fake_api: FakeRagApi):
    set_headers(bearer(issuer.token()))
    fake_api.error = ApiError(api_client.UNAVAILABLE, status=503, code="bedrock_unavailable")
    at = app.run()
    at.chat_input[0].set_value("What is SageMaker?").run()
    assert not at.exception
    assert at.error[0].value == api_client.UNAVAILABLE
    retry = at.button(key="retry")
    assert retry.label == "Retry"
    assert [m.name for m in at.chat_message] == []  # nothing half-answered left behind

    fake_api.error = None
    retry.click().run()
    assert not at.exception
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    assert len(at.error) == 0
    assert [c["q"] for c in fake_api.calls] == ["What is SageMaker?", "What is SageMaker?"]


def test_unexpected_client_error_is_a_sentence_without_retry(app, set_headers, issuer, fake_api: FakeRagApi):
    set_headers(bearer(issuer.token()))
    fake_api.error = RuntimeError("bug")  # type: ignore[assignment]
    at = app.run()
    at.chat_input[0].set_value("hi").run()
    assert not at.exception
    assert at.error[0].value == ui.UNEXPECTED
    assert "bug" not in texts(at)
    assert not [b for b in at.button if b.key == "retry"]


@pytest.mark.parametrize(
    ("failure", "sentence"),
    [(httpx.ConnectError("refused"), api_client.UNREACHABLE), (httpx.ReadTimeout("slow"), api_client.TIMED_OUT)],
    ids=["unreachable", "timeout"],
)
def test_real_client_failure_is_friendly_and_retryable(app, set_headers, issuer, monkeypatch, failure, sentence):
    """The real httpx client whose API is down or slow: a sentence and Retry (retrying can help)."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise failure

    real = api_client.RagApiClient("http://ragapi.test", timeout=1.0, transport=httpx.MockTransport(handler))
    monkeypatch.setattr(api_client, "client_from_settings", lambda settings: real)
    set_headers(bearer(issuer.token()))
    at = app.run()
    assert not at.exception
    at.chat_input[0].set_value("hello").run()
    assert not at.exception
    assert at.error[0].value == sentence
    assert at.button(key="retry")
    # a reload of this conversation cannot load its history either: a warning, the page stays usable
    at.button(key="new_chat").click().run()
    assert "could not be loaded" not in texts(at)  # a new chat has no history to load


def test_history_is_shown_again_after_reload(app, set_headers, issuer, fake_api: FakeRagApi, webapp_env):
    set_headers(bearer(issuer.token()))
    at = app.run()
    at.chat_input[0].set_value("What is SageMaker?").run()
    sid = fake_api.calls[0]["session_id"]
    fake_api.history_messages[sid] = [
        HistoryMessage(role="user", content="What is SageMaker?", created_at="2026-01-01T00:00:00Z"),
        HistoryMessage(
            role="assistant",
            content="A managed ML service [1].",
            sources=[Source(id="d", source="faq.csv", row=3, score=0.5, snippet="s")],
            created_at="2026-01-01T00:00:01Z",
            answer_id="a1",
            feedback="down",
        ),
    ]
    from streamlit.testing.v1 import AppTest

    from tests.unit.webapp.conftest import APP_PATH

    reloaded = AppTest.from_file(APP_PATH, default_timeout=30).run()  # new browser session: latest conversation
    assert not reloaded.exception
    assert reloaded.session_state["conversation_id"] == sid
    assert [m.name for m in reloaded.chat_message] == ["user", "assistant"]
    assert reloaded.chat_message[1].markdown[0].value.startswith("A managed ML service")
    assert "faq.csv · row 4" in texts(reloaded.chat_message[1])
    assert reloaded.session_state["feedback_a1"] == 0  # the stored rating (thumbs down) is shown again


def test_idle_timeout_starts_a_new_conversation_and_keeps_the_old(app, set_headers, issuer, fake_api, monkeypatch):
    clock = {"now": 1_000_000.0}
    monkeypatch.setattr(sessions, "now", lambda: clock["now"])
    set_headers(bearer(issuer.token()))
    at = app.run()
    at.chat_input[0].set_value("first").run()
    clock["now"] += 300  # not idle yet
    at.chat_input[0].set_value("second").run()
    clock["now"] += 601  # idle: the page is still open with the old id in session_state
    at.chat_input[0].set_value("third").run()
    assert not at.exception
    first, second, third = (c["session_id"] for c in fake_api.calls)
    assert first == second
    assert third != second
    assert parse_session_id(third).subject == SUBJECT
    assert at.session_state["conversation_id"] == third
    assert "idle" in " ".join(i.value for i in at.info)
    # only the new conversation is on the page; the old one is still listed in the sidebar
    assert [unescape(m.markdown[0].value) for m in at.chat_message if m.name == "user"] == ["third"]
    assert [b.label for b in at.sidebar.button if b.key.startswith("open_")] == ["third", "first"]
    clock["now"] += 10
    at.chat_input[0].set_value("fourth").run()
    assert fake_api.calls[-1]["session_id"] == third


def test_new_chat_forces_a_new_session(app, set_headers, issuer, fake_api):
    set_headers(bearer(issuer.token()))
    at = app.run()
    at.chat_input[0].set_value("first").run()
    at.button(key="new_chat").click().run()
    assert not at.exception
    assert [m.name for m in at.chat_message] == []
    at.chat_input[0].set_value("second").run()
    first, second = (c["session_id"] for c in fake_api.calls)
    assert first != second


def test_dev_mode_shows_notice_and_dev_user(app, set_headers, monkeypatch):
    monkeypatch.setenv("AUTH_MODE", "dev")
    monkeypatch.setenv("DEV_USER_EMAIL", "dev@example.com")
    at = app.run()
    assert not at.exception
    page = texts(at)
    assert "Development mode" in page
    assert "dev@example.com" in page


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"TENANT_ID": "Bad_Tenant"}, "TENANT_ID"),
        ({"ISSUER_URI": ""}, "ISSUER_URI"),
        ({"SESSIONS_URL": ""}, "SESSIONS_TABLE or SESSIONS_URL"),
    ],
)
def test_bad_configuration_names_the_variable(app, monkeypatch, env, variable):
    for name, value in env.items():
        if value:
            monkeypatch.setenv(name, value)
        else:
            monkeypatch.delenv(name)
    at = app.run()
    assert not at.exception
    assert at.title[0].value == "Configuration error"
    assert variable in at.code[0].value

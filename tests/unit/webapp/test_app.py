"""The web chat page under Streamlit's AppTest: identity pages, a chat turn, failures, sessions."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from rag.stores import sessions
from rag.tenant import parse_session_id
from tests.unit.webapp.conftest import EMAIL, TENANT, FakeRagApi, bearer
from webapp.api_client import ApiError, ChatMessage, Source


def texts(at) -> str:
    """All visible text of the page (titles, markdown, captions, alerts, code)."""
    parts = []
    for kind in ("title", "markdown", "caption", "error", "warning", "info", "code"):
        parts.extend(str(el.value) for el in getattr(at, kind))
    return "\n".join(parts)


def assert_denied(at, title: str) -> None:
    assert not at.exception
    assert [t.value for t in at.title] == [title]
    assert len(at.chat_input) == 0


def test_no_identity_shows_sign_in_page(app):
    at = app.run()
    assert_denied(at, "Not signed in")


def test_email_header_without_token_is_not_signed_in(app, set_headers):
    set_headers({"X-Auth-Request-Email": EMAIL})
    assert_denied(app.run(), "Not signed in")


def test_token_for_another_tenant_is_denied(app, set_headers, issuer):
    set_headers(bearer(issuer.token(**{"custom:tenantid": "tenantb"})))
    at = app.run()
    assert_denied(at, "Not allowed")
    assert "does not belong to this tenant" in texts(at)


def test_expired_token_is_denied(app, set_headers, issuer):
    past = int(time.time()) - 7200
    set_headers(bearer(issuer.token(iat=past, exp=past + 3600)))
    at = app.run()
    assert_denied(at, "Sign-in expired")
    assert len(at.chat_input) == 0


def test_alg_none_is_denied(app, set_headers, issuer):
    unsigned = jwt.encode(issuer.claims(), key=None, algorithm="none")
    set_headers(bearer(unsigned))
    assert_denied(app.run(), "Not allowed")


def test_hs256_with_public_jwk_is_denied(app, set_headers, issuer):
    forged = jwt.encode(issuer.claims(), "s" * 32, algorithm="HS256", headers={"kid": issuer.kid})
    set_headers(bearer(forged))
    assert_denied(app.run(), "Not allowed")


def test_wrong_issuer_is_denied(app, set_headers, issuer):
    set_headers(bearer(issuer.token(iss="https://evil.example.com/pool")))
    assert_denied(app.run(), "Not allowed")


def test_bad_signature_is_denied(app, set_headers, issuer):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    set_headers(bearer(issuer.token(key=other)))  # right kid, wrong key
    assert_denied(app.run(), "Not allowed")


def test_email_header_disagreeing_with_token_is_denied(app, set_headers, issuer):
    set_headers(bearer(issuer.token(), email="mallory@example.com"))
    assert_denied(app.run(), "Not allowed")


def test_valid_token_shows_chat_with_tenant_and_email(app, set_headers, issuer):
    set_headers(bearer(issuer.token()))
    at = app.run()
    assert not at.exception
    assert len(at.chat_input) == 1
    page = texts(at)
    assert "Tenant A" in page
    assert EMAIL in page
    assert "Development mode" not in page
    assert at.button(key="new_chat")


def test_chat_turn_renders_answer_and_sources(app, set_headers, issuer, fake_api: FakeRagApi):
    set_headers(bearer(issuer.token()))
    at = app.run()
    at.chat_input[0].set_value("What is SageMaker?").run()
    assert not at.exception
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    reply = at.chat_message[1]
    assert "SageMaker is a managed ML service." in " ".join(md.value for md in reply.markdown)
    assert reply.expander[0].label.startswith("Sources (1)")
    source_text = " ".join(md.value for md in reply.expander[0].markdown)
    assert "What is Amazon SageMaker?" in source_text
    assert "Amazon_SageMaker_FAQs.csv" in source_text
    assert "row 3" in source_text
    assert "score 0.91" in source_text
    assert "fully managed service" in reply.expander[0].caption[0].value
    (call,) = fake_api.calls
    assert call["q"] == "What is SageMaker?"
    sid = parse_session_id(call["session_id"])
    assert (sid.tenant, sid.email) == (TENANT, EMAIL)
    assert len(call["request_id"]) == 32
    # the conversation survives a rerun (replayed from session_state)
    at.run()
    assert [m.name for m in at.chat_message] == ["user", "assistant"]


def test_ungrounded_answer_shows_no_citations_and_a_hint(app, set_headers, issuer, fake_api: FakeRagApi):
    from webapp.ui import UNGROUNDED_HINT

    fake_api.answer, fake_api.grounded = "The documents available to me do not cover this question.", False
    set_headers(bearer(issuer.token()))
    at = app.run()
    at.chat_input[0].set_value("Who won the game?").run()
    assert not at.exception
    reply = at.chat_message[1]
    assert "do not cover this question" in " ".join(md.value for md in reply.markdown)
    assert len(reply.expander) == 0  # no sources
    assert UNGROUNDED_HINT in [c.value for c in reply.caption]
    at.run()  # replayed from session_state: still no sources, still the hint
    assert len(at.chat_message[1].expander) == 0 and UNGROUNDED_HINT in [c.value for c in at.chat_message[1].caption]


def test_uncited_sources_are_labelled_also_retrieved(app, set_headers, issuer, fake_api: FakeRagApi):
    from dataclasses import replace

    cited = fake_api.sources[0]
    fake_api.sources = [replace(cited, cited=True), replace(cited, id="faq-4", row=4, cited=False)]
    set_headers(bearer(issuer.token()))
    at = app.run()
    at.chat_input[0].set_value("What is SageMaker?").run()
    lines = [md.value for md in at.chat_message[1].expander[0].markdown]
    assert "also retrieved" not in lines[0] and "row 3" in lines[0]
    assert "also retrieved" in lines[1] and "row 4" in lines[1]


def test_api_down_shows_message_and_retry(app, set_headers, issuer, fake_api: FakeRagApi):
    set_headers(bearer(issuer.token()))
    fake_api.error = ApiError("The assistant is not available right now. Please try again in a moment.", code="x")
    at = app.run()
    at.chat_input[0].set_value("What is SageMaker?").run()
    assert not at.exception
    assert "not available right now" in at.error[0].value
    retry = at.button(key="retry")
    assert retry.label == "Retry"
    assert [m.name for m in at.chat_message] == []  # nothing half-answered left behind

    fake_api.error = None
    retry.click().run()
    assert not at.exception
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    assert len(at.error) == 0
    assert [c["q"] for c in fake_api.calls] == ["What is SageMaker?", "What is SageMaker?"]


def test_unexpected_client_error_still_shows_retry(app, set_headers, issuer, fake_api: FakeRagApi):
    set_headers(bearer(issuer.token()))
    fake_api.error = RuntimeError("bug")  # type: ignore[assignment]
    at = app.run()
    at.chat_input[0].set_value("hi").run()
    assert not at.exception
    assert "went wrong" in at.error[0].value
    assert at.button(key="retry")


@pytest.mark.parametrize("failure", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
def test_real_client_failure_is_friendly(app, set_headers, issuer, monkeypatch, failure):
    """The real httpx client whose API is down or slow: history warning, then the Retry box."""
    from webapp import api_client

    def handler(request: httpx.Request) -> httpx.Response:
        raise failure

    real = api_client.RagApiClient("http://ragapi.test", timeout=1.0, transport=httpx.MockTransport(handler))
    monkeypatch.setattr(api_client, "client_from_settings", lambda settings: real)
    set_headers(bearer(issuer.token()))
    at = app.run()
    assert not at.exception
    assert "could not be loaded" in texts(at)  # history call failed, page still usable
    assert at.button(key="history_retry")
    at.chat_input[0].set_value("hello").run()
    assert not at.exception
    expected = "took too long" if isinstance(failure, httpx.TimeoutException) else "not available"
    assert expected in at.error[0].value
    assert at.button(key="retry")


def test_history_is_shown_again_after_reload(app, set_headers, issuer, fake_api: FakeRagApi, webapp_env):
    set_headers(bearer(issuer.token()))
    at = app.run()
    at.chat_input[0].set_value("What is SageMaker?").run()
    sid = fake_api.calls[0]["session_id"]
    fake_api.history_messages[sid] = [
        ChatMessage("user", "What is SageMaker?"),
        ChatMessage("assistant", "A managed ML service.", sources=(Source(source="faq.csv", row=3),)),
    ]
    from streamlit.testing.v1 import AppTest

    from tests.unit.webapp.conftest import APP_PATH

    reloaded = AppTest.from_file(APP_PATH, default_timeout=30).run()  # new browser session
    assert not reloaded.exception
    assert [m.name for m in reloaded.chat_message] == ["user", "assistant"]
    assert reloaded.chat_message[1].markdown[0].value == "A managed ML service."
    assert "row 3" in reloaded.chat_message[1].expander[0].markdown[0].value


def test_idle_timeout_renews_session_on_next_message(app, set_headers, issuer, fake_api, monkeypatch):
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
    assert parse_session_id(third).email == EMAIL
    assert at.session_state["session_id"] == third
    assert "idle" in " ".join(i.value for i in at.info)
    # only the new conversation is on the page
    assert [m.markdown[0].value for m in at.chat_message if m.name == "user"] == ["third"]
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

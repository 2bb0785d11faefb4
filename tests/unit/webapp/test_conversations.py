"""The conversations sidebar under AppTest: list, resume, rename, delete (with the API's history), refusals."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from rag.stores import sessions
from tests.unit.webapp.conftest import APP_PATH, EMAIL, TENANT, FakeRagApi, bearer
from tests.unit.webapp.test_app import texts
from webapp import conversations
from webapp.api_client import HistoryMessage


def uuid(session_id: str) -> str:
    return session_id.rsplit(":", 1)[-1]


def open_buttons(at) -> list:
    return [b for b in at.sidebar.button if b.key.startswith("open_")]


def two_conversations(app, set_headers, issuer, fake_api: FakeRagApi, monkeypatch):
    """Alice asks in one conversation, starts a new chat and asks again: two rows."""
    clock = {"now": 1_000_000.0}
    monkeypatch.setattr(sessions, "now", lambda: clock["now"])
    set_headers(bearer(issuer.token()))
    at = app.run()
    at.chat_input[0].set_value("What is SageMaker?").run()
    first = fake_api.calls[-1]["session_id"]
    fake_api.history_messages[first] = [
        HistoryMessage(role="user", content="What is SageMaker?", created_at="t"),
        HistoryMessage(role="assistant", content="A managed ML service.", created_at="t", answer_id="a1"),
    ]
    clock["now"] += 120
    at.button(key="new_chat").click().run()
    at.chat_input[0].set_value("How is EMR priced?").run()
    second = fake_api.calls[-1]["session_id"]
    assert first != second
    return at, first, second, clock


def test_sidebar_lists_conversations_newest_first_with_last_activity(app, set_headers, issuer, fake_api, monkeypatch):
    at, _first, _second, _clock = two_conversations(app, set_headers, issuer, fake_api, monkeypatch)
    assert not at.exception
    assert [b.label for b in open_buttons(at)] == ["How is EMR priced?", "What is SageMaker?"]
    assert open_buttons(at)[0].disabled  # the open one
    captions = [c.value for c in at.sidebar.caption]
    assert "Open now · just now" in captions and "2 min ago" in captions


def test_resume_shows_its_turns_and_follow_ups_use_its_history(app, set_headers, issuer, fake_api, monkeypatch):
    at, first, _second, clock = two_conversations(app, set_headers, issuer, fake_api, monkeypatch)
    clock["now"] += 3600  # long idle: resuming on purpose still continues this conversation
    at.button(key=f"open_{uuid(first)}").click().run()
    assert not at.exception
    assert at.session_state["conversation_id"] == first
    assert at.query_params[conversations.URL_PARAM] == uuid(first)
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    assert "A managed ML service." in texts(at.chat_message[1])
    at.chat_input[0].set_value("Which package makes that possible?").run()
    assert fake_api.calls[-1]["session_id"] == first  # the follow-up goes to the resumed conversation
    assert next(b.label for b in open_buttons(at)) == "What is SageMaker?"  # and it is the newest again


def test_rename(app, set_headers, issuer, fake_api, monkeypatch):
    at, first, _second, _clock = two_conversations(app, set_headers, issuer, fake_api, monkeypatch)
    at.text_input(key=f"rename_{uuid(first)}").input("SageMaker basics")
    at.button(key=f"do_rename_{uuid(first)}").click().run()
    assert not at.exception
    assert [b.label for b in open_buttons(at)] == ["How is EMR priced?", "SageMaker basics"]
    assert conversations.RENAMED in [i.value for i in at.info]


def test_delete_asks_first_then_removes_the_row_and_the_api_history(app, set_headers, issuer, fake_api, monkeypatch):
    at, first, _second, _clock = two_conversations(app, set_headers, issuer, fake_api, monkeypatch)
    at.button(key=f"ask_delete_{uuid(first)}").click().run()
    assert fake_api.deleted == []  # nothing deleted before the confirmation
    assert any("for good" in w.value for w in at.sidebar.warning)
    at.button(key=f"cancel_delete_{uuid(first)}").click().run()
    assert len(open_buttons(at)) == 2 and fake_api.deleted == []
    at.button(key=f"ask_delete_{uuid(first)}").click().run()
    at.button(key=f"do_delete_{uuid(first)}").click().run()
    assert not at.exception
    assert fake_api.deleted == [first]  # DELETE /api/v1/sessions/{id}/messages
    assert first not in fake_api.history_messages
    assert [b.label for b in open_buttons(at)] == ["How is EMR priced?"]
    assert conversations.DELETED in [i.value for i in at.info]


def test_deleting_the_open_conversation_opens_a_new_chat(app, set_headers, issuer, fake_api, monkeypatch):
    at, first, second, _clock = two_conversations(app, set_headers, issuer, fake_api, monkeypatch)
    at.button(key=f"ask_delete_{uuid(second)}").click().run()
    at.button(key=f"do_delete_{uuid(second)}").click().run()
    assert at.session_state["conversation_id"] not in (first, second)
    assert [m.name for m in at.chat_message] == []


def test_failed_api_delete_keeps_the_conversation(app, set_headers, issuer, fake_api, monkeypatch):
    from webapp.api_client import ApiError

    at, first, _second, _clock = two_conversations(app, set_headers, issuer, fake_api, monkeypatch)

    def broken(session_id: str) -> None:
        raise ApiError("The assistant is not available right now. Try again in a moment.", status=503)

    monkeypatch.setattr(fake_api, "delete_history", broken)
    at.button(key=f"ask_delete_{uuid(first)}").click().run()
    at.button(key=f"do_delete_{uuid(first)}").click().run()
    assert len(open_buttons(at)) == 2  # not half gone
    assert any(conversations.DELETE_FAILED in i.value for i in at.info)


def test_a_conversation_id_from_the_url_that_is_not_the_users_is_refused(
    app, set_headers, issuer, fake_api: FakeRagApi, webapp_env
):
    store = sessions.SqliteSessionStore(webapp_env)
    manager = sessions.SessionManager(store, idle_seconds=600)
    bob_sid = str(manager.session_for_message(TENANT, "bob@example.com", question="bob's secret"))
    (bob,) = manager.conversations(TENANT, "bob@example.com")
    assert bob.session_id == bob_sid
    fake_api.history_messages[bob.session_id] = [HistoryMessage(role="user", content="bob's secret", created_at="t")]
    set_headers(bearer(issuer.token()))
    for wanted in (bob.conversation_id, "not-a-uuid"):
        at = AppTest.from_file(APP_PATH, default_timeout=30)
        at.query_params[conversations.URL_PARAM] = wanted
        at.run()
        assert not at.exception
        assert at.session_state["conversation_id"] != bob.session_id
        assert "bob's secret" not in texts(at)
        assert conversations.NOT_YOURS in [i.value for i in at.info]
        assert conversations.URL_PARAM not in at.query_params
        at.chat_input[0].set_value("hello").run()
        assert fake_api.calls[-1]["session_id"] != bob.session_id
    assert [c.title for c in manager.conversations(TENANT, "bob@example.com")] == ["bob's secret"]
    assert all(c.session_id != bob.session_id for c in manager.conversations(TENANT, EMAIL))


def test_the_url_reopens_the_users_own_conversation_after_a_reload(app, set_headers, issuer, fake_api, monkeypatch):
    _at, first, _second, _clock = two_conversations(app, set_headers, issuer, fake_api, monkeypatch)
    reloaded = AppTest.from_file(APP_PATH, default_timeout=30)
    reloaded.query_params[conversations.URL_PARAM] = uuid(first)
    reloaded.run()
    assert not reloaded.exception
    assert reloaded.session_state["conversation_id"] == first
    assert "A managed ML service." in texts(reloaded)


def test_last_activity_labels():
    now = 1_000_000.0
    assert conversations.last_activity(now - 5, now) == "just now"
    assert conversations.last_activity(now - 300, now) == "5 min ago"
    assert conversations.last_activity(now - 3 * 3600, now) == "3 h ago"
    assert conversations.last_activity(now - 86_400, now) == "1 day ago"
    assert conversations.last_activity(0.0, now) == "1 Jan 1970"

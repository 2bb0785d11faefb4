"""Answer actions, the first screen, input checks and rendering safety under AppTest."""

from __future__ import annotations

import html

import pytest

from rag.contract import MAX_QUESTION_CHARS
from tests.unit.webapp.conftest import FakeRagApi, bearer
from tests.unit.webapp.test_app import texts
from webapp import api_client, ui
from webapp.api_client import ApiError, Source


@pytest.fixture
def chat(app, set_headers, issuer):
    set_headers(bearer(issuer.token()))
    return app


def html_bodies(at) -> list[str]:
    return [el.proto.body for el in at.get("html")]


def test_first_screen_welcome_and_examples_send_when_clicked(chat, monkeypatch, fake_api: FakeRagApi):
    monkeypatch.setenv("TENANT_WELCOME", "Ask about the SageMaker FAQ.")
    monkeypatch.setenv(
        "TENANT_EXAMPLE_QUESTIONS", '["What is Amazon SageMaker?", "Is R supported?", "What is a notebook?"]'
    )
    at = chat.run()
    assert not at.exception
    assert "Ask about the SageMaker FAQ." in texts(at)
    examples = [b for b in at.button if b.key.startswith("example_")]
    assert [b.label for b in examples] == ["What is Amazon SageMaker?", "Is R supported?", "What is a notebook?"]
    examples[1].click().run()
    assert not at.exception
    assert [c["q"] for c in fake_api.calls] == ["Is R supported?"]
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    assert not [b for b in at.button if b.key.startswith("example_")]  # the first screen is gone


def test_blank_message_is_not_sent(chat, fake_api: FakeRagApi):
    at = chat.run()
    at.chat_input[0].set_value("   \n ").run()
    assert not at.exception
    assert fake_api.calls == []
    assert [e.value for e in at.error] == [ui.BLANK]
    assert not [b for b in at.button if b.key == "retry"]


def test_the_box_limit_is_the_apis(chat):
    at = chat.run()
    assert at.chat_input[0].proto.max_chars == MAX_QUESTION_CHARS  # one source of truth: rag.contract


def test_over_long_message_is_not_sent_and_goes_back_into_the_box(chat, fake_api: FakeRagApi):
    """The box stops typing at the limit; a longer question reaching send (e.g. a Retry) is still refused."""
    at = chat.run()
    long = "x" * 20_000
    at.session_state["pending"] = long
    at.run()
    assert not at.exception
    assert fake_api.calls == []
    (error,) = at.error
    assert error.value == ui.too_long(20_000)
    assert long not in texts(at)  # the text is not dumped on the page
    assert not [b for b in at.button if b.key == "retry"]
    assert at.chat_input[0].proto.value == long  # back in the box to shorten


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (ApiError(api_client.QUESTION_INVALID, status=422, code="validation_error"), False),
        (ApiError(api_client.NOT_YOURS, status=403, code="forbidden"), False),
        (ApiError(api_client.UNAVAILABLE, status=503, code="bedrock_unavailable"), True),
        (ApiError(api_client.TIMED_OUT, code="timeout"), True),
        (ApiError(api_client.UNREACHABLE, code="unavailable"), True),
    ],
    ids=["422", "403", "503", "timeout", "network"],
)
def test_error_sentences_and_retry_only_where_it_helps(chat, fake_api: FakeRagApi, error, retry):
    fake_api.error = error
    at = chat.run()
    at.chat_input[0].set_value("What is SageMaker?").run()
    assert not at.exception
    assert [e.value for e in at.error] == [error.message]
    assert bool([b for b in at.button if b.key == "retry"]) is retry
    if not retry:
        assert at.chat_input[0].proto.value == "What is SageMaker?"  # editable again


def test_regenerate_replaces_the_last_answer(chat, fake_api: FakeRagApi):
    at = chat.run()
    at.chat_input[0].set_value("What is SageMaker?").run()
    fake_api.answer = "SageMaker, said differently."
    at.button(key="regenerate_m1-ans-1").click().run()
    assert not at.exception
    assert [(c["q"], c["regenerate"]) for c in fake_api.calls] == [
        ("What is SageMaker?", False),
        ("What is SageMaker?", True),
    ]
    assert fake_api.calls[0]["session_id"] == fake_api.calls[1]["session_id"]
    assert [m.name for m in at.chat_message] == ["user", "assistant"]  # one turn, not two
    assert "said differently" in texts(at.chat_message[1])
    assert [b.key for b in at.button if b.key.startswith("regenerate_")] == ["regenerate_m1-ans-2"]


def test_only_the_last_answer_has_regenerate(chat, fake_api: FakeRagApi):
    at = chat.run()
    at.chat_input[0].set_value("one").run()
    at.chat_input[0].set_value("two").run()
    assert [b.key for b in at.button if b.key.startswith("regenerate_")] == ["regenerate_m3-ans-2"]


def test_a_stopped_stream_saves_nothing_and_puts_the_question_back(chat, fake_api: FakeRagApi):
    """The run after a Stop click finds the streaming marker: notice, question back in the box, no message."""
    at = chat.run()
    at.session_state["streaming"] = {"question": "What is SageMaker?", "regenerate": False}
    at.run()
    assert not at.exception
    assert ui.STOPPED in [i.value for i in at.info]
    assert [m.name for m in at.chat_message] == []
    assert at.chat_input[0].proto.value == "What is SageMaker?"
    assert "streaming" not in at.session_state


def test_copy_button_carries_the_answer_with_footnotes(chat, fake_api: FakeRagApi):
    fake_api.answer = 'Use it [1]. </button><script>alert("x")</script>'
    at = chat.run()
    at.chat_input[0].set_value("What is SageMaker?").run()
    (body,) = [b for b in html_bodies(at) if "copy-answer" in b]
    expected = ui.copy_text(fake_api.answer + " ", [fake_api.sources[0].model_dump()])
    assert f'data-copy="{html.escape(expected, quote=True)}"' in body
    assert "[1] Amazon_SageMaker_FAQs.csv · row 4 · What is Amazon SageMaker?" in expected
    assert '<script>alert("x")' not in body  # the answer's markup is escaped, never live


def test_citations_link_to_cards_cited_first_then_also_retrieved(chat, fake_api: FakeRagApi):
    fake_api.answer = "Managed [2]."
    fake_api.sources = [
        Source(id="a", source="faq.csv", row=0, title="Other", score=0.7, snippet="x", cited=False),
        Source(id="b", source="faq.csv", row=149, title="Cited one", score=0.6, snippet="y", cited=True),
    ]
    at = chat.run()
    at.chat_input[0].set_value("q").run()
    reply = at.chat_message[1]
    answer = reply.markdown[0].value
    assert "[\\[2\\]](#src-m1-ans-1-2)" in answer
    page = texts(reply)
    titles = [md.value for md in reply.markdown if md.value.startswith("**")]
    assert titles == ["**\\[2\\]** Cited one", "**\\[1\\]** Other"]  # cited first, numbers kept
    assert "Also retrieved (not cited in the answer)" in [c.value for c in reply.caption]
    assert "faq.csv · row 150 · score 0.60" in page  # 0-based row 149 is the spreadsheet's line 150
    assert '<div id="src-m1-ans-1-2"' in page


def test_ungrounded_answer_has_a_hint_and_no_cards(chat, fake_api: FakeRagApi, monkeypatch):
    original = fake_api.stream_answer

    def ungrounded(*args, **kwargs):
        for event in original(*args, **kwargs):
            if isinstance(event, api_client.DoneEvent):
                event = event.model_copy(update={"grounded": False})
            elif isinstance(event, api_client.SourcesEvent):
                event = event.model_copy(update={"sources": []})
            yield event

    monkeypatch.setattr(fake_api, "stream_answer", ungrounded)
    at = chat.run()
    at.chat_input[0].set_value("What is the capital of France?").run()
    page = texts(at.chat_message[1])
    assert ui.UNGROUNDED_HINT in page
    assert "Passage" not in [e.label for e in at.chat_message[1].expander]


def test_user_message_is_plain_text_and_answers_fetch_nothing(chat, fake_api: FakeRagApi):
    fake_api.answer = "See ![x](http://evil.example/pixel.png) and [me](javascript:alert(1)) \u202eevil"
    at = chat.run()
    at.chat_input[0].set_value("hi ![](http://evil.example/track.png) <img src=x onerror=alert(1)>").run()
    user = at.chat_message[0].markdown[0].value
    assert "\\!\\[\\]\\(http\\://evil.example/track.png\\)" in user
    assert "\\<img" in user
    answer = at.chat_message[1].markdown[0].value
    assert "![" not in answer and "javascript:" not in answer
    assert "\u202e" not in answer and "⟦U+202E⟧" in answer


def test_document_link_for_s3_sources(chat, fake_api: FakeRagApi):
    fake_api.sources = [Source(id="a", source="s3://tenanta-data/documents/guide.pdf", page=3, score=0.8, snippet="s")]
    at = chat.run()
    at.chat_input[0].set_value("q").run()
    (link,) = at.get("link_button")
    assert link.proto.label == "Open document"
    assert link.proto.url.startswith("https://tenanta-data.s3.amazonaws.com/")
    assert "guide.pdf · page 3" in texts(at.chat_message[1])
    at.run()
    assert fake_api.links == ["s3://tenanta-data/documents/guide.pdf"]  # cached, not asked again on rerun

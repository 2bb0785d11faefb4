"""The web chat's side of issue 9: feedback on answers, the quota (429) message, answer ids."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.unit.webapp.conftest import FakeRagApi, bearer
from tests.unit.webapp.test_api_client import SID, client_for, sse
from webapp import api_client, ui
from webapp.api_client import ApiError, DoneEvent, parse_event

QUOTA_MESSAGE = "Usage limit reached: the limit of 5 questions per minute for you. Try again in 42 seconds."


USAGE = {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}


def test_done_event_is_validated_by_the_contract():
    done = parse_event("done", json.dumps({"session_id": SID, "answer": "a", "answer_id": "abc", "usage": USAGE,
                                           "model_id": "m"}))  # fmt: skip
    assert done == DoneEvent(session_id=SID, answer="a", answer_id="abc", usage=USAGE, model_id="m")
    assert done.grounded is True  # the contract's default
    with pytest.raises(ApiError) as info:  # a done event without usage breaks the contract
        parse_event("done", json.dumps({"session_id": SID, "answer": "a"}))
    assert (info.value.status, info.value.code, info.value.message) == (502, "bad_stream", api_client.BAD_REPLY)


def test_send_feedback_posts_the_contract():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"feedback_id": "f", "answer_id": "abc"})

    client_for(handler).send_feedback(SID, "abc", "down", "wrong product" + "x" * 3000, request_id="rq-1")
    (request,) = seen
    assert request.method == "POST" and request.url.path == "/api/v1/feedback"
    assert request.headers["x-request-id"] == "rq-1"
    body = json.loads(request.content)
    assert body["session_id"] == SID and body["answer_id"] == "abc" and body["rating"] == "down"
    assert len(body["comment"]) == 2000


def test_send_feedback_errors_become_api_errors():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, json={"error": "forbidden", "message": "this session belongs to another tenant"})

    with pytest.raises(ApiError) as info:
        client_for(handler).send_feedback(SID, "abc", "up")
    assert info.value.status == 403 and info.value.code == "forbidden"
    assert info.value.message == api_client.NOT_YOURS  # a sentence for people, not the API's text


def test_quota_429_shows_the_apis_message():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429, json={"error": "quota_exceeded", "message": QUOTA_MESSAGE}, headers={"Retry-After": "42"}
        )

    with pytest.raises(ApiError) as info:
        list(client_for(handler).stream_answer("q", SID))
    assert info.value.message == QUOTA_MESSAGE and info.value.retry_after == 42.0
    assert not info.value.retryable  # a 4xx: sending again at once cannot help
    assert info.value.code == "quota_exceeded"
    # a 429 without a quota body (e.g. a proxy) keeps the generic text
    plain = client_for(lambda r: httpx.Response(429, content=b"")).stream_answer("q", SID)
    with pytest.raises(ApiError) as busy:
        list(plain)
    assert busy.value.message == api_client.BUSY
    assert sse  # same helpers as the client tests


def test_quota_message_in_the_page(app, set_headers, issuer, fake_api: FakeRagApi):
    fake_api.error = ApiError(QUOTA_MESSAGE, status=429, code="quota_exceeded", retry_after=42)
    set_headers(bearer(issuer.token()))
    at = app.run()
    at.chat_input[0].set_value("What is SageMaker?").run()
    assert not at.exception
    assert [e.value for e in at.error] == [QUOTA_MESSAGE]  # once, not followed by a second wait notice
    assert not [b for b in at.button if b.key == "retry"]  # no Retry for a 4xx


def test_thumbs_under_each_answer_send_feedback(app, set_headers, issuer, fake_api: FakeRagApi):
    set_headers(bearer(issuer.token()))
    at = app.run()
    at.chat_input[0].set_value("What is SageMaker?").run()
    assert not at.exception
    assert [w.key for w in at.get("feedback")] == ["feedback_ans-1"]  # thumbs under the streamed answer
    at.get("feedback")[0].set_value(0).run()  # thumbs down
    assert not at.exception
    sid = at.session_state["conversation_id"]
    assert fake_api.feedback == [{"session_id": sid, "answer_id": "ans-1", "rating": "down", "comment": ""}]
    assert ui.FEEDBACK_THANKS in [t.value for t in at.toast]  # a toast: nothing covers it
    assert len(at.get("feedback")) == 1  # the replayed answer keeps its thumbs
    assert at.session_state["feedback_ans-1"] == 0  # still shown as rated
    # once rated: an optional comment, sent with the rating (the field is inline, not a popover)
    at.text_input(key="comment_ans-1").input("It named the wrong service.")
    (send,) = [b for b in at.button if b.label == "Send comment"]
    send.click().run()
    assert not at.exception
    assert fake_api.feedback[-1] == {
        "session_id": sid,
        "answer_id": "ans-1",
        "rating": "down",
        "comment": "It named the wrong service.",
    }


def test_feedback_failure_is_a_notice_not_a_crash(app, set_headers, issuer, fake_api: FakeRagApi):
    fake_api.feedback_error = ApiError("The assistant is not available right now.", status=503, code="unavailable")
    set_headers(bearer(issuer.token()))
    at = app.run()
    at.chat_input[0].set_value("What is SageMaker?").run()
    at.get("feedback")[0].set_value(1).run()
    assert not at.exception
    assert any(ui.FEEDBACK_FAILED in i.value for i in at.info)


def test_no_feedback_widget_without_an_answer_id(app, set_headers, issuer, fake_api: FakeRagApi):
    fake_api.answer_id = ""  # an API that predates answer ids
    set_headers(bearer(issuer.token()))
    at = app.run()
    at.chat_input[0].set_value("What is SageMaker?").run()
    assert not at.exception and len(at.get("button_group")) == 0

"""The RAG API client over httpx.MockTransport: events validated by the wire contract, error sentences, history."""

from __future__ import annotations

import json

import httpx
import pytest

from rag.contract import MAX_QUESTION_CHARS, STREAM_PATH, Usage
from webapp import api_client
from webapp.api_client import (
    ApiError,
    DoneEvent,
    RagApiClient,
    Source,
    SourcesEvent,
    TokenEvent,
    client_from_settings,
    parse_event,
)
from webapp.chat import AnswerStream

SID = "tenanta:alice@example.com:2f1c3a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
SOURCES = [
    {"id": "d1", "source": "Amazon_SageMaker_FAQs.csv", "row": 3, "title": "What is?", "score": 0.9, "snippet": "s"}
]
USAGE = {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}


def sse(*events: tuple[str, dict]) -> bytes:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()


def ok_stream() -> bytes:
    return sse(
        ("token", {"text": "Hello"}),
        ("token", {"text": " world"}),
        ("sources", {"sources": SOURCES}),
        ("done", {"session_id": SID, "answer": "Hello world", "usage": USAGE, "model_id": "m", "answer_id": "a1"}),
    )


def client_for(handler) -> RagApiClient:
    return RagApiClient("http://ragapi.test/", timeout=2.0, transport=httpx.MockTransport(handler))


def stream_response(body: bytes) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)


def test_stream_parses_tokens_sources_done_and_sends_contract():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return stream_response(ok_stream())

    events = list(client_for(handler).stream_answer("What?", SID, request_id="abc123"))
    assert events[:2] == [TokenEvent(text="Hello"), TokenEvent(text=" world")]
    assert isinstance(events[2], SourcesEvent)
    assert events[2].sources[0] == Source(
        id="d1", source="Amazon_SageMaker_FAQs.csv", row=3, title="What is?", score=0.9, snippet="s"
    )
    assert events[3] == DoneEvent(
        session_id=SID, answer="Hello world", usage=Usage(**USAGE), model_id="m", answer_id="a1"
    )
    (request,) = seen
    assert request.method == "POST"
    assert request.url == "http://ragapi.test" + STREAM_PATH
    assert request.headers["X-Request-ID"] == "abc123"
    assert json.loads(request.content) == {"q": "What?", "user_session_id": SID, "max_matching_docs": 3}


def test_regenerate_flag_is_sent():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return stream_response(ok_stream())

    list(client_for(handler).stream_answer("What?", SID, regenerate=True))
    assert json.loads(seen[0].content)["regenerate"] is True


def test_stream_handles_chunked_crlf_events():
    body = ok_stream().replace(b"\n", b"\r\n")
    chunks = [body[i : i + 7] for i in range(0, len(body), 7)]

    def handler(request):
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=iter(chunks))

    events = list(client_for(handler).stream_answer("q", SID))
    assert [e.text for e in events if isinstance(e, TokenEvent)] == ["Hello", " world"]


def test_error_event_becomes_api_error():
    def handler(request):
        body = sse(
            ("token", {"text": "Hel"}),
            ("error", {"status": 503, "error": "bedrock_unavailable", "message": "x", "retry_after": 5}),
        )
        return stream_response(body)

    events = []
    with pytest.raises(ApiError) as info:
        events.extend(client_for(handler).stream_answer("q", SID))
    assert events == [TokenEvent(text="Hel")]
    assert (info.value.status, info.value.code, info.value.retry_after) == (503, "bedrock_unavailable", 5.0)
    assert info.value.retryable
    assert info.value.message == api_client.UNAVAILABLE


@pytest.mark.parametrize(
    ("status", "body", "retryable", "sentence"),
    [
        (429, {"error": "throttled", "message": "slow down"}, False, api_client.BUSY),
        (503, {"error": "bedrock_unavailable", "message": "m"}, True, api_client.UNAVAILABLE),
        (504, {"error": "timeout", "message": "t"}, True, api_client.TIMED_OUT),
        (422, {"error": "validation_error", "message": "q: String should have at most 4000 characters"}, False,
         api_client.QUESTION_INVALID),
        (422, {"error": "validation_error", "message": "user_session_id: bad"}, False, api_client.REJECTED),
        (413, {"error": "too_large", "message": "The body is too large."}, False, api_client.TOO_LARGE),
        (403, {"error": "forbidden", "message": "this session belongs to another tenant"}, False, api_client.NOT_YOURS),
        (409, {"error": "nothing_to_regenerate", "message": "q is not"}, False, api_client.NOTHING_TO_REGENERATE),
        (500, {"error": "internal_error", "message": "boom"}, False, api_client.INTERNAL),
        (403, {"detail": "Forbidden"}, False, api_client.NOT_YOURS),  # not an ErrorBody: still a sentence
    ],
    ids=["429", "503", "504", "422-question", "422-other", "413", "403", "409", "500", "403-foreign-body"],
)  # fmt: skip
def test_http_errors_are_plain_sentences(status, body, retryable, sentence):
    def handler(request):
        return httpx.Response(status, json=body, headers={"Retry-After": "7"})

    with pytest.raises(ApiError) as info:
        list(client_for(handler).stream_answer("q", SID))
    assert info.value.status == status
    assert info.value.retryable is retryable
    assert info.value.message == sentence
    assert "q:" not in info.value.message and str(status) not in info.value.message
    assert info.value.retry_after == 7.0


def test_question_outside_the_contract_is_not_sent():
    seen: list[httpx.Request] = []
    client = client_for(lambda r: seen.append(r) or stream_response(ok_stream()))
    for question in ("   ", "x" * (MAX_QUESTION_CHARS + 1)):
        with pytest.raises(ApiError) as info:
            list(client.stream_answer(question, SID))
        assert (info.value.status, info.value.code, info.value.retryable) == (422, "validation_error", False)
        assert info.value.message == api_client.QUESTION_INVALID
    assert seen == []


def test_stream_cut_off_without_done():
    def handler(request):
        return stream_response(sse(("token", {"text": "a"})))

    with pytest.raises(ApiError) as info:
        list(client_for(handler).stream_answer("q", SID))
    assert (info.value.code, info.value.message, info.value.retryable) == ("incomplete", api_client.CUT_OFF, True)


@pytest.mark.parametrize(
    ("exc", "code", "sentence"),
    [(httpx.ConnectError("no"), "unavailable", api_client.UNREACHABLE), (httpx.ReadTimeout("slow"), "timeout",
     api_client.TIMED_OUT)],
)  # fmt: skip
def test_transport_failures(exc, code, sentence):
    def handler(request):
        raise exc

    client = client_for(handler)
    with pytest.raises(ApiError) as info:
        list(client.stream_answer("q", SID))
    assert (info.value.code, info.value.status, info.value.message, info.value.retryable) == (
        code,
        None,
        sentence,
        True,
    )
    with pytest.raises(ApiError):
        client.history(SID)
    assert client.ready() is False


@pytest.mark.parametrize(
    ("event", "data"),
    [
        ("token", "{not json"),
        ("surprise", "{}"),
        ("sources", json.dumps({"sources": [{"id": "x"}]})),  # a source without its required fields
        ("done", json.dumps({"session_id": SID, "answer": "a"})),  # no usage / model_id
        ("token", json.dumps({"text": 5})),
    ],
    ids=["bad-json", "unknown-event", "source-fields", "done-fields", "token-type"],
)
def test_events_outside_the_contract_are_refused(event, data):
    with pytest.raises(ApiError) as info:
        parse_event(event, data)
    assert (info.value.status, info.value.code, info.value.message) == (502, "bad_stream", api_client.BAD_REPLY)


def test_history_validates_messages_and_encodes_session_id():
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "session_id": SID,
                "messages": [
                    {"role": "user", "content": "Q", "created_at": "2026-01-01T00:00:00Z"},
                    {"role": "assistant", "content": "A", "sources": SOURCES, "created_at": "2026-01-01T00:00:01Z",
                     "answer_id": "a1", "feedback": "up"},
                ],
            },
        )  # fmt: skip

    messages = client_for(handler).history(SID)
    assert [(m.role, m.content) for m in messages] == [("user", "Q"), ("assistant", "A")]
    assert messages[1].sources[0].row == 3
    assert messages[1].feedback == "up"
    assert seen[0].url.raw_path.decode() == (
        "/api/v1/sessions/tenanta%3Aalice%40example.com%3A2f1c3a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b/messages"
    )


def test_history_outside_the_contract_is_an_error():
    bad = {"session_id": SID, "messages": [{"role": "system", "content": "x", "created_at": "t"}]}
    with pytest.raises(ApiError) as info:
        client_for(lambda r: httpx.Response(200, json=bad)).history(SID)
    assert (info.value.status, info.value.code) == (502, "bad_response")


def test_history_of_unknown_session_is_empty_and_delete():
    seen: list[str] = []

    def handler(request):
        seen.append(request.method)
        return httpx.Response(404 if request.method == "GET" else 204, json={} if request.method == "GET" else None)

    client = client_for(handler)
    assert client.history(SID) == []
    client.delete_history(SID)
    assert seen == ["GET", "DELETE"]


def test_delete_failure_is_an_error():
    with pytest.raises(ApiError) as info:
        client_for(lambda r: httpx.Response(503, json={"error": "history_unavailable", "message": "m"})).delete_history(
            SID
        )
    assert (info.value.status, info.value.code, info.value.retryable) == (503, "history_unavailable", True)


def test_document_link():
    seen: list[httpx.Request] = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, json={"url": "https://b.s3.amazonaws.com/k?X-Amz-Signature=s", "expires_in": 300})

    link = client_for(handler).document_link("s3://b/documents/k.pdf")
    assert (link.url, link.expires_in) == ("https://b.s3.amazonaws.com/k?X-Amz-Signature=s", 300)
    assert seen[0].url.params["source"] == "s3://b/documents/k.pdf"
    with pytest.raises(ApiError) as info:
        client_for(lambda r: httpx.Response(403, json={"error": "forbidden", "message": "m"})).document_link("s3://x/y")
    assert info.value.status == 403


def test_ready():
    assert client_for(lambda r: httpx.Response(200)).ready() is True
    assert client_for(lambda r: httpx.Response(503)).ready() is False


def test_answer_stream_collects_text_and_sources():
    answer = AnswerStream(client_for(lambda r: stream_response(ok_stream())), "q", SID)
    assert "".join(answer) == "Hello world"
    assert answer.sources[0].row == 3
    assert answer.done is not None
    message = answer.as_message()
    assert message["sources"][0]["source"] == "Amazon_SageMaker_FAQs.csv"
    assert (message["answer_id"], message["grounded"]) == ("a1", True)
    assert len(answer.request_id) == 32


def test_answer_stream_close_closes_the_http_stream():
    """Stop: closing the answer mid-stream closes the response, so the API sees the client leave."""
    closed: list[bool] = []

    class Body(httpx.SyncByteStream):
        def __iter__(self):
            yield b'event: token\ndata: {"text": "Hel"}\n\n'
            yield b'event: token\ndata: {"text": "lo"}\n\n'

        def close(self) -> None:
            closed.append(True)

    def handler(request):
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=Body())

    answer = AnswerStream(client_for(handler), "q", SID)
    pieces = iter(answer)
    assert next(pieces) == "Hel"
    answer.close()
    assert closed == [True]
    assert answer.done is None


def test_client_from_settings():
    from rag.settings import load_settings

    settings = load_settings(
        tenant_id="tenanta",
        rag_api_url="http://x:1",
        rag_api_timeout_seconds=9,
        embeddings_provider="local",
        llm_provider="extractive",
    )
    client = client_from_settings(settings)
    assert (client.base_url, client.timeout) == ("http://x:1", 9)

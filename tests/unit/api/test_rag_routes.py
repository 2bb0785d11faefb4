"""POST /api/v1/llm/rag and /rag/stream with fake chat models (no network)."""

from __future__ import annotations

import json

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel

from rag.answer.models import EXTRACTIVE_LABEL
from tests.unit.api.fakes import SESSION, ScriptedChatModel, parse_sse, rag_body


def test_answer_shape_matches_reference(make_client, history):
    model = GenericFakeChatModel(messages=iter(["SageMaker Studio is an IDE [1]."]))
    client = make_client(model)
    response = client.post("/api/v1/llm/rag", json=rag_body())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["question"] == "What is SageMaker Studio?"
    assert body["answer"] == "SageMaker Studio is an IDE [1]."
    assert body["session_id"] == SESSION
    assert "docs" not in body
    assert len(body["sources"]) == 3  # max_matching_docs defaults to 3
    for source in body["sources"]:
        assert set(source) >= {"id", "source", "row", "score", "snippet", "title"}
        assert source["source"] == "faq.csv"
    assert set(body["usage"]) == {"input_tokens", "output_tokens", "total_tokens"}
    assert body["usage"]["total_tokens"] == body["usage"]["input_tokens"] + body["usage"]["output_tokens"] > 0
    assert body["model_id"] == "extractive"  # LLM_PROVIDER of the settings


def test_verbose_returns_docs_and_sources_are_what_the_model_saw(make_client):
    model = ScriptedChatModel()
    client = make_client(model)
    body = client.post("/api/v1/llm/rag", json=rag_body(verbose=True, max_matching_docs=2)).json()
    assert len(body["docs"]) == 2 == len(body["sources"])
    prompt = model.calls[-1]["prompt"]
    for doc, source in zip(body["docs"], body["sources"], strict=True):
        assert doc["page_content"] in prompt  # one retrieval: the docs shown are the docs used
        assert doc["metadata"]["id"] == source["id"]
    assert prompt.count("<doc n=") == 2


def test_k_and_generation_parameters_reach_retriever_and_model(make_client):
    model = ScriptedChatModel()
    client = make_client(model)
    body = client.post(
        "/api/v1/llm/rag",
        json=rag_body(max_matching_docs=5, temperature=0.7, maxTokenCount=99, topP=0.5, topK=40, stopSequences=["END"]),
    ).json()
    assert len(body["sources"]) == 5
    call = model.calls[-1]
    assert call["prompt"].count("<doc n=") == 5
    assert call["kwargs"] == {"temperature": 0.7, "max_tokens": 99, "top_p": 0.5, "top_k": 40}
    assert call["stop"] == ["END"]
    # the shared model itself was not mutated (call arguments, no per-request copies)
    assert model.temperature is None


def test_no_condense_call_without_history_and_one_with_history(make_client, history):
    model = ScriptedChatModel(replies=["Studio is an IDE.", "How is SageMaker Studio priced?", "It is free."])
    client = make_client(model)
    assert client.post("/api/v1/llm/rag", json=rag_body("What is SageMaker Studio?")).status_code == 200
    assert len(model.calls) == 1  # no history: the condense LLM is not called
    assert client.post("/api/v1/llm/rag", json=rag_body("and how much does it cost?")).status_code == 200
    assert len(model.calls) == 3  # condense + answer
    condense_prompt = model.calls[1]["prompt"]
    assert "What is SageMaker Studio?" in condense_prompt  # {chat_history} is really in the prompt
    assert "Studio is an IDE." in condense_prompt
    assert "and how much does it cost?" in condense_prompt
    # the answer prompt holds the user's own question; retrieval used the condensed one
    assert "and how much does it cost?" in model.calls[2]["prompt"]
    assert [t.question for t in history.load(SESSION)] == ["What is SageMaker Studio?", "and how much does it cost?"]


def test_condensed_follow_up_keeps_the_subject_with_the_extractive_model(make_client):
    client = make_client()  # LLM_PROVIDER=extractive
    first = client.post("/api/v1/llm/rag", json=rag_body("Does EMR support Presto?")).json()
    assert first["answer"].startswith(EXTRACTIVE_LABEL)
    assert "[1]" in first["answer"]
    follow = client.post("/api/v1/llm/rag", json=rag_body("and what about pricing?", verbose=True)).json()
    # the follow-up alone says nothing about EMR; the condensed question carries it to retrieval
    assert any("EMR" in d["page_content"] for d in follow["docs"])


def test_stream_event_order_and_payloads(make_client, history):
    # tokens further apart than STREAM_FLUSH_SECONDS (0.05) each get their own event
    model = ScriptedChatModel(replies=["Studio is a web IDE."], token_delay=0.08)
    client = make_client(model)
    response = client.post("/api/v1/llm/rag/stream", json=rag_body(), headers={"X-Request-ID": "req-123"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-request-id"] == "req-123"
    events = parse_sse(response.text)
    names = [name for name, _ in events]
    assert names[-2:] == ["sources", "done"]
    assert set(names[:-2]) == {"token"} and len(names) - 2 >= 4
    assert "".join(data["text"] for name, data in events if name == "token") == "Studio is a web IDE."
    sources = events[-2][1]["sources"]
    assert len(sources) == 3 and all({"id", "source", "score", "snippet"} <= set(s) for s in sources)
    done = events[-1][1]
    assert done["answer"] == "Studio is a web IDE."
    assert done["session_id"] == SESSION
    assert done["usage"]["total_tokens"] == 13
    assert done["model_id"] == "extractive"
    turns = history.load(SESSION)
    assert len(turns) == 1 and turns[0].answer == "Studio is a web IDE." and len(turns[0].sources) == 3


def test_stream_with_extractive_model(make_client):
    client = make_client()
    events = parse_sse(client.post("/api/v1/llm/rag/stream", json=rag_body()).text)
    tokens = [d["text"] for n, d in events if n == "token"]
    assert tokens  # all at once or in pieces: the extractive answerer has no token pace
    assert "".join(tokens).startswith(EXTRACTIVE_LABEL)
    assert events[-1][0] == "done" and events[-1][1]["usage"]["output_tokens"] > 0


def test_request_id_is_generated_when_absent_and_replaced_when_malformed(make_client):
    client = make_client(ScriptedChatModel())
    generated = client.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32
    assert client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"}).headers["x-request-id"] != (
        "bad id with spaces"
    )
    assert client.get("/healthz", headers={"X-Request-ID": "abc-1"}).headers["x-request-id"] == "abc-1"


@pytest.mark.parametrize("route", ["/api/v1/llm/rag", "/api/v1/llm/rag/stream"])
def test_failed_answer_leaves_no_history(make_client, history, route):
    model = ScriptedChatModel(replies=["one two three four"], fail_after=2)
    client = make_client(model)
    response = client.post(route, json=rag_body())
    if route.endswith("stream"):
        events = parse_sse(response.text)
        assert [n for n, _ in events][-1] == "error" and {n for n, _ in events[:-1]} == {"token"}
        assert "".join(d["text"] for n, d in events if n == "token") == "one two"  # what came before the failure
        assert events[-1][1]["status"] == 500 and events[-1][1]["error"] == "internal_error"
        assert "Traceback" not in response.text and "boom" not in response.text
    else:
        assert response.status_code == 500
        assert response.json()["error"] == "internal_error"
    assert history.load(SESSION) == []


def test_sse_data_is_json_per_event(make_client):
    client = make_client(ScriptedChatModel(replies=['quote " and\nnewline']))
    events = parse_sse(client.post("/api/v1/llm/rag/stream", json=rag_body()).text)
    assert "".join(d["text"] for n, d in events if n == "token") == 'quote " and\nnewline'
    json.dumps(events)  # all payloads are plain JSON


def test_request_id_reaches_the_logs(make_client):
    import logging

    from api.middleware import RequestIdLogFilter

    records: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Capture()
    handler.addFilter(RequestIdLogFilter())
    logger = logging.getLogger("api.rag")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        client = make_client(ScriptedChatModel())
        client.post("/api/v1/llm/rag", json=rag_body(), headers={"X-Request-ID": "trace-42"})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    answered = [r for r in records if r.getMessage().startswith("answered")]
    assert answered and answered[0].request_id == "trace-42"

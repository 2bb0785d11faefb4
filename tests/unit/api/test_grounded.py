"""Grounded or honestly absent, through the API: the ``grounded`` flag, no model call on a
no-answer, the model's refusal recognised, ``cited`` sources, metrics and usage records."""

from __future__ import annotations

from prometheus_client import REGISTRY

from rag.answer.grounding import NO_ANSWER, REASON_MODEL_REFUSED, REASON_NO_PASSAGE
from tests.unit.api.fakes import TENANT, ScriptedChatModel, parse_sse, rag_body

#: With the fake 32-dim embeddings no cosine comes near 0.99: nothing clears this floor.
UNREACHABLE_FLOOR = 0.99
#: Every passage clears this one.
OPEN_FLOOR = -1.0


def _ungrounded(reason: str) -> float:
    return REGISTRY.get_sample_value("ragapi_ungrounded_answers_total", {"tenant": TENANT, "reason": reason}) or 0.0


def test_no_relevant_passage_answers_plainly_without_calling_the_model(make_client, history):
    model = ScriptedChatModel(replies=["must not be used"])
    client = make_client(model, relevance_floor=UNREACHABLE_FLOOR)
    before = _ungrounded(REASON_NO_PASSAGE)
    response = client.post("/api/v1/llm/rag", json=rag_body("What is the weather in Seattle?"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["grounded"] is False
    assert body["answer"] == NO_ANSWER
    assert body["sources"] == []
    assert model.calls == []  # no answer model call: no tokens spent
    assert body["usage"] == {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    assert _ungrounded(REASON_NO_PASSAGE) == before + 1
    (record,) = client.app.state.rag.usage.records
    assert record.grounded is False and record.input_tokens == 0
    (turn,) = history.load(body["session_id"])
    assert turn.answer == NO_ANSWER and turn.sources == []


def test_no_answer_over_sse_streams_the_sentence_and_done_says_ungrounded(make_client):
    model = ScriptedChatModel(replies=["must not be used"])
    client = make_client(model, relevance_floor=UNREACHABLE_FLOOR)
    events = parse_sse(client.post("/api/v1/llm/rag/stream", json=rag_body("Who won the game?")).text)
    names = [name for name, _ in events]
    assert names == ["token", "sources", "done"]
    assert events[0][1] == {"text": NO_ANSWER}
    assert events[1][1] == {"sources": []}
    done = events[2][1]
    assert done["grounded"] is False and done["answer"] == NO_ANSWER
    assert model.calls == []


def test_grounded_answer_marks_the_cited_sources(make_client):
    model = ScriptedChatModel(replies=["Studio is an IDE for machine learning [2]."])
    client = make_client(model, relevance_floor=OPEN_FLOOR)
    body = client.post("/api/v1/llm/rag", json=rag_body(max_matching_docs=3)).json()
    assert body["grounded"] is True
    assert [s["cited"] for s in body["sources"]] == [False, True, False]
    events = parse_sse(client.post("/api/v1/llm/rag/stream", json=rag_body(max_matching_docs=3)).text)
    sources = dict(events)["sources"]["sources"]
    assert [s["cited"] for s in sources] == [False, True, False]
    assert dict(events)["done"]["grounded"] is True


def test_the_models_refusal_sentence_is_recognised(make_client):
    model = ScriptedChatModel(replies=[NO_ANSWER])
    client = make_client(model, relevance_floor=OPEN_FLOOR)
    before = _ungrounded(REASON_MODEL_REFUSED)
    body = client.post("/api/v1/llm/rag", json=rag_body("How much does Textract cost?")).json()
    assert body["grounded"] is False and body["sources"] == [] and body["answer"] == NO_ANSWER
    assert len(model.calls) == 1  # the model was asked (the passages cleared the floor) and declined
    assert NO_ANSWER in model.calls[0]["prompt"]  # the answer prompt tells it which sentence to use
    assert _ungrounded(REASON_MODEL_REFUSED) == before + 1
    model.replies = ["I don't know."]
    events = dict(parse_sse(client.post("/api/v1/llm/rag/stream", json=rag_body("Textract?")).text))
    assert events["sources"] == {"sources": []}
    assert events["done"]["grounded"] is False and events["done"]["answer"] == NO_ANSWER


def test_passages_below_the_floor_are_not_given_to_the_model(make_client):
    model = ScriptedChatModel(replies=["Yes [1]."])
    client = make_client(model, relevance_floor=OPEN_FLOOR)
    body = client.post("/api/v1/llm/rag", json=rag_body(max_matching_docs=4, verbose=True)).json()
    scores = sorted(s["score"] for s in body["sources"])
    middle = (scores[1] + scores[2]) / 2  # two sources above, two below
    model.calls.clear()
    client = make_client(model, relevance_floor=middle)
    body = client.post("/api/v1/llm/rag", json=rag_body(max_matching_docs=4)).json()
    assert body["grounded"] is True and len(body["sources"]) == 4  # every retrieved source is listed
    assert model.calls[-1]["prompt"].count("<doc n=") == 2  # ... but only those above the floor are quoted

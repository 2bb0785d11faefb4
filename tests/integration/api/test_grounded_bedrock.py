"""Grounded answers with Claude's wire format (the fake Bedrock Converse API): the refusal sentence
is recognised, and the condense prompt keeps a self-contained question as it is."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from rag.answer.followup import refers_back
from rag.answer.grounding import NO_ANSWER
from rag.index.store import open_store
from rag.settings import load_settings
from tests.integration.api.conftest import CLAUDE, SESSION, publish_titan_index
from tests.unit.api.fakes import parse_sse

pytestmark = pytest.mark.integration


@pytest.fixture
def bedrock_client(fake_bedrock, aws_env, tmp_path, sagemaker_docs):
    root = tmp_path / "index"
    publish_titan_index(open_store(str(root)), sagemaker_docs[:40])
    settings = load_settings(
        tenant_id="tenanta",
        aws_default_region="us-east-1",
        text2text_model_id=CLAUDE,
        bedrock_max_attempts=1,
        index_poll_seconds=0,
        index_uri=str(root),
        history_url=f"sqlite:///{tmp_path}/history.db",
    )
    with TestClient(create_app(settings=settings)) as client:
        yield client


def _converse(fake) -> list[dict]:
    return [r["body"] for r in fake.requests if r["op"].startswith("converse")]


def _prompt(body: dict) -> str:
    system = " ".join(block.get("text", "") for block in body.get("system", []))
    messages = " ".join(c.get("text", "") for m in body.get("messages", []) for c in m.get("content", []))
    return f"{system}\n{messages}"


@pytest.mark.parametrize("reply", [NO_ANSWER, "I don't know based on the documents provided."])
def test_claudes_refusal_is_recognised(fake_bedrock, bedrock_client, reply):
    fake_bedrock.config.reply_text = reply
    body = bedrock_client.post(
        "/api/v1/llm/rag", json={"q": "How much does Amazon Textract cost?", "user_session_id": SESSION}
    ).json()
    assert body["grounded"] is False
    assert body["answer"] == NO_ANSWER and body["sources"] == []
    (answer_call,) = _converse(fake_bedrock)
    assert NO_ANSWER in _prompt(answer_call)  # the prompt names the sentence to use
    events = dict(
        parse_sse(
            bedrock_client.post(
                "/api/v1/llm/rag/stream",
                json={
                    "q": "What does Textract charge?",
                    "user_session_id": f"tenanta:alice@example.com:{uuid.uuid4()}",
                },
            ).text
        )
    )
    assert events["sources"] == {"sources": []}
    assert events["done"]["grounded"] is False and events["done"]["answer"] == NO_ANSWER


def test_self_contained_question_is_condensed_unchanged_and_keeps_its_own_sources(
    fake_bedrock, bedrock_client, sagemaker_docs
):
    first = "What is Amazon SageMaker?"
    # An FAQ title that names its own subject but has a referring word ("Can I use X with it?"):
    # the wording asks for the condense call, and Claude must give the question back unchanged.
    target = next(d for d in sagemaker_docs[10:] if refers_back(d.metadata["title"]))
    new_topic = target.metadata["title"]
    fresh = f"tenanta:alice@example.com:{uuid.uuid4()}"
    alone = bedrock_client.post("/api/v1/llm/rag", json={"q": new_topic, "user_session_id": fresh}).json()
    assert alone["grounded"] is True

    bedrock_client.post("/api/v1/llm/rag", json={"q": first, "user_session_id": SESSION})
    before = len(_converse(fake_bedrock))
    # The case: Claude, given the condense prompt with a self-contained follow-up, returns it as it is.
    fake_bedrock.config.reply_text = new_topic
    body = bedrock_client.post("/api/v1/llm/rag", json={"q": new_topic, "user_session_id": SESSION}).json()
    condense_call, answer_call = _converse(fake_bedrock)[before:]
    condense_prompt = _prompt(condense_call)
    assert "return it exactly as it is" in condense_prompt
    assert first in condense_prompt and new_topic in condense_prompt
    # retrieved with the question alone: the same sources as in a session without history
    assert [s["id"] for s in body["sources"]] == [s["id"] for s in alone["sources"]]
    first_sources = bedrock_client.post(
        "/api/v1/llm/rag", json={"q": first, "user_session_id": f"tenanta:alice@example.com:{uuid.uuid4()}"}
    ).json()["sources"]
    assert [s["id"] for s in body["sources"]] != [s["id"] for s in first_sources]  # not the earlier topic's
    assert new_topic in _prompt(answer_call)

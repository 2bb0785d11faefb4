"""api.services.answer and the answer path's cost controls: load shedding, the follow-up decision,
the bounded non-streaming condense call and CONDENSE_MODEL_ID."""

from __future__ import annotations

import threading
import time
from typing import Any
from unittest import mock

import boto3
import pytest
from langchain_aws import ChatBedrockConverse
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import Field

from rag.answer.chain import AnswerChain, refers_back
from rag.answer.models import (
    GenerationParams,
)
from tests.unit.api.fakes import ScriptedChatModel, parse_sse, rag_body

MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"


def _metric(client, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return sample.value
    return 0.0


def _wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


# --- load shedding ------------------------------------------------------------------------------


def test_above_max_inflight_answers_a_request_gets_503_overloaded_with_retry_after(make_client):
    gate = threading.Event()
    model = ScriptedChatModel(replies=["one two three"], gate=gate)  # waits after its first token
    client = make_client(model, max_inflight_answers=1)
    shed_before = _metric(client, "ragapi_answers_shed_total")
    first: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: first.update(r=client.post("/api/v1/llm/rag/stream", json=rag_body())))
    worker.start()
    try:
        assert _wait_for(lambda: len(model.calls) == 1), "the first answer never reached the model"
        assert _metric(client, "ragapi_answers_in_flight") == 1
        refused = client.post("/api/v1/llm/rag", json=rag_body("What is EMR?"))
        assert refused.status_code == 503
        assert refused.json()["error"] == "overloaded" and refused.headers["Retry-After"] == "1"
        streamed = client.post("/api/v1/llm/rag/stream", json=rag_body("What is EMR?"))
        assert streamed.status_code == 503 and streamed.json()["error"] == "overloaded"  # JSON, not a stream
        assert _metric(client, "ragapi_answers_shed_total") == shed_before + 2
        assert len(model.calls) == 1  # the refused requests never reached the model
    finally:
        gate.set()
        worker.join(10)
    assert [n for n, _ in parse_sse(first["r"].text)][-1] == "done"  # the admitted answer was not disturbed
    assert _wait_for(lambda: _metric(client, "ragapi_answers_in_flight") == 0)
    again = client.post("/api/v1/llm/rag", json=rag_body("What is EMR?"))
    assert again.status_code == 200, again.text  # the slot was given back


def test_a_refused_check_gives_its_slot_back(make_client, history):
    class Broken:
        def load(self, *args, **kwargs):
            from rag.stores.history import HistoryUnavailableError

            raise HistoryUnavailableError("down")

    client = make_client(ScriptedChatModel(), history_store=Broken(), max_inflight_answers=1)
    for _ in range(3):  # with a leaked slot, the second request would be "overloaded"
        response = client.post("/api/v1/llm/rag", json=rag_body())
        assert response.status_code == 503 and response.json()["error"] == "history_unavailable"
    assert _wait_for(lambda: _metric(client, "ragapi_answers_in_flight") == 0)


# --- follow-up decision (placeholder until rag.answer.followup lands) -----------------------------


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("How is Amazon SageMaker Studio priced?", False),
        ("Which regions offer Amazon EMR clusters?", False),
        ("and how much does it cost?", True),
        ("Which regions is it available in?", True),
        ("What about pricing?", True),
        ("pricing?", True),
        ("Are those supported on GPU instances?", True),
    ],
)
def test_refers_back_condenses_only_questions_that_point_at_the_history(question, expected):
    history = [("What is SageMaker Studio?", "An IDE.")]
    assert refers_back(question, history) is expected
    assert refers_back(question, []) is False  # nothing to refer back to


class _TwoDocs(BaseRetriever):
    queries: list[str] = Field(default_factory=list)

    def _get_relevant_documents(self, query: str, *, run_manager: object) -> list[Document]:
        self.queries.append(query)
        return [Document("Studio is an IDE.", metadata={"id": "a"}), Document("EMR runs Spark.", metadata={"id": "b"})]


def test_a_follow_up_that_stands_alone_makes_one_model_call_and_is_retrieved_as_asked():
    model = ScriptedChatModel(replies=["EMR runs Spark."])
    retriever = _TwoDocs()
    chain = AnswerChain(retriever=retriever, llm=model, needs_condense=refers_back)
    result = chain.run("Which engines does Amazon EMR run?", [("What is SageMaker Studio?", "An IDE.")])
    assert len(model.calls) == 1 and retriever.queries == ["Which engines does Amazon EMR run?"]
    assert result.generated_question == "Which engines does Amazon EMR run?"


def test_the_condense_call_is_bounded_and_not_streamed():
    client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    condense = ChatBedrockConverse(client=client, model="fast.model-v1:0", region_name="us-east-1", max_tokens=512)
    reply = {
        "output": {"message": {"role": "assistant", "content": [{"text": "What does Studio cost?"}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 30, "outputTokens": 5, "totalTokens": 35},
        "metrics": {"latencyMs": 1},
    }
    retriever = _TwoDocs()
    chain = AnswerChain(
        retriever=retriever,
        llm=ScriptedChatModel(replies=["It is free."]),
        condense_llm=condense,
        needs_condense=refers_back,
        condense_max_tokens=40,
    )
    with (
        mock.patch.object(client, "converse", return_value=reply) as converse,
        mock.patch.object(client, "converse_stream") as converse_stream,
    ):
        result = chain.run("and what does it cost?", [("What is Studio?", "An IDE.")], generation=GenerationParams())
    converse_stream.assert_not_called()  # one plain Converse call, no stream thrown away token by token
    assert converse.call_args.kwargs["inferenceConfig"]["maxTokens"] == 40
    assert converse.call_args.kwargs["modelId"] == "fast.model-v1:0"
    # grounded answers: the question alone and the condensed one are both retrieved (rag.answer.followup.plan_query)
    assert retriever.queries == ["and what does it cost?", "What does Studio cost?"]
    assert result.usage.input_tokens == 30 + 10 and result.usage.output_tokens == 5 + 3  # condense + answer


def test_condense_model_id_builds_a_second_bedrock_model(make_client):
    client = make_client(
        ScriptedChatModel(), llm_provider="bedrock", aws_default_region="us-east-1", condense_model_id="fast.model-v1:0"
    )
    chain = client.app.state.rag.chain
    assert isinstance(chain.condense_llm, ChatBedrockConverse) and chain.condense_llm.model_id == "fast.model-v1:0"
    assert chain.llm is not chain.condense_llm and chain.condense_max_tokens == 48  # CONDENSE_MAX_TOKENS default


def test_chain_threads_search_with_one_faiss_thread(make_client):
    """OpenMP's thread count is per thread: the loop thread's setting does not reach the chain's threads."""
    import faiss

    plain: list[int] = []
    probe = threading.Thread(target=lambda: plain.append(faiss.omp_get_max_threads()))
    probe.start()
    probe.join()
    if plain[0] == 1:
        pytest.skip("this machine's OpenMP default is already one thread (one core or OMP_NUM_THREADS=1)")
    client = make_client(ScriptedChatModel())
    executor = client.app.state.rag.chain_executor
    # as many fresh threads as the pool starts for concurrent answers: each must have set its own count
    barrier = threading.Barrier(3)

    def threads_in_chain_thread() -> int:
        barrier.wait(timeout=10)
        return faiss.omp_get_max_threads()

    counts = [f.result(timeout=10) for f in [executor.submit(threads_in_chain_thread) for _ in range(3)]]
    assert counts == [1, 1, 1], f"chain threads would search with {counts} OpenMP threads (default {plain[0]})"

"""api.services.answer and the answer path's cost controls: load shedding, the follow-up decision,
the bounded non-streaming condense call, CONDENSE_MODEL_ID and the direct ConverseStream reader."""

from __future__ import annotations

import threading
import time
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.exceptions import EventStreamError
from langchain_aws import ChatBedrockConverse
from langchain_core.documents import Document
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.retrievers import BaseRetriever
from langchain_core.tracers.context import collect_runs
from pydantic import Field

from rag.answer.chain import ANSWER_TAG, ChainCancelledError, build_chain, refers_back
from rag.answer.models import (
    ConverseTextStream,
    GenerationParams,
    LangChainTextStream,
    direct_stream_supported,
    generation_kwargs_for,
    text_stream_for,
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
    chain = build_chain(retriever=retriever, llm=model, needs_condense=refers_back)
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
    chain = build_chain(
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
    assert retriever.queries == ["What does Studio cost?"]
    assert result.usage.input_tokens == 30 + 10 and result.usage.output_tokens == 5 + 3  # condense + answer


def test_condense_model_id_builds_a_second_bedrock_model(make_client):
    client = make_client(
        ScriptedChatModel(), llm_provider="bedrock", aws_default_region="us-east-1", condense_model_id="fast.model-v1:0"
    )
    chain = client.app.state.rag.chain
    assert isinstance(chain.condense_llm, ChatBedrockConverse) and chain.condense_llm.model_id == "fast.model-v1:0"
    assert chain.llm is not chain.condense_llm and chain.condense_max_tokens == 48  # CONDENSE_MAX_TOKENS default


# --- the direct ConverseStream reader -----------------------------------------------------------


def _events(*texts: str, stop: bool = True) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [{"messageStart": {"role": "assistant"}}]
    events += [{"contentBlockDelta": {"delta": {"text": t}, "contentBlockIndex": 0}} for t in texts]
    events.append({"contentBlockStop": {"contentBlockIndex": 0}})
    if stop:
        events.append({"messageStop": {"stopReason": "end_turn"}})
    events.append({"metadata": {"usage": {"inputTokens": 7, "outputTokens": 2, "totalTokens": 9}, "metrics": {}}})
    return events


class _Stream(list):
    closed = False

    def close(self) -> None:
        self.closed = True


def _bedrock() -> tuple[Any, ChatBedrockConverse]:
    client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return client, ChatBedrockConverse(client=client, model=MODEL_ID, region_name="us-east-1", temperature=0.1)


def test_only_a_plain_chat_bedrock_converse_is_read_directly():
    _, model = _bedrock()
    assert direct_stream_supported(model) and text_stream_for(model) is ConverseTextStream

    class Overridden(ChatBedrockConverse):
        def _stream(self, *args, **kwargs):
            yield from super()._stream(*args, **kwargs)

    other = Overridden(client=model.client, model=MODEL_ID, region_name="us-east-1")
    assert not direct_stream_supported(other) and text_stream_for(ScriptedChatModel()) is LangChainTextStream


def test_the_direct_reader_sends_what_langchain_sends_and_reports_one_run_with_usage():
    client, model = _bedrock()
    messages = [SystemMessage("Answer from the documents."), HumanMessage("Question: hi")]
    params = GenerationParams(temperature=0.7, max_tokens=99, top_p=0.5, top_k=40, stop=["END"])
    kwargs = generation_kwargs_for(model)(params)
    with mock.patch.object(client, "converse_stream", return_value={"stream": iter(_events("Hi", " there"))}) as call:
        text = "".join(c.text for c in model.stream(messages, stop=params.stop, **kwargs))
    langchain_request = call.call_args.kwargs
    assert text == "Hi there"
    stream = _Stream(_events("Hi", " there"))
    with (
        mock.patch.object(client, "converse_stream", return_value={"stream": stream}) as call,
        collect_runs() as runs,
    ):
        reader = ConverseTextStream(model, messages, {"run_name": "answer", "tags": [ANSWER_TAG]}, params.stop, kwargs)
        pieces = list(reader)
    assert call.call_args.kwargs == langchain_request  # same modelId, messages, system, inferenceConfig, top_k
    assert pieces == ["Hi", " there"] and reader.usage == (7, 2)
    (run,) = runs.traced_runs
    assert run.run_type == "llm" and run.name == "answer" and ANSWER_TAG in run.tags
    assert run.outputs["generations"][0][0]["message"]["kwargs"]["usage_metadata"]["output_tokens"] == 2
    reader.close()
    assert stream.closed


def test_the_direct_reader_raises_on_a_cut_stream_and_on_in_stream_errors():
    client, model = _bedrock()
    messages = [HumanMessage("hi")]
    cut = {"stream": iter(_events("Hi", stop=False))}
    with (
        mock.patch.object(client, "converse_stream", return_value=cut),
        pytest.raises(ConnectionError, match="messageStop"),
    ):
        list(ConverseTextStream(model, messages, {}, None, {}))

    def throttled():
        yield {"contentBlockDelta": {"delta": {"text": "Hi"}, "contentBlockIndex": 0}}
        raise EventStreamError({"Error": {"Code": "throttlingException", "Message": "slow down"}}, "ConverseStream")

    with (
        mock.patch.object(client, "converse_stream", return_value={"stream": throttled()}),
        pytest.raises(EventStreamError) as raised,
    ):
        list(ConverseTextStream(model, messages, {}, None, {}))
    from api.errors import classify_exception

    assert classify_exception(raised.value).error == "model_throttled"


def test_a_cancelled_chain_closes_the_direct_stream_at_its_next_token():
    client, model = _bedrock()
    stream = _Stream(_events("one", " two", " three"))
    cancelled = threading.Event()
    chain = build_chain(retriever=_TwoDocs(), llm=model)
    seen: list[str] = []

    def on_token(text: str) -> None:
        seen.append(text)
        cancelled.set()  # the client leaves after the first token

    with (
        mock.patch.object(client, "converse_stream", return_value={"stream": stream}),
        pytest.raises(ChainCancelledError),
    ):
        chain.run("q?", on_token=on_token, cancelled=cancelled)
    assert seen == ["one"] and stream.closed

"""rag.answer.models: the direct ConverseStream reader (no LangChain chunk per token) and the stream choice."""

from __future__ import annotations

import threading
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

from rag.answer.chain import ANSWER_TAG, AnswerChain, ChainCancelledError
from rag.answer.models import (
    ConverseTextStream,
    GenerationParams,
    LangChainTextStream,
    direct_stream_supported,
    generation_kwargs_for,
    text_stream_for,
)
from tests.unit.api.fakes import ScriptedChatModel

MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"


class _TwoDocs(BaseRetriever):
    def _get_relevant_documents(self, query: str, *, run_manager: object) -> list[Document]:
        return [Document("Studio is an IDE.", metadata={"id": "a"}), Document("EMR runs Spark.", metadata={"id": "b"})]


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
    chain = AnswerChain(retriever=_TwoDocs(), llm=model)
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

"""rag.answer.models, rag.answer.chain and rag.stores.history as the API uses them (they live in tests/unit/api because the
API owns these modules; move to tests/unit/rag/ when that folder's owner agrees)."""

from __future__ import annotations

from unittest import mock

import boto3
import pytest
from botocore.stub import ANY, Stubber
from langchain_aws import ChatBedrockConverse
from langchain_core.messages import HumanMessage, SystemMessage

from rag.answer.chain import AnswerChain
from rag.answer.grounding import NO_ANSWER
from rag.answer.models import (
    EXTRACTIVE_LABEL,
    ExtractiveChatModel,
    GenerationParams,
    generation_kwargs_for,
    make_chat_model,
)
from rag.settings import load_settings
from rag.stores.history import (
    DynamoDBHistoryStore,
    HistoryUnavailableError,
    SQLiteHistoryStore,
    Turn,
    make_history_store,
)

MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"


def _bedrock_client():
    return boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def test_generation_params_reach_converse_stream_as_inference_config():
    client = _bedrock_client()
    llm = ChatBedrockConverse(client=client, model=MODEL_ID, region_name="us-east-1", temperature=0.1, max_tokens=512)
    events = [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"delta": {"text": "Hi"}, "contentBlockIndex": 0}},
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"messageStop": {"stopReason": "end_turn"}},
        {"metadata": {"usage": {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4}, "metrics": {"latencyMs": 1}}},
    ]
    with mock.patch.object(client, "converse_stream", return_value={"stream": iter(events)}) as call:
        params = GenerationParams(temperature=0.7, max_tokens=99, top_p=0.5, top_k=40, stop=["END"])
        kwargs = generation_kwargs_for(llm)(params)
        text = "".join(c.text for c in llm.stream([HumanMessage("hi")], stop=params.stop, **kwargs))
    assert text == "Hi"
    kwargs = call.call_args.kwargs
    assert kwargs["inferenceConfig"] == {"temperature": 0.7, "maxTokens": 99, "topP": 0.5, "stopSequences": ["END"]}
    assert kwargs["additionalModelRequestFields"] == {"top_k": 40}
    assert kwargs["modelId"] == MODEL_ID


def test_generation_params_reach_converse_via_stubber():
    client = _bedrock_client()
    stub = Stubber(client)
    stub.add_response(
        "converse",
        {
            "output": {"message": {"role": "assistant", "content": [{"text": "Hello"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 5, "outputTokens": 1, "totalTokens": 6},
            "metrics": {"latencyMs": 5},
        },
        expected_params={
            "modelId": MODEL_ID,
            "messages": ANY,
            "system": ANY,
            "inferenceConfig": {"temperature": 0.3, "maxTokens": 7, "topP": 0.2},
            "additionalModelRequestFields": {"top_k": 9},
        },
    )
    stub.activate()
    settings = load_settings(tenant_id="tenanta", aws_default_region="us-east-1", index_uri="/tmp/x")
    llm = make_chat_model(settings, bedrock_client=client)
    kwargs = generation_kwargs_for(llm)(GenerationParams(temperature=0.3, max_tokens=7, top_p=0.2, top_k=9))
    message = llm.invoke([SystemMessage("be brief"), HumanMessage("hi")], **kwargs)
    assert message.content == "Hello"
    assert message.usage_metadata["total_tokens"] == 6
    stub.assert_no_pending_responses()


def test_plugin_provider_factory(monkeypatch):
    settings = load_settings(
        tenant_id="tenanta", llm_provider="tests.unit.api.test_core_modules:_factory", embeddings_provider="local"
    )
    assert isinstance(make_chat_model(settings), ExtractiveChatModel)
    bad = load_settings(tenant_id="tenanta", llm_provider="tests.unit.api.nope:factory", embeddings_provider="local")
    with pytest.raises(ValueError, match="LLM_PROVIDER"):
        make_chat_model(bad)


def _factory(settings):
    return ExtractiveChatModel(max_passages=1)


def test_extractive_answer_cites_best_sentences_and_estimates_tokens():
    prompt = (
        'Documents:\n<doc n="1" source="a.csv">\nEMR runs Spark. Presto is supported on EMR. Unrelated text.\n</doc>\n'
        '<doc n="2" source="b.csv">\nStudio is an IDE.\n</doc>'
    )
    model = ExtractiveChatModel(max_sentences=1)
    message = model.invoke([SystemMessage(prompt), HumanMessage("Question: Is Presto supported?")])
    assert message.content.startswith(EXTRACTIVE_LABEL)
    assert "Presto is supported on EMR. [1]" in message.content
    assert "[2]" not in message.content  # doc 2 shares no word with the question: not quoted
    assert message.usage_metadata["input_tokens"] > 10 and message.usage_metadata["output_tokens"] > 5
    chunks = list(model.stream([SystemMessage(prompt), HumanMessage("Question: Is Presto supported?")]))
    assert len([c for c in chunks if c.text]) > 5
    assert "".join(c.text for c in chunks) == message.content


def test_extractive_condense_keeps_the_previous_subject():
    from rag.answer.chain import CONDENSE_PROMPT

    text = CONDENSE_PROMPT.format(chat_history="Human: Does EMR support Presto?\nAssistant: yes", question="price?")
    assert ExtractiveChatModel().invoke(text).content == "Does EMR support Presto? price?"


def test_condense_prompt_really_contains_chat_history():
    from rag.answer.chain import CONDENSE_PROMPT

    assert set(CONDENSE_PROMPT.input_variables) == {"chat_history", "question"}


def test_chain_skips_condense_without_history():
    from langchain_core.retrievers import BaseRetriever

    class NoDocs(BaseRetriever):
        def _get_relevant_documents(self, query, *, run_manager):
            return []

    calls = []

    class Spy(ExtractiveChatModel):
        def _stream(self, messages, stop=None, run_manager=None, **kwargs):
            calls.append(messages)
            yield from super()._stream(messages, stop=stop, **kwargs)

    chain = AnswerChain(retriever=NoDocs(), llm=Spy())
    result = chain.run("hi", [])
    assert result.generated_question == "hi"
    # nothing retrieved: the no-answer sentence, and neither the condense nor the answer model ran
    assert result.answer == NO_ANSWER and result.grounded is False and calls == []


# --- history stores -------------------------------------------------------------------------------


def _turn(n: int) -> Turn:
    return Turn(
        question=f"q{n}", answer=f"a{n}", sources=[{"id": f"d{n}", "score": 0.5}], created_at="t", answered_at="u"
    )


def test_sqlite_history_round_trip_and_limit(tmp_path):
    store = SQLiteHistoryStore(tmp_path / "h" / "history.db", ttl_seconds=3600)
    assert store.load("s1") == []
    for n in range(3):
        store.append("s1", _turn(n))
    store.append("s2", _turn(9))
    assert [t.question for t in store.load("s1")] == ["q0", "q1", "q2"]
    assert [t.question for t in store.load("s1", limit=2)] == ["q1", "q2"]
    assert store.load("s1")[0].sources == [{"id": "d0", "score": 0.5}]
    store.clear("s1")
    assert store.load("s1") == [] and len(store.load("s2")) == 1


def test_sqlite_history_unwritable_is_unavailable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = SQLiteHistoryStore(blocker / "sub" / "history.db", ttl_seconds=3600)
    with pytest.raises(HistoryUnavailableError):
        store.append("s", _turn(1))


def test_make_history_store_picks_backend(tmp_path):
    settings = load_settings(tenant_id="tenanta", history_url=f"sqlite:///{tmp_path}/h.db", embeddings_provider="local",
                             llm_provider="extractive")  # fmt: skip
    assert isinstance(make_history_store(settings), SQLiteHistoryStore)


def test_dynamodb_history_appends_one_turn_in_one_update_with_ttl():
    resource = boto3.resource("dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    table = resource.Table("chathistory")
    stub = Stubber(resource.meta.client)
    stub.add_response(
        "update_item",
        {"Attributes": {"Turns": {"L": [{"M": {"question": {"S": "q1"}}}]}}},
        expected_params={
            "TableName": "chathistory",
            "Key": {"SessionId": "s1"},
            "UpdateExpression": ANY,
            "ExpressionAttributeValues": ANY,
            "ReturnValues": "UPDATED_NEW",
        },
    )
    stub.add_client_error("get_item", service_error_code="ProvisionedThroughputExceededException", http_status_code=400)
    with stub:
        store = DynamoDBHistoryStore(table, ttl_seconds=60)
        store.append("s1", _turn(1))
        with pytest.raises(HistoryUnavailableError):
            store.load("s1")
    stub.assert_no_pending_responses()

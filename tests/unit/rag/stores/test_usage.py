"""Token usage and estimated cost: price table, Bedrock's usage fields, the usage endpoint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from langchain_aws import ChatBedrockConverse
from langchain_core.messages import AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk

from rag.settings import SettingsError, load_settings
from rag.stores.usage import DEFAULT_PRICES, PriceTable, SQLiteUsageStore, UsageRecord, summarize
from tests.unit.api.fakes import SESSION, ScriptedChatModel, rag_body

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"


def test_price_table_defaults_override_and_inference_profiles() -> None:
    settings = load_settings(
        tenant_id="tenanta", price_table_json='{"my.model-v1": {"input_per_1k": 0.5, "output_per_1k": 1.0}}'
    )
    prices = PriceTable.from_settings(settings)
    assert prices.cost(HAIKU, 1000, 1000) == pytest.approx(0.00025 + 0.00125)
    assert prices.cost(f"us.{HAIKU}", 2000, 0) == pytest.approx(0.0005)  # inference profile of a listed model
    assert prices.cost("my.model-v1", 500, 100) == pytest.approx(0.25 + 0.1)
    assert prices.cost("unknown.model", 10_000, 10_000) == 0.0
    assert prices.cost("extractive", 10_000, 10_000) == 0.0
    assert HAIKU in DEFAULT_PRICES  # the default TEXT2TEXT_MODEL_ID has a price


@pytest.mark.parametrize(
    "value",
    ["not json", "[1, 2]", '{"m": {"input_per_1k": -1}}', '{"m": {"input": 1}}', '{"m": {"output_per_1k": "x"}}'],
)
def test_bad_price_table_names_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match=r"^PRICE_TABLE_JSON: "):
        load_settings(tenant_id="tenanta", price_table_json=value)


def _record(user: str, at: str, tokens: tuple[int, int], cost: float, model: str = HAIKU, tenant: str = "tenanta"):
    return UsageRecord(tenant, user, f"{tenant}:{user}:s", f"a-{at}", model, *tokens, cost, at)


def test_summarize_totals_and_breakdowns() -> None:
    records = [
        _record("alice@example.com", "2026-11-01T10:00:00.000+00:00", (100, 10), 0.001),
        _record("alice@example.com", "2026-11-02T10:00:00.000+00:00", (200, 20), 0.002),
        _record("bob@example.com", "2026-11-02T11:00:00.000+00:00", (300, 30), 0.003, model="extractive"),
    ]
    lo, hi = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC)
    body = summarize("tenanta", records, lo, hi)
    assert body["totals"] == {
        "requests": 3,
        "ungrounded": 0,
        "input_tokens": 600,
        "output_tokens": 60,
        "total_tokens": 660,
        "estimated_cost_usd": pytest.approx(0.006),
    }
    assert [(u["user"], u["requests"], u["total_tokens"]) for u in body["by_user"]] == [
        ("alice@example.com", 2, 330),
        ("bob@example.com", 1, 330),
    ]
    assert [(d["day"], d["requests"]) for d in body["by_day"]] == [("2026-11-01", 1), ("2026-11-02", 2)]
    assert {m["model_id"] for m in body["by_model"]} == {HAIKU, "extractive"}
    assert "estimate" in body["note"]


def test_sqlite_usage_store_range_and_tenant(tmp_path) -> None:
    store = SQLiteUsageStore(tmp_path / "usage.db", ttl_seconds=86_400)
    store.record(_record("a@x.io", "2026-11-01T00:00:00.000+00:00", (1, 1), 0.1))
    store.record(_record("a@x.io", "2026-11-02T00:00:00.000+00:00", (2, 2), 0.2))
    store.record(_record("b@x.io", "2026-11-01T12:00:00.000+00:00", (3, 3), 0.3, tenant="tenantb"))
    lo = datetime(2026, 11, 1, tzinfo=UTC)
    found = store.query("tenanta", lo, lo + timedelta(days=1))
    assert [(r.user, r.input_tokens) for r in found] == [("a@x.io", 1)]
    assert len(store.query("tenanta", lo, lo + timedelta(days=2))) == 2


def test_ungrounded_answers_are_kept_and_counted(tmp_path) -> None:
    import dataclasses
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:  # a file written before the grounded column existed
        old.execute(
            "CREATE TABLE usage (tenant TEXT NOT NULL, at TEXT NOT NULL, answer_id TEXT NOT NULL, user TEXT NOT NULL, "
            "session_id TEXT NOT NULL, model_id TEXT NOT NULL, input_tokens INTEGER NOT NULL, "
            "output_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL, expires_at INTEGER NOT NULL, "
            "PRIMARY KEY (tenant, at, answer_id))"
        )
        old.execute(
            "INSERT INTO usage VALUES ('tenanta', '2026-11-01T01:00:00.000+00:00', 'old', 'a@x.io', 's', 'm', 1, 1, 0, ?)",
            (2**40,),
        )
    store = SQLiteUsageStore(path, ttl_seconds=86_400)
    refused = dataclasses.replace(_record("a@x.io", "2026-11-01T02:00:00.000+00:00", (0, 0), 0.0), grounded=False)
    store.record(refused)
    lo = datetime(2026, 11, 1, tzinfo=UTC)
    found = store.query("tenanta", lo, lo + timedelta(days=1))
    assert [(r.answer_id, r.grounded) for r in found] == [("old", True), (refused.answer_id, False)]
    assert summarize("tenanta", found, lo, lo + timedelta(days=1))["totals"]["ungrounded"] == 1


class StubbedConverse(ChatBedrockConverse):
    """ChatBedrockConverse whose stream is one Converse call (so botocore's Stubber can answer it)."""

    def _stream(self, messages: list[Any], stop: Any = None, run_manager: Any = None, **kwargs: Any):
        result = self._generate(messages, stop=stop, **kwargs)
        message = result.generations[0].message
        yield ChatGenerationChunk(
            message=AIMessageChunk(content=message.content, usage_metadata=message.usage_metadata)
        )


def converse_response(text: str, input_tokens: int, output_tokens: int) -> dict[str, Any]:
    """The real Converse response shape (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html)."""
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {
            "inputTokens": input_tokens,
            "outputTokens": output_tokens,
            "totalTokens": input_tokens + output_tokens,
        },
        "metrics": {"latencyMs": 321},
    }


def test_bedrock_usage_fields_are_recorded_per_tenant_user_session(ops_client, stores) -> None:
    client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(client)
    stubber.add_response("converse", converse_response("Studio is an IDE [1].", 1234, 56))
    stubber.add_response("converse", converse_response("It is free [1].", 2000, 40))
    stubber.activate()
    model = StubbedConverse(client=client, model=HAIKU, region_name="us-east-1")
    api = ops_client(model, llm_provider="bedrock", aws_default_region="us-east-1")
    first = api.post("/api/v1/llm/rag", json=rag_body()).json()
    assert first["usage"] == {"input_tokens": 1234, "output_tokens": 56, "total_tokens": 1290}
    assert first["model_id"] == HAIKU and first["answer_id"]
    (record,) = stores.usage.records
    assert (record.tenant, record.user, record.session_id) == ("tenanta", "alice@example.com", SESSION)
    assert (record.input_tokens, record.output_tokens, record.model_id) == (1234, 56, HAIKU)
    assert record.answer_id == first["answer_id"]
    assert record.cost_usd == pytest.approx(1.234 * 0.00025 + 0.056 * 0.00125)
    # the follow-up has history: condense + answer calls; the stub answers both
    stubber.add_response("converse", converse_response("What does Studio cost?", 300, 8))
    second = api.post("/api/v1/llm/rag", json=rag_body("and its price?")).json()
    assert second["usage"] == {"input_tokens": 2300, "output_tokens": 48, "total_tokens": 2348}
    stubber.assert_no_pending_responses()
    assert sum(r.input_tokens for r in stores.usage.records) == 1234 + 2300
    metrics = api.get("/metrics").text
    assert f'ragapi_model_tokens_total{{direction="input",model="{HAIKU}",tenant="tenanta"}}' in metrics
    assert "ragapi_estimated_cost_usd_total{" in metrics
    assert "alice@example.com" not in metrics  # never a per-user label


def test_usage_endpoint_totals_breakdown_and_validation(ops_client, stores) -> None:
    api = ops_client(ScriptedChatModel())
    for q in ("What is SageMaker Studio?", "What is EMR?"):
        assert api.post("/api/v1/llm/rag", json=rag_body(q)).status_code == 200
    stores.usage.record(
        _record("eve@example.com", datetime.now(UTC).isoformat(timespec="milliseconds"), (9, 9), 1.0, tenant="tenantb")
    )
    body = api.get("/api/v1/usage").json()
    assert body["tenant"] == "tenanta"
    assert body["totals"]["requests"] == 2
    assert body["totals"]["total_tokens"] == sum(r.input_tokens + r.output_tokens for r in stores.usage.records[:2])
    assert [u["user"] for u in body["by_user"]] == ["alice@example.com"]  # tenantb's record is not visible
    today = datetime.now(UTC).date()
    assert [d["day"] for d in body["by_day"]] == [today.isoformat()]
    ranged = api.get("/api/v1/usage", params={"from": today.isoformat(), "to": today.isoformat()}).json()
    assert ranged["totals"]["requests"] == 2  # a date "to" includes that day
    assert api.get("/api/v1/usage", params={"from": "2020-01-01", "to": "2020-01-02"}).json()["totals"]["requests"] == 0
    for params, fragment in (
        ({"from": "yesterday"}, "from: expected an ISO date"),
        ({"from": "2026-11-10", "to": "2026-11-01"}, "must be before"),
        ({"from": "2026-01-01", "to": "2026-06-01"}, "92 days"),
    ):
        response = api.get("/api/v1/usage", params=params)
        assert response.status_code == 422 and fragment in response.json()["message"], response.text

"""Observability: JSON logs with the request id, the request id in the LLM run, metrics, traces, alerts."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import pytest
import yaml
from langchain_core.tracers.context import collect_runs
from prometheus_client.parser import text_string_to_metric_families

from api.services import answer as answer_service
from rag import logs
from rag.answer import tracing
from rag.answer.chain import astream_chain
from rag.settings import load_settings
from tests.conftest import REPO_ROOT
from tests.support.logcapture import capture_json_logs
from tests.unit.api.fakes import ScriptedChatModel, rag_body

OBSERVABILITY = REPO_ROOT / "manifests" / "observability"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


@pytest.fixture
def captured() -> Any:
    with capture_json_logs() as handler:
        yield handler


def test_json_line_fields_and_secrets_masked() -> None:
    record = logging.LogRecord(
        "api.rag", logging.WARNING, __file__, 1, "token %s and Bearer abc.def.ghi123", (JWT,), None
    )
    record.route, record.status, record.duration_ms = "/api/v1/llm/rag", 503, 12.5
    token = logs.request_id_var.set("req-7")
    try:
        logs.ContextFilter().filter(record)
    finally:
        logs.request_id_var.reset(token)
    line = json.loads(logs.JsonFormatter().format(record))
    assert {"time", "level", "logger", "message", "request_id", "tenant", "route", "status", "duration_ms"} <= set(line)
    assert (line["level"], line["logger"], line["request_id"]) == ("WARNING", "api.rag", "req-7")
    assert (line["route"], line["status"], line["duration_ms"]) == ("/api/v1/llm/rag", 503, 12.5)
    assert JWT not in line["message"] and "abc.def" not in line["message"] and "[redacted]" in line["message"]


def test_one_request_logs_json_with_request_id_route_status_duration(ops_client, captured) -> None:
    api = ops_client(ScriptedChatModel(replies=["SECRET-ANSWER-TEXT"]))
    question = "What is SageMaker Studio? PROMPT-MARKER"
    response = api.post("/api/v1/llm/rag", json=rag_body(question), headers={"X-Request-ID": "turn-123"})
    assert response.status_code == 200 and response.headers["x-request-id"] == "turn-123"
    mine = [line for line in captured.records if line["request_id"] == "turn-123"]
    access = [line for line in mine if line["logger"] == "api.access"]
    assert len(access) == 1
    assert access[0]["route"] == "/api/v1/llm/rag" and access[0]["status"] == 200 and access[0]["method"] == "POST"
    assert access[0]["duration_ms"] > 0 and access[0]["tenant"] == "tenanta"
    answered = [line for line in mine if line["message"].startswith("answered")]
    assert answered and answered[0]["answer_id"] == response.json()["answer_id"]
    text = json.dumps(captured.records)
    assert "PROMPT-MARKER" not in text and "SECRET-ANSWER-TEXT" not in text  # no prompts or answers in logs
    api.get("/healthz")
    assert not [line for line in captured.records if line.get("route") == "/healthz"]  # probes only at DEBUG


def test_request_id_reaches_the_llm_run_metadata(ops_client, monkeypatch) -> None:
    seen: list[dict[str, Any]] = []
    real = answer_service.AnswerTurn._run_config

    def spy(turn: Any) -> Any:
        config = real(turn)
        seen.append(config)
        return config

    monkeypatch.setattr(answer_service.AnswerTurn, "_run_config", spy)
    api = ops_client(ScriptedChatModel())
    api.post("/api/v1/llm/rag/stream", json=rag_body(), headers={"X-Request-ID": "sse-9"})
    assert seen[0]["metadata"]["request_id"] == "sse-9"
    assert seen[0]["metadata"]["tenant"] == "tenanta" and seen[0]["metadata"]["answer_id"]
    assert "tenant:tenanta" in seen[0]["tags"]

    # and LangChain hands it to every run of the chain (tracers such as LangSmith see it)
    chain = api.app.state.rag.chain

    async def run() -> list[Any]:
        with collect_runs() as collector:
            config = {"metadata": {"request_id": "r-42"}, "tags": ["t1"]}
            async for _ in astream_chain(chain, "What is EMR?", [], config=config):
                pass
        return collector.traced_runs

    runs = asyncio.run(run())
    llm_runs = []
    stack = list(runs)
    while stack:
        run = stack.pop()
        stack.extend(run.child_runs)
        if run.run_type == "llm":
            llm_runs.append(run)
    assert llm_runs and all(r.extra["metadata"]["request_id"] == "r-42" for r in llm_runs)
    assert all("t1" in r.tags for r in llm_runs)


def _exported_names(metrics_text: str) -> set[str]:
    names: set[str] = set()
    for family in text_string_to_metric_families(metrics_text):
        names.add(family.name)
        names.update(s.name for s in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def _referenced_names() -> set[str]:
    text = "".join(p.read_text() for p in sorted(OBSERVABILITY.iterdir()))
    return set(re.findall(r"\bragapi_[a-z0-9_]+\b", text))


def test_every_metric_in_the_rules_and_dashboard_is_exported(ops_client) -> None:
    api = ops_client(ScriptedChatModel())
    api.post("/api/v1/llm/rag", json=rag_body())
    exported = _exported_names(api.get("/metrics").text)
    referenced = _referenced_names()
    assert {"ragapi_requests_total", "ragapi_time_to_first_token_seconds_bucket"} <= referenced
    assert {"ragapi_quota_rejections_total", "ragapi_index_reload_failures_total"} <= referenced
    assert referenced - exported == set()


def test_metric_labels_are_bounded(ops_client) -> None:
    api = ops_client(ScriptedChatModel())
    api.post("/api/v1/llm/rag", json=rag_body())
    families = {f.name: f for f in text_string_to_metric_families(api.get("/metrics").text)}
    token_labels = {tuple(sorted(s.labels)) for s in families["ragapi_model_tokens"].samples}
    assert token_labels == {("direction", "model", "tenant")}
    cost = [s for s in families["ragapi_estimated_cost_usd"].samples if s.name.endswith("_total")]
    # the registry is process-wide: other tests may have added series; the keys are what is bounded
    assert {"tenant": "tenanta", "model": "extractive"} in [s.labels for s in cost]
    assert all(set(s.labels) == {"tenant", "model"} for s in cost)
    assert families["ragapi_quota_rejections"].documentation  # exported before the first rejection


def test_alert_rules_and_dashboard_are_well_formed() -> None:
    (rule,) = yaml.safe_load_all((OBSERVABILITY / "prometheusrule-ragapi.yaml").read_text())
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    for name in (
        "RagApiHighErrorRate",
        "RagApiSlowTimeToFirstToken",
        "RagApiTenantQuotaExhausted",
        "RagApiIndexReloadFailures",
    ):
        assert name in alerts
    for alert in alerts.values():
        assert alert["expr"].strip() and alert["labels"]["severity"] in ("critical", "warning", "info")
        assert alert["annotations"]["summary"] and "for" in alert
    dashboard = json.loads((OBSERVABILITY / "grafana-dashboard-ragapi.json").read_text())
    assert dashboard["uid"] == "tenant-rag-ragapi" and len(dashboard["panels"]) >= 8
    assert all(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    assert "estimate" in dashboard["description"]


@pytest.fixture(scope="module")
def span_exporter() -> Any:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def test_spans_for_retrieval_llm_and_history(ops_client, span_exporter) -> None:
    span_exporter.clear()
    api = ops_client(ScriptedChatModel())
    api.post("/api/v1/llm/rag", json=rag_body(), headers={"X-Request-ID": "span-1"})
    api.post("/api/v1/llm/rag", json=rag_body("and the price?"))  # with history: condense + answer
    spans = span_exporter.get_finished_spans()
    names = [s.name for s in spans]
    for name in ("history.load", "rag.chain", "rag.retrieval", "llm.answer", "llm.condense", "history.append"):
        assert name in names, names
    answer = next(s for s in spans if s.name == "llm.answer")
    assert answer.attributes["request_id"] == "span-1" and answer.attributes["output_tokens"] == 3
    for s in spans:  # no prompts, answers or documents in span attributes
        assert all(not isinstance(v, str) or len(v) < 100 for v in s.attributes.values())


def test_tracing_off_without_endpoint_and_otlp_with_it(monkeypatch) -> None:
    assert tracing.setup_tracing(load_settings(tenant_id="tenanta")) is False
    installed: list[Any] = []
    monkeypatch.setattr(tracing._trace, "set_tracer_provider", installed.append)
    settings = load_settings(tenant_id="tenanta", otel_exporter_otlp_endpoint="http://collector:4318")
    assert tracing.setup_tracing(settings) is True
    (provider,) = installed
    assert provider.resource.attributes["service.name"] == "ragapi"
    assert provider.resource.attributes["tenant"] == "tenanta"
    provider.shutdown()

"""The API under schema-driven and hand-picked bad input: never a 5xx, never a hang, clear 4xx JSON.

In-process (ASGI, sockets stay blocked): schemathesis generates requests from the app's own OpenAPI
schema (valid ones, and invalid ones that break the schema), half of them with a real session id
of this tenant so they get past the session check into the chain. The app runs with fake
embeddings, the extractive answerer and an in-memory history.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode

from api.main import create_app
from rag.stores.history import InMemoryHistoryStore
from tests.unit.api.fakes import OTHER_TENANT_SESSION, SESSION, fake_embeddings, make_settings, publish_index

_TMP = Path(tempfile.mkdtemp(prefix="api-fuzz-"))
HISTORY = InMemoryHistoryStore()
APP = create_app(settings=make_settings(_TMP / "index"), embeddings=fake_embeddings(), history=HISTORY)
SCHEMA = schemathesis.openapi.from_dict(APP.openapi())
OPERATIONS = {op.ok().label: op.ok() for op in SCHEMA.get_all_operations()}
FUZZ = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def client():
    publish_index(_TMP / "index")
    with TestClient(APP, raise_server_exceptions=False) as started:
        yield started
    shutil.rmtree(_TMP, ignore_errors=True)


def _assert_clean(response: Any, what: str) -> None:
    assert response.status_code < 500, f"{what} -> {response.status_code}: {response.text[:500]}"
    assert "Traceback" not in response.text
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str), body
        assert body["message"], body


def _with_valid_session(case: Any, use_valid: bool) -> Any:
    if use_valid:
        if isinstance(case.body, dict):
            case.body["user_session_id"] = SESSION
        if case.path_parameters and "session_id" in case.path_parameters:
            case.path_parameters["session_id"] = SESSION
    return case


def _send(client: TestClient, case: Any) -> Any:
    path = case.formatted_path
    kwargs: dict[str, Any] = {"params": case.query or None, "headers": dict(case.headers or {})}
    if case.body is not None and not isinstance(case.body, schemathesis.core.NotSet):
        media = case.media_type or "application/json"
        kwargs["headers"]["content-type"] = media
        if isinstance(case.body, bytes):
            kwargs["content"] = case.body
        elif "json" in media:
            kwargs["content"] = json.dumps(case.body, default=str).encode()
        else:
            kwargs["content"] = str(case.body).encode("utf-8", "surrogatepass")
    return client.request(case.method, path, **kwargs)


_CASES = [
    (label, mode)
    for label, op in OPERATIONS.items()
    for mode in GenerationMode
    # operations without any parameters or body have no invalid variant to generate
    if mode is GenerationMode.POSITIVE or op.path_parameters or op.query or op.body
]


@pytest.mark.parametrize(("label", "mode"), _CASES, ids=[f"{m.value}:{label}" for label, m in _CASES])
def test_schema_driven_requests_never_5xx(client, label: str, mode: GenerationMode) -> None:
    operation = OPERATIONS[label]

    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode), use_valid=st.booleans())
    def run(case: Any, use_valid: bool) -> None:
        case = _with_valid_session(case, use_valid)
        response = _send(client, case)
        _assert_clean(response, f"{case.method} {case.formatted_path} body={str(case.body)[:300]}")

    run()


# -- hand-picked edge cases ----------------------------------------------------------------------

UNICODE_QUESTIONS = {
    "nul": "What is\x00SageMaker?",
    "rtl-override": "\u202eWhat is SageMaker?\u202c",
    "arabic": "ما هو SageMaker؟",
    "emoji-zwj": "👩‍💻 What is SageMaker Studio? 🏳️‍🌈",
    "combining": "Wha\u0301\u0302\u0303t is Sage\u0308Maker?" + "\u0301" * 200,
    "bom-zwsp": "\ufeff\u200bWhat is SageMaker?",
    "astral": "𝔚𝔥𝔞𝔱 𝔦𝔰 SageMaker?",
    "cjk": "SageMakerとは何ですか?",
    "control-chars": "What\x1b[31m is \x07SageMaker\r\n?",
    "max-length-4000": "é" * 4000,
}


@pytest.mark.parametrize("route", ["/api/v1/llm/rag", "/api/v1/llm/rag/stream"])
@pytest.mark.parametrize("name", list(UNICODE_QUESTIONS))
def test_unicode_edge_cases_answer_and_round_trip_history(client, route: str, name: str) -> None:
    question = UNICODE_QUESTIONS[name]
    session = f"tenanta:u@example.com:00000000-0000-4000-8000-{abs(hash((route, name))) % 10**12:012d}"
    response = client.post(route, json={"q": question, "user_session_id": session})
    _assert_clean(response, name)
    assert response.status_code == 200
    if route.endswith("stream"):
        assert "event: done" in response.text
    else:
        assert response.json()["question"] == question
    stored = client.get(f"/api/v1/sessions/{session}/messages").json()["messages"]
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert stored[0]["content"] == question  # stored exactly as asked


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"q": "what \\ud800 is", "user_session_id": "%s"}', "q"),  # lone high surrogate
        (b'{"q": "\\udfff", "user_session_id": "%s"}', "q"),  # lone low surrogate
        (b'{"q": "ok", "user_session_id": "tenanta:a@b.c:\\ud800"}', "user_session_id"),
    ],
)
@pytest.mark.parametrize("route", ["/api/v1/llm/rag", "/api/v1/llm/rag/stream"])
def test_lone_surrogates_are_a_clear_422(client, raw: bytes, field: str, route: str) -> None:
    body = raw.replace(b"%s", SESSION.encode())
    response = client.post(route, content=body, headers={"content-type": "application/json"})
    _assert_clean(response, "surrogate")
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == field


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"q": "", "user_session_id": SESSION}, 422),
        ({"q": "   \n\t ", "user_session_id": SESSION}, 422),
        ({"q": "\u3000\u2003", "user_session_id": SESSION}, 422),  # unicode whitespace only
        ({"q": "x" * 4001, "user_session_id": SESSION}, 422),
        ({"q": "x" * 70_000, "user_session_id": SESSION}, 413),
        ({"q": "ok", "user_session_id": ""}, 422),
        ({"q": "ok", "user_session_id": "tenanta:a@b.c:\x00"}, 422),
        ({"q": "ok", "user_session_id": OTHER_TENANT_SESSION}, 403),
        ({"q": "ok", "user_session_id": SESSION, "max_matching_docs": 10**30}, 422),
        ({"q": "ok", "user_session_id": SESSION, "temperature": "NaN"}, 422),
        ({"q": "ok", "user_session_id": SESSION, "stopSequences": ["x"] * 5}, 422),
        ({"q": ["list"], "user_session_id": SESSION}, 422),
        ({"q": None, "user_session_id": SESSION}, 422),
    ],
    ids=lambda v: str(v)[:40] if not isinstance(v, int) else str(v),
)
def test_empty_huge_and_wrong_typed_questions_are_clear_4xx(client, body: dict, status: int) -> None:
    for route in ("/api/v1/llm/rag", "/api/v1/llm/rag/stream"):
        response = client.post(route, json=body)
        _assert_clean(response, str(body)[:80])
        assert response.status_code == status, response.text


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"null",
        b"[]",
        b'"q"',
        b"\xff\xfe\x00",
        b'{"q": "a", "q": "b", "user_session_id": "x"}',
        b'{"q": 1e999, "user_session_id": "x"}',
        b'{"q": NaN, "user_session_id": "x"}',
        b"[" * 30_000 + b"]" * 30_000,  # deeply nested, under the 64 KiB limit
    ],
    ids=lambda v: repr(v[:20]),
)
def test_malformed_json_bodies_are_clear_4xx(client, raw: bytes) -> None:
    for route in ("/api/v1/llm/rag", "/api/v1/llm/rag/stream"):
        response = client.post(route, content=raw, headers={"content-type": "application/json"})
        _assert_clean(response, repr(raw[:40]))
        assert response.status_code in (400, 422), response.text


@pytest.mark.parametrize(
    "session",
    ["%00", "..%2F..%2Fetc", "a" * 401, "tenanta:%F0%9F%98%80@x.y:1", "%ED%A0%80", "tenanta%3Aa%40b.c%3A%00"],
)
def test_malformed_session_path_is_clear_4xx(client, session: str) -> None:
    for method in ("GET", "DELETE"):
        response = client.request(method, f"/api/v1/sessions/{session}/messages")
        _assert_clean(response, session)
        assert 400 <= response.status_code < 500

"""Routes the web chat's conversations need: regenerate (one turn kept), history per conversation,
presigned document links for the tenant's own bucket, and ``/docs`` served with local assets."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import boto3

from rag.contract import DOCUMENT_LINK_PATH, DOCUMENT_LINK_SECONDS
from tests.unit.api.fakes import OTHER_TENANT_SESSION, SESSION, ScriptedChatModel, parse_sse, rag_body

OTHER_CONVERSATION = "tenanta:alice@example.com:7f1c7c2e-1d2b-4f7e-9a55-0a4f5b8a9d12"
BOB_CONVERSATION = "tenanta:bob@example.com:8f1c7c2e-1d2b-4f7e-9a55-0a4f5b8a9d13"


def messages(client, session: str = SESSION) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in client.get(f"/api/v1/sessions/{session}/messages").json()["messages"]]


def test_regenerate_replaces_the_last_turn(make_client):
    model = ScriptedChatModel(replies=["First answer.", "cond", "Second answer.", "cond", "Second, again."])
    client = make_client(model)
    client.post("/api/v1/llm/rag", json=rag_body("What is Amazon EMR?"))
    client.post("/api/v1/llm/rag", json=rag_body("Does it support Presto?"))
    response = client.post("/api/v1/llm/rag", json=rag_body("Does it support Presto?", regenerate=True))
    assert response.status_code == 200, response.text
    assert response.json()["answer"] == "Second, again."
    assert messages(client) == [
        ("user", "What is Amazon EMR?"),
        ("assistant", "First answer."),
        ("user", "Does it support Presto?"),
        ("assistant", "Second, again."),
    ]  # still two turns: the regenerated answer replaced the old one


def test_regenerate_over_sse_keeps_one_turn_and_a_new_answer_id(make_client):
    client = make_client(ScriptedChatModel(replies=["One.", "Two."]))
    first = parse_sse(client.post("/api/v1/llm/rag/stream", json=rag_body("What is Amazon EMR?")).text)
    again = parse_sse(client.post("/api/v1/llm/rag/stream", json=rag_body("What is Amazon EMR?", regenerate=True)).text)
    first_done, again_done = first[-1], again[-1]
    assert (first_done[0], again_done[0]) == ("done", "done")
    assert first_done[1]["answer_id"] != again_done[1]["answer_id"]
    body = client.get(f"/api/v1/sessions/{SESSION}/messages").json()
    assert [(m["role"], m["content"]) for m in body["messages"]] == [
        ("user", "What is Amazon EMR?"),
        ("assistant", "Two."),
    ]
    assert body["messages"][1]["answer_id"] == again_done[1]["answer_id"]


def test_regenerate_of_something_else_is_refused(make_client):
    client = make_client(ScriptedChatModel(replies=["One."]))
    empty = client.post("/api/v1/llm/rag", json=rag_body("What is Amazon EMR?", regenerate=True))
    assert empty.status_code == 409 and empty.json()["error"] == "nothing_to_regenerate"
    client.post("/api/v1/llm/rag", json=rag_body("What is Amazon EMR?"))
    other = client.post("/api/v1/llm/rag", json=rag_body("Something I never asked", regenerate=True))
    assert other.status_code == 409 and other.json()["error"] == "nothing_to_regenerate"
    assert messages(client) == [("user", "What is Amazon EMR?"), ("assistant", "One.")]  # untouched


def test_deleting_one_conversation_keeps_the_users_others(make_client):
    client = make_client(ScriptedChatModel(replies=["A.", "B.", "C."]))
    client.post("/api/v1/llm/rag", json=rag_body("What is Amazon EMR?"))
    client.post("/api/v1/llm/rag", json={**rag_body("What is SageMaker?"), "user_session_id": OTHER_CONVERSATION})
    client.post("/api/v1/llm/rag", json={**rag_body("Bob asks"), "user_session_id": BOB_CONVERSATION})
    deleted = client.delete(f"/api/v1/sessions/{SESSION}/messages")
    assert deleted.status_code == 204
    assert messages(client) == []
    assert [c for _, c in messages(client, OTHER_CONVERSATION)] == ["What is SageMaker?", "B."]
    assert [c for _, c in messages(client, BOB_CONVERSATION)] == ["Bob asks", "C."]


def test_another_tenants_conversation_is_refused(make_client):
    client = make_client(ScriptedChatModel())
    for method in ("get", "delete"):
        response = getattr(client, method)(f"/api/v1/sessions/{OTHER_TENANT_SESSION}/messages")
        assert response.status_code == 403
        assert response.json() == {"error": "forbidden", "message": "this session belongs to another tenant"}


def _s3():
    return boto3.client("s3", region_name="us-east-1", aws_access_key_id="AKIATEST", aws_secret_access_key="secret")


def test_document_link_is_presigned_for_the_tenants_bucket_only(make_client):
    client = make_client(ScriptedChatModel(), contextual_data_bucket="tenanta-data")
    client.app.state.document_s3 = _s3()
    ok = client.get(DOCUMENT_LINK_PATH, params={"source": "s3://tenanta-data/documents/guide.pdf"})
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["expires_in"] == DOCUMENT_LINK_SECONDS
    url = urlsplit(body["url"])
    assert url.scheme == "https" and "tenanta-data" in url.netloc + url.path and url.path.endswith("guide.pdf")
    query = parse_qs(url.query)
    assert query.get("Expires") or query.get("X-Amz-Expires")  # signed with an expiry
    assert "Signature" in url.query
    for source, status, code in [
        ("s3://tenantb-data/documents/guide.pdf", 403, "forbidden"),
        ("s3://tenanta-data-evil/documents/guide.pdf", 403, "forbidden"),
        ("https://tenanta-data.s3.amazonaws.com/x", 422, "validation_error"),
        ("s3://tenanta-data/", 422, "validation_error"),
        ("s3://tenanta-data/documents/../faiss_index/x", 422, "validation_error"),
    ]:
        refused = client.get(DOCUMENT_LINK_PATH, params={"source": source})
        assert (refused.status_code, refused.json()["error"]) == (status, code), source


def test_document_link_without_a_bucket_is_refused(make_client):
    client = make_client(ScriptedChatModel())
    client.app.state.document_s3 = _s3()
    refused = client.get(DOCUMENT_LINK_PATH, params={"source": "s3://tenanta-data/documents/guide.pdf"})
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"


def test_docs_pages_use_only_local_assets(make_client):
    client = make_client(ScriptedChatModel())
    for page in ("/docs", "/redoc"):
        response = client.get(page)
        assert response.status_code == 200
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", response.text)
        assert urls and all(u.startswith("/docs-assets/") for u in urls), urls
        assert "cdn." not in response.text and "fonts.googleapis" not in response.text
        for url in urls:
            asset = client.get(url)
            assert asset.status_code == 200 and len(asset.content) > 1000, url
    assert '"validatorUrl": null' in client.get("/docs").text  # no call to validator.swagger.io


def test_history_messages_carry_the_latest_rating(make_client):
    client = make_client(ScriptedChatModel(replies=["One.", "cond", "Two."]))
    client.post("/api/v1/llm/rag", json=rag_body("What is Amazon EMR?"))
    client.post("/api/v1/llm/rag", json=rag_body("Does it support Presto?"))
    first, second = [
        m for m in client.get(f"/api/v1/sessions/{SESSION}/messages").json()["messages"] if m.get("answer_id")
    ]
    assert "feedback" not in first and "feedback" not in second
    for rating in ("up", "down"):  # changed: the latest rating is shown
        sent = client.post(
            "/api/v1/feedback", json={"session_id": SESSION, "answer_id": first["answer_id"], "rating": rating}
        )
        assert sent.status_code == 201, sent.text
    rated = [m for m in client.get(f"/api/v1/sessions/{SESSION}/messages").json()["messages"] if m.get("answer_id")]
    assert [m.get("feedback") for m in rated] == ["down", None]

"""One chat turn, web chat → API: the same request id appears in the JSON logs of both services."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from api.main import create_app
from tests.conftest import REPO_ROOT
from tests.integration.api.conftest import ThreadedServer
from tests.integration.conftest import artifacts_dir
from tests.support.logcapture import capture_json_logs
from tests.unit.api.fakes import ScriptedChatModel, fake_embeddings, make_settings, publish_index


@pytest.fixture
def json_logs():
    with capture_json_logs() as handler:
        yield handler


def test_request_id_in_both_services_logs_for_one_chat_turn(tmp_path: Path, monkeypatch, json_logs) -> None:
    publish_index(tmp_path / "index")
    app = create_app(
        settings=make_settings(tmp_path / "index"),
        embeddings=fake_embeddings(),
        chat_model=ScriptedChatModel(replies=["Studio is a web IDE [1]."]),
    )
    server = ThreadedServer(app).start()
    try:
        for name, value in {
            "TENANT_ID": "tenanta",
            "AUTH_MODE": "dev",
            "DEV_USER_EMAIL": "alice@example.com",
            "SESSIONS_URL": f"sqlite:///{tmp_path / 'sessions.db'}",
            "RAG_API_URL": server.url,
            "EMBEDDINGS_PROVIDER": "local",
            "LLM_PROVIDER": "extractive",
        }.items():
            monkeypatch.setenv(name, value)
        at = AppTest.from_file(str(REPO_ROOT / "webapp" / "app.py"), default_timeout=60).run()
        at.chat_input[0].set_value("What is SageMaker Studio?").run()
        assert not at.exception
        assert "Studio is a web IDE" in " ".join(md.value for md in at.chat_message[1].markdown)
    finally:
        server.stop()
    lines = [json.loads(line) for line in json_logs.lines]
    (artifacts_dir() / "ops-request-id-logs.jsonl").write_text("\n".join(json_logs.lines) + "\n")
    (webapp_line,) = [x for x in lines if x["logger"] == "webapp.ui" and x["message"].startswith("answer received")]
    request_id = webapp_line["request_id"]
    assert len(request_id) == 32 and webapp_line["tenant"] == "tenanta" and webapp_line["answer_id"]
    api_lines = [x for x in lines if x["logger"].startswith("api.") and x["request_id"] == request_id]
    access = [x for x in api_lines if x["logger"] == "api.access"]
    assert access and access[0]["route"] == "/api/v1/llm/rag/stream" and access[0]["status"] == 200
    answered = [x for x in api_lines if x["message"].startswith("answered")]
    assert answered and answered[0]["answer_id"] == webapp_line["answer_id"]

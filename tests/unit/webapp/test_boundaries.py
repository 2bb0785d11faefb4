"""The web chat stays thin: HTTP to the API, and only settings/tenant/aws/logs helpers from the core."""

from __future__ import annotations

import ast

import pytest

from tests.conftest import REPO_ROOT

WEBAPP = sorted((REPO_ROOT / "webapp").glob("*.py"))
ALLOWED_CORE = {
    "rag.settings",
    "rag.tenant",
    "rag.aws",
    "rag.logs",
    "rag.contract",
    "rag.identity",
    "rag.documents.contract",
}
FORBIDDEN = ("langchain", "langchain_core", "langchain_aws", "langchain_community", "faiss", "api", "ingest")


def imported_modules(path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", WEBAPP, ids=lambda p: p.name)
def test_webapp_imports(path):
    modules = imported_modules(path)
    assert not {m for m in modules if m.split(".")[0] in FORBIDDEN}
    assert {m for m in modules if m.split(".")[0] == "rag" and not m.startswith("rag.stores")} <= ALLOWED_CORE
    if path.name != "sessions.py":
        assert "boto3" not in modules


def test_cache_resource_only_for_the_dynamodb_client():
    uses = [p.name for p in WEBAPP if "cache_resource" in p.read_text()]
    assert uses == ["ui.py"]
    assert (REPO_ROOT / "webapp" / "ui.py").read_text().count("@st.cache_resource") == 1

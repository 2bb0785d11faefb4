"""Tenant admins manage documents from the web chat: the demo stack with AUTH_MODE=oidc in Chromium.

One tenant (``tenanta``), the local test issuer (alice: admin, carol: member), the real Envoy
gateway, gunicorn RAG API and Streamlit web chat of ``devstack.stack.DemoStack``. The admin uploads
a PDF and a Markdown file, re-indexes, gets an answer citing the PDF's page, deletes the PDF,
re-indexes, and the answer no longer cites it. The member never sees the page and gets 403 from
every endpoint, forged group headers or not. Bad uploads are refused with their reasons and
change nothing on disk. The ``rag`` CLI talks to the same running API and index.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from devstack.stack import DemoStack
from tests.conftest import REPO_ROOT
from tests.integration.webapp.browser import CHAT_INPUT, ask, running_browser, screenshot, sources
from tests.support.pdf import make_pdf

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]  # a loaded 2-core machine: the stack takes minutes

TENANT = "tenanta"
PDF_NAME = "zorblax-guide.pdf"
MD_NAME = "zorblax-care.md"
QUESTION = "How long does the Zorblax 9 battery take to charge?"
PDF = make_pdf(
    [
        "Zorblax 9 user guide\nWelcome to your new Zorblax 9 robot vacuum.",
        "Battery and charging\nThe Zorblax 9 battery charges fully in 42 minutes with the supplied adapter.",
    ],
    title="Zorblax 9 user guide",
)
MARKDOWN = b"# Zorblax care\n\nEmpty the Zorblax 9 dust bin after every run and clean the brushes weekly.\n"
TIMEOUT_MS = 60_000
MAX_FILE_BYTES = 1_000_000


def _free_base_port() -> int:
    """A base port p with p (web), p+100 (API) and p+200 (gateway) free on 127.0.0.1."""
    for base in range(41000, 52000, 233):
        busy = False
        for port in (base, base + 100, base + 200):
            with socket.socket() as s:
                busy = busy or s.connect_ex(("127.0.0.1", port)) == 0
        if not busy:
            return base
    raise RuntimeError("no free ports")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    # a 1 MB file limit: the over-limit upload stays small enough to hand to the browser quickly
    env = {"AUTH_MODE": "oidc", "EMBEDDINGS_PROVIDER": "local", "LLM_PROVIDER": "extractive",
           "INDEX_POLL_SECONDS": "60", "UPLOAD_MAX_FILE_BYTES": str(MAX_FILE_BYTES)}  # fmt: skip
    workdir = tmp_path_factory.mktemp("documents-demo")
    with DemoStack(workdir=workdir, tenants=(TENANT,), base_port=_free_base_port(), env=env, auth_mode="oidc") as s:
        yield s


@pytest.fixture(scope="module")
def browser(stack: DemoStack) -> Iterator[Browser]:
    with running_browser() as b:
        yield b


def documents_dir(stack: DemoStack) -> Path:
    return stack.workdir / TENANT / "documents"


def snapshot(directory: Path) -> list[tuple[str, int]]:
    return sorted((p.name, p.stat().st_mtime_ns) for p in directory.iterdir())


def api(stack: DemoStack) -> str:
    return stack.endpoints[TENANT].api_url


def sign_in(browser: Browser, stack: DemoStack, user: str) -> Page:
    page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
    page.goto(stack.gateway_url(TENANT) + "/")
    page.get_by_text(f"Sign in as {user}").click()
    page.locator(CHAT_INPUT).wait_for(timeout=TIMEOUT_MS)
    return page


def open_documents(page: Page) -> None:
    page.locator('[data-testid="stSidebar"]').get_by_text("Documents", exact=True).click()
    expect(page.locator("h1").filter(has_text="Documents")).to_be_visible(timeout=TIMEOUT_MS)


def open_chat_view(page: Page) -> None:
    page.locator('[data-testid="stSidebar"]').get_by_text("Chat", exact=True).click()
    page.locator(CHAT_INPUT).wait_for(timeout=TIMEOUT_MS)


def upload(page: Page, files: list[tuple[str, str, bytes]]) -> None:
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        [{"name": name, "mimeType": mime, "buffer": data} for name, mime, data in files], timeout=TIMEOUT_MS
    )
    for name, _, _ in files:  # each selected file is listed with its own remove button
        expect(page.get_by_role("button", name=f"Remove {name}", exact=True)).to_be_visible(timeout=TIMEOUT_MS)
    page.get_by_role("button", name="Upload selected files", exact=True).click()


def latest(stack: DemoStack, token: str) -> dict:
    response = httpx.get(f"{api(stack)}/api/v1/ingestions/latest", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return response.json()


def reindex_and_wait(page: Page, stack: DemoStack, token: str) -> dict:
    """Click "Re-index now" and wait (API status, then the page) until the new run succeeded."""
    before = latest(stack, token)["run_id"]
    page.get_by_role("button", name="Re-index now").click()
    deadline = time.monotonic() + 240
    status = latest(stack, token)
    while time.monotonic() < deadline:
        status = latest(stack, token)
        if status["run_id"] != before and status["state"] in ("succeeded", "failed"):
            break
        time.sleep(1)
    assert status["run_id"] != before and status["state"] == "succeeded", status
    assert status["trigger"] == "web"
    expect(page.get_by_text("Last re-indexing succeeded")).to_be_visible(timeout=TIMEOUT_MS)
    return status


#: Columns of the documents table (``webapp.documents_page``), in order.
COLUMNS = ("Name", "Size", "Last modified", "Chunks in index", "Skipped")


def expect_cell(page: Page, name: str, column: str, text: str) -> None:
    """Wait until the row of ``name`` shows ``text`` in ``column`` (the page re-renders after a run)."""
    row = page.locator('[data-testid="stTable"] tr').filter(has_text=name)
    expect(row).to_have_count(1, timeout=TIMEOUT_MS)
    expect(row.locator("td").nth(COLUMNS.index(column))).to_contain_text(text, timeout=TIMEOUT_MS)


def test_admin_uploads_reindexes_asks_deletes(stack: DemoStack, browser: Browser) -> None:
    token = stack.issuer.mint_for("alice")
    docs = documents_dir(stack)
    # an operator-copied CSV that is not UTF-8: the ingestion skips it and the page says why
    (docs / "legacy.csv").write_bytes(b"name,city\nJos\xe9,M\xfcnchen\n")
    page = sign_in(browser, stack, "alice")
    open_documents(page)
    upload(page, [(PDF_NAME, "application/pdf", PDF), (MD_NAME, "text/markdown", MARKDOWN)])
    expect(page.get_by_text(f"{PDF_NAME} uploaded")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_text(f"{MD_NAME} uploaded")).to_be_visible()
    assert (docs / PDF_NAME).read_bytes() == PDF and (docs / MD_NAME).read_bytes() == MARKDOWN

    status = reindex_and_wait(page, stack, token)
    assert status["counts"]["embedded_chunks"] >= 3  # the PDF's two pages and the Markdown file
    expect(page.get_by_text(f"Index version: {status['version']}")).to_be_visible(timeout=TIMEOUT_MS)
    expect_cell(page, PDF_NAME, "Chunks in index", "2")  # in the served index: one chunk per page
    expect_cell(page, MD_NAME, "Chunks in index", "1")
    expect_cell(page, "legacy.csv", "Skipped", "not valid UTF-8 (byte 13)")
    screenshot(page, "documents-page")

    open_chat_view(page)
    answer = ask(page, QUESTION, timeout=90)
    assert "42 minutes" in answer
    cited = sources(page)
    assert any(PDF_NAME in line and "page 1" in line for line in cited), cited

    # the CLI against the running API and the same index
    cli_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TENANT_ID": TENANT, "HF_HUB_OFFLINE": "1"}
    asked = subprocess.run(
        [sys.executable, "-m", "cli", "ask", "--tenant", TENANT, "--api-url", api(stack), "--json", QUESTION],
        capture_output=True, text=True, env=cli_env, cwd=REPO_ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    assert any(s["source"].endswith(PDF_NAME) and s["page"] == 1 for s in json.loads(asked.stdout)["sources"])
    shown = subprocess.run(
        [sys.executable, "-m", "cli", "status", "--tenant", TENANT, "--index-uri", str(stack.workdir / TENANT / "index"),
         "--json"],
        capture_output=True, text=True, env=cli_env, cwd=REPO_ROOT, timeout=60, check=False,
    )  # fmt: skip
    report = json.loads(shown.stdout)
    assert shown.returncode == 0 and report["version"] == status["version"]
    assert report["last_ingestion"]["trigger"] == "web" and report["last_ingestion"]["run_id"] == status["run_id"]

    # delete the PDF (with confirmation), re-index: the same question no longer cites it
    open_documents(page)
    page.locator('[data-testid="stSelectbox"]').click()
    page.get_by_role("option", name=PDF_NAME).click()
    page.get_by_role("button", name="Delete", exact=True).click()
    expect(page.get_by_text(f"Delete {PDF_NAME}?")).to_be_visible()
    assert (docs / PDF_NAME).exists()  # not before the confirmation
    page.get_by_role("button", name=f"Yes, delete {PDF_NAME}").click()
    expect(page.get_by_text(f"{PDF_NAME} deleted")).to_be_visible(timeout=TIMEOUT_MS)
    assert not (docs / PDF_NAME).exists()
    status = reindex_and_wait(page, stack, token)
    assert status["counts"]["removed_sources"] == 1
    expect(page.get_by_text(f"Index version: {status['version']}")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.locator('[data-testid="stTable"] tr').filter(has_text=PDF_NAME)).to_have_count(0)

    open_chat_view(page)
    ask(page, QUESTION, timeout=90)
    assert not [line for line in sources(page) if PDF_NAME in line], sources(page)


def test_bad_uploads_are_refused_with_reasons_and_change_nothing(stack: DemoStack, browser: Browser) -> None:
    docs = documents_dir(stack)
    before = snapshot(docs)
    page = sign_in(browser, stack, "alice")
    open_documents(page)
    upload(
        page,
        [
            ("empty.md", "text/markdown", b""),
            ("notes.pdf", "application/pdf", b"this is only text, named like a PDF\n"),
            ("tool.exe", "application/octet-stream", b"MZ\x90\x00\x03"),
            ("latin1.csv", "text/csv", b"name,city\nJos\xe9,M\xfcnchen\n"),
            ("huge.txt", "text/plain", b"a" * (MAX_FILE_BYTES + 1)),
        ],
    )
    for message in (
        "empty.md: the file is empty.",
        "notes.pdf: not a PDF (no %PDF- header)",
        "tool.exe: the type .exe is not supported",
        "latin1.csv: not valid UTF-8 (byte 13).",
        f"over the {MAX_FILE_BYTES} byte limit",
    ):
        expect(page.get_by_text(message)).to_be_visible(timeout=TIMEOUT_MS)
    token = stack.issuer.mint_for("alice")
    for name in ("..%2Fx.pdf", "a%2Fb.md"):
        response = httpx.put(f"{api(stack)}/api/v1/documents/{name}", content=PDF,
                             headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert response.status_code == 422 and response.json()["error"] == "invalid_name", response.text
        assert "folder part" in response.json()["message"]
    assert snapshot(docs) == before
    assert not (docs.parent / "x.pdf").exists() and not (docs / "a").exists()


ENDPOINTS = [
    ("GET", "/api/v1/documents"),
    ("PUT", f"/api/v1/documents/{MD_NAME}"),
    ("DELETE", f"/api/v1/documents/{MD_NAME}"),
    ("POST", "/api/v1/ingestions"),
    ("GET", "/api/v1/ingestions/latest"),
]


def test_member_has_no_documents_page_and_every_endpoint_refuses(stack: DemoStack, browser: Browser) -> None:
    page = sign_in(browser, stack, "carol")
    expect(page.locator(CHAT_INPUT)).to_be_visible()
    assert page.get_by_text("Documents", exact=True).count() == 0
    assert page.locator('[data-testid="stSidebar"]').get_by_text("View").count() == 0
    screenshot(page, "documents-member-chat")
    carol = stack.issuer.mint_for("carol")
    forged = {"X-Auth-Request-Groups": "admins", "X-Cognito-Groups": "admins", "X-Amzn-Oidc-Groups": "admins"}
    before = snapshot(documents_dir(stack))
    for method, path in ENDPOINTS:
        for headers, code in (
            ({"Authorization": f"Bearer {carol}"}, "not_admin"),
            ({"Authorization": f"Bearer {carol}", **forged}, "not_admin"),
            (forged, "admin_token_missing"),
        ):
            response = httpx.request(method, api(stack) + path, headers=headers, content=b"# overwritten?\n")
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["error"] == code
    assert snapshot(documents_dir(stack)) == before

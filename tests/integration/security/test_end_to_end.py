"""Tenant isolation end to end: the demo stack in oidc mode (test issuer, Envoy, web chats, RAG APIs).

Starts ``devstack.stack.DemoStack(auth_mode="oidc")`` once (ingestion + gunicorn + Streamlit per
tenant, ~1-2 min) and attacks it through the gateway, around the gateway (straight to the web chat)
and at the RAG API.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page

from tests.conftest import EVAL_DIR
from tests.integration.webapp.browser import CHAT_INPUT, ask, running_browser, screenshot, sources

ALICE = "alice@tenanta.example.com"
BOB = "bob@tenantb.example.com"
CORPUS = {"tenanta": "Amazon_SageMaker_FAQs.csv", "tenantb": "Amazon_EMR_FAQs.csv"}
PAGE_TIMEOUT_MS = 30_000


def session_id(tenant: str, subject: str) -> str:
    """A session id as the web chat builds it: ``<tenant>:<subject>:<uuid>`` (any subject-shaped text)."""
    return f"{tenant}:{subject.replace('@', '.')}:{uuid.uuid4()}"


@pytest.fixture(scope="module")
def browser(oidc_stack) -> Iterator[Browser]:
    with running_browser() as b:
        yield b


def sign_in(browser: Browser, stack, user: str, tenant: str) -> Page:
    """A fresh browser context signed in as ``user`` through ``tenant``'s gateway host."""
    page = browser.new_context().new_page()
    page.goto(stack.gateway_url(tenant) + "/")  # no cookie: the gateway sends the browser to sign in
    assert page.url.endswith("/oauth2/login"), page.url
    page.get_by_text(f"Sign in as {user}").click()
    return page


#: Browsers refuse a cookie over 4096 bytes; longer crafted tokens go in the Authorization header.
MAX_COOKIE_TOKEN_CHARS = 3800


def open_with_token(browser: Browser, stack, tenant: str, token: str) -> Page:
    """A fresh browser context carrying ``token`` (a crafted, validly signed token) as its
    ``id_token`` cookie (or, when too long for a cookie, as ``Authorization: Bearer``), opened on
    ``tenant``'s gateway host: the gateway and the web chat check it for real."""
    if len(token) > MAX_COOKIE_TOKEN_CHARS:
        context = browser.new_context(extra_http_headers={"authorization": f"Bearer {token}"})
    else:
        context = browser.new_context()
        context.add_cookies([{"name": "id_token", "value": token, "domain": f"{tenant}.localhost", "path": "/"}])
    page = context.new_page()
    page.goto(stack.gateway_url(tenant) + "/")
    return page


def refusal_shown(page: Page) -> str:
    """``"<title>: <message>"`` of the web chat's refusal page, or ``"chat"``."""
    title = shown_title(page)
    if title == "chat":
        return title
    message = page.locator('[data-testid="stAlertContentError"]').first.inner_text().strip()
    return f"{title}: {message}"


def user_messages(page: Page) -> int:
    return page.locator('[data-testid="stChatMessage"]').count()


def shown_title(page: Page) -> str:
    """Which page the web chat shows: the chat (input box) or the title of its denial page."""
    denial = page.locator("h1").filter(has_text="Not signed in").or_(page.locator("h1").filter(has_text="Not allowed"))
    denial = denial.or_(page.locator("h1").filter(has_text="Sign-in expired")).or_(page.locator(CHAT_INPUT))
    denial.first.wait_for(timeout=PAGE_TIMEOUT_MS)
    if page.locator(CHAT_INPUT).count():
        return "chat"
    return page.locator("h1").first.inner_text().strip()


# --------------------------------------------------------------------------- browser, through the gateway
def test_sign_in_and_chat_through_gateway(oidc_stack, browser: Browser, attempts) -> None:
    page = sign_in(browser, oidc_stack, "alice", "tenanta")
    assert attempts.record(
        "gateway + web chat (browser)", "alice signs in on tenanta host, asks a question", "chat", shown_title(page)
    )
    assert ALICE in page.inner_text("body")
    ask(page, "What is Amazon SageMaker?", timeout=90)
    cited = sources(page)
    screenshot(page, "security-alice-tenanta")
    assert cited and all(CORPUS["tenanta"] in s for s in cited), cited
    page.context.close()


def test_cookie_of_one_tenant_refused_on_other_host(oidc_stack, browser: Browser, attempts) -> None:
    page = sign_in(browser, oidc_stack, "alice", "tenanta")
    assert shown_title(page) == "chat"
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "id_token"]
    assert cookie["domain"] == "tenanta.localhost" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # the cookie is host-only; an attacker who copies it to tenantb's host is refused by the gateway
    page.context.add_cookies([{**cookie, "domain": "tenantb.localhost"}])
    response = page.goto(oidc_stack.gateway_url("tenantb") + "/")
    assert attempts.record(
        "gateway + web chat (browser)", "alice's sign-in cookie replayed on tenantb host", 403, response.status
    )
    page.context.close()


def test_forged_headers_via_gateway_never_reach_web_chat(oidc_stack, browser: Browser, attempts) -> None:
    """The web chat refuses an e-mail header that disagrees with the token: the chat loading with
    alice's address proves the forged header was removed by the gateway."""
    context = browser.new_context(
        extra_http_headers={"x-auth-request-email": BOB, "x-auth-request-tenantid": "tenantb"}
    )
    page = context.new_page()
    page.goto(oidc_stack.gateway_url("tenanta") + "/")
    page.get_by_text("Sign in as alice").click()
    title = shown_title(page)
    body = page.inner_text("body")
    actual = f"{title}, signed in as {ALICE}" if title == "chat" and ALICE in body and BOB not in body else title
    assert attempts.record(
        "gateway + web chat (browser)",
        "alice signed in + forged x-auth-request-email/tenantid (bob, tenantb)",
        f"chat, signed in as {ALICE}",
        actual,
    )
    context.close()


# --------------------------------------------------------------------------- around the gateway
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("forged headers, no token", "Not signed in: No sign-in token was sent with the request."),
        ("forged headers + tenantb's valid token", "Not allowed: Your account does not belong to this tenant."),
        ("forged headers + alg none token", "Not allowed: The sign-in token uses an unsupported algorithm."),
        (
            "forged headers + token signed by another key",
            "Not allowed: The sign-in token is signed with an unknown key.",
        ),
        ("forged headers + expired token", "Sign-in expired: Your sign-in has expired."),
    ],
)
def test_bypassing_gateway_is_refused_by_web_chat(
    oidc_stack, browser: Browser, attempts, case: str, expected: str
) -> None:
    from gateway.issuer import SigningKey

    issuer = oidc_stack.issuer
    good = issuer.mint("tenanta", ALICE)
    payload = good.split(".")[1]
    tokens = {
        "forged headers, no token": None,
        "forged headers + tenantb's valid token": issuer.mint_for("bob"),
        "forged headers + alg none token": "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + payload + ".",
        "forged headers + token signed by another key": issuer.mint("tenanta", ALICE, key=SigningKey()),
        "forged headers + expired token": issuer.mint("tenanta", ALICE, now=int(time.time()) - 7200),
    }
    headers = {"x-auth-request-email": ALICE, "x-auth-request-tenantid": "tenanta"}
    if tokens[case]:
        headers["authorization"] = f"Bearer {tokens[case]}"
    page = browser.new_context(extra_http_headers=headers).new_page()
    page.goto(oidc_stack.endpoints["tenanta"].web_url + "/")
    assert attempts.record("web chat, gateway bypassed (browser)", case, expected, refusal_shown(page))
    page.context.close()


# --------------------------------------------------------------------------- RAG API
def test_rag_with_other_tenants_session_id_is_403(oidc_stack, attempts) -> None:
    api = oidc_stack.endpoints["tenanta"].api_url
    body = {"q": "What is Amazon EMR?", "user_session_id": session_id("tenantb", BOB)}
    response = httpx.post(f"{api}/api/v1/llm/rag", json=body, timeout=60)
    assert attempts.record("RAG API", "tenanta API: POST /llm/rag with a tenantb session id", 403, response.status_code)
    stream = httpx.post(f"{api}/api/v1/llm/rag/stream", json=body, timeout=60)
    assert attempts.record(
        "RAG API", "tenanta API: POST /llm/rag/stream with a tenantb session id", 403, stream.status_code
    )


def test_history_of_other_tenant_not_readable_or_deletable(oidc_stack, attempts) -> None:
    api_a, api_b = oidc_stack.endpoints["tenanta"].api_url, oidc_stack.endpoints["tenantb"].api_url
    sid = session_id("tenantb", BOB)
    created = httpx.post(
        f"{api_b}/api/v1/llm/rag", json={"q": "What is Amazon EMR?", "user_session_id": sid}, timeout=90
    )
    assert created.status_code == 200, created.text
    read = httpx.get(f"{api_a}/api/v1/sessions/{sid}/messages", timeout=30)
    assert attempts.record("RAG API", "tenanta API: GET tenantb session's messages", 403, read.status_code)
    delete = httpx.delete(f"{api_a}/api/v1/sessions/{sid}/messages", timeout=30)
    assert attempts.record("RAG API", "tenanta API: DELETE tenantb session's messages", 403, delete.status_code)
    still = httpx.get(f"{api_b}/api/v1/sessions/{sid}/messages", timeout=30)
    count = len(still.json().get("messages", [])) if still.status_code == 200 else still.status_code
    assert attempts.record(
        "RAG API",
        "tenantb API: its own history after the attempts",
        "200, 2 messages",
        f"{still.status_code}, {count} messages",
    )


def _emr_questions(limit: int = 8) -> list[str]:
    path = EVAL_DIR / "dev_tenantb.jsonl"
    questions = [json.loads(line)["question"] for line in path.read_text().splitlines() if line.strip()]
    return ["What is Amazon EMR?", "How do I resize a running EMR cluster?", *questions[:limit]]


def test_retrieval_never_crosses_tenants(oidc_stack, attempts) -> None:
    api = oidc_stack.endpoints["tenanta"].api_url
    foreign: list[str] = []
    total = 0
    for question in _emr_questions():
        body = {"q": question, "user_session_id": session_id("tenanta", ALICE), "max_matching_docs": 5}
        response = httpx.post(f"{api}/api/v1/llm/rag", json=body, timeout=90)
        assert response.status_code == 200, response.text
        for src in response.json()["sources"]:
            total += 1
            if Path(src["source"]).name != CORPUS["tenanta"]:
                foreign.append(src["source"])
    actual = f"{total} sources, {len(foreign)} not from {CORPUS['tenanta']}"
    assert attempts.record(
        "RAG API",
        f"{len(_emr_questions())} EMR-only questions asked as tenanta",
        f"{total} sources, 0 not from {CORPUS['tenanta']}",
        actual,
    ), foreign
    assert total > 0


def test_oversized_body_rejected_without_hurting_other_tenant(oidc_stack, attempts) -> None:
    api_a, api_b = oidc_stack.endpoints["tenanta"].api_url, oidc_stack.endpoints["tenantb"].api_url
    big = {"q": "x" * 200_000, "user_session_id": session_id("tenanta", ALICE)}
    response = httpx.post(f"{api_a}/api/v1/llm/rag", json=big, timeout=60)
    assert attempts.record("RAG API", "tenanta API: 200 KB request body (limit 64 KiB)", 413, response.status_code)
    ok = httpx.post(
        f"{api_b}/api/v1/llm/rag",
        json={"q": "What is Amazon EMR?", "user_session_id": session_id("tenantb", BOB)},
        timeout=90,
    )
    assert attempts.record("RAG API", "tenantb API right after", 200, ok.status_code)


def test_oversized_headers_at_gateway_without_hurting_other_tenant(oidc_stack, attempts) -> None:
    gw = oidc_stack.gateway
    token_a, token_b = oidc_stack.issuer.mint_for("alice"), oidc_stack.issuer.mint_for("bob")
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        try:
            status: object = client.get(
                "/", headers={"host": "tenanta.localhost", "authorization": f"Bearer {token_a}", "x-pad": "a" * 70_000}
            ).status_code
        except httpx.RemoteProtocolError:
            status = "connection closed"
        assert attempts.record("gateway + web chat", "70 KB request headers on tenanta host", 431, status)
        ok = client.get("/", headers={"host": "tenantb.localhost", "authorization": f"Bearer {token_b}"})
        assert attempts.record("gateway + web chat", "tenantb page right after (bob's token)", 200, ok.status_code)


# --------------------------------------------------------------------------- issue 16 through the real parts
E2E = "gateway + web chat (browser)"
OTHER_SUB = "9a8b7c6d-0000-4000-8000-00000000beef"


def test_unverified_email_of_alice_with_another_subject_is_not_allowed(oidc_stack, browser: Browser, attempts) -> None:
    token = oidc_stack.issuer.mint("tenanta", ALICE, sub=OTHER_SUB, email_verified=False)
    page = open_with_token(browser, oidc_stack, "tenanta", token)
    assert attempts.record(
        E2E,
        "token with alice's e-mail, email_verified false, another sub",
        "Not allowed: The e-mail address of your account is not verified.",
        refusal_shown(page),
    )
    page.context.close()


def test_alices_email_with_another_subject_sees_none_of_her_history(oidc_stack, browser: Browser, attempts) -> None:
    alice = sign_in(browser, oidc_stack, "alice", "tenanta")
    ask(alice, "What is Amazon SageMaker?", timeout=90)
    alice.reload()
    shown_title(alice)
    expect_alice = user_messages(alice)
    alice.context.close()
    assert expect_alice >= 2  # her question and the answer came back from her history
    other = open_with_token(browser, oidc_stack, "tenanta", oidc_stack.issuer.mint("tenanta", ALICE, sub=OTHER_SUB))
    title = shown_title(other)
    actual = f"{title}, {user_messages(other)} messages" if title == "chat" else title
    assert attempts.record(
        E2E, "verified token with alice's e-mail but another sub (alice has history)", "chat, 0 messages", actual
    )
    spaced = open_with_token(browser, oidc_stack, "tenanta", oidc_stack.issuer.mint("tenanta", ALICE + " "))
    assert attempts.record(
        E2E,
        'token with e-mail "alice@tenanta.example.com " (trailing space)',
        "Not allowed: The e-mail address of your account is not allowed.",
        refusal_shown(spaced),
    )
    other.context.close()
    spaced.context.close()


@pytest.mark.parametrize(
    ("label", "email"),
    [("CR/LF", "alice@exa\r\nmple.com"), ("BEL", "alice\x07@tenanta.example.com"), ("2 KB", "x" * 2048 + "@e.com")],
)
def test_unusable_email_gets_not_allowed_page(oidc_stack, browser: Browser, attempts, label: str, email: str) -> None:
    page = open_with_token(browser, oidc_stack, "tenanta", oidc_stack.issuer.mint("tenanta", email))
    assert attempts.record(
        E2E,
        f"validly signed token, e-mail claim with {label}",
        "Not allowed: The e-mail address of your account is not allowed.",
        refusal_shown(page),
    )
    page.context.close()


def test_overlong_or_iat_less_tokens_are_refused(oidc_stack, browser: Browser, attempts) -> None:
    issuer, now = oidc_stack.issuer, int(time.time())
    century = issuer.mint("tenanta", ALICE, exp=now + 100 * 365 * 86400)
    with httpx.Client(base_url=oidc_stack.gateway.url, timeout=30) as client:
        response = client.get("/", headers={"host": "tenanta.localhost", "cookie": f"id_token={century}"})
    assert attempts.record(
        "gateway + web chat",
        "token valid for 100 years, through the gateway",
        "401 Jwt verification fails",
        f"{response.status_code} {response.text.strip()}",
    )
    direct = browser.new_context(extra_http_headers={"authorization": f"Bearer {century}"}).new_page()
    direct.goto(oidc_stack.endpoints["tenanta"].web_url + "/")
    assert attempts.record(
        "web chat, gateway bypassed (browser)",
        "token valid for 100 years",
        "Not allowed: The sign-in token lives longer than this pool allows.",
        refusal_shown(direct),
    )
    direct.context.close()
    # Envoy's max_lifetime lets a token without iat through; the web chat requires iat
    no_iat = open_with_token(browser, oidc_stack, "tenanta", issuer.mint("tenanta", ALICE, iat=None))
    assert attempts.record(
        E2E, "token without iat", "Not allowed: The sign-in token has no 'iat' claim.", refusal_shown(no_iat)
    )
    no_iat.context.close()


def test_upper_case_session_uuid_is_refused_and_lower_case_round_trips(oidc_stack, attempts) -> None:
    api = oidc_stack.endpoints["tenanta"].api_url
    sid = session_id("tenanta", OTHER_SUB)
    upper = sid.rsplit(":", 1)[0] + ":" + sid.rsplit(":", 1)[1].upper()
    refused = httpx.post(
        f"{api}/api/v1/llm/rag", json={"q": "What is Amazon SageMaker?", "user_session_id": upper}, timeout=90
    )
    body = refused.json()
    actual = f"{refused.status_code} {body.get('error')}"  # ErrorBody: {"error": <code>, "message": ...}
    assert attempts.record("RAG API", "POST /llm/rag with an upper-case session UUID", "422 validation_error", actual)
    assert "canonical form" in body["message"]
    for method in ("GET", "DELETE"):
        other = httpx.request(method, f"{api}/api/v1/sessions/{upper}/messages", timeout=30)
        assert attempts.record("RAG API", f"{method} /sessions/<upper-case UUID>/messages", 422, other.status_code)
    saved = httpx.post(
        f"{api}/api/v1/llm/rag", json={"q": "What is Amazon SageMaker?", "user_session_id": sid}, timeout=90
    )
    assert saved.status_code == 200, saved.text
    read = httpx.get(f"{api}/api/v1/sessions/{sid}/messages", timeout=30)
    deleted = httpx.delete(f"{api}/api/v1/sessions/{sid}/messages", timeout=30)
    after = httpx.get(f"{api}/api/v1/sessions/{sid}/messages", timeout=30)
    actual = f"{len(read.json()['messages'])} read, {deleted.status_code}, {len(after.json()['messages'])} left"
    assert attempts.record("RAG API", "canonical session id: saved, read, deleted", "2 read, 204, 0 left", actual)


def test_internal_streamlit_paths_are_404_at_the_gateway(oidc_stack, attempts) -> None:
    token = oidc_stack.issuer.mint_for("alice")
    with httpx.Client(base_url=oidc_stack.gateway.url, timeout=30) as client:
        for path in ("/_stcore/metrics", "/_stcore/script-health-check", "/_stcore/agent/openapi.json"):
            response = client.get(path, headers={"host": "tenanta.localhost", "cookie": f"id_token={token}"})
            actual = f"{response.status_code} {response.text.strip()}"
            assert attempts.record("gateway + web chat", f"alice signed in, GET {path}", "404 not found", actual)


def _upgrade(port: int, host: str, token: str, origin: str, pad: int = 0) -> str:
    """A raw websocket upgrade of /_stcore/stream; returns the status line (or "no answer" in 15 s)."""
    import base64
    import os
    import socket

    lines = [
        "GET /_stcore/stream HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: streamlit",
        f"Origin: {origin}",
        f"Cookie: id_token={token}",
    ]
    if pad:
        lines.append("X-Pad: " + "a" * pad)
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            data = sock.recv(4096)
        except TimeoutError:
            return "no answer"
    return data.split(b"\r\n", 1)[0].decode() if data else "closed"


def test_websocket_origin_and_big_header_through_the_gateway(oidc_stack, attempts) -> None:
    port, token = oidc_stack.gateway.port, oidc_stack.issuer.mint_for("alice")
    own = oidc_stack.gateway_url("tenanta")
    host = f"tenanta.localhost:{port}"
    cases = [
        ("the tenant's Origin", own, 0, "HTTP/1.1 101 Switching Protocols"),
        ("Origin http://localhost:9999", "http://localhost:9999", 0, "HTTP/1.1 403 Forbidden"),
        ("Origin of tenantb's page", oidc_stack.gateway_url("tenantb"), 0, "HTTP/1.1 403 Forbidden"),
        ("the tenant's Origin + one 9 KB header line", own, 9 * 1024, "HTTP/1.1 101 Switching Protocols"),
    ]
    for label, origin, pad, expected in cases:
        actual = _upgrade(port, host, token, origin, pad)
        assert attempts.record("gateway + web chat (socket)", f"alice's websocket upgrade, {label}", expected, actual)


def test_web_chat_refuses_a_page_from_another_origin(oidc_stack, browser: Browser, attempts) -> None:
    """Straight to the web chat (gateway bypassed) but under another host name: the browser's Origin
    is then http://localhost:<port>, which Streamlit itself would admit; WEB_ALLOWED_ORIGINS does not."""
    token = oidc_stack.issuer.mint_for("alice")
    page = browser.new_context(extra_http_headers={"authorization": f"Bearer {token}"}).new_page()
    page.goto(oidc_stack.endpoints["tenanta"].web_url.replace("127.0.0.1", "localhost") + "/")
    assert attempts.record(
        "web chat, gateway bypassed (browser)",
        "alice's valid token, page opened from http://localhost:<port>",
        "Not allowed: This chat was opened from another site.",
        refusal_shown(page),
    )
    page.context.close()

"""Streamlit pieces of the web chat: pages for errors, the chat state, messages and sources.

``webapp/app.py`` only strings these together. All per-user state lives in
``st.session_state`` (never in ``st.cache_resource``):

- ``messages``: ``[{"role", "content", "sources"}]`` replayed before ``st.chat_input``;
- ``session_id``: the conversation's ``<tenant>:<email>:<uuid>``;
- ``user_key``: whose state this is (a different user resets it);
- ``failed``: the last question that could not be answered, with the message shown;
- ``pending``: a question to send on this run (set by the Retry button);
- ``notice`` / ``history_error``: one-off information for the user;
- ``feedback_sent``: ``{answer_id: "up" | "down"}`` rated in this browser session.

Each chat turn's ``X-Request-ID`` is also this page's log context (:data:`rag.logs.request_id_var`),
so the web chat's and the API's log lines of one turn share the id.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, NoReturn

import streamlit as st

from rag.logs import request_id_var
from rag.settings import Settings
from rag.stores.sessions import SessionManager, SessionStore, store_from_settings
from webapp.api_client import ApiError, RagApiClient
from webapp.chat import AnswerStream, history_to_messages, message_dict
from webapp.config import ConfigError
from webapp.identity import Denial, Identity, IdentityError

log = logging.getLogger(__name__)

IDLE_NOTICE = "Your earlier chat was idle for a while, so this question starts a new chat."
UNEXPECTED = "Something went wrong while answering. Please try again."
STORE_DOWN = "Your chat session could not be loaded or saved right now. Please try again in a moment."
FEEDBACK_THANKS = "Thanks for the feedback."
#: Under an answer the documents do not support (``grounded: false``): no citations, this hint.
UNGROUNDED_HINT = "Try rephrasing the question, or ask about a topic the documents cover."
FEEDBACK_FAILED = "Your feedback could not be saved."
MAX_COMMENT_CHARS = 2000
_DENIAL_PAGES: dict[Denial, tuple[str, str]] = {
    Denial.NOT_SIGNED_IN: ("Not signed in", "Please sign in through your organisation's chat address."),
    Denial.EXPIRED: ("Sign-in expired", "Reload the page to sign in again."),
    Denial.NOT_ALLOWED: ("Not allowed", "You do not have access to this chat. Ask your administrator."),
    Denial.UNAVAILABLE: ("Sign-in cannot be checked", "Please try again in a moment."),
}


# --- whole-page stops ------------------------------------------------------------------


def stop_with_config_error(error: ConfigError) -> NoReturn:
    """Show which variables are wrong and stop the script."""
    st.title("Configuration error")
    st.error("The web chat is not configured correctly. Fix these environment variables:")
    st.code("\n".join(error.lines), language=None)
    st.stop()


def stop_with_denial(error: IdentityError) -> NoReturn:
    """Show the sign-in problem (never the token) and stop the script."""
    title, advice = _DENIAL_PAGES[error.denial]
    log.warning("identity refused: %s", error)
    st.title(title)
    st.error(f"{error.reason[:1].upper()}{error.reason[1:]}.")
    st.write(advice)
    if error.denial is Denial.UNAVAILABLE:
        st.button("Retry", key="identity_retry")
    st.stop()


# --- resources -------------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def _shared_session_store(
    url: str | None, table: str | None, region: str | None, ttl_seconds: int, _settings: Settings
) -> SessionStore:
    """One sessions store per configuration and process: its DynamoDB resource or SQLite connection is
    shared by every browser session (the store holds no tenant or user state; every call names the user)."""
    return store_from_settings(_settings)


def session_store(settings: Settings) -> SessionStore:
    """The sessions store for ``settings`` (shared by all browser sessions of this process)."""
    return _shared_session_store(
        settings.sessions_url,
        settings.sessions_table,
        settings.aws_default_region,
        settings.history_ttl_seconds,
        settings,
    )


# --- header ----------------------------------------------------------------------------


def render_header(settings: Settings, identity: Identity, manager: SessionManager) -> None:
    """Title, tenant name, the user's e-mail, the dev-mode notice and the "New chat" button."""
    tenant_name = settings.tenant_display_name or identity.tenant
    left, right = st.columns([5, 1], vertical_alignment="bottom")
    with left:
        st.title(f"{tenant_name} assistant")
        st.caption(f"Tenant: {tenant_name} · Signed in as {identity.email}")
    with right:
        st.button("New chat", key="new_chat", on_click=new_chat, args=(identity, manager), icon=":material/add:")
    if identity.dev_mode:
        st.warning("Development mode: sign-in is not checked (AUTH_MODE=dev). For the local demo only.")


# --- state -----------------------------------------------------------------------------


def init_state(identity: Identity, manager: SessionManager, client: RagApiClient) -> None:
    """On the first run of a browser session (or for a new user), pick the session and load its history.

    A page reload starts a new Streamlit session, so the earlier messages come back from the
    API's history endpoint for the user's current (not idle) session.
    """
    state = st.session_state
    if state.get("user_key") == identity.user_key and "session_id" in state:
        return
    for key in ("messages", "failed", "pending", "notice", "history_error", "session_id"):
        state.pop(key, None)
    state.user_key = identity.user_key
    state.messages = []
    try:
        state.session_id = str(manager.current(identity.tenant, identity.email))
    except Exception:
        log.exception("sessions store failed on page load")
        state.pop("user_key", None)
        st.error(STORE_DOWN)
        st.button("Retry", key="store_retry")
        st.stop()
    load_history(client)


def load_history(client: RagApiClient) -> None:
    """Replace ``messages`` with the session's history from the API (keeps a note on failure)."""
    state = st.session_state
    try:
        state.messages = history_to_messages(client.history(state.session_id))
        state.history_error = None
    except ApiError as exc:
        log.warning("history not loaded: %s (%s)", exc.code, exc.status)
        state.history_error = exc.message


def new_chat(identity: Identity, manager: SessionManager) -> None:
    """Button callback: start a new session id and clear the page."""
    state = st.session_state
    try:
        state.session_id = str(manager.renew(identity.tenant, identity.email))
    except Exception:
        log.exception("sessions store failed on new chat")
        state.notice = STORE_DOWN
        return
    state.messages = []
    state.failed = None
    state.history_error = None
    state.notice = None


def retry_failed() -> None:
    """Retry button callback: send the failed question again on this run."""
    failed = st.session_state.get("failed")
    if failed:
        st.session_state.pending = failed["question"]
    st.session_state.failed = None


def retry_history(client: RagApiClient) -> None:
    """Button callback: try loading the earlier messages again."""
    load_history(client)


# --- rendering -------------------------------------------------------------------------


def file_name(uri: str) -> str:
    """The last path segment of a source URI (``s3://b/documents/faq.csv`` → ``faq.csv``)."""
    return uri.rstrip("/").rsplit("/", 1)[-1]


def source_label(source: Mapping[str, Any]) -> str:
    """One line naming a source, e.g. ``Amazon_SageMaker_FAQs.csv · row 12 · score 0.83``."""
    parts = [f"`{file_name(str(source.get('source') or '')) or 'unknown source'}`"]
    if source.get("row") is not None:
        parts.append(f"row {source['row']}")
    if source.get("page") is not None:
        parts.append(f"page {source['page']}")
    if source.get("score") is not None:
        parts.append(f"score {float(source['score']):.2f}")
    return " · ".join(parts)


def render_sources(sources: list[Mapping[str, Any]], *, grounded: bool = True) -> None:
    """The passages under an answer, in a collapsed expander; sources the answer does not cite
    (``cited: false``) are labelled "also retrieved". An ungrounded answer gets the rephrase hint
    instead of citations."""
    if not grounded:
        st.caption(UNGROUNDED_HINT)
        return
    if not sources:
        return
    with st.expander(f"Sources ({len(sources)})", icon=":material/description:"):
        for i, source in enumerate(sources, start=1):
            title = source.get("title") or file_name(str(source.get("source") or "")) or f"Source {i}"
            also = " · _also retrieved_" if source.get("cited") is False else ""
            st.markdown(f"**{i}. {title}**  \n{source_label(source)}{also}")
            if source.get("snippet"):
                st.caption(str(source["snippet"]))


def send_feedback(client: RagApiClient, answer_id: str) -> None:
    """Widget callback: send the thumbs (and the comment, when one was typed) for ``answer_id``."""
    state = st.session_state
    value = state.get(f"feedback_{answer_id}")
    if value is None:  # the thumbs were cleared: nothing to send
        return
    rating = "up" if value == 1 else "down"
    comment = str(state.get(f"comment_{answer_id}") or "")[:MAX_COMMENT_CHARS]
    try:
        client.send_feedback(state.session_id, answer_id, rating, comment)
    except ApiError as exc:
        log.warning("feedback not sent: %s (%s)", exc.code, exc.status)
        state.notice = f"{FEEDBACK_FAILED} {exc.message}"
        return
    state.setdefault("feedback_sent", {})[answer_id] = rating
    state.notice = FEEDBACK_THANKS


def render_feedback(message: Mapping[str, Any], client: RagApiClient | None) -> None:
    """Thumbs up/down under an answer; once rated, a popover for an optional comment."""
    answer_id = message.get("answer_id")
    if not answer_id or client is None:
        return
    st.feedback("thumbs", key=f"feedback_{answer_id}", on_change=send_feedback, args=(client, answer_id))
    if answer_id in st.session_state.get("feedback_sent", {}):
        with st.popover("Add a comment", icon=":material/comment:"):
            st.text_area(
                "What was good or wrong about this answer?", max_chars=MAX_COMMENT_CHARS, key=f"comment_{answer_id}"
            )
            st.button("Send comment", key=f"send_comment_{answer_id}", on_click=send_feedback, args=(client, answer_id))


def render_messages(client: RagApiClient | None = None) -> None:
    """Replay the conversation so far (with the feedback widgets when a client is given)."""
    for message in st.session_state.get("messages", []):
        with st.chat_message(message["role"]):
            st.markdown(message["content"])
            if message["role"] == "assistant":
                render_sources(message.get("sources") or [], grounded=message.get("grounded", True))
                render_feedback(message, client)


def render_notices(client: RagApiClient) -> None:
    """One-off notices, the history warning and the failed-question box with its Retry button."""
    state = st.session_state
    if state.get("notice"):
        st.info(state.notice)
        state.notice = None
    if state.get("history_error"):
        st.warning(f"Earlier messages could not be loaded. {state.history_error}")
        st.button("Load earlier messages", key="history_retry", on_click=retry_history, args=(client,))
    failed = state.get("failed")
    if failed:
        st.error(failed["message"])
        st.caption(f"Your question: {failed['question']}")
        st.button("Retry", key="retry", on_click=retry_failed, type="primary", icon=":material/refresh:")


# --- one turn --------------------------------------------------------------------------


def send(question: str, identity: Identity, manager: SessionManager, client: RagApiClient) -> None:
    """Ask ``question``: check idleness now, stream the answer, show its sources.

    On an idle timeout the session id is renewed, the page cleared and the question re-sent
    under the new id (via ``st.rerun``). On failure the question is kept for the Retry button.
    """
    state = st.session_state
    try:
        sid = str(
            manager.session_for_message(identity.tenant, identity.email, state.get("session_id"), question=question)
        )
    except Exception:
        log.exception("sessions store failed on send")
        state.failed = {"question": question, "message": STORE_DOWN}
        st.rerun()
    if sid != state.session_id:
        had_messages = bool(state.messages)
        state.session_id = sid
        state.messages = []
        state.history_error = None
        if had_messages:
            state.notice = IDLE_NOTICE
            state.pending = question
            st.rerun()
    state.messages.append(message_dict("user", question))
    with st.chat_message("user"):
        st.markdown(question)
    answer = AnswerStream(client, question, sid)
    token = request_id_var.set(answer.request_id)  # this turn's log lines carry the API's request id
    try:
        _stream_answer(answer, question, client)
    finally:
        request_id_var.reset(token)


def _stream_answer(answer: AnswerStream, question: str, client: RagApiClient) -> None:
    state = st.session_state
    with st.chat_message("assistant"):
        try:
            st.write_stream(iter(answer))
        except ApiError as exc:
            log.warning("answer failed: %s (%s) request_id=%s", exc.code, exc.status, answer.request_id)
            state.messages.pop()
            message = exc.message
            if exc.retry_after and exc.code != "quota_exceeded":  # the quota message names the wait itself
                message += f" (The assistant asked to wait {exc.retry_after:.0f} s.)"
            state.failed = {"question": question, "message": message}
            st.rerun()
        except Exception:  # a bug or an unexpected reply: still a message and Retry, never a traceback
            log.exception("answer failed unexpectedly request_id=%s", answer.request_id)
            state.messages.pop()
            state.failed = {"question": question, "message": UNEXPECTED}
            st.rerun()
        message = answer.as_message()
        render_sources(message["sources"], grounded=answer.grounded)
        render_feedback(message, client)
    usage = answer.done.usage if answer.done else {}
    log.info(
        "answer received: %d characters, %d sources, %s tokens",
        len(answer.text),
        len(answer.sources),
        usage.get("total_tokens", "?"),
        extra={"answer_id": message.get("answer_id"), "model_id": answer.done.model_id if answer.done else None},
    )
    state.messages.append(message)
    state.failed = None


def pending_question(prompt: str | None) -> str | None:
    """The question to send on this run: typed now, or re-sent by Retry / idle renewal."""
    pending = st.session_state.pop("pending", None)
    return prompt or pending

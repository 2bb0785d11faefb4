"""Streamlit pieces of the web chat: error pages, the first screen, messages, source cards, actions, one turn.

``webapp/app.py`` only strings these together; the conversations sidebar is :mod:`webapp.conversations`,
safe text is :mod:`webapp.render`. All per-user state lives in ``st.session_state`` (never in
``st.cache_resource``):

- ``messages``: ``[{"role", "content", "sources", "grounded", "answer_id"?, "rating"?}]`` replayed
  before ``st.chat_input``;
- ``conversation_id``: the open conversation's session id (see :mod:`webapp.conversations`);
- ``user_key``: whose state this is (a different user resets it);
- ``failed``: the last question that could not be answered, the sentence shown, and whether Retry can help;
- ``pending`` / ``pending_regenerate``: a question to send on this run (example question, Retry, Regenerate);
- ``streaming``: set while an answer streams; still set at the start of a run means the stream was
  stopped (Stop button or another click): nothing was saved and the question goes back into the box;
- ``chat_box`` / ``refill``: the chat input's text / a question to put back into it on the next run;
- ``notice`` / ``toast`` / ``history_error``: one-off information for the user;
- ``feedback_sent``: ``{answer_id: "up" | "down"}`` rated in this browser session;
- ``links``: ``{s3 uri: (presigned url, expires at)}`` for the "open document" links.

Each chat turn's ``X-Request-ID`` is also this page's log context (:data:`rag.logs.request_id_var`),
so the web chat's and the API's log lines of one turn share the id.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Mapping
from typing import Any, NoReturn

import streamlit as st

from rag.contract import DOCUMENT_LINK_SECONDS, MAX_FEEDBACK_COMMENT_CHARS, MAX_QUESTION_CHARS
from rag.logs import request_id_var
from rag.settings import Settings
from rag.stores.sessions import SessionManager, SessionStore, store_from_settings
from webapp import conversations
from webapp.api_client import ApiError, RagApiClient
from webapp.chat import AnswerStream, message_dict
from webapp.config import ConfigError
from webapp.identity import Denial, Identity, IdentityError, denial_of
from webapp.render import (
    anchor_id,
    copy_text,
    file_name,
    neutralise_bidi,
    ordered_cards,
    plain_markdown,
    safe_answer_markdown,
    safe_url,
    source_facts,
)

log = logging.getLogger(__name__)

IDLE_NOTICE = (
    "Your earlier chat was idle for a while, so this question starts a new chat (the earlier one is in the list)."
)
UNEXPECTED = "Something went wrong while answering. If it happens again, tell your administrator."
STORE_DOWN = "Your chat could not be loaded or saved right now. Try again in a moment."
STOPPED = "Stopped. Nothing was saved: your question is back in the box to edit and send again."
BLANK = "Type a question first: an empty message cannot be sent."
FEEDBACK_THANKS = "Thanks for the feedback."
FEEDBACK_FAILED = "Your feedback could not be saved."
UNGROUNDED_HINT = (
    "The documents do not seem to cover this, so the answer has no sources. "
    "Try rephrasing, or ask about something the documents describe."
)
WELCOME = "Ask a question about your documents: answers cite the passages they come from."
CHAT_BOX = "chat_box"
#: Refresh a presigned link this long before it expires, seconds.
LINK_MARGIN_SECONDS = 30
_DENIAL_PAGES: dict[Denial, tuple[str, str]] = {
    Denial.NOT_SIGNED_IN: ("Not signed in", "Please sign in through your organisation's chat address."),
    Denial.EXPIRED: ("Sign-in expired", "Reload the page to sign in again."),
    Denial.NOT_ALLOWED: ("Not allowed", "You do not have access to this chat. Ask your administrator."),
    Denial.UNAVAILABLE: ("Sign-in cannot be checked", "Please try again in a moment."),
}


def too_long(length: int) -> str:
    """The sentence for a question over the limit (the API's limit, :data:`rag.contract.MAX_QUESTION_CHARS`)."""
    return (
        f"Your question is {length:,} characters long; the limit is {MAX_QUESTION_CHARS:,}. "
        "Shorten it and send it again."
    )


def question_problem(question: str) -> str | None:
    """Why ``question`` cannot be sent (blank, over the limit), or None when it can."""
    if not question.strip():
        return BLANK
    if len(question) > MAX_QUESTION_CHARS:
        return too_long(len(question))
    return None


def display_name(settings: Settings) -> str:
    """The tenant's name for people: ``TENANT_DISPLAY_NAME``, else the tenant id."""
    return settings.tenant_display_name or settings.tenant_id


# --- whole-page stops ------------------------------------------------------------------


def stop_with_config_error(error: ConfigError) -> NoReturn:
    """Show which variables are wrong and stop the script."""
    st.title("Configuration error")
    st.error("The web chat is not configured correctly. Fix these environment variables:")
    st.code("\n".join(error.lines), language=None)
    st.stop()


def stop_with_denial(error: IdentityError) -> NoReturn:
    """Show the sign-in problem (never the token) and stop the script."""
    denial = denial_of(error)
    title, advice = _DENIAL_PAGES[denial]
    log.warning("identity refused: %s", error)
    st.title(title)
    st.error(f"{error.message[:1].upper()}{error.message[1:]}.")
    st.write(advice)
    if denial is Denial.UNAVAILABLE:
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


# --- header and first screen -------------------------------------------------------------


def render_header(settings: Settings, identity: Identity) -> None:
    """The tenant's display name (once), who is signed in, the dev-mode notice."""
    st.title(neutralise_bidi(display_name(settings)))
    st.caption(f"Signed in as {plain_markdown(identity.display_name)}")
    if identity.dev_mode:
        st.warning("Development mode: sign-in is not checked (AUTH_MODE=dev). For the local demo only.")


def _ask(question: str) -> None:
    st.session_state.pending = question


def render_welcome(settings: Settings) -> None:
    """On an empty conversation: a one-line welcome and the example questions (each sends when clicked)."""
    if st.session_state.get("messages"):
        return
    st.markdown(plain_markdown(settings.tenant_welcome or WELCOME))
    examples = settings.tenant_example_questions[:4]
    if not examples:
        return
    with st.container(key="examples"):
        for i, example in enumerate(examples):
            st.button(
                neutralise_bidi(example), key=f"example_{i}", on_click=_ask, args=(example,),
                icon=":material/chat_bubble:", width="stretch",
            )  # fmt: skip


# --- state -----------------------------------------------------------------------------


def init_state(identity: Identity, manager: SessionManager, client: RagApiClient) -> None:
    """Per run: a new user gets fresh state and their conversation; a stopped stream is cleaned up.

    A page reload starts a new Streamlit session: the conversation comes back from the URL (if it
    is the user's) or is the most recent one, with its turns from the API's history.
    """
    state = st.session_state
    try:
        if state.get("user_key") != identity.user_key or "conversation_id" not in state:
            for key in ("messages", "failed", "pending", "pending_regenerate", "notice", "history_error", "streaming"):
                state.pop(key, None)
            state.user_key = identity.user_key
            state.feedback_sent = {}
            state.links = {}
            conversations.choose_on_load(identity, manager, client)
        else:
            conversations.follow_url(identity, manager, client)
    except Exception:
        log.exception("sessions store failed on page load")
        state.pop("user_key", None)
        st.error(STORE_DOWN)
        st.button("Retry", key="store_retry")
        st.stop()
    interrupted = state.pop("streaming", None)
    if interrupted:  # the last run was cut while streaming: the API dropped the answer
        log.info("answer stopped by the user")
        state.notice = STOPPED
        state.refill = interrupted["question"]
        if interrupted.get("regenerate"):
            conversations.load_history(client)  # the earlier answer is still the stored one
    if "refill" in state:  # a question going back into the box (set before the box is created)
        state[CHAT_BOX] = state.pop("refill")


def retry_failed() -> None:
    """Retry button callback: send the failed question again on this run."""
    failed = st.session_state.get("failed")
    if failed:
        st.session_state.pending = failed["question"]
        st.session_state.pending_regenerate = failed.get("regenerate", False)
    st.session_state.failed = None


def regenerate_last() -> None:
    """Regenerate button callback: answer the last question again (the API replaces the last turn)."""
    messages = st.session_state.get("messages", [])
    users = [m for m in messages if m["role"] == "user"]
    if users:
        st.session_state.pending = users[-1]["content"]
        st.session_state.pending_regenerate = True


def pending_question(prompt: str | None) -> tuple[str | None, bool]:
    """The question to send on this run and whether it regenerates: typed now, or Retry/example/Regenerate."""
    state = st.session_state
    pending = state.pop("pending", None)
    regenerate = bool(state.pop("pending_regenerate", False))
    if prompt is not None:
        return prompt, False
    return pending, regenerate and pending is not None


# --- source cards -------------------------------------------------------------------------


def document_link(client: RagApiClient, uri: str) -> str | None:
    """A presigned link for an ``s3://`` source, from the API, cached until shortly before it expires."""
    if not uri.startswith("s3://"):
        return None
    links: dict[str, tuple[str, float]] = st.session_state.setdefault("links", {})
    cached = links.get(uri)
    if cached and cached[1] - LINK_MARGIN_SECONDS > time.time():
        return cached[0]
    try:
        link = client.document_link(uri)
    except ApiError as exc:
        log.info("no document link: %s (%s)", exc.code, exc.status)
        return None
    url = safe_url(link.url)
    if url:
        links[uri] = (url, time.time() + min(link.expires_in, DOCUMENT_LINK_SECONDS))
    return url


def render_cards(sources: list[Mapping[str, Any]], answer_key: str, client: RagApiClient | None) -> None:
    """Source cards under an answer: cited first, then "also retrieved"; each with its anchor for ``[n]``."""
    also_shown = False
    for number, source, cited in ordered_cards(sources):
        if not cited and not also_shown:
            st.caption("Also retrieved (not cited in the answer)")
            also_shown = True
        anchor = anchor_id(answer_key, number)
        st.markdown(f'<div id="{anchor}" class="source-anchor"></div>', unsafe_allow_html=True)  # our own id only
        with st.container(border=True, key=f"card_{anchor}"):
            title = source.get("title") or file_name(str(source.get("source") or "")) or f"Source {number}"
            st.markdown(f"**\\[{number}\\]** {plain_markdown(str(title))}")
            st.caption(plain_markdown(source_facts(source)))
            if source.get("snippet"):
                with st.expander("Passage", icon=":material/description:"):
                    st.markdown(plain_markdown(str(source["snippet"])))
            uri = str(source.get("source") or "")
            if client is not None and (url := document_link(client, uri)):
                st.link_button("Open document", url, icon=":material/open_in_new:")


# --- answer actions ------------------------------------------------------------------------


def copy_button(text: str) -> None:
    """A "Copy" button that puts ``text`` on the clipboard (Streamlit has no clipboard API).

    ``st.html`` with JavaScript (https://docs.streamlit.io/develop/api-reference/text/st.html) binds
    ``navigator.clipboard.writeText`` to the button. The text travels HTML-escaped in a ``data-``
    attribute, never inside the script, so an answer cannot inject markup or code; the script is
    a constant.
    """
    st.html(
        f'<button class="copy-answer" type="button" title="Copy the answer with its sources as footnotes"'
        f' data-copy="{html.escape(text, quote=True)}">Copy</button>'
        "<style>.copy-answer{cursor:pointer;border:1px solid rgba(128,128,128,.45);border-radius:.5rem;"
        "padding:.2rem .75rem;background:transparent;color:inherit;font:inherit;font-size:.875rem}"
        ".copy-answer:hover{border-color:rgb(255,75,75);color:rgb(255,75,75)}</style>"
        f"<script>{_COPY_SCRIPT}</script>",
        width="content",
        unsafe_allow_javascript=True,
    )


_COPY_SCRIPT = """
document.querySelectorAll("button.copy-answer:not([data-bound])").forEach((button) => {
  button.dataset.bound = "1";
  button.addEventListener("click", async () => {
    try { await navigator.clipboard.writeText(button.dataset.copy); button.textContent = "Copied"; }
    catch (e) { button.textContent = "Copy failed"; }
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  });
});
"""


def send_feedback(client: RagApiClient, answer_id: str) -> None:
    """Widget callback: send the thumbs (and the comment, when one was typed) for ``answer_id``.

    The API keeps one record per answer: a new rating or a comment updates it.
    """
    state = st.session_state
    value = state.get(f"feedback_{answer_id}")
    if value is None:  # the thumbs were cleared: nothing to send
        return
    rating = "up" if value == 1 else "down"
    comment = str(state.get(f"comment_{answer_id}") or "")[:MAX_FEEDBACK_COMMENT_CHARS]
    try:
        client.send_feedback(state.conversation_id, answer_id, rating, comment)
    except ApiError as exc:
        log.warning("feedback not sent: %s (%s)", exc.code, exc.status)
        state.notice = f"{FEEDBACK_FAILED} {exc.message}"
        return
    state.setdefault("feedback_sent", {})[answer_id] = rating
    state.toast = FEEDBACK_THANKS


def render_feedback(message: Mapping[str, Any], client: RagApiClient | None) -> None:
    """Thumbs under an answer, showing the stored rating (changeable); once rated, a comment field."""
    answer_id = message.get("answer_id")
    if not answer_id or client is None:
        return
    state = st.session_state
    key = f"feedback_{answer_id}"
    known = state.get("feedback_sent", {}).get(answer_id) or message.get("rating")
    if key not in state and known in ("up", "down"):
        state[key] = 1 if known == "up" else 0
    st.feedback("thumbs", key=key, on_change=send_feedback, args=(client, answer_id))
    if known:
        with st.form(f"comment_form_{answer_id}", clear_on_submit=True, border=False):
            st.text_input(
                "Add a comment (optional)", key=f"comment_{answer_id}", max_chars=MAX_FEEDBACK_COMMENT_CHARS,
                placeholder="What was good or wrong about this answer?",
            )  # fmt: skip
            st.form_submit_button("Send comment", on_click=send_feedback, args=(client, answer_id))


def render_answer(
    message: Mapping[str, Any], index: int, client: RagApiClient | None, settings: Settings, *, last: bool
) -> None:
    """An assistant message: safe Markdown with ``[n]`` links, the source cards, the actions."""
    sources = list(message.get("sources") or [])
    answer_key = f"m{index}-{message.get('answer_id') or 'local'}"  # unique per page: widget keys, anchors
    grounded = bool(message.get("grounded", True))
    anchors = {n: anchor_id(answer_key, n) for n in range(1, len(sources) + 1)} if grounded else {}
    st.markdown(safe_answer_markdown(str(message["content"]), anchors, settings.webchat_image_hosts))
    if not grounded:
        st.caption(f":material/info: {UNGROUNDED_HINT}")
    else:
        render_cards(sources, answer_key, client)
    with st.container(horizontal=True, key=f"actions_{answer_key}", vertical_alignment="center"):
        copy_button(copy_text(str(message["content"]), sources if grounded else []))
        if last and client is not None:
            st.button("Regenerate", key=f"regenerate_{answer_key}", on_click=regenerate_last, icon=":material/refresh:")
    render_feedback(message, client)


def render_messages(settings: Settings, client: RagApiClient | None = None) -> None:
    """Replay the conversation so far (with the actions and feedback widgets when a client is given)."""
    messages = st.session_state.get("messages", [])
    last_answer = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
    for index, message in enumerate(messages):
        with st.chat_message(message["role"]):
            if message["role"] == "assistant":
                render_answer(message, index, client, settings, last=index == last_answer)
            else:
                st.markdown(plain_markdown(str(message["content"])))


def render_notices(client: RagApiClient) -> None:
    """One-off notices, the history warning and the failed-question box (Retry only where it can help)."""
    state = st.session_state
    if state.get("toast"):
        st.toast(state.toast, icon=":material/thumb_up:")
        state.toast = None
    if state.get("notice"):
        st.info(state.notice)
        state.notice = None
    if state.get("history_error"):
        st.warning(f"Earlier messages could not be loaded. {state.history_error}")
        st.button("Load earlier messages", key="history_retry", on_click=conversations.load_history, args=(client,))
    failed = state.get("failed")
    if failed:
        st.error(failed["message"])
        if failed.get("retryable"):
            st.button("Retry", key="retry", on_click=retry_failed, type="primary", icon=":material/refresh:")


# --- one turn --------------------------------------------------------------------------


def send(
    question: str,
    identity: Identity,
    manager: SessionManager,
    client: RagApiClient,
    settings: Settings,
    *,
    regenerate: bool = False,
) -> None:
    """Ask ``question`` (or answer it again): check it, pick the conversation, stream, then rerun.

    A blank or over-long question is not sent (a sentence says why; an over-long one goes back
    into the box). On an idle timeout a new conversation starts (the old one stays listed) and the
    question is re-sent there. While streaming a Stop button is shown: clicking it reruns the
    page, which closes the stream (the API stores nothing; see :func:`init_state`).
    """
    state = st.session_state
    if problem := question_problem(question):
        state.failed = {"question": question, "message": problem, "retryable": False}
        if question.strip():
            state.refill = question
        st.rerun()
    try:
        sid = str(
            manager.session_for_message(
                identity.tenant, conversations.user_id(identity), state.conversation_id, question=question
            )
        )
    except Exception:
        log.exception("sessions store failed on send")
        state.failed = {"question": question, "message": STORE_DOWN, "retryable": True}
        st.rerun()
    idle = sid != state.conversation_id  # idle (or not the user's): a new conversation, the old one stays listed
    state.conversation_id = sid
    st.query_params[conversations.URL_PARAM] = conversations.session_uuid(sid)
    if idle:
        had_messages = bool(state.messages)
        state.messages, state.history_error = [], None
        if had_messages:
            state.after_answer_notice = IDLE_NOTICE  # shown with the answer (this run is replaced by a rerun)
            state.pending = question
            st.rerun()
        regenerate = False
    if regenerate:
        while state.messages and state.messages[-1]["role"] == "assistant":
            state.messages.pop()
        if state.messages and state.messages[-1]["role"] == "user":
            state.messages.pop()
    state.streaming = {"question": question, "regenerate": regenerate}
    with st.chat_message("user"):
        st.markdown(plain_markdown(question))
    answer = AnswerStream(client, question, sid, regenerate=regenerate)
    token = request_id_var.set(answer.request_id)  # this turn's log lines carry the API's request id
    try:
        _stream_answer(answer, question, client, settings)
    finally:
        request_id_var.reset(token)


def _fail(question: str, message: str, *, retryable: bool, regenerate: bool, client: RagApiClient) -> NoReturn:
    state = st.session_state
    state.streaming = None
    state.failed = {"question": question, "message": message, "retryable": retryable, "regenerate": regenerate}
    if regenerate:
        conversations.load_history(client)  # the stored answer is still the earlier one
    elif not retryable:
        state.refill = question  # back into the box to edit (on the next run, before the box exists)
    st.rerun()


def _stream_answer(answer: AnswerStream, question: str, client: RagApiClient, settings: Settings) -> None:
    state = st.session_state
    with st.chat_message("assistant"):
        stop_slot = st.empty()
        stop_slot.button("Stop", key="stop_answer", icon=":material/stop_circle:", help="Stop this answer")
        body = st.empty()
        body.markdown(":material/hourglass_top: _Searching your documents…_")
        try:
            for _ in answer:
                body.markdown(safe_answer_markdown(answer.text, None, settings.webchat_image_hosts) + " ▌")
        except ApiError as exc:
            log.warning("answer failed: %s (%s) request_id=%s", exc.code, exc.status, answer.request_id)
            message = exc.message
            if exc.retry_after and exc.retryable:
                message += f" (The assistant asked to wait {exc.retry_after:.0f} s.)"
            _fail(question, message, retryable=exc.retryable, regenerate=answer.regenerate, client=client)
        except Exception:  # a bug or an unexpected reply: still a sentence, never a traceback
            log.exception("answer failed unexpectedly request_id=%s", answer.request_id)
            _fail(question, UNEXPECTED, retryable=False, regenerate=answer.regenerate, client=client)
        finally:
            answer.close()  # also when a rerun (Stop) interrupts the loop: the API drops the answer
        stop_slot.empty()
    message = answer.as_message()
    usage = answer.done.usage if answer.done else None
    log.info(
        "answer received: %d characters, %d sources, %s tokens",
        len(answer.text),
        len(answer.sources),
        usage.total_tokens if usage else "?",
        extra={"answer_id": message.get("answer_id"), "model_id": answer.done.model_id if answer.done else None},
    )
    state.streaming = None
    state.messages.extend([message_dict("user", question), message])
    state.failed = None
    state.notice = state.pop("after_answer_notice", None)
    st.rerun()

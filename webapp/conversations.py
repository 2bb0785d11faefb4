"""The conversations sidebar: the signed-in user's past conversations, newest first.

Each row resumes its conversation when clicked (its turns are loaded from the API's history and
its follow-ups use that history); its menu renames it or deletes it after a confirmation (the
API's history of the conversation is deleted too). "New chat" starts a draft that is stored only
once its first message is sent.

The open conversation is also in the URL (``?c=<uuid>``, never the e-mail), so a reload or a
shared link reopens it, but only for its owner: an id that is not one of the verified user's
conversations is refused with a notice and a new chat is opened instead.

State (``st.session_state``): ``conversation_id`` (the open conversation's session id; a fresh
one is stored only with its first message), ``confirm_delete`` (the id awaiting confirmation).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import streamlit as st

from rag.stores.sessions import MAX_TITLE_CHARS, Conversation, ConversationNotFoundError, SessionManager
from webapp.api_client import ApiError, RagApiClient
from webapp.chat import history_to_messages
from webapp.identity import Identity
from webapp.render import neutralise_bidi

log = logging.getLogger(__name__)

#: The query parameter holding the open conversation's uuid.
URL_PARAM = "c"
NOT_YOURS = "That conversation is not one of yours (or it was deleted), so it was not opened. Here is a new chat."
STORE_DOWN = "Your conversations could not be loaded or saved right now. Try again in a moment."
DELETED = "The conversation was deleted."
DELETE_FAILED = "The conversation could not be deleted. Try again in a moment."
RENAMED = "The conversation was renamed."


def last_activity(at: float, now: float | None = None) -> str:
    """A short "last activity" label: ``just now``, ``5 min ago``, ``3 h ago``, ``2 days ago``, ``3 Mar 2026``."""
    seconds = max(0.0, (time.time() if now is None else now) - at)
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86_400:
        return f"{int(seconds // 3600)} h ago"
    if seconds < 7 * 86_400:
        days = int(seconds // 86_400)
        return f"{days} day{'s' if days > 1 else ''} ago"
    return datetime.fromtimestamp(at, UTC).strftime("%-d %b %Y")


def session_uuid(conversation_id: str) -> str:
    """The uuid part of ``<tenant>:<user>:<uuid>`` (what the URL and the widget keys show)."""
    return conversation_id.rsplit(":", 1)[-1]


def user_id(identity: Identity) -> str:
    """The user part of the user's conversation ids and of their store key: the token's ``sub``
    (never the e-mail, which users can change; see SECURITY.md, "Which claim identifies a user")."""
    return identity.subject


def load_history(client: RagApiClient) -> None:
    """Replace ``messages`` with the open conversation's turns from the API (keeps a note on failure)."""
    state = st.session_state
    try:
        state.messages = history_to_messages(client.history(state.conversation_id))
        state.history_error = None
    except ApiError as exc:
        log.warning("history not loaded: %s (%s)", exc.code, exc.status)
        state.messages = []
        state.history_error = exc.message


def start_draft(identity: Identity, manager: SessionManager) -> None:
    """Open a new conversation: a fresh id, stored with its first message (the page is cleared)."""
    state = st.session_state
    state.conversation_id = str(manager.renew(identity.tenant, user_id(identity)))
    state.messages = []
    state.failed = None
    state.history_error = None
    state.confirm_delete = None
    st.query_params.pop(URL_PARAM, None)


def open_conversation(row: Conversation, client: RagApiClient) -> None:
    """Show ``row`` (already checked to be the user's): load its turns, put its uuid in the URL."""
    state = st.session_state
    state.conversation_id = row.session_id
    state.failed = None
    state.confirm_delete = None
    st.query_params[URL_PARAM] = row.conversation_id
    load_history(client)


def _refuse(identity: Identity, manager: SessionManager) -> None:
    log.warning("refused to open a conversation that is not the user's")
    start_draft(identity, manager)
    st.session_state.notice = NOT_YOURS


def resume(identity: Identity, manager: SessionManager, client: RagApiClient, wanted_uuid: str) -> bool:
    """Open the user's conversation whose uuid is ``wanted_uuid``; False (and a new chat) when it is not theirs."""
    rows = manager.conversations(identity.tenant, user_id(identity))
    row = next((r for r in rows if r.conversation_id == wanted_uuid), None)
    if row is None:
        _refuse(identity, manager)
        return False
    try:
        row = manager.open(identity.tenant, user_id(identity), row.session_id)  # ownership checked again
    except ConversationNotFoundError:
        _refuse(identity, manager)
        return False
    open_conversation(row, client)
    return True


def choose_on_load(identity: Identity, manager: SessionManager, client: RagApiClient) -> None:
    """Pick the conversation for a new page session: the URL's (if the user's), else the latest active one.

    A page load is not activity: the latest conversation is shown without marking it used.
    """
    wanted = st.query_params.get(URL_PARAM)
    if wanted:
        resume(identity, manager, client, str(wanted))
        return
    user = user_id(identity)
    current = str(manager.current(identity.tenant, user))
    latest = manager.conversations(identity.tenant, user, limit=1)
    if latest and latest[0].session_id == current:
        open_conversation(latest[0], client)
    else:
        start_draft(identity, manager)
        st.session_state.conversation_id = current


def follow_url(identity: Identity, manager: SessionManager, client: RagApiClient) -> None:
    """On every run: if the URL names a different conversation than the page shows, switch (or refuse)."""
    wanted = st.query_params.get(URL_PARAM)
    current = st.session_state.get("conversation_id", "")
    if wanted and str(wanted) != session_uuid(current):
        resume(identity, manager, client, str(wanted))


# --- widget callbacks ----------------------------------------------------------------------


def _on_open(identity: Identity, manager: SessionManager, client: RagApiClient, session_id: str) -> None:
    try:
        row = manager.open(identity.tenant, user_id(identity), session_id)
    except ConversationNotFoundError:
        _refuse(identity, manager)
        return
    except Exception:
        log.exception("sessions store failed on open")
        st.session_state.notice = STORE_DOWN
        return
    open_conversation(row, client)


def _on_new(identity: Identity, manager: SessionManager) -> None:
    start_draft(identity, manager)


def _on_rename(identity: Identity, manager: SessionManager, session_id: str) -> None:
    state = st.session_state
    title = str(state.get(f"rename_{session_uuid(session_id)}") or "")
    try:
        manager.rename(identity.tenant, user_id(identity), session_id, title)
    except ValueError:
        state.notice = "A conversation needs a name: type at least one character."
        return
    except ConversationNotFoundError:
        state.notice = NOT_YOURS
        return
    except Exception:
        log.exception("sessions store failed on rename")
        state.notice = STORE_DOWN
        return
    state.notice = RENAMED


def _on_ask_delete(session_id: str) -> None:
    st.session_state.confirm_delete = session_id


def _on_cancel_delete() -> None:
    st.session_state.confirm_delete = None


def _on_delete(identity: Identity, manager: SessionManager, client: RagApiClient, session_id: str) -> None:
    """Delete the API's history first, then the record: a failure leaves the conversation listed, not half gone."""
    state = st.session_state
    state.confirm_delete = None
    user = user_id(identity)
    try:
        if session_id not in {r.session_id for r in manager.conversations(identity.tenant, user)}:
            raise ConversationNotFoundError("not listed for this user")
        client.delete_history(session_id)
        manager.delete(identity.tenant, user, session_id)
    except ConversationNotFoundError:
        state.notice = NOT_YOURS
        return
    except ApiError as exc:
        log.warning("history not deleted: %s (%s)", exc.code, exc.status)
        state.notice = f"{DELETE_FAILED} {exc.message}"
        return
    except Exception:
        log.exception("sessions store failed on delete")
        state.notice = DELETE_FAILED
        return
    if state.get("conversation_id") == session_id:
        start_draft(identity, manager)
    state.notice = DELETED


# --- the sidebar ---------------------------------------------------------------------------


def render_sidebar(identity: Identity, manager: SessionManager, client: RagApiClient) -> None:
    """The sidebar: "New chat", then one row per conversation (title, last activity, menu)."""
    state = st.session_state
    with st.sidebar:
        st.button(
            "New chat", key="new_chat", on_click=_on_new, args=(identity, manager), icon=":material/add:",
            type="primary", width="stretch",
        )  # fmt: skip
        try:
            rows = manager.conversations(identity.tenant, user_id(identity))
        except Exception:
            log.exception("sessions store failed on list")
            st.warning(STORE_DOWN)
            return
        if not rows:
            st.caption("Your conversations will be listed here.")
            return
        st.caption("Your conversations")
        now = manager.clock()
        for row in rows:
            cid, uid = row.session_id, row.conversation_id  # widget keys use the uuid only
            current = cid == state.get("conversation_id")
            title = neutralise_bidi(row.display_title)
            with st.container(key=f"conv_{uid}"):
                left, right = st.columns([6, 1], vertical_alignment="center", gap="small")
                with left:
                    st.button(
                        title, key=f"open_{uid}", on_click=_on_open, args=(identity, manager, client, cid),
                        type="secondary" if not current else "tertiary", width="stretch",
                        help=f"Last activity: {last_activity(row.last_activity, now)}", disabled=current,
                    )  # fmt: skip
                    st.caption(("Open now · " if current else "") + last_activity(row.last_activity, now))
                with right, st.popover("", icon=":material/more_vert:", help="Rename or delete"):
                    st.text_input("Name", value=row.title, key=f"rename_{uid}", max_chars=MAX_TITLE_CHARS)
                    st.button(
                        "Rename", key=f"do_rename_{uid}", on_click=_on_rename, args=(identity, manager, cid),
                        icon=":material/edit:",
                    )  # fmt: skip
                    if state.get("confirm_delete") == cid:
                        st.warning("Delete this conversation and its messages for good?")
                        st.button(
                            "Yes, delete", key=f"do_delete_{uid}", on_click=_on_delete,
                            args=(identity, manager, client, cid), type="primary", icon=":material/delete:",
                        )  # fmt: skip
                        st.button("Cancel", key=f"cancel_delete_{uid}", on_click=_on_cancel_delete)
                    else:
                        st.button(
                            "Delete", key=f"ask_delete_{uid}", on_click=_on_ask_delete, args=(cid,),
                            icon=":material/delete:",
                        )  # fmt: skip

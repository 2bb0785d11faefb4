"""The Documents page (tenant admins only): list, upload, delete with confirmation, re-index, status.

Streamlit rendering only; the logic is in :mod:`webapp.documents` and the calls in
:mod:`webapp.documents_client`. Per-user state lives in ``st.session_state`` under ``docs_*`` keys:

- ``docs_uploader``: the file uploader's generation (a new key empties it after an upload);
- ``docs_outcomes``: ``[{"name", "ok", "message"}]`` of the last upload;
- ``docs_confirm``: the document waiting for delete confirmation;
- ``docs_notice``: ``(kind, text)`` shown once (after a delete or a re-index request).
"""

from __future__ import annotations

import streamlit as st

from rag.documents.contract import DocumentList
from webapp.documents import PAGE_CHAT, PAGE_DOCUMENTS, describe_ingestion, human_size, upload_files
from webapp.documents_client import DocumentsApiError, DocumentsClient

#: Seconds between status refreshes while an ingestion is queued or running.
REFRESH_SECONDS = 2.0
#: The chunks cell of a file the served index does not hold (an en dash: a "-" would render as a list).
NOT_INDEXED = "–"


def choose_page() -> str:
    """The sidebar switch between the chat and the Documents page (shown to admins only)."""
    return st.sidebar.radio("View", (PAGE_CHAT, PAGE_DOCUMENTS), key="page", horizontal=True) or PAGE_CHAT


def _notice(kind: str, text: str) -> None:
    {"success": st.success, "error": st.error, "warning": st.warning}.get(kind, st.info)(text)


def _start_ingestion(client: DocumentsClient) -> None:
    try:
        status = client.start_ingestion()
    except DocumentsApiError as exc:
        st.session_state.docs_notice = ("warning" if exc.code == "ingestion_running" else "error", exc.message)
        return
    st.session_state.docs_notice = ("info", f"Re-indexing queued (run {status.run_id}).")


def _delete(client: DocumentsClient, name: str) -> None:
    st.session_state.docs_confirm = None
    try:
        client.delete(name)
    except DocumentsApiError as exc:
        st.session_state.docs_notice = ("error", exc.message)
        return
    st.session_state.docs_notice = ("success", f"{name} deleted. Re-index to remove it from the answers.")


def _ask_delete(name: str | None) -> None:
    st.session_state.docs_confirm = name


def _ask_delete_chosen() -> None:
    st.session_state.docs_confirm = st.session_state.get("docs_delete_choice")


@st.fragment(run_every=REFRESH_SECONDS)
def _live_status(client: DocumentsClient, was_active: bool) -> None:
    """Re-reads the last ingestion every few seconds while one is active; a finished run reloads the page."""
    try:
        status = client.latest_ingestion()
    except DocumentsApiError as exc:
        st.warning(f"The re-indexing status cannot be read: {exc.message}")
        return
    kind, text = describe_ingestion(status)
    if was_active and (status is None or not status.state.active):
        st.rerun()  # the run ended: the list (chunks, skipped files) and the index version changed
    if kind == "running" and status and status.progress and status.progress.total:
        st.progress(min(1.0, status.progress.done / status.progress.total), text=text)
    else:
        _notice(kind, text)


def _render_table(listing: DocumentList, client: DocumentsClient) -> None:
    if not listing.documents:
        st.info("No documents yet. Upload some below.")
        return
    rows = [
        {
            "Name": doc.name,
            "Size": human_size(doc.size),
            "Last modified": doc.last_modified.strftime("%Y-%m-%d %H:%M UTC"),
            "Chunks in index": NOT_INDEXED if doc.chunks is None else str(doc.chunks),
            "Skipped": doc.skipped_reason or "",
        }
        for doc in listing.documents
    ]
    st.table(rows)
    deletable = [doc.name for doc in listing.documents if doc.deletable]
    if not deletable:
        return
    left, right = st.columns([4, 1], vertical_alignment="bottom")
    with left:
        st.selectbox("Document to delete", deletable, key="docs_delete_choice")
    with right:
        st.button("Delete", key="docs_delete", on_click=_ask_delete_chosen, icon=":material/delete:")
    pending = st.session_state.get("docs_confirm")
    if pending:
        st.warning(f"Delete {pending}? It is removed from the answers at the next re-indexing.")
        yes, no = st.columns(2)
        yes.button(f"Yes, delete {pending}", key="docs_confirm_yes", on_click=_delete, args=(client, pending),
                   type="primary")  # fmt: skip
        no.button("Cancel", key="docs_confirm_no", on_click=_ask_delete, args=(None,))


def _render_upload(listing: DocumentList, client: DocumentsClient) -> None:
    limits = listing.limits
    st.subheader("Upload")
    st.caption(
        f"{', '.join(limits.suffixes)}; at most {human_size(limits.max_file_bytes)} per file and "
        f"{human_size(limits.max_upload_bytes)} per upload. A file with the name of an existing one replaces it."
    )
    generation = st.session_state.setdefault("docs_uploader", 0)
    files = st.file_uploader("Add documents", accept_multiple_files=True, key=f"docs_files_{generation}")
    if st.button(
        "Upload selected files", key="docs_upload", disabled=not files, type="primary", icon=":material/upload:"
    ):
        outcomes = upload_files(client, [(f.name, f.getvalue()) for f in files or []], limits)
        st.session_state.docs_outcomes = [o.__dict__ for o in outcomes]
        st.session_state.docs_uploader = generation + 1
        st.rerun()
    for outcome in st.session_state.get("docs_outcomes") or []:
        (st.success if outcome["ok"] else st.error)(outcome["message"])


def render_documents_page(client: DocumentsClient, tenant_name: str) -> None:
    """The whole page."""
    st.title("Documents")
    st.caption(f"The files the {tenant_name} answers from. Changes reach the answers after a re-index.")
    notice = st.session_state.pop("docs_notice", None)
    if notice:
        _notice(*notice)
    try:
        listing = client.list()
    except DocumentsApiError as exc:
        st.error(f"The documents cannot be listed: {exc.message}")
        st.button("Retry", key="docs_retry")
        return
    last = listing.last_ingestion
    active = bool(last and last.state.active)
    version = listing.index_version or "none loaded"
    chunks = f" ({listing.index_chunks} chunks)" if listing.index_chunks is not None else ""
    left, right = st.columns([4, 1], vertical_alignment="bottom")
    left.markdown(f"**Index version:** `{version}`{chunks}")
    right.button("Re-index now", key="docs_reindex", on_click=_start_ingestion, args=(client,), disabled=active,
                 icon=":material/refresh:")  # fmt: skip
    if active:
        _live_status(client, True)
    else:
        kind, text = describe_ingestion(last)
        _notice(kind, text)
    _render_table(listing, client)
    _render_upload(listing, client)

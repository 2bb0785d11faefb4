"""The tenant's web chat page: ``streamlit run webapp/app.py``.

Thin on purpose: configuration, identity, conversations, rendering and the RAG API client live in
the ``webapp`` modules; this page only wires them up in Streamlit's chat loop.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from rag.contract import MAX_QUESTION_CHARS
from rag.logs import configure_logging, set_log_context
from rag.stores import sessions
from webapp import api_client, conversations, documents, documents_page, identity, ui
from webapp.config import ConfigError, web_settings

FAVICON = str(Path(__file__).parent / "assets" / "favicon.png")  # served by Streamlit itself (offline)

try:
    settings = web_settings()
except ConfigError as exc:
    st.set_page_config(page_title="Configuration error", page_icon=FAVICON)
    ui.stop_with_config_error(exc)
st.set_page_config(page_title=ui.display_name(settings), page_icon=FAVICON)  # the tab shows the tenant's name
configure_logging(fmt=settings.log_format)  # JSON lines with the turn's request id (idempotent)
set_log_context(tenant=settings.tenant_id)

try:
    user = identity.resolve_identity(identity.request_headers(), settings)
except identity.IdentityError as exc:
    ui.stop_with_denial(exc)

# Tenant admins get a Documents page (webapp/documents_page.py); everybody else never sees the switch.
admin = documents.admin_identity(identity.request_headers(), settings)
if admin is not None and documents_page.choose_page() == documents.PAGE_DOCUMENTS:
    documents_page.render_documents_page(
        documents.client_for(settings, admin), settings.tenant_display_name or settings.tenant_id
    )
    st.stop()

manager = sessions.SessionManager(ui.session_store(settings), settings.session_idle_seconds)
client = api_client.client_from_settings(settings)

ui.init_state(user, manager, client)
conversations.render_sidebar(user, manager, client)
ui.render_header(settings, user)
ui.render_welcome(settings)
ui.render_messages(settings, client)
ui.render_notices(client)

prompt = st.chat_input("Ask a question about your documents", key=ui.CHAT_BOX, max_chars=MAX_QUESTION_CHARS)
question, regenerate = ui.pending_question(prompt)
if question is not None:
    ui.send(question, user, manager, client, settings, regenerate=regenerate)

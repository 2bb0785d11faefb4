"""The tenant's web chat page: ``streamlit run webapp/app.py``.

Thin on purpose: configuration, identity, sessions and the RAG API client live in the
``webapp`` modules; this page only wires them up in Streamlit's chat loop.
"""

from __future__ import annotations

import streamlit as st

from rag.logs import configure_logging, set_log_context
from rag.stores import sessions
from webapp import api_client, documents, documents_page, identity, ui
from webapp.config import ConfigError, web_settings

st.set_page_config(page_title="Assistant", page_icon=":material/forum:")

try:
    settings = web_settings()
except ConfigError as exc:
    ui.stop_with_config_error(exc)
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
ui.render_header(settings, user, manager)
ui.render_messages(client)
ui.render_notices(client)

prompt = st.chat_input("Ask a question about your documents")
if question := ui.pending_question(prompt):
    ui.send(question, user, manager, client)

"""The RAG API's ASGI app: ``api.main:app`` (``gunicorn -c api/gunicorn.conf.py api.main:app``).

Importing this module does nothing heavy: settings, clients, the index and the chain are built by
the lifespan (:mod:`api.lifespan`) when a server starts the app.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from api.docs_assets import install_offline_docs
from api.errors import install_error_handlers
from api.lifespan import Components, make_lifespan
from api.middleware import BodySizeLimitMiddleware, RequestContextMiddleware, configure_logging
from api.routes import documents, documents_links, health, ingestions, ops, rag, sessions

#: Largest accepted request body (bytes): a 4000-character question fits many times over.
MAX_BODY_BYTES = 64 * 1024


def create_app(*, max_body_bytes: int = MAX_BODY_BYTES, **components: Any) -> FastAPI:
    """Create the app.

    Args:
        max_body_bytes: request body limit in bytes (413 above it).
        components: optional ready-made parts, see :class:`api.lifespan.Components`
            (``settings=``, ``chat_model=``, ``embeddings=``, ``history=``, ...).
    """
    app = FastAPI(
        title="Tenant RAG API",
        version="1.0.0",
        summary="Conversational retrieval-augmented answers over one tenant's documents.",
        lifespan=make_lifespan(Components(**components)),
        docs_url=None,  # served with local assets by install_offline_docs (works offline)
        redoc_url=None,
    )
    install_error_handlers(app)
    install_offline_docs(app)
    app.include_router(rag.router)
    app.include_router(sessions.router)
    app.include_router(ops.router)
    app.include_router(documents_links.router)
    app.include_router(health.router)
    app.include_router(documents.router)  # documents area: uploads carry their own limit (UPLOAD_MAX_FILE_BYTES)
    app.include_router(ingestions.router)
    app.add_middleware(
        BodySizeLimitMiddleware, max_bytes=max_body_bytes, exempt_prefixes=(documents.router.prefix + "/",)
    )
    app.add_middleware(RequestContextMiddleware)  # outermost: ids and metrics cover 413s too
    return app


configure_logging()
app = create_app(freeze_heap=True)

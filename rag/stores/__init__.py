"""Per-tenant state outside the index: chat history, web-chat sessions, usage, quota and feedback.

Every store has a DynamoDB backend (production), a SQLite backend (``sqlite:///path``, local) and
most an in-memory one; all share ``rag.stores.base`` (one unavailable-error family, one DynamoDB
error mapping, one SQLite URL type, one backend selector). The RAG API and the web chat both use it.
"""

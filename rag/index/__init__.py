"""The tenant's index: the versioned on-disk format, its directory and S3 stores, and embeddings.

Owns ``LATEST`` + ``v/<version>/`` (see ``rag.index.store``) and the embeddings factory
(``rag.index.embeddings``). Used by the ingestion job (writer) and the RAG API (reader); never by the
web chat.
"""

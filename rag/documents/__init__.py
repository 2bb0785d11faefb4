"""A tenant's source documents: the upload rules, the document stores and the wire models.

- :mod:`rag.documents.contract`: pydantic models of the document and ingestion messages between the
  web chat and the RAG API (and of the ingestion status object the job writes beside the index);
- :mod:`rag.documents.rules`: what an uploaded file must be (name, type from its content, size);
- :mod:`rag.documents.store`: the ``documents/`` prefix of the tenant bucket, or a local directory.
"""

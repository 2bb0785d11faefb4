"""The shared core of tenant-rag: a small kernel plus three subpackages by job.

Kernel (modules directly in ``rag``; every runtime unit may import them):

- ``rag.settings``: every environment variable, validated once (pydantic-settings).
- ``rag.tenant``: tenant and session ids, their canonical forms.
- ``rag.serving``: constants of the API process (gunicorn's master reads them; no imports).
- ``rag.aws``: the one boto3 client factory (timeouts, retries).
- ``rag.logs``: JSON logging and the request/tenant log context.
- ``rag.text``: small text helpers shared by retrieval and the answerers.
- ``rag.contract``: the wire contract between the web chat and the RAG API (pydantic models of every
  request, response, SSE event and error body, and the constants both sides share).

Subpackages (each above the kernel, none imports another except where stated):

- ``rag.index``: the index format, its directory/S3 stores and the embeddings factory.
- ``rag.answer``: retrieval (dense, hybrid, rerank), the chain, chat models and the answer path's
  spans. May import ``rag.index``.
- ``rag.stores``: history, sessions, usage, quota and feedback on one base.

``rag.eval`` (the evaluation command) sits above them all. The rules are checked by import-linter
(``[tool.importlinter]`` in ``pyproject.toml``, run by ``make test``).
"""

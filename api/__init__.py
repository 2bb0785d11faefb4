"""The tenant RAG API (FastAPI under gunicorn): ``api.main:app``; see ``docs/api.md``."""

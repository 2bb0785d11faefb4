"""Constants of how the RAG API process is served, shared by ``api/gunicorn.conf.py`` and :mod:`rag.settings`.

This module imports nothing: gunicorn's master process reads its configuration file before any
worker exists, and a master that imported :mod:`rag.settings` (pydantic, pydantic-settings) held
about 8 MiB more of its own (PSS, measured by ``benchmarks/api_bench.py``; see docs/api.md
"Workers and memory") for one number.
"""

#: Seconds in-flight answers get after SIGTERM before the worker exits (gunicorn's ``graceful_timeout``,
#: https://docs.gunicorn.org/en/stable/settings.html#graceful-timeout; environment ``GUNICORN_GRACEFUL_TIMEOUT``).
#: Keep it below the pod's ``terminationGracePeriodSeconds``.
GRACEFUL_TIMEOUT_SECONDS = 30.0

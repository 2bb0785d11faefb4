"""Prometheus metrics of the RAG API (https://prometheus.github.io/client_python/).

Under gunicorn with several workers, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty writable
directory: each worker writes its samples there and ``/metrics`` aggregates them
(https://prometheus.github.io/client_python/multiprocess/). ``api/gunicorn.conf.py`` empties it at
start and marks dead workers.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)

REQUESTS = Counter("ragapi_requests_total", "HTTP requests by route, method and status.", ["route", "method", "status"])
LATENCY = Histogram(
    "ragapi_request_duration_seconds",
    "Time from request to the end of the response body (seconds), by route.",
    ["route", "method"],
    buckets=_LATENCY_BUCKETS,
)
TTFT = Histogram(
    "ragapi_time_to_first_token_seconds",
    "Time from request to the first answer token (seconds), by route.",
    ["route"],
    buckets=_LATENCY_BUCKETS,
)
TOKENS = Counter("ragapi_tokens_total", "Model tokens, by direction (input/output).", ["direction"])
RETRIEVAL = Histogram(
    "ragapi_retrieval_duration_seconds",
    "Query embedding + index search (seconds).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
INFLIGHT = Gauge(
    "ragapi_answers_in_flight",
    "Answers being run now (summed over the pod's workers; the HPA's per-pod metric).",
    multiprocess_mode="livesum",
)
SHED = Counter(
    "ragapi_answers_shed_total",
    "Answers refused with 503 overloaded because MAX_INFLIGHT_ANSWERS were running.",
)
ANSWER_ERRORS = Counter("ragapi_answer_errors_total", "Failed answers by error code and route.", ["route", "error"])
INDEX_INFO = Gauge(
    "ragapi_index_info",
    "The loaded index version (value 1) with its embedding model.",
    ["tenant", "version", "embedding_model"],
    multiprocess_mode="liveall",
)
INDEX_CHUNKS = Gauge("ragapi_index_chunks", "Chunks in the loaded index.", multiprocess_mode="liveall")
INDEX_RELOADS = Counter("ragapi_index_reloads_total", "Index versions loaded (first load included).")
INDEX_RELOAD_FAILURES = Counter("ragapi_index_reload_failures_total", "Failed index loads (old index kept).")

# --- operating many tenants: labels are bounded (tenant, model id, fixed enums); never the user ---
MODEL_TOKENS = Counter(
    "ragapi_model_tokens_total",
    "Model tokens by tenant, model id and direction (input/output); estimated for local models.",
    ["tenant", "model", "direction"],
)
COST = Counter(
    "ragapi_estimated_cost_usd_total",
    "Estimated model cost in USD (price table PRICE_TABLE_JSON over list prices), by tenant and model.",
    ["tenant", "model"],
)
QUOTA_REJECTIONS = Counter(
    "ragapi_quota_rejections_total",
    "Requests refused with 429, by tenant, scope (tenant/user) and kind (rpm/tokens_per_day).",
    ["tenant", "scope", "kind"],
)
QUOTA_ERRORS = Counter(
    "ragapi_quota_backend_errors_total",
    "Quota counter failures (the request was admitted: quotas fail open).",
    ["tenant"],
)
USAGE_ERRORS = Counter("ragapi_usage_record_errors_total", "Usage records that could not be stored.", ["tenant"])
UNGROUNDED = Counter(
    "ragapi_ungrounded_answers_total",
    "Answers saying the documents do not cover the question, by tenant and reason "
    "(no_relevant_passage: nothing cleared the relevance floor, no model call; model_refused).",
    ["tenant", "reason"],
)
FEEDBACK = Counter("ragapi_feedback_total", "Feedback received, by tenant and rating (up/down).", ["tenant", "rating"])

#: Every metric name /metrics exports (histograms add _bucket/_sum/_count, counters _total).
EXPORTED = (
    REQUESTS,
    LATENCY,
    TTFT,
    TOKENS,
    RETRIEVAL,
    ANSWER_ERRORS,
    INFLIGHT,
    SHED,
    INDEX_INFO,
    INDEX_CHUNKS,
    INDEX_RELOADS,
    INDEX_RELOAD_FAILURES,
    MODEL_TOKENS,
    COST,
    QUOTA_REJECTIONS,
    QUOTA_ERRORS,
    USAGE_ERRORS,
    UNGROUNDED,
    FEEDBACK,
)


def render() -> tuple[bytes, str]:
    """The exposition text and its content type (aggregated across workers in multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST

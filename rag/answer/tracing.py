"""Optional OpenTelemetry traces: spans for retrieval, the model calls and the chat history.

Enabled by the standard variables: ``OTEL_EXPORTER_OTLP_ENDPOINT`` set (and the optional extra
``otel`` installed: ``opentelemetry-sdk`` + ``opentelemetry-exporter-otlp-proto-http``) → spans go
to that OTLP/HTTP endpoint; ``OTEL_SERVICE_NAME`` names the service (default ``ragapi``). Otherwise
every helper here is a no-op (the OpenTelemetry API's default tracer, or nothing at all when the
package is not installed). Span attributes never hold prompts, documents, answers or tokens.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from rag.settings import Settings

logger = logging.getLogger("rag.answer.tracing")
TRACER_NAME = "tenant-rag"

try:  # the API package comes with langchain; the SDK is the optional extra
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover - depends on the installation
    _trace = None  # type: ignore[assignment]


def setup_tracing(settings: Settings, *, default_service: str = "ragapi") -> bool:
    """Install an OTLP exporter when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set and the SDK is present.

    Returns:
        True when traces are exported.
    """
    if not settings.otel_exporter_otlp_endpoint:
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        logger.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but the 'otel' extra is not installed: no traces")
        return False
    resource = Resource.create(
        {"service.name": settings.otel_service_name or default_service, "tenant": settings.tenant_id}
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # reads the OTEL_* variables
    _trace.set_tracer_provider(provider)
    logger.info("OpenTelemetry traces exported to %s", settings.otel_exporter_otlp_endpoint)
    return True


@contextlib.contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """A span around a block (the current span becomes its parent); yields the span or None."""
    if _trace is None:
        yield None
        return
    attrs = {k: v for k, v in attributes.items() if v is not None}
    with _trace.get_tracer(TRACER_NAME).start_as_current_span(name, attributes=attrs) as current:
        yield current


def start_span(name: str, **attributes: Any) -> Any:
    """Start a span that the caller ends (``end_span``); for callback pairs such as start/end of a model call."""
    if _trace is None:
        return None
    return _trace.get_tracer(TRACER_NAME).start_span(
        name, attributes={k: v for k, v in attributes.items() if v is not None}
    )


def end_span(current: Any, *, error: BaseException | None = None, **attributes: Any) -> None:
    """End a span from :func:`start_span` (records the error type when given)."""
    if current is None:
        return
    for key, value in attributes.items():
        if value is not None:
            current.set_attribute(key, value)
    if error is not None:
        current.set_attribute("error.type", type(error).__name__)
        from opentelemetry.trace import Status, StatusCode

        current.set_status(Status(StatusCode.ERROR, type(error).__name__))
    current.end()

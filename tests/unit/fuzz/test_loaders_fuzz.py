"""Loaders on random bytes: a document list or :class:`ingest.loaders.LoaderError`, nothing else.

The ingestion job skips a file that raises ``LoaderError`` and lists it; any other exception would
abort the whole job (one bad upload would stop a tenant's index from being refreshed).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from langchain_core.documents import Document

from ingest.loaders import LoaderError, load_csv, load_file

SUFFIXES = [".csv", ".txt", ".md", ".html", ".htm", ".pdf", ".bin", ""]
FUZZ = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# Byte strings that look like the formats, so the fuzzer gets past the first check of each loader.
_PREFIXES = st.sampled_from([b"", b"%PDF-1.4\n", b"%PDF-", b"<html><body>", b'"a","b"\n', b"\xef\xbb\xbf", b"q?,a\n"])
_TEXTY = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]) | st.sampled_from(list(',"\n\r\t\x00<>/')),
    max_size=300,
).map(lambda s: s.encode("utf-8"))
PAYLOADS = st.builds(lambda p, body: p + body, _PREFIXES, st.binary(max_size=400) | _TEXTY)


def _check(result: object) -> None:
    assert isinstance(result, list)
    assert all(isinstance(d, Document) and isinstance(d.page_content, str) for d in result)
    for doc in result:
        assert "source" in doc.metadata


@FUZZ
@given(data=PAYLOADS, suffix=st.sampled_from(SUFFIXES))
@example(data=b"", suffix=".csv")
@example(data=b"\x00\x00\x00", suffix=".csv")
@example(data=b'"unterminated\n', suffix=".csv")
@example(data=b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF", suffix=".pdf")
@example(data=b"<html><script>" + b"<" * 2000, suffix=".html")
@example(data=b"\xff\xfe\x00\x00", suffix=".txt")
def test_load_file_returns_documents_or_loader_error(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"doc{suffix}"
        path.write_bytes(data)
        try:
            result = load_file(path, f"s3://tenanta-docs/documents/doc{suffix}")
        except LoaderError as exc:
            assert str(exc)  # a readable reason for the job summary
            return
    _check(result)


@FUZZ
@given(data=PAYLOADS)
@example(data=b"a," * 5000)
@example(data=b'"' + b"x" * 200_000 + b'"\n')  # one huge quoted field
@example(data=b"q?\x00,a\n")
@example(data=b"\r\r\r\n\n,,,\n")
def test_load_csv_returns_documents_or_loader_error(data: bytes) -> None:
    try:
        result = load_csv(data, "faq.csv")
    except LoaderError:
        return
    _check(result)
    assert result, "a CSV that loads yields at least one document"

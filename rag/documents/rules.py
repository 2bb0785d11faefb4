"""What an uploaded document must be: a plain file name, a supported type that its bytes confirm, a size.

Checked by the RAG API before anything is written (and by ``rag`` operators' tools), so a refused
upload leaves the bucket as it was. Every refusal is a :class:`DocumentRejected` with a stable
``code`` and a sentence for people.

Types are recognised from the content, not only from the suffix:

- PDF: the ``%PDF-`` header within the first 1024 bytes (ISO 32000-1, 7.5.2 and Annex H.3);
- text, Markdown and CSV: strict UTF-8 (a BOM is allowed), no NUL bytes, not a PDF; CSV must also
  parse with Python's ``csv`` module;
- HTML: UTF-8 whose first tag is one the WHATWG MIME sniffing standard lists for ``text/html``
  (https://mimesniff.spec.whatwg.org/#identifying-a-resource-with-an-unknown-mime-type).
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import dataclass

#: Suffix → (kind, Content-Type stored with the object). The ingestion job has a loader for each
#: (``ingest.loaders.SUPPORTED_SUFFIXES``; a unit test keeps the two in step).
UPLOAD_TYPES: dict[str, tuple[str, str]] = {
    ".pdf": ("pdf", "application/pdf"),
    ".txt": ("text", "text/plain; charset=utf-8"),
    ".md": ("text", "text/markdown; charset=utf-8"),
    ".markdown": ("text", "text/markdown; charset=utf-8"),
    ".csv": ("csv", "text/csv; charset=utf-8"),
    ".html": ("html", "text/html; charset=utf-8"),
    ".htm": ("html", "text/html; charset=utf-8"),
}
#: Longest file name accepted, in characters (S3 keys may have 1024 bytes; names stay readable).
MAX_NAME_CHARS = 200
#: Bytes searched for the PDF header.
PDF_HEADER_WINDOW = 1024
#: Largest CSV field the check accepts (the ingestion job's limit, ``ingest.loaders.MAX_CSV_FIELD_CHARS``).
MAX_CSV_FIELD_CHARS = 1024 * 1024
# WHATWG mimesniff "HTML" patterns: the tag name, then a tag-terminating byte (space or '>').
_HTML_START = re.compile(
    rb"^<(!doctype html|html|head|script|iframe|h1|div|font|table|a|style|title|b|body|br|p|!--)[ >\t\n\r\x0c]",
    re.IGNORECASE,
)


class DocumentRejected(ValueError):
    """An upload is refused.

    Attributes:
        code: ``invalid_name``, ``unsupported_type``, ``empty_file``, ``file_too_large``,
            ``content_mismatch`` or ``invalid_encoding``.
        message: a sentence naming the file and the problem.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class CheckedDocument:
    """An upload that passed every check.

    Attributes:
        name: the normalised file name.
        kind: ``pdf``, ``text``, ``csv`` or ``html``.
        content_type: the ``Content-Type`` to store.
        data: the bytes (unchanged).
    """

    name: str
    kind: str
    content_type: str
    data: bytes


def normalise_name(raw: str) -> str:
    """Return the upload's file name in normal form, or refuse it.

    Normal form is Unicode NFC without surrounding whitespace. Refused: an empty name, a name with
    a folder part (``/`` or ``\\``), ``.``/``..``, a hidden name (leading ``.``: the ingestion job
    ignores those), control or format characters, more than :data:`MAX_NAME_CHARS` characters, and a
    suffix not in :data:`UPLOAD_TYPES`.

    Args:
        raw: the name as sent, e.g. ``"Guide.pdf"``.

    Raises:
        DocumentRejected: ``invalid_name`` or ``unsupported_type``.
    """
    if not isinstance(raw, str):
        raise DocumentRejected("invalid_name", "The file name must be text.")
    name = unicodedata.normalize("NFC", raw).strip()
    shown = repr(name[:60])
    if not name:
        raise DocumentRejected("invalid_name", "The file name is empty.")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise DocumentRejected("invalid_name", f"The file name {shown} contains control characters.")
    if "/" in name or "\\" in name:
        raise DocumentRejected(
            "invalid_name", f"The file name {shown} has a folder part: upload plain file names only."
        )
    if name.startswith("."):
        raise DocumentRejected("invalid_name", f"The file name {shown} starts with a dot (hidden files are not read).")
    if len(name) > MAX_NAME_CHARS:
        raise DocumentRejected("invalid_name", f"The file name is longer than {MAX_NAME_CHARS} characters.")
    suffix = suffix_of(name)
    if suffix not in UPLOAD_TYPES:
        allowed = ", ".join(sorted(UPLOAD_TYPES))
        raise DocumentRejected(
            "unsupported_type", f"{name}: the type {suffix or '(no suffix)'} is not supported (allowed: {allowed})."
        )
    return name


def suffix_of(name: str) -> str:
    """The lower-cased suffix of ``name`` including the dot (``""`` when it has none)."""
    stem, dot, suffix = name.rpartition(".")
    return f".{suffix.lower()}" if dot and stem else ""


def _utf8(name: str, data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentRejected("invalid_encoding", f"{name}: not valid UTF-8 (byte {exc.start}).") from None
    if "\x00" in text:
        raise DocumentRejected("content_mismatch", f"{name}: holds binary data (NUL bytes), not text.")
    return text


def _is_pdf(data: bytes) -> bool:
    return data[:PDF_HEADER_WINDOW].lstrip().startswith(b"%PDF-")


def check_content(name: str, data: bytes) -> tuple[str, str]:
    """Check that ``data`` is what the suffix of ``name`` (already normalised) says.

    Returns:
        ``(kind, content_type)``.

    Raises:
        DocumentRejected: ``empty_file``, ``content_mismatch`` or ``invalid_encoding``.
    """
    kind, content_type = UPLOAD_TYPES[suffix_of(name)]
    if not data.strip():
        raise DocumentRejected("empty_file", f"{name}: the file is empty.")
    if kind == "pdf":
        if not _is_pdf(data):
            raise DocumentRejected("content_mismatch", f"{name}: not a PDF (no %PDF- header), whatever its name says.")
        return kind, content_type
    if _is_pdf(data):
        raise DocumentRejected("content_mismatch", f"{name}: is a PDF; name it .pdf.")
    text = _utf8(name, data)
    if kind == "html" and not _HTML_START.match(text.lstrip().encode("utf-8")[:64] + b" "):
        raise DocumentRejected("content_mismatch", f"{name}: does not start like an HTML document.")
    if kind == "csv":
        csv.field_size_limit(MAX_CSV_FIELD_CHARS)
        try:
            for _ in csv.reader(io.StringIO(text, newline=""), strict=True):  # e.g. an unclosed quote
                pass
        except csv.Error as exc:
            raise DocumentRejected("content_mismatch", f"{name}: not a readable CSV ({exc}).") from None
    return kind, content_type


def check_document(raw_name: str, data: bytes, *, max_bytes: int) -> CheckedDocument:
    """All checks of one upload: name, size, then content.

    Args:
        raw_name: the name as sent.
        data: the file's bytes.
        max_bytes: the largest accepted size (``UPLOAD_MAX_FILE_BYTES``).

    Raises:
        DocumentRejected: the first failed check.
    """
    name = normalise_name(raw_name)
    if len(data) > max_bytes:
        raise DocumentRejected("file_too_large", f"{name}: {len(data)} bytes is over the {max_bytes} byte limit.")
    kind, content_type = check_content(name, data)
    return CheckedDocument(name=name, kind=kind, content_type=content_type, data=data)

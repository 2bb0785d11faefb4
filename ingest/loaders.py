"""Document loaders: one source file in, LangChain ``Document`` objects out (before chunking).

Formats: CSV (two-column FAQ files without a header row, where the first row is data; or any CSV
with a header row), plain text, Markdown, HTML (LangChain's ``BSHTMLLoader``) and PDF
(LangChain's ``PyPDFLoader``). Every document carries ``source`` and, where it applies, ``row``
(CSV, 0-based data row), ``page`` (PDF, 0-based) and ``title``, which the API returns as citations.

A file that cannot be parsed raises :class:`LoaderError`; the ingestion job skips it and lists it
in its summary.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from pathlib import Path

from langchain_core.documents import Document

#: Largest source file the job reads (bytes); bigger files are skipped with a reason.
MAX_SOURCE_BYTES = 100 * 1024 * 1024
#: Python's csv module refuses fields over 128 KiB by default; FAQ answers are far shorter.
MAX_CSV_FIELD_CHARS = 1024 * 1024


class LoaderError(ValueError):
    """A source file is empty, not valid UTF-8, malformed or of an unsupported type."""


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LoaderError(f"{name}: not valid UTF-8 (byte {exc.start})") from exc


def _clean(text: str) -> str:
    return re.sub(r"[ \t]+\n", "\n", text).strip()


def _looks_like_headerless_faq(rows: list[list[str]]) -> bool:
    """Two columns in (nearly) every row and a first row that reads like a question, not column names."""
    if not rows or len(rows[0]) != 2:
        return False
    two_columns = sum(1 for r in rows if len(r) == 2)
    first = rows[0][0].strip()
    return two_columns >= 0.9 * len(rows) and (first.endswith("?") or len(first.split()) > 4)


def load_csv(data: bytes, source: str) -> list[Document]:
    """Load CSV bytes: one document per data row.

    Two-column files whose first row reads like a question (the FAQ format of the demo corpora,
    which have no header) keep their first row: content ``"<question>\\n<answer>"``, title the
    question. Other files use the first row as the header: content ``"column: value"`` lines.
    Blank rows are skipped; rows with a different number of fields than the header (ragged) are
    skipped too, and a file with no usable row raises.

    Args:
        data: raw file bytes (UTF-8, with or without BOM).
        source: the URI recorded in ``metadata["source"]``.

    Raises:
        LoaderError: empty, not UTF-8, unparsable, or no usable row.
    """
    text = _decode(data, source)
    if not text.strip():
        raise LoaderError(f"{source}: empty file")
    csv.field_size_limit(MAX_CSV_FIELD_CHARS)
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise LoaderError(f"{source}: malformed CSV ({exc})") from exc
    indexed = [(i, r) for i, r in enumerate(rows) if any(cell.strip() for cell in r)]
    if not indexed:
        raise LoaderError(f"{source}: no data rows")
    documents: list[Document] = []
    if _looks_like_headerless_faq([r for _, r in indexed]):
        for row_number, row in indexed:
            if len(row) != 2:
                continue  # ragged row: skipped
            question, answer = _clean(row[0]), _clean(row[1])
            documents.append(
                Document(
                    page_content=f"{question}\n{answer}",
                    metadata={"source": source, "row": row_number, "title": question[:200]},
                )
            )
        return documents
    _, header = indexed[0]
    names = [h.strip() or f"column_{i}" for i, h in enumerate(header)]
    for data_row, (_, row) in enumerate(r for r in indexed[1:]):
        if len(row) != len(names):
            continue  # ragged row: skipped (the count shows in the summary as fewer documents)
        lines = [f"{n}: {_clean(v)}" for n, v in zip(names, row, strict=True) if v.strip()]
        documents.append(
            Document(
                page_content="\n".join(lines),
                metadata={"source": source, "row": data_row, "title": _clean(row[0])[:200]},
            )
        )
    if not documents:
        raise LoaderError(f"{source}: no row matches the header's {len(names)} columns")
    return documents


def load_text(data: bytes, source: str) -> list[Document]:
    """Load plain text or Markdown; the title is the first Markdown heading or the file name.

    Raises:
        LoaderError: empty or not UTF-8.
    """
    text = _clean(_decode(data, source))
    if not text:
        raise LoaderError(f"{source}: empty file")
    heading = re.search(r"^#{1,6}\s+(.+)$", text, flags=re.MULTILINE)
    title = heading.group(1).strip() if heading else Path(source).name
    return [Document(page_content=text, metadata={"source": source, "title": title[:200]})]


def load_html(path: Path, source: str) -> list[Document]:
    """Load HTML with BeautifulSoup (``html.parser``): the page's text, ``<title>`` as title.

    Scripts, styles and templates are dropped. See https://www.crummy.com/software/BeautifulSoup/bs4/doc/.

    Raises:
        LoaderError: not UTF-8 or no text.
    """
    from bs4 import BeautifulSoup

    html = _decode(path.read_bytes(), source)  # refuse invalid UTF-8 with a clear message
    try:
        soup = BeautifulSoup(html, "html.parser")
        for tag in soup(["script", "style", "template", "noscript"]):
            tag.decompose()
        page_text = soup.get_text()
        page_title = soup.title.get_text() if soup.title else ""
    except Exception as exc:
        raise LoaderError(f"{source}: cannot parse HTML ({exc})") from exc
    text = _clean(re.sub(r"\n{3,}", "\n\n", page_text))
    if not text:
        raise LoaderError(f"{source}: no text in HTML")
    title = (page_title or Path(source).name).strip()
    return [Document(page_content=text, metadata={"source": source, "title": title[:200]})]


def load_pdf(path: Path, source: str) -> list[Document]:
    """Load a PDF with pypdf: one document per page with text, ``page`` 0-based.

    The title is the PDF's ``/Title`` metadata, else the file name. See https://pypdf.readthedocs.io/.

    Raises:
        LoaderError: not a PDF, encrypted, or no extractable text.
    """
    from pypdf import PdfReader

    if not path.read_bytes()[:1024].lstrip().startswith(b"%PDF-"):
        raise LoaderError(f"{source}: not a PDF (no %PDF- header)")
    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoaderError(f"{source}: cannot read PDF (encrypted)")
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
        pages = [page.extract_text() or "" for page in reader.pages]
    except LoaderError:
        raise
    except Exception as exc:
        raise LoaderError(f"{source}: cannot read PDF ({type(exc).__name__}: {exc})") from exc
    title = str(meta_title).strip() or Path(source).name
    documents = []
    for page_number, page_text in enumerate(pages):
        text = _clean(page_text)
        if text:
            documents.append(
                Document(page_content=text, metadata={"source": source, "page": page_number, "title": title[:200]})
            )
    if not documents:
        raise LoaderError(f"{source}: no extractable text (scanned PDF?)")
    return documents


_BYTE_LOADERS: dict[str, Callable[[bytes, str], list[Document]]] = {
    ".csv": load_csv,
    ".txt": load_text,
    ".md": load_text,
    ".markdown": load_text,
}
_PATH_LOADERS: dict[str, Callable[[Path, str], list[Document]]] = {
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
}
SUPPORTED_SUFFIXES = frozenset(_BYTE_LOADERS) | frozenset(_PATH_LOADERS)


def is_supported(name: str) -> bool:
    """True when the file name's suffix has a loader (case-insensitive)."""
    return Path(name).suffix.lower() in SUPPORTED_SUFFIXES


def load_file(path: Path, source: str) -> list[Document]:
    """Load one local file (already downloaded when it came from S3).

    Args:
        path: the file on disk.
        source: the URI recorded as ``metadata["source"]`` (the S3 URI or the path).

    Raises:
        LoaderError: unsupported type, too large, or unparsable.
    """
    suffix = Path(source).suffix.lower()
    size = path.stat().st_size
    if size > MAX_SOURCE_BYTES:
        raise LoaderError(f"{source}: {size} bytes is over the {MAX_SOURCE_BYTES} byte limit")
    if suffix in _BYTE_LOADERS:
        return _BYTE_LOADERS[suffix](path.read_bytes(), source)
    if suffix in _PATH_LOADERS:
        if size == 0:
            raise LoaderError(f"{source}: empty file")
        return _PATH_LOADERS[suffix](path, source)
    raise LoaderError(f"{source}: unsupported file type {suffix or '(none)'}")

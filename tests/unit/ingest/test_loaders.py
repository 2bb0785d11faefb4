"""Document loaders (ingest.loaders) on the real demo corpora and on broken files."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from ingest.loaders import LoaderError, is_supported, load_csv, load_file, load_text
from tests.unit.ingest.conftest import minimal_pdf


@pytest.mark.parametrize(("name", "expected"), [("Amazon_SageMaker_FAQs.csv", 154), ("Amazon_EMR_FAQs.csv", 261)])
def test_demo_corpora_counts_and_rows(data_dir: Path, name: str, expected: int) -> None:
    path = data_dir / name
    docs = load_file(path, str(path))
    assert len(docs) == expected
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    assert len(rows) == expected
    # the first row is data, not a header
    assert docs[0].metadata["row"] == 0
    assert docs[0].page_content.startswith(rows[0][0].strip())
    for doc in docs:
        row = doc.metadata["row"]
        question, answer = rows[row]
        assert doc.metadata["source"] == str(path)
        assert doc.metadata["title"] == question.strip()[:200]
        assert doc.page_content.split("\n", 1)[0] == question.strip()
        assert answer.strip()[:50] in doc.page_content
    assert [d.metadata["row"] for d in docs] == list(range(expected))
    assert not docs[0].page_content.startswith("\ufeff")


def test_csv_with_header_row() -> None:
    data = b"name,price,notes\nwidget,3,small\ngadget,5,\n\nthing,7,big\n"
    docs = load_csv(data, "/x/items.csv")
    assert [d.page_content for d in docs] == [
        "name: widget\nprice: 3\nnotes: small",
        "name: gadget\nprice: 5",
        "name: thing\nprice: 7\nnotes: big",
    ]
    assert [d.metadata["title"] for d in docs] == ["widget", "gadget", "thing"]
    assert [d.metadata["row"] for d in docs][:2] == [0, 1]
    assert all(d.metadata["source"] == "/x/items.csv" for d in docs)


def test_csv_two_column_header_is_not_data() -> None:
    docs = load_csv(b"question,answer\nWhat is it?,A thing.\n", "q.csv")
    assert len(docs) == 1
    assert docs[0].page_content == "question: What is it?\nanswer: A thing."


def test_headerless_faq_with_bom_and_quoted_newlines() -> None:
    data = '\ufeff"What is X?","X is\na thing."\n"How do I use Y?","Call it."\n'.encode()
    docs = load_csv(data, "faq.csv")
    assert [d.metadata["row"] for d in docs] == [0, 1]
    assert docs[0].page_content == "What is X?\nX is\na thing."
    assert docs[0].metadata["title"] == "What is X?"


def test_ragged_rows_are_skipped() -> None:
    data = b"a,b,c\n1,2,3\n4,5\n6,7,8,9\n10,11,12\n"
    docs = load_csv(data, "r.csv")
    assert [d.metadata["title"] for d in docs] == ["1", "10"]


def test_all_rows_ragged_raises() -> None:
    with pytest.raises(LoaderError, match="no row matches"):
        load_csv(b"a,b,c\n1,2\n3\n", "r.csv")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "empty"),
        ("blank.csv", b"  \n\t\n ", "empty"),
        ("blank.txt", b"   \n\n  ", "empty"),
        ("empty.md", b"", "empty"),
        ("latin1.csv", "caf\u00e9,cr\u00e8me\n".encode("latin-1"), "not valid UTF-8"),
        ("latin1.txt", b"\xff\xfe\xfa", "not valid UTF-8"),
        ("fake.pdf", b"this is not a pdf at all", "not a PDF"),
        ("truncated.pdf", b"%PDF-1.4\n1 0 obj\n<<", "PDF"),
        ("empty.pdf", b"", "empty"),
        ("empty.html", b"", "empty"),
        ("blank.html", b"<html><head></head><body>  \n </body></html>", "no text"),
        ("bad.html", b"<html>\xff\xfe</html>", "not valid UTF-8"),
        ("image.png", b"\x89PNG....", "unsupported"),
        ("noext", b"hello", "unsupported"),
    ],
)
def test_broken_files_raise_loader_error(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(LoaderError, match=message) as info:
        load_file(path, str(path))
    assert str(info.value).startswith(str(path))


def test_too_large_file_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ingest.loaders

    monkeypatch.setattr(ingest.loaders, "MAX_SOURCE_BYTES", 10)
    path = tmp_path / "big.txt"
    path.write_text("x" * 11)
    with pytest.raises(LoaderError, match="over the 10 byte limit"):
        load_file(path, str(path))


def test_text_and_markdown_titles(tmp_path: Path) -> None:
    md = tmp_path / "guide.md"
    md.write_text("Intro line\n\n## Getting started  \n\nSome text.\n\n# Later heading\n")
    [doc] = load_file(md, "s3://bucket/docs/guide.md")
    assert doc.metadata == {"source": "s3://bucket/docs/guide.md", "title": "Getting started"}
    assert "Some text." in doc.page_content
    txt = tmp_path / "notes.txt"
    txt.write_text("  plain notes  \nsecond line\n")
    [doc] = load_file(txt, str(txt))
    assert doc.metadata["title"] == "notes.txt"
    assert doc.page_content == "plain notes\nsecond line"
    assert "page" not in doc.metadata and "row" not in doc.metadata


def test_text_loader_strips_bom() -> None:
    [doc] = load_text("\ufeffhello".encode(), "a.txt")
    assert doc.page_content == "hello"


def test_html_title_and_text(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title> Billing FAQ </title><style>p{}</style></head>"
        "<body><h1>Billing</h1><p>You pay per hour.</p><p>Caf\u00e9 is fine.</p></body></html>",
        encoding="utf-8",
    )
    [doc] = load_file(path, str(path))
    assert doc.metadata == {"source": str(path), "title": "Billing FAQ"}
    assert "You pay per hour." in doc.page_content
    assert "Caf\u00e9" in doc.page_content
    assert "<p>" not in doc.page_content


def test_real_pdf_pages(tmp_path: Path) -> None:
    path = tmp_path / "manual.pdf"
    path.write_bytes(minimal_pdf(["First page about clusters", "Second page about billing"]))
    docs = load_file(path, "s3://bucket/docs/manual.pdf")
    assert [d.metadata["page"] for d in docs] == [0, 1]
    assert "clusters" in docs[0].page_content
    assert "billing" in docs[1].page_content
    assert all(d.metadata["source"] == "s3://bucket/docs/manual.pdf" for d in docs)
    assert all(d.metadata["title"] == "manual.pdf" for d in docs)


def test_pdf_without_text_raises(tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    path.write_bytes(minimal_pdf([""]))
    with pytest.raises(LoaderError, match="no extractable text"):
        load_file(path, str(path))


def test_pdf_loaded_from_a_differently_named_temp_file(tmp_path: Path) -> None:
    """The S3 source downloads to ``object.pdf``; the suffix and source come from the URI."""
    path = tmp_path / "object.pdf"
    path.write_bytes(minimal_pdf(["Hello"]))
    docs = load_file(path, "s3://b/documents/Guide.PDF")
    assert docs[0].metadata["source"] == "s3://b/documents/Guide.PDF"


@pytest.mark.parametrize(
    ("name", "supported"),
    [("a.csv", True), ("A.CSV", True), ("a.md", True), ("a.markdown", True), ("a.htm", True),
     ("a.pdf", True), ("a.txt", True), ("a.docx", False), ("a", False), ("a.csv.gz", False)],
)  # fmt: skip
def test_is_supported(name: str, supported: bool) -> None:
    assert is_supported(name) is supported

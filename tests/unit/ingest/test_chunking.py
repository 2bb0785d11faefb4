"""Splitting documents into chunks (ingest.pipeline.chunk_documents)."""

from __future__ import annotations

from langchain_core.documents import Document

from ingest.pipeline import chunk_documents, make_splitter


def _long_doc(source: str = "s3://b/documents/faq.csv", row: int = 7) -> Document:
    text = "\n\n".join(f"Paragraph {i}: " + ("lorem ipsum dolor sit amet " * 12) for i in range(12))
    return Document(page_content=text, metadata={"source": source, "row": row, "title": "Long one"})


def test_long_document_split_keeps_metadata() -> None:
    doc = _long_doc()
    chunks = chunk_documents([doc], make_splitter(500, 50))
    assert len(chunks) > 3
    assert all(len(c.page_content) <= 500 for c in chunks)
    for chunk in chunks:
        assert chunk.metadata["source"] == "s3://b/documents/faq.csv"
        assert chunk.metadata["row"] == 7
        assert chunk.metadata["title"] == "Long one"
        start = chunk.metadata["start_index"]
        assert doc.page_content[start : start + len(chunk.page_content)] == chunk.page_content
    ids = [c.metadata["id"] for c in chunks]
    assert len(set(ids)) == len(ids)


def test_ids_stable_across_runs_and_unique_across_sources() -> None:
    docs = [
        _long_doc("/a/x.md", 0),
        _long_doc("/a/y.md", 0),
        Document(page_content="short", metadata={"source": "/a/x.md"}),
    ]
    first = [c.metadata["id"] for c in chunk_documents([d.model_copy(deep=True) for d in docs], make_splitter(400, 40))]
    second = [
        c.metadata["id"] for c in chunk_documents([d.model_copy(deep=True) for d in docs], make_splitter(400, 40))
    ]
    assert first == second
    assert len(set(first)) == len(first)
    prefixes = {i.split("-")[0] for i in first}
    assert len(prefixes) == 2  # one per source
    assert all(len(p) == 12 for p in prefixes)


def test_short_rows_stay_one_chunk_each() -> None:
    docs = [Document(page_content=f"Q{i}?\nA{i}.", metadata={"source": "f.csv", "row": i}) for i in range(5)]
    chunks = chunk_documents(docs, make_splitter(1500, 150))
    assert [c.metadata["row"] for c in chunks] == [0, 1, 2, 3, 4]
    assert [c.metadata["id"].split("-")[1] for c in chunks] == ["000000", "000001", "000002", "000003", "000004"]

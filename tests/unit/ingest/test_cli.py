"""``python -m ingest`` in-process: exit codes and configuration errors."""

from __future__ import annotations

from pathlib import Path

import pytest

import ingest.__main__ as cli
from rag.index.store import LocalBlobStore, load_index_version, read_latest_version_id
from tests.unit.ingest.conftest import CountingEmbeddings, write_tree


@pytest.fixture
def fake_factory(monkeypatch: pytest.MonkeyPatch) -> list[CountingEmbeddings]:
    """Replace the embeddings factory the CLI imports (rag.index.embeddings.make_embeddings) with a fake."""
    made: list[CountingEmbeddings] = []

    def factory(settings, **_):
        made.append(CountingEmbeddings())
        return made[-1]

    monkeypatch.setattr("rag.index.embeddings.make_embeddings", factory)
    return made


def test_publishes_exit_0(tmp_path: Path, monkeypatch, capsys, fake_factory) -> None:
    docs = write_tree(tmp_path / "docs", {"faq.csv": "What is A?,A.\nWhat is B?,B.\n", "bad.pdf": b"nope"})
    monkeypatch.setenv("EMBEDDINGS_PROVIDER", "local")
    rc = cli.main(["--tenant", "tenanta", "--source", str(docs), "--index-uri", str(tmp_path / "idx"), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "chunks            2 (2 embedded, 0 reused)" in out
    assert "bad.pdf" in out
    assert read_latest_version_id(LocalBlobStore(tmp_path / "idx"))


def test_faiss_index_type_hnsw_from_the_environment(tmp_path: Path, monkeypatch, fake_factory) -> None:
    docs = write_tree(tmp_path / "docs", {"faq.csv": "What is A?,A.\nWhat is B?,B.\n"})
    monkeypatch.setenv("EMBEDDINGS_PROVIDER", "local")
    monkeypatch.setenv("FAISS_INDEX_TYPE", "hnsw")
    rc = cli.main(["--tenant", "tenanta", "--source", str(docs), "--index-uri", str(tmp_path / "idx"), "--no-progress"])
    assert rc == 0
    loaded = load_index_version(
        LocalBlobStore(tmp_path / "idx"), tenant="tenanta", embedding_model=fake_factory[0].model_id
    )
    assert loaded.manifest.index_type == "hnsw" and type(loaded.index).__name__ == "IndexHNSWFlat"


def test_env_fallbacks(tmp_path: Path, monkeypatch, capsys, fake_factory) -> None:
    docs = write_tree(tmp_path / "docs", {"a.txt": "hello"})
    monkeypatch.setenv("TENANT_ID", "tenantb")
    monkeypatch.setenv("INDEX_URI", str(tmp_path / "idx"))
    monkeypatch.setenv("EMBEDDINGS_PROVIDER", "local")
    assert cli.main(["--source", str(docs), "--no-progress"]) == 0
    assert "tenant            tenantb" in capsys.readouterr().out


def test_dry_run_exit_0_writes_nothing(tmp_path: Path, monkeypatch, fake_factory) -> None:
    docs = write_tree(tmp_path / "docs", {"a.txt": "hello"})
    monkeypatch.setenv("EMBEDDINGS_PROVIDER", "local")
    rc = cli.main(["--tenant", "tenanta", "--source", str(docs), "--index-uri", str(tmp_path / "idx"), "--dry-run",
                   "--no-progress"])  # fmt: skip
    assert rc == 0
    assert not (tmp_path / "idx").exists()
    assert fake_factory[0].calls == 0


def test_nothing_valid_exit_1(tmp_path: Path, monkeypatch, capsys, fake_factory) -> None:
    docs = write_tree(tmp_path / "docs", {"a.csv": b"", "b.txt": b"\xff"})
    monkeypatch.setenv("EMBEDDINGS_PROVIDER", "local")
    rc = cli.main(["--tenant", "tenanta", "--source", str(docs), "--index-uri", str(tmp_path / "idx"), "--no-progress"])
    assert rc == 1
    assert "nothing ingested" in capsys.readouterr().err
    assert not (tmp_path / "idx" / "LATEST").exists()


@pytest.mark.parametrize("tenant", ["../x", "A", "ab", "a/b", "tenant-"])
def test_bad_tenant_exit_2(tmp_path: Path, monkeypatch, capsys, fake_factory, tenant: str) -> None:
    monkeypatch.setenv("EMBEDDINGS_PROVIDER", "local")
    rc = cli.main(["--tenant", tenant, "--source", str(tmp_path), "--index-uri", str(tmp_path / "idx")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "invalid tenant id" in err
    assert "Traceback" not in err
    assert not fake_factory
    assert not (tmp_path / "idx").exists()


def test_bad_tenant_from_env_exit_2(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TENANT_ID", "../../etc")
    assert cli.main(["--source", str(tmp_path), "--index-uri", str(tmp_path / "idx")]) == 2
    assert "TENANT_ID: invalid tenant id" in capsys.readouterr().err


def test_missing_index_location_exit_2(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("EMBEDDINGS_PROVIDER", "local")
    assert cli.main(["--tenant", "tenanta", "--source", str(tmp_path)]) == 2
    assert "INDEX_URI or CONTEXTUAL_DATA_BUCKET" in capsys.readouterr().err


def test_missing_source_dir_exit_2(tmp_path: Path, monkeypatch, capsys, fake_factory) -> None:
    monkeypatch.setenv("EMBEDDINGS_PROVIDER", "local")
    rc = cli.main(["--tenant", "tenanta", "--source", str(tmp_path / "nope"), "--index-uri", str(tmp_path / "i")])
    assert rc == 2
    assert "does not exist" in capsys.readouterr().err


def test_s3_without_region_exit_2(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("EMBEDDINGS_PROVIDER", "local")
    rc = cli.main(["--tenant", "tenanta", "--source", "s3://bucket-a/documents/", "--index-uri", str(tmp_path)])
    assert rc == 2
    assert "AWS_DEFAULT_REGION" in capsys.readouterr().err

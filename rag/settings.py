"""Settings for every runtime unit, read once from the environment with pydantic-settings.

The variable names are the reference deployment's (``TENANT_ID``, ``CONTEXTUAL_DATA_BUCKET``,
``EMBEDDING_MODEL_ID``, ``TEXT2TEXT_MODEL_ID``, ``BEDROCK_SERVICE``, ``AWS_DEFAULT_REGION``,
``CHATHISTORY_TABLE``, ``SESSIONS_TABLE``, ``ISSUER_URI``) plus the provider switches of the local,
offline default (``EMBEDDINGS_PROVIDER``, ``LLM_PROVIDER``, ``HISTORY_URL``, ``SESSIONS_URL``,
``AUTH_MODE``, ``RAG_API_URL``). See ``README.md`` ("Configuration") for the full table.

A missing or malformed value stops the process with one line per variable
(:class:`SettingsError`), never a traceback from deep inside boto3.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import core_schema
from pydantic_settings import BaseSettings, SettingsConfigDict

from rag.serving import GRACEFUL_TIMEOUT_SECONDS
from rag.tenant import validate_tenant_id

TenantId = Annotated[str, AfterValidator(validate_tenant_id)]

#: A Cognito group name: letters, digits (Unicode, as ``\w``) and ``+=,.@-``, 1 to 128 characters
#: (https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_CreateGroup.html).
GROUP_NAME_PATTERN = r"[\w+=,.@-]{1,128}"
_GROUP_NAME_RE = re.compile(GROUP_NAME_PATTERN)


def validate_group_name(value: str) -> str:
    """Check a Cognito group name against :data:`GROUP_NAME_PATTERN` (the whole string).

    Python's ``re`` and not a pydantic ``pattern=``: pydantic compiles ``pattern`` with Rust's
    ``regex`` crate, whose automaton for a Unicode class under ``{1,128}`` holds about 12 MiB in every
    process that imports the settings (measured with ``/proc/self/smaps_rollup``; see docs/api.md
    "Workers and memory"); ``re`` keeps the same meaning in a few KiB.

    Raises:
        ValueError: not a group name.
    """
    if not _GROUP_NAME_RE.fullmatch(value):
        raise ValueError(f"must be 1 to 128 letters, digits or +=,.@-_ (got {value[:40]!r})")
    return value


GroupName = Annotated[str, AfterValidator(validate_group_name)]

#: How the API holds a flat index's vectors for search (``FLAT_SEARCH_PRECISION``; see
#: :func:`rag.answer.retrieval.half_precision_flat`).
FlatSearchPrecision = Literal["float16", "float32"]

#: Titan Text Embeddings output sizes (https://docs.aws.amazon.com/bedrock/latest/userguide/titan-embedding-models.html)
TITAN_V2_DIMENSIONS = (256, 512, 1024)
LOCAL_EMBEDDING_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


# --- stores: the sqlite:/// URL type of HISTORY_URL, SESSIONS_URL, USAGE_URL, QUOTA_URL, FEEDBACK_URL ---
# (here, in the kernel, because the settings use it; rag.stores.base re-exports it for the stores)


class SqliteUrl(str):
    """A ``sqlite:///path`` URL naming a local database file, validated (a ``str``, usable as a pydantic field).

    The form is SQLAlchemy's (https://docs.sqlalchemy.org/en/20/core/engines.html#sqlite):
    ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``. Refused: another scheme,
    an empty path, ``:memory:`` (each connection would get its own empty database), a query
    string, NUL or other control characters, and a path over 1024 characters.
    """

    PREFIX = "sqlite:///"
    MAX_PATH_CHARS = 1024

    @property
    def path(self) -> Path:
        """The database file."""
        return Path(self[len(self.PREFIX) :])

    @classmethod
    def parse(cls, value: object) -> SqliteUrl:
        """Validate ``value``.

        Raises:
            ValueError: not a usable ``sqlite:///path`` (the message says why).
        """
        if not isinstance(value, str) or not value.startswith(cls.PREFIX):
            raise ValueError("must look like sqlite:///path/to/file.db")
        path = value[len(cls.PREFIX) :]
        if not path.strip():
            raise ValueError("the database path after sqlite:/// is empty")
        if path == ":memory:" or path.startswith("file:") or "?" in path:
            raise ValueError("must name a database file (no :memory:, file: URI or query string)")
        if len(path) > cls.MAX_PATH_CHARS or any(ord(c) < 32 or ord(c) == 127 for c in path):
            raise ValueError(f"the path must be at most {cls.MAX_PATH_CHARS} printable characters")
        return cls(value)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(cls.parse, core_schema.str_schema())


class SettingsError(RuntimeError):
    """Raised when the environment does not describe a valid configuration.

    ``str(error)`` is one line per bad variable, e.g.
    ``TENANT_ID: invalid tenant id 'A': expected 3-32 characters matching ...``.
    """


class Settings(BaseSettings):
    """All configuration, from environment variables (names are the field names upper-cased).

    Only ``TENANT_ID`` has no default. The remaining requirements depend on the providers in
    use and are checked together at start (e.g. ``AWS_DEFAULT_REGION`` when anything talks to
    AWS, ``ISSUER_URI`` when ``AUTH_MODE=oidc``).
    """

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    # --- serving ------------------------------------------------------------------------
    gunicorn_graceful_timeout: float = Field(
        default=GRACEFUL_TIMEOUT_SECONDS,
        gt=0,
        le=600,
        description="seconds in-flight answers get after SIGTERM (api/gunicorn.conf.py)",
    )
    stream_flush_seconds: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="streamed answers: the first token is sent at once, later tokens at most this often (seconds)",
    )

    # --- answer path: cost per answer and load shedding (answer service) ----------------------
    condense_model_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Bedrock model for rewriting follow-ups (e.g. a faster one); default: TEXT2TEXT_MODEL_ID",
    )
    condense_max_tokens: int = Field(
        default=48, ge=8, le=1024, description="output tokens of the condense call (a question, not an answer)"
    )
    max_inflight_answers: int = Field(
        default=48,
        ge=1,
        le=1024,
        description="answers one worker runs at once; above it a fast 503 overloaded + Retry-After",
    )

    # --- tenant and storage -------------------------------------------------------------
    tenant_id: TenantId = Field(description="The tenant this pod or job serves.")
    contextual_data_bucket: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="Tenant bucket: sources under documents/, index under faiss_index/.",
    )
    index_uri: str | None = Field(
        default=None, description="Overrides the bucket: s3://bucket/prefix/ or a local directory."
    )

    # --- AWS and Bedrock ----------------------------------------------------------------
    aws_default_region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    bedrock_service: Literal["bedrock-runtime"] = "bedrock-runtime"
    bedrock_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    bedrock_read_timeout_seconds: float = Field(default=60.0, gt=0, le=900)
    bedrock_max_attempts: int = Field(default=4, ge=1, le=10)
    # S3 and DynamoDB answer in milliseconds: a hung endpoint must become a quick 503, not a request
    # held for BEDROCK_READ_TIMEOUT_SECONDS x BEDROCK_MAX_ATTEMPTS.
    aws_data_connect_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    aws_data_read_timeout_seconds: float = Field(default=3.0, gt=0, le=300)
    aws_data_max_attempts: int = Field(default=3, ge=1, le=10)

    # --- embeddings ---------------------------------------------------------------------
    embeddings_provider: Literal["bedrock", "local"] = "bedrock"
    embedding_model_id: str = Field(default="amazon.titan-embed-text-v2:0", min_length=1, max_length=200)
    embedding_dimensions: int | None = Field(
        default=None, description="Titan v2 output size (256, 512 or 1024); default 1024."
    )
    embed_batch_size: int = Field(default=32, ge=1, le=1024, description="texts per embedding task")
    embed_concurrency: int = Field(default=4, ge=1, le=64, description="embedding tasks in flight")

    # --- chunking (characters, as LangChain's RecursiveCharacterTextSplitter counts them) ----
    chunk_size: int = Field(default=1500, ge=100, le=20_000)
    chunk_overlap: int = Field(default=150, ge=0, le=5_000)

    # --- generation ---------------------------------------------------------------------
    llm_provider: str = Field(
        default="bedrock",
        pattern=r"^(bedrock|extractive|[A-Za-z_][\w.]*:[A-Za-z_]\w*)$",
        description="bedrock | extractive | module.path:factory (any LangChain chat model)",
    )
    text2text_model_id: str = Field(default="anthropic.claude-3-haiku-20240307-v1:0", min_length=1, max_length=200)

    # --- index ---------------------------------------------------------------------------
    faiss_index_type: Literal["auto", "flat", "hnsw"] = Field(
        default="auto",
        description="ingest: exact IndexFlatIP scan, approximate HNSW graph, or auto (HNSW from 20,000 chunks)",
    )
    hnsw_m: int = Field(default=32, ge=4, le=128, description="ingest: HNSW neighbours per vector")
    hnsw_ef_construction: int = Field(default=80, ge=8, le=2048, description="ingest: HNSW build candidate list")
    hnsw_ef_search: int = Field(
        default=128, ge=8, le=4096, description="ragapi: HNSW candidate list per query (at least the chunks asked for)"
    )
    flat_search_precision: FlatSearchPrecision = Field(
        default="float16",
        description="ragapi: how a flat index's vectors are held for search: float16 (half the memory, "
        "about 1.8x faster at 10k x 1024 dims, cosine within 1e-3) or float32 (the file's own, exact)",
    )

    # --- vector store: FAISS files or PostgreSQL/pgvector (area: pgvector backend) --------
    vector_store: Literal["faiss", "pgvector"] = Field(
        default="faiss",
        description="where the index lives: FAISS files under INDEX_URI, or the tenant's PostgreSQL schema",
    )
    pgvector_url: str | None = Field(
        default=None,
        pattern=r"^postgres(ql)?://[^\s]+$",
        description="local/dev: a libpq URL (postgresql://user@host:port/db); wins over the PG_* fields",
    )
    pg_host: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]{1,253}$", description="Aurora writer endpoint")
    pg_port: int = Field(default=5432, ge=1, le=65_535)
    pg_database: str = Field(default="rag", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    pg_user: str | None = Field(
        default=None,
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="login role; default tenant_<TENANT_ID with - as _> (rag.index.pgvector.role_for)",
    )
    pg_sslmode: Literal["require", "verify-ca", "verify-full", "prefer", "disable"] = Field(
        default="require", description="libpq sslmode for PG_HOST (PGVECTOR_URL carries its own)"
    )
    pg_sslrootcert: str | None = Field(default=None, max_length=1000, description="CA bundle for verify-ca/full")
    pg_iam_auth: bool = Field(
        default=True, description="PG_HOST: password = RDS IAM auth token (rds.generate_db_auth_token, 15 min)"
    )
    pg_connect_timeout_seconds: float = Field(default=3.0, gt=0, le=60)
    pg_statement_timeout_seconds: float = Field(
        default=5.0, gt=0, le=600, description="ragapi: longest SQL statement (a slow database becomes a 503)"
    )
    pg_pool_max_size: int = Field(default=10, ge=1, le=200, description="connections per process")

    # --- retrieval ----------------------------------------------------------------------
    # dense: hybrid (BM25 + dense, RRF) did not match dense on recall@4 and MRR of the dev sets for
    # both tenants at any tested BM25 weight / RRF constant (README "Retrieval quality").
    retriever_mode: Literal["dense", "hybrid"] = "dense"
    rerank_model_arn: str | None = Field(
        default=None,
        pattern=r"^arn:aws[a-z-]*:bedrock:[a-z0-9-]+::foundation-model/[\w.:-]+$",
        description="Optional Bedrock Rerank model ARN (e.g. amazon.rerank-v1:0); unset = no reranking.",
    )
    index_poll_seconds: float = Field(default=60.0, ge=0, le=86_400, description="0 disables polling")

    # --- grounded answers (rag/answer/grounding.py) --------------------------------------
    relevance_floor: float | None = Field(
        default=None,
        ge=-1,
        le=1,
        description="no-answer floor (cosine); unset = the embedding model's calibrated default",
    )

    # --- chat history and sessions ------------------------------------------------------
    chathistory_table: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{3,255}$")
    history_url: SqliteUrl | None = None
    history_ttl_seconds: int = Field(default=30 * 86_400, ge=60)
    sessions_table: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{3,255}$")
    sessions_url: SqliteUrl | None = None
    session_idle_seconds: int = Field(default=600, ge=10, le=86_400)

    # --- operating many tenants: usage, quotas, feedback, logs, traces ------------------
    price_table_json: str | None = Field(
        default=None,
        max_length=20_000,
        description='{"<model id>": {"input_per_1k": USD, "output_per_1k": USD}}; merged over the defaults.',
    )
    usage_table: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{3,255}$")
    usage_url: SqliteUrl | None = None
    usage_ttl_seconds: int = Field(default=400 * 86_400, ge=86_400)
    quota_tenant_rpm: int = Field(default=0, ge=0, le=1_000_000, description="0 = unlimited")
    quota_user_rpm: int = Field(default=0, ge=0, le=1_000_000, description="0 = unlimited")
    quota_tenant_tokens_per_day: int = Field(default=0, ge=0, description="0 = unlimited")
    quota_user_tokens_per_day: int = Field(default=0, ge=0, description="0 = unlimited")
    quota_table: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{3,255}$")
    quota_url: SqliteUrl | None = None
    feedback_table: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{3,255}$")
    feedback_url: SqliteUrl | None = None
    log_format: Literal["json", "text"] = "json"
    otel_exporter_otlp_endpoint: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    otel_service_name: str | None = Field(default=None, max_length=100)

    # --- web chat -----------------------------------------------------------------------
    auth_mode: Literal["oidc", "dev"] = "oidc"
    issuer_uri: str | None = Field(default=None, pattern=r"^https?://[^\s]+[^/\s]$")
    cognito_client_id: str | None = Field(default=None, max_length=128)
    dev_user_email: str = Field(default="demo@example.com", max_length=254)
    # --- identity (security area: rag/identity.py) ---------------------------------------
    id_token_validity_seconds: int = Field(
        default=3600,
        ge=300,
        le=86_400,
        description="the user pool's ID token validity (Cognito: 5 min to 1 day, default 1 h); longer-lived"
        " tokens are refused (https://docs.aws.amazon.com/cognito/latest/developerguide/"
        "amazon-cognito-user-pools-using-the-id-token.html)",
    )
    web_allowed_origins: str | None = Field(
        default=None,
        pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(,https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?)*$",
        description="comma-separated Origins the web chat's page may be opened from, e.g."
        " https://tenanta.chat.example.com; any other Origin (a cross-site websocket) gets 'Not allowed'."
        " Unset: not checked (the gateway checks it too)",
    )
    tenant_display_name: str | None = Field(default=None, max_length=100)
    rag_api_url: str = Field(default="http://127.0.0.1:8000", pattern=r"^https?://[^\s]+$")
    rag_api_timeout_seconds: float = Field(default=60.0, gt=0, le=600)
    # --- web chat: first screen and rendering (chat area) ---
    tenant_welcome: str | None = Field(default=None, max_length=300, description="One line under the title.")
    tenant_example_questions: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=4, description='JSON list of up to 4 questions, e.g. ["What is X?"]'
    )
    webchat_image_hosts: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9.-]{1,253}$")]] = Field(
        default_factory=list, max_length=20, description="JSON list of hosts whose images answers may show (none)."
    )
    # --- end web chat: first screen and rendering ---

    # --- tenant documents and on-demand ingestion (documents area; docs/documents.md) ------
    documents_uri: str | None = Field(
        default=None,
        description="The tenant's source documents: s3://bucket/prefix/ or a local directory "
        "(default s3://$CONTEXTUAL_DATA_BUCKET/documents/).",
    )
    admin_group: GroupName = Field(
        default="admins",
        description="Cognito group (cognito:groups claim) whose members manage the tenant's documents.",
    )
    dev_user_groups: str = Field(
        default="admins", max_length=500, description="AUTH_MODE=dev only: comma-separated groups of the dev user."
    )
    upload_max_file_bytes: int = Field(default=20 * 1024 * 1024, ge=1, le=5 * 1024**3)
    upload_max_request_bytes: int = Field(
        default=50 * 1024 * 1024, ge=1, le=50 * 1024**3, description="largest total of one multi-file upload"
    )
    documents_sse: Literal["aws:kms", "AES256", "none"] = Field(
        default="aws:kms", description="x-amz-server-side-encryption of uploaded documents (the bucket's default)"
    )
    documents_kms_key_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9:/_-]{1,2048}$")
    ingestion_runner: Literal["local", "kubernetes", "none"] = Field(
        default="local",
        description="how POST /api/v1/ingestions runs the job: a Job from the CronJob (cluster) or python -m ingest",
    )
    ingestion_cronjob: str = Field(default="ingest", pattern=r"^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$")
    kubernetes_namespace: str | None = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    ingestion_run_id: str | None = Field(
        default=None, pattern=r"^\d{8}T\d{6}Z-[0-9a-f]{8}$", description="ingest: the run id the API queued"
    )
    ingestion_trigger: Literal["web", "schedule", "cli", "job"] = Field(
        default="job", description="ingest: who started the run (recorded in the status object)"
    )
    ingestion_grace_seconds: float = Field(
        default=120.0, ge=0, le=86_400, description="a queued/running status younger than this blocks a new run"
    )

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_below_size(cls, value: int, info: ValidationInfo) -> int:
        size = info.data.get("chunk_size")
        if size is not None and value >= size:
            raise ValueError("must be smaller than CHUNK_SIZE")
        return value

    @field_validator("price_table_json")
    @classmethod
    def _price_table(cls, value: str | None) -> str | None:
        if value is None:
            return value
        import json

        try:
            table = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"not valid JSON ({exc})") from None
        if not isinstance(table, dict):
            raise ValueError('expected {"<model id>": {"input_per_1k": USD, "output_per_1k": USD}}')
        for model, prices in table.items():
            if not isinstance(prices, dict) or set(prices) - {"input_per_1k", "output_per_1k"}:
                raise ValueError(f"{model}: expected only input_per_1k and output_per_1k")
            for key in ("input_per_1k", "output_per_1k"):
                price = prices.get(key, 0)
                if isinstance(price, bool) or not isinstance(price, int | float) or price < 0:
                    raise ValueError(f"{model}.{key}: expected a non-negative number (USD per 1000 tokens)")
        return value

    @field_validator("embedding_dimensions")
    @classmethod
    def _titan_dimensions(cls, value: int | None) -> int | None:
        if value is not None and value not in TITAN_V2_DIMENSIONS:
            raise ValueError(f"must be one of {TITAN_V2_DIMENSIONS}")
        return value

    @property
    def uses_aws(self) -> bool:
        """True when any configured provider talks to AWS (Bedrock, S3 or DynamoDB)."""
        index_on_s3 = (self.index_uri or "").startswith("s3://") or (
            self.index_uri is None and self.contextual_data_bucket is not None
        )
        return (
            self.embeddings_provider == "bedrock"
            or self.llm_provider == "bedrock"
            or index_on_s3
            or (self.history_url is None and self.chathistory_table is not None)
            or (self.sessions_url is None and self.sessions_table is not None)
            or (self.usage_url is None and self.usage_table is not None)
            or (self.quota_url is None and self.quota_table is not None)
            or (self.feedback_url is None and self.feedback_table is not None)
            or self.uses_pgvector_iam
        )

    @field_validator("pgvector_url", "pg_host", "pg_user", "pg_sslrootcert", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _pgvector_target(self) -> Settings:
        if self.vector_store == "pgvector" and not (self.pgvector_url or self.pg_host):
            raise ValueError("VECTOR_STORE=pgvector: set PGVECTOR_URL (local) or PG_HOST (Aurora)")
        return self

    @property
    def uses_pgvector_iam(self) -> bool:
        """True when the pgvector password is an RDS IAM token (``PG_HOST`` without ``PGVECTOR_URL``)."""
        return self.vector_store == "pgvector" and not self.pgvector_url and self.pg_iam_auth

    @property
    def resolved_index_uri(self) -> str:
        """``INDEX_URI``, else ``s3://$CONTEXTUAL_DATA_BUCKET/faiss_index/``.

        Raises:
            SettingsError: neither is set.
        """
        if self.index_uri:
            return self.index_uri
        if self.contextual_data_bucket:
            return f"s3://{self.contextual_data_bucket}/faiss_index/"
        raise SettingsError("INDEX_URI or CONTEXTUAL_DATA_BUCKET: one of them is required")

    @property
    def default_source_uri(self) -> str:
        """``DOCUMENTS_URI``, else ``s3://$CONTEXTUAL_DATA_BUCKET/documents/``: the ingestion job's default
        source and where the Documents page writes.

        Raises:
            SettingsError: neither is set.
        """
        if self.documents_uri:
            return self.documents_uri
        if not self.contextual_data_bucket:
            raise SettingsError("CONTEXTUAL_DATA_BUCKET or DOCUMENTS_URI: required when no --source is given")
        return f"s3://{self.contextual_data_bucket}/documents/"

    @property
    def effective_embedding_model_id(self) -> str:
        """The embedding model id recorded in (and checked against) the index manifest."""
        if self.embeddings_provider == "local":
            return LOCAL_EMBEDDING_MODEL_ID
        return self.embedding_model_id


def _format_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors(include_url=False):
        field = ".".join(str(p) for p in item["loc"]).upper()
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"{field}: {message}" if field else message)
    return "\n".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Read and validate :class:`Settings` from the environment (plus explicit overrides).

    Args:
        overrides: field values that win over the environment (e.g. a CLI's ``--tenant``).

    Raises:
        SettingsError: one line per missing or malformed variable.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(_format_validation_error(exc)) from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (cached). Tests call ``get_settings.cache_clear()``."""
    return load_settings()

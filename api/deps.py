"""FastAPI dependencies as ``Annotated`` aliases; routes take these, never inline ``Depends``.

Everything comes from ``app.state.rag`` (:class:`api.state.RagState`), built once by the lifespan;
tests replace any of them with ``app.dependency_overrides``.

A dependency that only reads state is ``async def``: FastAPI runs a plain ``def`` dependency in
Starlette's thread pool (https://fastapi.tiangolo.com/async/#dependencies), a thread hand-off per
dependency per request for an attribute read. The two that may block stay ``def``:
:func:`get_document_s3` (makes a boto3 client once) and :func:`require_admin` (may fetch the issuer's
keys over the network).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Path, Request

from api.errors import ApiError, classify_exception
from api.services.admin import AdminDenied, authorize_admin
from api.services.documents import DocumentServices
from api.state import IndexHolder, RagState
from rag.answer.chain import AnswerChain
from rag.identity import Identity
from rag.settings import Settings, SettingsError
from rag.stores.feedback import FeedbackStore
from rag.stores.history import HistoryStore
from rag.stores.quota import QuotaService
from rag.stores.usage import UsageStore
from rag.tenant import InvalidSessionIdError, InvalidTenantIdError, SessionId, parse_session_id, validate_tenant_id

if TYPE_CHECKING:  # api.services.answer imports this module (check_session)
    from api.services.answer import AnswerService


async def get_rag_state(request: Request) -> RagState:
    """The per-worker state the lifespan built."""
    return request.app.state.rag


RagStateDep = Annotated[RagState, Depends(get_rag_state)]


async def get_app_settings(state: RagStateDep) -> Settings:
    """The validated settings (read once at start)."""
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


async def get_tenant(settings: SettingsDep) -> str:
    """This pod's tenant id (validated again: every lookup is keyed by it)."""
    return validate_tenant_id(settings.tenant_id)


TenantDep = Annotated[str, Depends(get_tenant)]


async def get_history(state: RagStateDep) -> HistoryStore:
    """The chat history store."""
    return state.history


HistoryDep = Annotated[HistoryStore, Depends(get_history)]


async def get_chain(state: RagStateDep) -> AnswerChain:
    """The conversational retrieval chain."""
    return state.chain


ChainDep = Annotated[AnswerChain, Depends(get_chain)]


async def get_answer_service(request: Request) -> AnswerService:
    """The worker's answer service (:class:`api.services.answer.AnswerService`, built by the lifespan)."""
    return request.app.state.answers


AnswerServiceDep = Annotated["AnswerService", Depends(get_answer_service)]


async def get_index(state: RagStateDep) -> IndexHolder:
    """The index holder (current version, last load error)."""
    return state.index


IndexDep = Annotated[IndexHolder, Depends(get_index)]


async def get_request_id(request: Request) -> str:
    """The request id set by :class:`api.middleware.RequestContextMiddleware`."""
    return str(getattr(request.state, "request_id", "-"))


RequestIdDep = Annotated[str, Depends(get_request_id)]


def check_session(value: str, tenant: str) -> SessionId:
    """Parse ``<tenant>:<subject>:<uuid>`` and require this pod's tenant.

    Raises:
        ApiError: 422 for a malformed id, 403 for another tenant's session.
    """
    try:
        session = parse_session_id(value)
    except (InvalidSessionIdError, InvalidTenantIdError) as exc:
        raise ApiError(422, "validation_error", f"user_session_id: {exc}") from None
    if session.tenant != tenant:
        raise ApiError(403, "forbidden", "this session belongs to another tenant")
    return session


async def get_own_session(tenant: TenantDep, session_id: Annotated[str, Path(max_length=400)]) -> SessionId:
    """The ``{session_id}`` path parameter, parsed and checked against the tenant."""
    return check_session(session_id, tenant)


OwnSessionDep = Annotated[SessionId, Depends(get_own_session)]


async def get_usage_store(state: RagStateDep) -> UsageStore:
    """Where answers' token usage is recorded."""
    return state.usage


UsageStoreDep = Annotated[UsageStore, Depends(get_usage_store)]


async def get_quota(state: RagStateDep) -> QuotaService:
    """The quota and rate limit service."""
    return state.quota


QuotaDep = Annotated[QuotaService, Depends(get_quota)]


async def get_feedback_store(state: RagStateDep) -> FeedbackStore:
    """Where feedback on answers is stored."""
    return state.feedback


FeedbackStoreDep = Annotated[FeedbackStore, Depends(get_feedback_store)]


async def get_model_id(state: RagStateDep) -> str:
    """The model id reported in responses."""
    return state.model_id


ModelIdDep = Annotated[str, Depends(get_model_id)]


# --- document links (chat area) ----------------------------------------------------------
def get_document_s3(request: Request, settings: SettingsDep) -> Any:
    """The S3 client that signs document links: ``app.state.document_s3`` (tests set it), else one made once."""
    client = getattr(request.app.state, "document_s3", None)
    if client is None:
        from rag.aws import make_client

        try:
            client = request.app.state.document_s3 = make_client("s3", settings)
        except SettingsError as exc:  # e.g. no AWS_DEFAULT_REGION: links cannot be signed here
            raise ApiError(503, "document_links_unavailable", f"Document links are not configured ({exc}).") from None
    return client


# --- tenant documents (documents area) ---------------------------------------------------------


async def get_document_services(request: Request) -> DocumentServices:
    """The document store, status object and ingestion runner (``app.state.documents``).

    Raises:
        ApiError: 503 ``documents_not_configured`` when neither ``DOCUMENTS_URI`` nor
            ``CONTEXTUAL_DATA_BUCKET`` is set.
    """
    services = getattr(request.app.state, "documents", None)
    if services is None:
        raise ApiError(503, "documents_not_configured", "No document store is configured (DOCUMENTS_URI).")
    return services


DocumentServicesDep = Annotated[DocumentServices, Depends(get_document_services)]


def require_admin(request: Request, settings: SettingsDep) -> Identity:
    """The verified tenant admin making the request (its own token; headers claiming groups are ignored).

    Raises:
        ApiError: 403 with the reason's code (503 ``identity_unavailable`` when the issuer's keys are unreachable).
    """
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        return authorize_admin(headers, settings, jwks_client=getattr(request.app.state, "jwks_client", None))
    except AdminDenied as exc:
        raise classify_exception(exc) from None


AdminDep = Annotated[Identity, Depends(require_admin)]

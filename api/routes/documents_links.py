"""``GET /api/v1/documents/link?source=s3://bucket/key``: a short-lived link to one source document.

The web chat shows an "open document" link on a source card. The API signs it (the browser never
holds AWS credentials): a presigned ``GetObject`` URL valid for :data:`rag.contract.DOCUMENT_LINK_SECONDS`
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/ShareObjectPreSignedURL.html). Only objects in
this tenant's own bucket (``CONTEXTUAL_DATA_BUCKET``) are signed; anything else is refused with 403,
so a source URI from another tenant (or typed by hand) never yields a link.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from api.deps import DocumentS3Dep, SettingsDep
from api.errors import ApiError
from rag.contract import DOCUMENT_LINK_PATH, DOCUMENT_LINK_SECONDS, DocumentLinkResponse, ErrorBody

logger = logging.getLogger("api.documents_links")
router = APIRouter(tags=["documents"])
_ERRORS = {403: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}}


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` → ``(bucket, key)``.

    Raises:
        ApiError: 422 when ``uri`` is not an ``s3://`` URI with a bucket and a key.
    """
    if not uri.startswith("s3://"):
        raise ApiError(422, "validation_error", "source: expected an s3://bucket/key URI")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key or any(part in ("", ".", "..") for part in key.split("/")):
        raise ApiError(422, "validation_error", "source: expected an s3://bucket/key URI")
    return bucket, key


@router.get(DOCUMENT_LINK_PATH, response_model=DocumentLinkResponse, responses=_ERRORS)
async def document_link(
    settings: SettingsDep,
    s3: DocumentS3Dep,
    source: Annotated[str, Query(min_length=6, max_length=1100, description="The source's s3:// URI.")],
) -> DocumentLinkResponse:
    """A presigned ``GET`` URL for ``source``, when it is in this tenant's bucket (else 403)."""
    bucket, key = split_s3_uri(source)
    if not settings.contextual_data_bucket or bucket != settings.contextual_data_bucket:
        raise ApiError(403, "forbidden", "this document is not in this tenant's bucket")
    try:
        url = await run_in_threadpool(
            s3.generate_presigned_url,
            "get_object",
            Params={"Bucket": bucket, "Key": key},
            ExpiresIn=DOCUMENT_LINK_SECONDS,
        )
    except Exception as exc:
        logger.warning("document link not signed: %s", exc)
        raise ApiError(
            503, "documents_unavailable", "The document link cannot be made right now; retry later.", 2
        ) from None
    return DocumentLinkResponse(url=url, expires_in=DOCUMENT_LINK_SECONDS)

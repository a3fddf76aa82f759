"""Describe an uploaded image, an indexed image, or (text mode) a query."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from app.api.deps import UPLOAD_HELP, ServiceDep, SettingsDep, read_upload, within_query_limit
from app.api.schemas import (
    IMAGE_ID_HELP,
    NON_BLANK,
    DescribeRequest,
    DescribeResponse,
    ErrorBody,
    EvidenceItem,
    Label,
)
from app.errors import BadQuery, UnsupportedMedia
from app.options import MAX_QUERY_CHARS
from app.service import Description

router = APIRouter(tags=["describe"])

_QUERY = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_QUERY_CHARS,
    "pattern": NON_BLANK,
    "description": "a text to write a description from",
}
_IMAGE_ID = {"type": "string", "minLength": 1, "maxLength": 64, "description": IMAGE_ID_HELP}
# Exactly one of image_id / query, as describe_input enforces (the other may be absent or null);
# a query needs a non-space character. DescribeRequest alone cannot say either.
JSON_BODY: dict[str, Any] = {
    "title": "DescribeRequest",
    "description": DescribeRequest.__doc__,
    "oneOf": [
        {
            "type": "object",
            "properties": {"image_id": _IMAGE_ID, "query": {"type": "null", "description": "absent or null"}},
            "required": ["image_id"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {"query": _QUERY, "image_id": {"type": "null", "description": "absent or null"}},
            "required": ["query"],
            "additionalProperties": False,
        },
    ],
}
OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": JSON_BODY},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "image": {
                            "type": "string",
                            "format": "binary",
                            "description": UPLOAD_HELP,
                        }
                    },
                    "required": ["image"],
                    "additionalProperties": False,
                }
            },
        },
    }
}


class DescribeInput:
    """Exactly one of: uploaded bytes, an indexed id, a query."""

    def __init__(
        self, data: bytes | None = None, image_id: str | None = None, query: str | None = None
    ) -> None:
        self.data, self.image_id, self.query = data, image_id, query


async def describe_input(request: Request, settings: SettingsDep) -> DescribeInput:
    """Parse the body by its content type (multipart upload or JSON)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=8)
        unknown = sorted(set(form.keys()) - {"image"})
        if unknown:
            raise BadQuery(f"unknown multipart field(s) {unknown}: send only a file field named 'image'")
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise BadQuery("multipart body needs a file field named 'image'")
        return DescribeInput(data=await read_upload(upload, settings))
    if content_type in {"application/json", ""}:
        try:
            payload = json.loads(await request.body())
            body = DescribeRequest.model_validate(payload)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadQuery(f"body is not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise BadQuery("body is not valid JSON: nested too deeply") from exc
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise BadQuery(f"invalid request: {where}: {first['msg']}") from exc
        if (body.image_id is None) == (body.query is None):
            raise BadQuery("give exactly one of 'image_id' or 'query' (or upload a multipart field 'image')")
        query = None if body.query is None else within_query_limit(body.query, settings)
        return DescribeInput(image_id=body.image_id, query=query)
    raise UnsupportedMedia(
        f"unsupported content type {content_type!r}: send multipart/form-data or application/json"
    )


@router.post(
    "/describe",
    response_model=DescribeResponse,
    openapi_extra=OPENAPI_BODY,
    responses={code: {"model": ErrorBody} for code in (400, 404, 413, 415, 422, 503)},
    summary="Describe an image (or a text)",
)
def describe(
    given: Annotated[DescribeInput, Depends(describe_input)], service: ServiceDep
) -> DescribeResponse:
    """One sentence about an image (upload or `image_id`), built only from what the models saw, with its
    evidence; or, in text mode (`query`), generated text about a picture matching the query.

    The request is checked first: a bad one gets its 4xx at any time. A valid one answers 503 with
    `Retry-After` while the language model is still loading (search is already up).
    """
    # `given` is resolved before `service`: a malformed body is refused even while the service warms up.
    start = time.perf_counter()
    result: Description
    if given.data is not None:
        result = service.describe_upload(given.data)
    elif given.image_id is not None:
        result = service.describe_indexed(given.image_id)
    else:
        assert given.query is not None
        result = service.describe_query(given.query)
    return DescribeResponse(
        description=result.text,
        labels=[Label(label=label, score=score) for label, score in result.labels],
        confidence=result.confidence,
        evidence=[
            EvidenceItem(
                phrase=e.phrase, source=e.source, labels=list(e.labels), probability=round(e.probability, 4)
            )
            for e in result.evidence
        ],
        generated=result.generated,
        took_ms=round((time.perf_counter() - start) * 1000, 2),
    )

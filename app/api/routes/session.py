"""Sign in with the read key: an HttpOnly session cookie, so the page's <img> tags need no key in URLs."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from app.api.access import READ, SESSION_COOKIE, SESSION_SECONDS, checked_key, key_matches, session_token
from app.api.deps import SettingsDep
from app.api.schemas import ErrorBody
from app.errors import Unauthorized

router = APIRouter(prefix="/session", tags=["session"])


class SignIn(BaseModel):
    """The read key, as typed on the page."""

    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1, max_length=1000, description="the value of IMGSEARCH_READ_KEY")


class SessionState(BaseModel):
    """What a sign-in or sign-out did."""

    status: str = Field(description="'signed in' or 'signed out'")
    expires_in: int = Field(0, description="seconds the session cookie stays valid")


@router.post(
    "",
    response_model=SessionState,
    summary="Sign in with the read key",
    responses={code: {"model": ErrorBody} for code in (401, 422, 429)},
)
def sign_in(body: SignIn, request: Request, response: Response, settings: SettingsDep) -> SessionState:
    """Check the read key and set an HttpOnly, SameSite=Strict session cookie (30 days).

    After five wrong keys from one address, the next is checked only after a wait that doubles each
    time (429 with Retry-After).
    """
    key = settings.read_key
    assert key is not None  # this router is only mounted when a read key is set
    if not checked_key(request, READ, lambda: key_matches(body.key, key)):
        raise Unauthorized("wrong read key: give the value of IMGSEARCH_READ_KEY")
    response.set_cookie(
        SESSION_COOKIE,
        session_token(key, time.time()),
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return SessionState(status="signed in", expires_in=SESSION_SECONDS)


@router.delete("", response_model=SessionState, summary="End the session")
def sign_out(response: Response) -> SessionState:
    """Remove the session cookie."""
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return SessionState(status="signed out")

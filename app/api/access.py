"""Who may read: the optional read key (IMGSEARCH_READ_KEY), its session cookie, the open-network warning."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import time
from typing import Annotated, Any

from fastapi import Depends, Security
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from app.api.deps import SettingsDep
from app.api.schemas import ErrorBody
from app.errors import Unauthorized
from app.settings import Settings

log = logging.getLogger(__name__)

SESSION_COOKIE = "imgsearch_session"
SESSION_SECONDS = 30 * 24 * 3600
READ_HEADER = APIKeyHeader(
    name="X-API-Key",
    scheme_name="ReadKey",
    auto_error=False,
    description="The value of IMGSEARCH_READ_KEY (the admin key is accepted too).",
)
READ_BEARER = HTTPBearer(
    scheme_name="ReadBearer", auto_error=False, description="IMGSEARCH_READ_KEY as `Authorization: Bearer`."
)
READ_COOKIE = APIKeyCookie(
    name=SESSION_COOKIE,
    scheme_name="Session",
    auto_error=False,
    description="The session cookie that POST /session sets after checking the read key.",
)
MISSING_KEY = (
    "this service needs its read key: send IMGSEARCH_READ_KEY in the X-API-Key header or as "
    "'Authorization: Bearer <key>', or sign in on the search page"
)


def _digest(text: str) -> bytes:
    """SHA-256 of the text: equal-length values for a constant-time comparison."""
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


def key_matches(given: str | None, expected: SecretStr | None) -> bool:
    """Whether a presented key equals a configured one, compared in constant time."""
    if given is None or expected is None:
        return False
    return hmac.compare_digest(_digest(given), _digest(expected.get_secret_value()))


def _signature(key: SecretStr, expires: int) -> str:
    """HMAC of the expiry time under the read key (a changed key ends every session)."""
    message = f"imgsearch-session:{expires}".encode()
    return hmac.new(key.get_secret_value().encode(), message, hashlib.sha256).hexdigest()


def session_token(key: SecretStr, now: float) -> str:
    """A stateless session token: `expiry.signature`."""
    expires = int(now) + SESSION_SECONDS
    return f"{expires}.{_signature(key, expires)}"


def session_valid(token: str | None, key: SecretStr, now: float) -> bool:
    """Whether a session cookie was signed with this key and has not expired."""
    expires_text, _, signature = (token or "").partition(".")
    if not (expires_text.isascii() and expires_text.isdigit()) or int(expires_text) < now:
        return False
    return hmac.compare_digest(signature.encode(), _signature(key, int(expires_text)).encode())


def require_reader(
    settings: SettingsDep,
    header: Annotated[str | None, Security(READ_HEADER)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(READ_BEARER)],
    cookie: Annotated[str | None, Security(READ_COOKIE)],
) -> None:
    """401 unless the request carries the read key (header or bearer), the admin key, or a session."""
    key = settings.read_key
    if key is None:
        return
    presented = [header, bearer.credentials if bearer is not None else None]
    if any(key_matches(value, key) or key_matches(value, settings.api_key) for value in presented):
        return
    if session_valid(cookie, key, time.time()):
        return
    raise Unauthorized(MISSING_KEY)


def read_dependencies(settings: Settings) -> list[Any]:
    """The read gate for the protected routers; none while no read key is set (the API is unchanged)."""
    return [Depends(require_reader)] if settings.read_key is not None else []


def read_responses(settings: Settings) -> dict[int | str, dict[str, Any]]:
    """The read gate's answer for the OpenAPI document (nothing while no read key is set)."""
    return {401: {"model": ErrorBody, "description": "no read key"}} if settings.read_key is not None else {}


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts connections from this machine."""
    name = host.strip().strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable from elsewhere


def access_warnings(settings: Settings) -> list[str]:
    """What /readyz and the start-up log say about who can reach the collection."""
    if settings.read_key is not None or is_loopback(settings.host):
        return []
    return [
        f"listening on {settings.host} without IMGSEARCH_READ_KEY: anyone who can reach this address "
        "can search, browse and download every indexed image; set IMGSEARCH_READ_KEY, or bind to 127.0.0.1"
    ]


def warn_if_exposed(settings: Settings) -> None:
    """Log the open-network warning once, at start."""
    for warning in access_warnings(settings):
        log.warning(warning)

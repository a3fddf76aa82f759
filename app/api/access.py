"""Who may read: the optional read key (IMGSEARCH_READ_KEY), its session cookie, the open-network warning,
and the guard that slows down guessing either key (KeyGuard)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from app.api.deps import SettingsDep
from app.api.schemas import ErrorBody
from app.errors import TooManyAttempts, Unauthorized
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
READ, ADMIN = "read", "admin"  # the two keys, counted apart: knowing one does not lift the other's guard
FREE_FAILURES = 5  # wrong keys a client may send before it must wait
FIRST_WAIT_S = 1.0  # the wait after the FREE_FAILURES-th; it doubles with each further wrong key
LONGEST_WAIT_S = 900.0
GUARDED_CLIENTS = 10_000  # clients remembered (least recently failed forgotten first)
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


class KeyGuard:
    """Failed key checks per client and key: after FREE_FAILURES, keys are not checked for a doubling wait.

    Clients are told apart by address (an IPv6 client by its /64 network); a correct key resets the
    count. One guard per app (`app.state.key_guard`), holding at most `max_clients` clients.
    """

    def __init__(
        self,
        free: int = FREE_FAILURES,
        first_wait: float = FIRST_WAIT_S,
        longest_wait: float = LONGEST_WAIT_S,
        max_clients: int = GUARDED_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free, self.first_wait, self.longest_wait = free, first_wait, longest_wait
        self.max_clients, self.clock = max_clients, clock
        self._failures: OrderedDict[tuple[str, str], tuple[int, float]] = OrderedDict()  # → (count, until)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Clients with failures on record."""
        return len(self._failures)

    def attempt(self, key: str, client: str) -> None:
        """Count a key about to be checked as wrong until it proves right (so parallel guesses count
        too); TooManyAttempts (429), counting nothing, while this client must wait."""
        with self._lock:
            count, until = self._failures.pop((key, client), (0, 0.0))
            now = self.clock()
            if until > now:
                self._failures[(key, client)] = (count, until)
                seconds = math.ceil(until - now)
                raise TooManyAttempts(
                    f"too many wrong keys from this address: the next one is checked in {seconds} s", seconds
                )
            count += 1
            wait = (
                min(self.first_wait * 2 ** (count - self.free), self.longest_wait)
                if count >= self.free
                else 0
            )
            self._failures[(key, client)] = (count, now + wait)  # most recently failed last
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)

    def succeeded(self, key: str, client: str) -> None:
        """A correct key: the client's count starts again."""
        with self._lock:
            self._failures.pop((key, client), None)


def client_of(request: Request) -> str:
    """Who sent the request, as the guard counts it: its address, or its /64 network for IPv6."""
    host = request.client.host if request.client is not None else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    return str(ipaddress.ip_network(f"{address}/64", strict=False)) if address.version == 6 else host


def checked_key(request: Request, key: str, matches: Callable[[], bool]) -> bool:
    """Whether a presented key is right, checked only when the client may try one now (else 429)."""
    guard: KeyGuard = request.app.state.key_guard
    client = client_of(request)
    guard.attempt(key, client)
    if matches():
        guard.succeeded(key, client)
        return True
    return False


def require_reader(
    request: Request,
    settings: SettingsDep,
    header: Annotated[str | None, Security(READ_HEADER)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(READ_BEARER)],
    cookie: Annotated[str | None, Security(READ_COOKIE)],
) -> None:
    """401 unless the request carries the read key (header or bearer), the admin key, or a session;
    429 while its client must wait after too many wrong keys."""
    key = settings.read_key
    if key is None or session_valid(cookie, key, time.time()):
        return
    presented = [value for value in (header, bearer.credentials if bearer is not None else None) if value]
    if presented and checked_key(
        request,
        READ,
        lambda: any(key_matches(value, key) or key_matches(value, settings.api_key) for value in presented),
    ):
        return
    raise Unauthorized(MISSING_KEY)


def read_dependencies(settings: Settings) -> list[Any]:
    """The read gate for the protected routers; none while no read key is set (the API is unchanged)."""
    return [Depends(require_reader)] if settings.read_key is not None else []


def read_responses(settings: Settings) -> dict[int | str, dict[str, Any]]:
    """The read gate's answer for the OpenAPI document (nothing while no read key is set)."""
    if settings.read_key is None:
        return {}
    return {
        401: {"model": ErrorBody, "description": "no read key"},
        429: {"model": ErrorBody, "description": "too many wrong keys from this client: wait Retry-After"},
    }


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

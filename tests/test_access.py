"""Who may read (IMGSEARCH_READ_KEY, sessions, open-network warning), offline docs, what errors reveal."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import SecretStr
from starlette.routing import BaseRoute

from app import cli
from app.api.access import SESSION_COOKIE, SESSION_SECONDS, KeyGuard, session_token, session_valid
from app.errors import TooManyAttempts
from app.main import create_app
from app.pipeline import Models
from app.settings import Settings
from tests.conftest import png_bytes, service_factory, wait_ready
from tests.fakes import COLOURS


class Response(Protocol):
    """What these tests read of a TestClient response (httpx or httpx2, whichever Starlette uses)."""

    @property
    def status_code(self) -> int:
        """HTTP status."""

    @property
    def text(self) -> str:
        """Body as text."""

    @property
    def headers(self) -> Mapping[str, str]:
        """Response headers."""

    def json(self) -> Any:
        """Body as JSON."""


READ_KEY = "read-key-for-tests"
ADMIN_KEY = "admin-key-for-tests"
PUBLIC = {("GET", "/healthz"), ("POST", "/session"), ("DELETE", "/session"), ("GET", "/")}


@pytest.fixture
def keyed(index_dir: Path, models: Models, tmp_path: Path) -> Iterator[TestClient]:
    """A ready client over an app with both a read key and an admin key."""
    settings = Settings(
        index_dir=index_dir,
        cache_dir=tmp_path / "cache",
        device="cpu",
        max_upload_mb=1,
        read_key=READ_KEY,
        api_key=ADMIN_KEY,
    )
    app = create_app(settings, factory=service_factory(models, tmp_path / "cache"))
    with TestClient(app) as client:
        wait_until_ready(client)
        yield client


def wait_until_ready(client: TestClient) -> None:
    """Wait for warm-up through the runtime (/readyz itself needs the key)."""
    assert client.app.state.runtime.wait(30)  # type: ignore[attr-defined]


def any_id(client: TestClient, headers: dict[str, str]) -> str:
    """The id of some indexed image."""
    response = client.get("/search", params={"q": "red thing", "top_k": 1}, headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["results"][0]["id"])


Call = Callable[[TestClient, dict[str, str], str], Response]
# One valid request per protected operation; the test below fails when a route is missing here.
CALLS: dict[tuple[str, str], Call] = {
    ("GET", "/readyz"): lambda c, h, i: c.get("/readyz", headers=h),
    ("GET", "/metrics"): lambda c, h, i: c.get("/metrics", headers=h),
    ("GET", "/search"): lambda c, h, i: c.get("/search", params={"q": "red"}, headers=h),
    ("POST", "/search"): lambda c, h, i: c.post("/search", json={"query": "red"}, headers=h),
    ("POST", "/search/image"): lambda c, h, i: c.post(
        "/search/image", files={"image": ("q.png", png_bytes(COLOURS["red"]), "image/png")}, headers=h
    ),
    ("GET", "/search/filters"): lambda c, h, i: c.get("/search/filters", headers=h),
    ("POST", "/describe"): lambda c, h, i: c.post("/describe", json={"image_id": i}, headers=h),
    ("GET", "/images/{image_id}"): lambda c, h, i: c.get(f"/images/{i}", headers=h),
    ("GET", "/images/{image_id}/thumbnail"): lambda c, h, i: c.get(f"/images/{i}/thumbnail", headers=h),
    ("GET", "/images/{image_id}/metadata"): lambda c, h, i: c.get(f"/images/{i}/metadata", headers=h),
    ("GET", "/images/{image_id}/view"): lambda c, h, i: c.get(f"/images/{i}/view", headers=h),
    ("GET", "/images/{image_id}/alternates/{number}"): lambda c, h, i: c.get(
        f"/images/{i}/alternates/0", headers=h
    ),
    ("GET", "/folders"): lambda c, h, i: c.get("/folders", headers=h),
    ("GET", "/people"): lambda c, h, i: c.get("/people", headers=h),
    ("GET", "/people/{person_id}/thumbnail"): lambda c, h, i: c.get("/people/p1/thumbnail", headers=h),
    ("GET", "/images/{image_id}/faces"): lambda c, h, i: c.get(f"/images/{i}/faces", headers=h),
    ("PATCH", "/people/{person_id}"): lambda c, h, i: c.patch("/people/p1", json={"name": "A"}, headers=h),
    ("POST", "/people/{person_id}/merge"): lambda c, h, i: c.post(
        "/people/p1/merge", json={"into": "p2"}, headers=h
    ),
    ("POST", "/admin/reload"): lambda c, h, i: c.post("/admin/reload", headers=h),
    ("GET", "/openapi.json"): lambda c, h, i: c.get("/openapi.json", headers=h),
    ("GET", "/docs"): lambda c, h, i: c.get("/docs", headers=h),
    ("GET", "/redoc"): lambda c, h, i: c.get("/redoc", headers=h),
}
# What a call with the right key answers where it is not 200: the gallery holds no camera RAW, so an
# alternate is a 404 that names the image (past the key check), never a 401; it was built without
# faces, so a person is a 404 too.
ANSWERED = {
    ("GET", "/images/{image_id}/alternates/{number}"): 404,
    ("GET", "/people/{person_id}/thumbnail"): 404,
    ("PATCH", "/people/{person_id}"): 404,
    ("POST", "/people/{person_id}/merge"): 404,
}
# The mutations: they need the admin key (IMGSEARCH_API_KEY) beside the read key.
ADMIN_ONLY = {
    ("POST", "/admin/reload"),
    ("PATCH", "/people/{person_id}"),
    ("POST", "/people/{person_id}/merge"),
}


def api_routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    """Every API route of the app, also inside included routers (FastAPI may keep those nested)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from api_routes(route.original_router.routes)


def test_every_route_but_healthz_and_the_page_is_listed(keyed: TestClient) -> None:
    operations = {
        (method, route.path)
        for route in api_routes(keyed.app.routes)  # type: ignore[attr-defined]
        for method in route.methods or ()
    }
    assert operations - PUBLIC == set(CALLS)


def assert_401(response: Response) -> None:
    """A clear JSON 401 that says what to send."""
    assert response.status_code == 401, response.text
    body = response.json()
    assert set(body) == {"detail", "error"} and body["error"] == "Unauthorized"
    assert "IMGSEARCH_READ_KEY" in body["detail"]


@pytest.mark.parametrize("operation", sorted(CALLS))
def test_with_a_read_key_each_route_is_401_without_it_and_works_with_it(
    keyed: TestClient, operation: tuple[str, str]
) -> None:
    image_id = any_id(keyed, {"X-API-Key": READ_KEY})
    call = CALLS[operation]
    keyed.cookies.clear()
    for wrong in ({}, {"X-API-Key": "guess"}, {"Authorization": "Bearer guess"}, {"Authorization": READ_KEY}):
        assert_401(call(keyed, wrong, image_id))
    assert_401(call(keyed, {"Cookie": f"{SESSION_COOKIE}=123.abc"}, image_id))
    admin = {"X-API-Key": ADMIN_KEY} if operation in ADMIN_ONLY else {}
    ways = (
        {"X-API-Key": READ_KEY},
        {"Authorization": f"Bearer {READ_KEY}"},
        {"Cookie": f"{SESSION_COOKIE}={session_token(SecretStr(READ_KEY), time.time())}"},
    )
    for way in ways:
        if admin and "X-API-Key" in way:
            continue  # the admin route takes its own key in that header (checked below)
        response = call(keyed, {**way, **admin}, image_id)
        assert response.status_code == ANSWERED.get(operation, 200), (way, response.text)
    answered = call(keyed, {"X-API-Key": ADMIN_KEY}, image_id).status_code
    assert answered == ANSWERED.get(operation, 200)  # the admin key reads too


@pytest.mark.parametrize("operation", sorted(ADMIN_ONLY))
def test_mutations_still_need_the_admin_key_with_a_read_key(
    keyed: TestClient, operation: tuple[str, str]
) -> None:
    call = CALLS[operation]
    response = call(keyed, {"Authorization": f"Bearer {READ_KEY}"}, "0123456789abcdef")
    assert response.status_code == 401 and "IMGSEARCH_API_KEY" in response.json()["detail"]
    assert call(keyed, {"X-API-Key": READ_KEY}, "0123456789abcdef").status_code == 401


def test_healthz_and_the_page_stay_open(keyed: TestClient) -> None:
    assert keyed.get("/healthz").json() == {"status": "ok"}
    page = keyed.get("/")
    assert page.status_code == 200 and 'id="signin-form"' in page.text
    assert keyed.get("/static/app.js").status_code == 200


def test_sign_in_sets_an_httponly_session_that_thumbnails_use(keyed: TestClient) -> None:
    wrong = keyed.post("/session", json={"key": "guess"})
    assert wrong.status_code == 401 and "read key" in wrong.json()["detail"]
    assert SESSION_COOKIE not in keyed.cookies
    signed = keyed.post("/session", json={"key": READ_KEY})
    assert signed.status_code == 200 and signed.json() == {
        "status": "signed in",
        "expires_in": SESSION_SECONDS,
    }
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and READ_KEY not in cookie
    # The cookie alone, as an <img> tag sends it: no key in the URL.
    image_id = keyed.get("/search", params={"q": "red"}).json()["results"][0]["id"]
    thumbnail = keyed.get(f"/images/{image_id}/thumbnail")
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"
    assert keyed.get("/readyz").json()["read_key"] is True
    out = keyed.delete("/session")
    assert out.status_code == 200 and out.json()["status"] == "signed out"
    assert_401(keyed.get(f"/images/{image_id}/thumbnail"))


def test_expired_or_forged_sessions_are_refused(keyed: TestClient) -> None:
    past = session_token(SecretStr(READ_KEY), time.time() - SESSION_SECONDS - 10)
    other = session_token(SecretStr("another key"), time.time())
    expires, _, signature = session_token(SecretStr(READ_KEY), time.time()).partition(".")
    stretched = f"{int(expires) + 10**9}.{signature}"
    for token in (past, other, stretched, "", ".", "9" * 400):
        assert_401(keyed.get("/readyz", headers={"Cookie": f"{SESSION_COOKIE}={token}"}))
    assert not session_valid("²³." + signature, SecretStr(READ_KEY), time.time())


def test_odd_keys_get_401_not_500(keyed: TestClient) -> None:
    for key in ("ключ".encode(), b"\xff\xfe", b" " * 3000):
        response = keyed.get("/readyz", headers={b"X-API-Key": key})
        assert_401(response)
    assert keyed.post("/session", json={"key": "ключ"}).status_code == 401


def test_without_a_read_key_the_api_is_unchanged(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert set(spec["components"]["securitySchemes"]) == {"APIKeyHeader"}  # the admin key only
    assert "/session" not in spec["paths"]
    assert client.post("/session", json={"key": "x"}).status_code in {404, 405}
    assert client.get("/search", params={"q": "red"}).status_code == 200
    ready = client.get("/readyz").json()
    assert ready["read_key"] is False and ready["warnings"] == []


@pytest.mark.parametrize(
    ("host", "read_key", "warned"),
    [
        ("0.0.0.0", None, True),
        ("::", None, True),
        ("192.0.2.7", None, True),
        ("0.0.0.0", READ_KEY, False),
        ("127.0.0.1", None, False),
        ("localhost", None, False),
        ("::1", None, False),
    ],
)
def test_a_network_address_without_a_read_key_is_warned_about(
    index_dir: Path,
    models: Models,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    host: str,
    read_key: str | None,
    warned: bool,
) -> None:
    settings = Settings(index_dir=index_dir, cache_dir=tmp_path, device="cpu", host=host, read_key=read_key)
    caplog.set_level(logging.WARNING, logger="app.api.access")
    with TestClient(create_app(settings, factory=service_factory(models, tmp_path))) as client:
        wait_until_ready(client)
        ready = client.get("/readyz", headers={"X-API-Key": READ_KEY}).json()
    logged = [r.getMessage() for r in caplog.records if "IMGSEARCH_READ_KEY" in r.getMessage()]
    if warned:
        assert len(ready["warnings"]) == 1 and host in ready["warnings"][0]
        assert "IMGSEARCH_READ_KEY" in ready["warnings"][0]
        assert logged == ready["warnings"]
    else:
        assert ready["warnings"] == [] and logged == []


def test_serve_binds_to_loopback_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append(kwargs))
    monkeypatch.setenv("IMGSEARCH_HOST", "unset")  # restored after the test: serve sets it
    monkeypatch.delenv("IMGSEARCH_HOST")
    assert cli.main(["serve"]) == 0
    assert calls[-1]["host"] == "127.0.0.1"
    assert cli.main(["serve", "--host", "0.0.0.0"]) == 0
    assert calls[-1]["host"] == "0.0.0.0" and Settings().host == "0.0.0.0"  # the app learns it


def test_docs_are_served_from_installed_files(client: TestClient) -> None:
    for path, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = client.get(path)
        assert html.status_code == 200 and f'src="docs-assets/{asset}"' in html.text
        assert "cdn." not in html.text and "fonts.googleapis" not in html.text
        script = client.get(f"/docs-assets/{asset}")
        assert script.status_code == 200 and len(script.content) > 500_000
    assert client.get("/docs-assets/swagger-ui.css").status_code == 200


def test_every_operation_has_a_summary_and_every_parameter_a_description(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            # FastAPI's own summary is the function's name in title case ("Search Get").
            name = operation["operationId"].removesuffix(re.sub(r"\W", "_", path) + "_" + method)
            assert operation["summary"] != name.replace("_", " ").title(), (method, path)
            for parameter in operation.get("parameters", []):
                assert parameter.get("description"), (method, path, parameter["name"])
            for content in operation.get("requestBody", {}).get("content", {}).values():
                schema = content["schema"]
                if "$ref" in schema:
                    schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
                for alternative in [schema, *schema.get("oneOf", [])]:
                    for name, field in alternative.get("properties", {}).items():
                        assert field.get("description"), (method, path, name)


def test_413_names_the_configured_limit(index_dir: Path, models: Models, tmp_path: Path) -> None:
    settings = Settings(index_dir=index_dir, cache_dir=tmp_path, device="cpu", max_upload_mb=20)
    with TestClient(create_app(settings, factory=service_factory(models, tmp_path))) as client:
        wait_ready(client)
        big = b"\xff\xd8" + b"\x00" * (21 * 1024 * 1024)
        response = client.post("/search/image", files={"image": ("big.jpg", big, "image/jpeg")})
    assert response.status_code == 413
    assert "limit of 20 MB" in response.json()["detail"] and "20.06" not in response.json()["detail"]


def test_503_answers_name_no_server_paths(
    tmp_path: Path, models: Models, caplog: pytest.LogCaptureFixture
) -> None:
    hidden = tmp_path / "private" / "index"
    settings = Settings(index_dir=hidden, cache_dir=tmp_path / "cache", device="cpu")
    caplog.set_level(logging.INFO)
    with TestClient(create_app(settings, factory=service_factory(models, tmp_path))) as client:
        client.app.state.runtime.wait(10)  # type: ignore[attr-defined]
        answers = [client.get("/readyz"), client.get("/search", params={"q": "red"})]
    for answer in answers:
        assert answer.status_code == 503
        detail = answer.json()["detail"]
        assert str(tmp_path) not in detail and "IMGSEARCH_INDEX_DIR" in detail, detail
    assert str(hidden) in caplog.text  # the log keeps the path for the operator


# -- guessing a key is slowed down, per client ----------------------------------------------------

Attempt = Callable[[TestClient, str], Response]
# Each way a key is given: (the attempt with a key, the right key). The admin key is tried on
# /admin/reload with a valid read key beside it, so only the admin key is guessed.
WAYS: dict[str, tuple[Attempt, str]] = {
    "POST /session": (lambda c, k: c.post("/session", json={"key": k}), READ_KEY),
    "X-API-Key": (lambda c, k: c.get("/folders", headers={"X-API-Key": k}), READ_KEY),
    "Bearer": (lambda c, k: c.get("/folders", headers={"Authorization": f"Bearer {k}"}), READ_KEY),
    "admin key": (
        lambda c, k: c.post("/admin/reload", headers={"X-API-Key": k, "Authorization": f"Bearer {READ_KEY}"}),
        ADMIN_KEY,
    ),
}


class Clock:
    """A clock the test moves forward."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        """The current time."""
        return self.now


def assert_429(response: Response, wait: int) -> None:
    """Too many wrong keys: 429, the wait in Retry-After and in the message."""
    assert response.status_code == 429, response.text
    assert response.headers["retry-after"] == str(wait)
    body = response.json()
    assert body["error"] == "TooManyAttempts" and f"checked in {wait} s" in body["detail"]


@pytest.mark.parametrize("way", sorted(WAYS))
def test_wrong_keys_make_their_client_wait_longer_each_time(keyed: TestClient, way: str) -> None:
    attempt, right = WAYS[way]
    clock = Clock()
    keyed.app.state.key_guard.clock = clock  # type: ignore[attr-defined]
    guesser = TestClient(keyed.app, client=("192.0.2.1", 4000))
    other = TestClient(keyed.app, client=("192.0.2.2", 4000))
    for _ in range(5):
        assert attempt(guesser, "guess").status_code == 401
    assert_429(attempt(guesser, right), 1)  # not even the right key is checked while it waits
    assert attempt(other, right).status_code == 200  # another client is not held up
    for wait in (1, 2, 4, 8):
        clock.now += wait
        assert attempt(guesser, "guess").status_code == 401
        assert_429(attempt(guesser, "guess"), wait * 2)
    clock.now += 16  # the wait ends: the right key works and the count starts again
    assert attempt(guesser, right).status_code == 200
    for _ in range(5):
        assert attempt(guesser, "guess").status_code == 401
    assert_429(attempt(guesser, "guess"), 1)


def test_the_read_and_admin_keys_are_guarded_apart(keyed: TestClient) -> None:
    keyed.app.state.key_guard.clock = Clock()  # type: ignore[attr-defined]  # time stands still
    guesser = TestClient(keyed.app, client=("192.0.2.1", 4000))
    for _ in range(5):
        assert WAYS["admin key"][0](guesser, "guess").status_code == 401
    assert_429(WAYS["admin key"][0](guesser, ADMIN_KEY), 1)
    assert guesser.get("/folders", headers={"X-API-Key": READ_KEY}).status_code == 200  # reading goes on
    # And a known read key does not reset the admin key's count: the wait stays.
    assert_429(WAYS["admin key"][0](guesser, ADMIN_KEY), 1)


def test_requests_without_a_key_are_not_counted_and_ipv6_clients_count_by_network(keyed: TestClient) -> None:
    keyed.app.state.key_guard.clock = Clock()  # type: ignore[attr-defined]  # time stands still
    plain = TestClient(keyed.app, client=("192.0.2.1", 4000))
    for _ in range(10):
        assert_401(plain.get("/folders"))  # the page's first load: no key yet, nothing guessed
    assert plain.post("/session", json={"key": READ_KEY}).status_code == 200
    hosts = [f"2001:db8:0:1::{n:x}" for n in range(1, 7)]  # one /64 network, six addresses
    for host in hosts[:5]:
        assert (
            TestClient(keyed.app, client=(host, 4000)).post("/session", json={"key": "guess"}).status_code
            == 401
        )
    assert_429(TestClient(keyed.app, client=(hosts[5], 4000)).post("/session", json={"key": READ_KEY}), 1)


def test_the_guard_remembers_a_bounded_number_of_clients() -> None:
    guard = KeyGuard(max_clients=3)
    for n in range(10):
        for _ in range(5):
            guard.attempt("read", f"client-{n}")  # each attempt counts until its key proves right
    assert len(guard) == 3
    guard.attempt("read", "client-0")  # forgotten: may try again
    with pytest.raises(TooManyAttempts):
        guard.attempt("read", "client-9")


def test_parallel_guesses_are_counted_before_their_keys_are_checked(keyed: TestClient) -> None:
    keyed.app.state.key_guard.clock = Clock()  # type: ignore[attr-defined]  # time stands still
    guesser = TestClient(keyed.app, client=("192.0.2.1", 4000))
    with ThreadPoolExecutor(8) as pool:
        statuses = list(
            pool.map(lambda _: guesser.post("/session", json={"key": "guess"}).status_code, range(40))
        )
    assert sorted(statuses) == [401] * 5 + [429] * 35

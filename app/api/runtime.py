"""Process state: the service once warm, or why it is not; loaded off the event loop, swapped on reload.

A build publishes a new generation of the index (app/build.py). A watcher thread, started and stopped
with the app, reads the `current` link every FOLLOW_EVERY_S and switches to a new generation in the
background, as `/admin/reload` does, whether or not requests arrive; a service that could not start
(no index yet) loads as soon as a build publishes one. The service swapped out stays `retired` for
RETIRED_FOR_S, so images named by results sent just before the swap still resolve from the generation
they came from.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from app.assembly import Reloader, ServiceFactory, load_service, reload_service
from app.device import resolve_device
from app.errors import Conflict, ImageNotFound, ImgSearchError, NotReady
from app.index import ImageRecord, generation_of
from app.service import SearchService
from app.settings import Settings

log = logging.getLogger(__name__)

EXPECTED_FAILURES = (ImgSearchError, OSError, RuntimeError, ValueError)
FOLLOW_EVERY_S = 0.5
SHORTEST_POLL_S = 0.05
RETIRED_FOR_S = 60.0
RETRY_REFUSED_S = 30.0  # a refused generation may become servable (its Milvus export lands after it)
STOP_WAIT_S = 10.0  # how long closing waits for the watcher to finish a load or switch under way


def one_line(exc: BaseException) -> str:
    """The exception as one log-friendly line; unexpected types keep their class name."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, EXPECTED_FAILURES) else f"{type(exc).__name__}: {text}"


@dataclass
class Runtime:
    """Holds the warm service; `/readyz` and every route read it."""

    settings: Settings
    factory: ServiceFactory = load_service
    service: SearchService | None = None
    error: str | None = None
    device: str = ""
    reloader: Reloader = reload_service
    follow_every: float | None = FOLLOW_EVERY_S  # None: serve new generations only on /admin/reload
    retired: SearchService | None = None
    _retired_at: float = 0.0
    _refused: tuple[str, float] | None = field(default=None, repr=False)
    _failed_on: str | None = field(default=None, repr=False)  # generation served when warm-up failed
    _thread: threading.Thread | None = field(default=None, repr=False)
    _watcher: threading.Thread | None = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _reload_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def start(self) -> None:
        """Warm up in a background thread so `/healthz` answers at once; start following the index."""
        self.error = None
        self._thread = threading.Thread(target=self._load, name="warm-up", daemon=True)
        self._thread.start()
        self._watcher = threading.Thread(target=self._watch, name="follow-index", daemon=True)
        self._watcher.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until warm-up ended; True when the service is ready."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.service is not None

    def _load(self) -> None:
        """Build the service; on failure record one clear reason and log it as one line (no traceback)."""
        start = time.perf_counter()
        seen = generation_of(self.settings.index_dir)
        try:
            self.device = str(resolve_device(self.settings.device)[0])
            service = self.factory(self.settings)
        except Exception as exc:
            self._failed_on, self.error = seen, one_line(exc)
            log.error("not ready: %s", self.error)
            log.debug("warm-up failure details", exc_info=True)
            return
        with self._reload_lock:
            if self._stop.is_set():  # the app stopped meanwhile: nobody will close it later
                service.close()
                return
            self.service = service
        log.info("ready in %.1fs: %d images", time.perf_counter() - start, service.count)

    def require(self) -> SearchService:
        """The service, or NotReady with the reason."""
        service = self.service
        if service is not None:
            return service
        if self.error:
            raise NotReady(f"service unavailable: {self.error}")
        raise NotReady("service is warming up; retry shortly")

    def reload(self) -> tuple[SearchService, SearchService]:
        """Swap in the index now on disk, keeping the models; returns the (previous, new) services."""
        # Requests that already hold the previous service finish on it; its index is closed by the
        # garbage collector once the last of them lets go. One reload runs at a time.
        with self._reload_lock:
            previous = self.require()
            try:
                fresh = self.reloader(self.settings, previous)
            except (ImgSearchError, OSError, ValueError, KeyError) as exc:
                reason = one_line(exc)
                log.warning("reload refused, still serving the previous index: %s", reason)
                raise Conflict(f"reload refused, still serving the previous index: {reason}") from exc
            self.service = fresh
            self.retired, self._retired_at = previous, time.monotonic()
        log.info(
            "reloaded %s: %d images (was %d)",
            self.settings.index_dir,
            fresh.count,
            previous.count,
        )
        return previous, fresh

    def _watch(self) -> None:
        """Until the app stops: every follow_every seconds, serve what a build published."""
        while not self._stop.wait(max(self.follow_every or FOLLOW_EVERY_S, SHORTEST_POLL_S)):
            if self.follow_every is None:
                continue
            try:
                self.follow()
            except Exception as exc:  # the watcher must outlive one bad look at the folder
                log.warning("following the index: %s", one_line(exc))

    def follow(self) -> None:
        """Switch to the generation `current` names, or load the service once a build published one."""
        now = time.monotonic()
        if self.retired is not None and now - self._retired_at > RETIRED_FOR_S:
            self.retired = None  # its generation can go once the requests using it finish
        live, service = generation_of(self.settings.index_dir), self.service
        if live is None or self._reload_lock.locked():
            return
        if service is None:
            warming = self._thread is not None and self._thread.is_alive()
            if self.error is not None and live != self._failed_on and not warming:
                log.info("a build published generation %s: loading it", live)
                self.error = None  # /readyz: loading, not failed
                self._load()
            return
        waiting = self._refused is not None and self._refused[0] == live and now < self._refused[1]
        if live == service.generation or waiting:
            return
        log.info("a build published generation %s: switching to it", live)
        try:
            self.reload()
        except (Conflict, NotReady):  # logged by reload; retried after RETRY_REFUSED_S
            self._refused = (live, time.monotonic() + RETRY_REFUSED_S)

    def locate(self, image_id: str) -> tuple[SearchService, ImageRecord]:
        """An image of the served index, or of the one it replaced moments ago (results may name it)."""
        service = self.require()
        try:
            return service, service.image(image_id)
        except ImageNotFound:
            retired = self.retired
            if retired is None or time.monotonic() - self._retired_at > RETIRED_FOR_S:
                self.retired = None  # its generation can go once the requests using it finish
                raise
            return retired, retired.image(image_id)

    def close(self) -> None:
        """Stop following, release the index; later requests get 503 instead of reaching a closed index."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(STOP_WAIT_S)
        with self._reload_lock:
            self.retired = None
            service, self.service = self.service, None
            self.error = "service is shutting down"
        if service is not None:
            service.close()

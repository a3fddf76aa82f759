"""Process state: the service once warm, or why it is not; loaded off the event loop."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from app.device import resolve_device
from app.errors import ImgSearchError, NotReady
from app.index import Index
from app.registry import prepare
from app.service import SearchService
from app.settings import Settings

log = logging.getLogger(__name__)

ServiceFactory = Callable[[Settings], SearchService]


def load_service(settings: Settings) -> SearchService:
    """Open the index, load its profile's models on the configured device, check they match."""
    index = Index(settings.index_dir)
    profile = settings.profile or index.profile
    models = prepare(settings, profile)
    return SearchService(
        index,
        models,
        settings.cache_dir,
        max_pixels=settings.max_image_pixels,
        max_new_tokens=settings.describe_max_new_tokens,
        query_cache_size=settings.query_cache_size,
    )


@dataclass
class Runtime:
    """Holds the warm service; `/readyz` and every route read it."""

    settings: Settings
    factory: ServiceFactory = load_service
    service: SearchService | None = None
    error: str | None = None
    device: str = ""
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> None:
        """Warm up in a background thread so `/healthz` answers at once."""
        self._thread = threading.Thread(target=self._load, name="warm-up", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until warm-up ended; True when the service is ready."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.service is not None

    def _load(self) -> None:
        """Build the service; record one clear reason on failure."""
        start = time.perf_counter()
        try:
            self.device = str(resolve_device(self.settings.device)[0])
            self.service = self.factory(self.settings)
            log.info("ready in %.1fs: %d images", time.perf_counter() - start, self.service.index.count)
        except (ImgSearchError, OSError, RuntimeError, ValueError) as exc:
            self.error = str(exc)
            log.error("not ready: %s", exc)

    def require(self) -> SearchService:
        """The service, or NotReady with the reason."""
        if self.service is not None:
            return self.service
        if self.error:
            raise NotReady(f"service unavailable: {self.error}")
        raise NotReady("service is warming up; retry shortly")

    def close(self) -> None:
        """Release the index."""
        if self.service is not None:
            self.service.index.close()

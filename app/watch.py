"""Watch: keep an index current while a folder's images are added, changed, moved or removed.

watchfiles reports the folder's changes (inotify where the kernel offers it); changes that arrive
within `DEBOUNCE_MS` of each other are grouped, and each group runs one incremental build
(`build_index(update=True)`): files already indexed are reused by sha256, so one new photo costs
one encode, and a moved file costs nothing. With a text reader, each build then reads the text of
the pictures that lack it (app/text_stage.py), a text stage a previous build left unfinished included;
with a face reader (--faces), it finds the faces of the pictures not looked at yet (app/face_stage.py).
Each build publishes a new generation in one rename;
a running service switches to it by itself at its next request (app/api/runtime.py `follow`),
without a restart and without dropping a request. While another build holds the index's lock (one
the user started, or a watcher's build killed a moment ago, whose lock is free once it is gone) the
watcher tries again every `LOCK_RETRY_S` until it gets the lock: the changes it has not indexed yet
(those made while no watcher ran included) never wait for the next file event. A build that fails
otherwise (no readable image left) is logged and the index stays as it was until the next change.
Ctrl-C stops it (watchfiles raises KeyboardInterrupt; `imgsearch watch` says so in one line).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import watchfiles

from app.build import BuildConfig, BuildReport, build_index
from app.errors import BuildLocked, ImgSearchError
from app.faces import FaceReading
from app.pipeline import Pipeline
from app.sources import IMAGE_SUFFIXES, FolderSource
from app.text_stage import TextReading

log = logging.getLogger(__name__)

DEBOUNCE_MS = 1600  # changes this close together make one build (a copy of many photos is one update)
LOCK_RETRY_S = 1.0  # while another build holds the lock, the watcher tries again this often


class Watcher:
    """One folder, one index, one pipeline: an incremental build after each group of changes."""

    def __init__(
        self,
        images: Path,
        index_dir: Path,
        pipeline: Pipeline,
        config: BuildConfig | None = None,
        reader: TextReading | None = None,
        faces: FaceReading | None = None,
    ) -> None:
        self.images, self.index_dir = images.resolve(), index_dir.resolve()
        self.pipeline, self.config, self.reader = pipeline, config or BuildConfig(), reader
        self.faces = faces

    def concerns(self, change: watchfiles.Change, path: str) -> bool:
        """True for an image file of the folder (not a hidden one, not the index's own files)."""
        where = Path(path)
        if where.is_relative_to(self.index_dir) or any(part.startswith(".") for part in where.parts[1:]):
            return False
        return where.suffix.lower() in IMAGE_SUFFIXES or change == watchfiles.Change.deleted

    def sync(self, stop: threading.Event | None = None) -> BuildReport | None:
        """One incremental build of the folder, retried while another build holds the lock (until
        `stop` is set); None (after a log line) when it fails or is stopped."""
        waiting = False
        while True:
            try:
                report = build_index(
                    FolderSource(self.images),
                    self.index_dir,
                    self.pipeline,
                    self.config,
                    progress=False,
                    update=True,
                    reader=self.reader,
                    faces=self.faces,
                )
            except BuildLocked as exc:
                if not waiting:
                    log.warning("watch: %s; trying again every %.0f s", exc, LOCK_RETRY_S)
                    waiting = True
                if (stop or threading.Event()).wait(LOCK_RETRY_S):  # set: stop waiting
                    return None
                continue
            except (ImgSearchError, OSError) as exc:
                log.warning("watch: the index was left as it was: %s", exc)
                return None
            log.info("watch: %d images (%d new, %d removed)", report.indexed, report.encoded, report.removed)
            return report

    def run(
        self,
        stop: threading.Event | None = None,
        on_sync: Callable[[BuildReport | None], None] | None = None,
        debounce_ms: int = DEBOUNCE_MS,
    ) -> None:
        """Bring the index up to date, then once after each group of changes until `stop` is set."""
        report = self.sync(stop)
        if on_sync is not None:
            on_sync(report)
        for _ in watchfiles.watch(
            self.images,
            watch_filter=self.concerns,
            debounce=debounce_ms,
            stop_event=stop,
            raise_interrupt=True,
        ):
            report = self.sync(stop)
            if on_sync is not None:
                on_sync(report)

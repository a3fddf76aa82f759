"""Where a model's files come from: a local path, the Hugging Face cache, or a download tried only when its
server answers one quick request (the hub client alone retries for minutes when there is no network)."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

PROBE_TIMEOUT_S = 5.0


def unreachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when one HEAD request to the url gets any HTTP answer (proxies as configured), else why not."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # it answered, if only with an error status
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return " ".join(str(reason).split()) or type(exc).__name__


def hub_source(source: str) -> str:
    """What to load `source` from: itself when it is a local path, else the cached snapshot of that hub
    id, else the hub id when the hub answers (the load downloads it); FileNotFoundError otherwise."""
    from huggingface_hub import constants, snapshot_download

    if Path(source).exists():
        return source
    if source.startswith(("/", ".", "~")) or source.count("/") > 1:
        raise FileNotFoundError(f"no such file or folder: {source}")
    try:
        return str(snapshot_download(source, local_files_only=True))
    except (OSError, ValueError):  # not in the cache, or not a hub id at all
        pass
    if constants.HF_HUB_OFFLINE:
        raise FileNotFoundError(
            f"{source} is not in the Hugging Face cache and HF_HUB_OFFLINE forbids downloads"
        )
    reason = unreachable(constants.ENDPOINT)
    if reason is not None:
        raise FileNotFoundError(
            f"{source} is not in the Hugging Face cache and {constants.ENDPOINT} cannot be reached ({reason})"
        )
    return source

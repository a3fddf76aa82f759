"""Domain errors raised by core code; the API maps each to one HTTP status."""


class ImgSearchError(Exception):
    """Base class of every error the core raises on purpose."""


class ImageNotFound(ImgSearchError):
    """No indexed image has this id."""


class BadImage(ImgSearchError):
    """The bytes look like an image but cannot be decoded safely (corrupt, truncated, too large)."""


class UnsupportedMedia(ImgSearchError):
    """The request body is of a type this endpoint does not take."""


class NotAnImage(UnsupportedMedia):
    """The bytes are not in any image format we can read."""


class PayloadTooLarge(ImgSearchError):
    """The upload exceeds the configured limit."""


class BadQuery(ImgSearchError):
    """The query text or paging parameters cannot be served."""


class IndexMismatch(ImgSearchError):
    """The index was built with other models, profile or dimensions than those loaded."""


class IndexUnavailable(ImgSearchError):
    """The index directory is missing, partial or unreadable."""


class NotReady(ImgSearchError):
    """Models or index are still loading."""


class ModelLoading(NotReady):
    """A model that only some endpoints need (the language model) is still loading; retry shortly."""

    retry_after = 5  # seconds, sent as Retry-After


class Unauthorized(ImgSearchError):
    """The request lacks the credentials an endpoint needs (missing or wrong API key)."""


class TooManyAttempts(ImgSearchError):
    """One client sent too many wrong keys: its next key is checked after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # seconds, sent as Retry-After


class Forbidden(ImgSearchError):
    """The endpoint is switched off in this deployment (admin without a configured API key)."""


class Conflict(ImgSearchError):
    """The request cannot be carried out in the current state (reload of a mismatched index…)."""


class BuildLocked(Conflict):
    """Another build holds the lock of the same index directory."""


class IndexDirRefused(ImgSearchError):
    """The folder given for an index is not the project's to write (user files, or the images themselves)."""


class NoSpace(ImgSearchError):
    """The disk holding the index ran out of space while a build wrote it."""


class BadSetting(ImgSearchError):
    """An `IMGSEARCH_*` setting has a value the service cannot use (named with what it expects)."""


class ModelUnavailable(NotReady):
    """A model's weights cannot be loaded (not installed, not in the model folder, no network)."""


class PersonNotFound(ImgSearchError):
    """No person of the index has this id (or name)."""


class BadPersonChange(ImgSearchError):
    """A naming or merging of people that cannot be carried out (an empty name, a merge into itself)."""

"""Errors of the registry core. Each OCI error code is a class; the HTTP face maps them."""

from __future__ import annotations

from typing import Any, ClassVar


class EdgeError(Exception):
    """Base of every error the core raises on purpose; str() is one readable line."""


class ConfigError(EdgeError):
    """config.toml or the data dir is unusable."""


class SchemaTooNew(ConfigError):
    """The data dir's database was written by a newer release; it is left untouched."""


class SyncConfigError(ConfigError):
    """The connected registry's settings are unusable: the connection string, the parent's CA,
    the schedule, the window or config.toml's [sync]. The message names the field."""


class NotEnabledError(EdgeError):
    """The data dir has not been enabled (no certificates or credentials yet)."""


class GCInProgressError(EdgeError):
    """Another garbage-collection run holds the lock."""


class SyncInProgressError(EdgeError):
    """Another sync run (in this process or another) is under way."""


class RegistryError(EdgeError):
    """An error with an OCI distribution-spec code and the HTTP status it maps to."""

    code: ClassVar[str] = "UNKNOWN"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "unknown error"

    def __init__(
        self,
        message: str | None = None,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.detail = detail
        self.headers = headers or {}
        """Response headers the error's answer carries (Content-Range on a 416, say)."""
        super().__init__(self.message)

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return {"errors": [entry]}


class BlobUnknown(RegistryError):
    code, status, default_message = "BLOB_UNKNOWN", 404, "blob unknown to registry"


class BlobUploadInvalid(RegistryError):
    code, status, default_message = "BLOB_UPLOAD_INVALID", 400, "blob upload invalid"


class BlobUploadUnknown(RegistryError):
    code, status, default_message = "BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry"


class DigestInvalid(RegistryError):
    code, status, default_message = (
        "DIGEST_INVALID",
        400,
        "provided digest did not match uploaded content",
    )


class ManifestBlobUnknown(RegistryError):
    code, status, default_message = (
        "MANIFEST_BLOB_UNKNOWN",
        400,
        "manifest references a manifest or blob unknown to registry",
    )


class ManifestInvalid(RegistryError):
    code, status, default_message = "MANIFEST_INVALID", 400, "manifest invalid"


class ManifestUnknown(RegistryError):
    code, status, default_message = "MANIFEST_UNKNOWN", 404, "manifest unknown to registry"


class NameInvalid(RegistryError):
    code, status, default_message = "NAME_INVALID", 400, "invalid repository name"


class NameUnknown(RegistryError):
    code, status, default_message = "NAME_UNKNOWN", 404, "repository name not known to registry"


class SizeInvalid(RegistryError):
    code, status, default_message = (
        "SIZE_INVALID",
        400,
        "provided length did not match content length",
    )


class Unauthorized(RegistryError):
    code, status, default_message = "UNAUTHORIZED", 401, "authentication required"


class Denied(RegistryError):
    code, status, default_message = "DENIED", 403, "requested access to the resource is denied"


class Pinned(Denied):
    """A delete or untag refused because a stage pins what it would remove (sync/staging.py):
    the message names the stage, when it was staged, when it expires and how to release it."""


class Unsupported(RegistryError):
    code, status, default_message = "UNSUPPORTED", 400, "the operation is unsupported"


class RangeInvalid(BlobUploadInvalid):
    """A chunk that does not start where the upload ends: HTTP 416 per the spec."""

    status = 416
    default_message = "requested range not satisfiable"


class RangeNotSatisfiable(RegistryError):
    """A blob GET whose Range no byte of the blob satisfies (RFC 9110: 416)."""

    code, status, default_message = "SIZE_INVALID", 416, "requested range not satisfiable"


class HeadersTooLarge(RegistryError):
    code, status, default_message = "UNSUPPORTED", 431, "request header fields too large"


class UriTooLong(RegistryError):
    code, status, default_message = "NAME_INVALID", 414, "request path too long"


class ManifestTooLarge(RegistryError):
    code, status, default_message = "SIZE_INVALID", 413, "manifest exceeds the 4 MiB limit"


class InsufficientSpace(Denied):
    """Uploads refused by the low-space guard."""


class StorageFull(InsufficientSpace):
    """The volume itself is full: ENOSPC or EDQUOT from a write, or SQLite's SQLITE_FULL.

    Answered like the low-space guard, 403 DENIED with an OCI body, not 507: a full disk is not
    cured by the retries clients make on a 5xx, and one code for both refusals is one thing
    for clients and scripts to recognise. Nothing acknowledged before is affected.
    """

    default_message = (
        "no space left on device; delete unused images and run a garbage collection"
    )


class PaginationNumberInvalid(RegistryError):
    code, status, default_message = (
        "PAGINATION_NUMBER_INVALID",
        400,
        "invalid number of results requested",
    )


class TooManyRequests(RegistryError):
    """Refused for now (a cap on concurrent uploads); the answer says when to retry."""

    code, status, default_message = "TOOMANYREQUESTS", 429, "too many requests"


class BodyTimeout(SizeInvalid):
    """A request body that stopped arriving: it never reached its declared length."""

    status = 408
    default_message = "the request body stopped arriving"


class StoreError(EdgeError):
    """The metadata store failed in a way no caller can act on (a bug or a damaged file);
    answered as an internal error."""


class StoreBusy(RegistryError):
    """The metadata store stayed locked past its busy timeout (another process holds the write
    lock); the request may be retried."""

    code, status, default_message = "UNAVAILABLE", 503, "the metadata store is busy; retry"

"""What can go wrong talking to the parent registry, as one readable line each."""

from __future__ import annotations

from registry_core.errors import EdgeError


class ParentError(EdgeError):
    """The parent registry could not do what the sync asked. `status` is the HTTP status of
    the last answer (0 when there was none), `code` the OCI error code it carried, if any."""

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ParentUnreachable(ParentError):
    """No usable answer after the retries: connect errors, TLS failures, timeouts, cut
    connections, or a parent that kept answering 429, 502, 503 or 504."""


class ParentAuthFailed(ParentError):
    """The parent (or its token service) refused the sync credentials: 401."""


class ParentDenied(ParentError):
    """The credentials are good but not for this: 403, or a token without the scope."""


class ParentNotFound(ParentError):
    """404 where the thing asked for must exist (a manifest by digest, a blob)."""


class ParentProtocolError(ParentError):
    """An answer the client cannot accept: a digest that does not match the content, a body
    that is not what the API promises, or a status the operation does not expect."""

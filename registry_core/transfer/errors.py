"""What makes an offline import or export stop: each one line, naming the file or blob."""

from __future__ import annotations

from registry_core.errors import EdgeError


class TransferError(EdgeError):
    """An import or export that cannot go on (an import then stores nothing)."""


class SourceInvalid(TransferError):
    """The layout or archive is unreadable: a truncated tar, bad JSON, a missing blob, a blob
    whose content does not match its digest. The message names the file or blob."""


class NamingError(TransferError):
    """An image in the source has no usable repository and tag (give --tag or --repository)."""


class DestinationExists(TransferError):
    """The export's destination exists and is not empty (overwrite it with force)."""


class NotEnoughRoom(TransferError):
    """The destination's volume has less free space than the export needs."""


class TransferCancelled(TransferError):
    """Asked to stop; an import stops before its first commit and stores nothing."""

"""Offline transfer: OCI image layouts and docker-archive tarballs in and out.

`preview` says what a layout or archive holds and which blobs are here already;
`import_images` stores it (blobs hashed as they stream, each image committed whole).
`plan_export` says what an export would write; `export_images` writes images to an OCI layout
(a directory or a .tar) or a docker-archive. The long ones take an `on_progress` callback
(model.Progress) and a `should_stop` check, asked between blobs and chunks, so that a console
worker can show progress and cancel; they block, so call them from a worker thread.
"""

from registry_core.transfer.errors import (
    DestinationExists,
    NamingError,
    NotEnoughRoom,
    SourceInvalid,
    TransferCancelled,
    TransferError,
)
from registry_core.transfer.exporter import (
    DOCKER_ARCHIVE,
    FORMATS,
    OCI,
    ExportPlan,
    ExportResult,
    check_free_space,
    export_images,
    plan_export,
    resolve,
)
from registry_core.transfer.importer import ImportedImage, ImportResult, import_images, preview
from registry_core.transfer.model import Progress, ProgressCallback, StopCheck
from registry_core.transfer.plan import ImportPlan, PlannedImage

__all__ = [
    "DOCKER_ARCHIVE",
    "FORMATS",
    "OCI",
    "DestinationExists",
    "ExportPlan",
    "ExportResult",
    "ImportPlan",
    "ImportResult",
    "ImportedImage",
    "NamingError",
    "NotEnoughRoom",
    "PlannedImage",
    "Progress",
    "ProgressCallback",
    "SourceInvalid",
    "StopCheck",
    "TransferCancelled",
    "TransferError",
    "check_free_space",
    "export_images",
    "import_images",
    "plan_export",
    "preview",
    "resolve",
]

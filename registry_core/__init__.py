"""Edge Console's registry core: an OCI Distribution v2 registry over one data directory.

Nothing here imports Textual or the console; the HTTP API, the TUI and the CLI are faces
over the operations exported below.
"""

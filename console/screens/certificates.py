"""Certificates: the CA and server certificate, and the CA export for client machines."""

from __future__ import annotations

import io
from pathlib import Path
from typing import ClassVar, cast

import platformdirs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Button, DataTable, Input, RadioButton, RadioSet, Static

from console.screens.base import View
from console.widgets.confirm import ConfirmationModal
from console.widgets.format import expires_in
from registry_core.certs import (
    CA_DER_NAME,
    CA_PEM_NAME,
    CertificateInfo,
    ExportFormat,
    ExportTargetExists,
    describe_certificates,
    export_ca,
)
from registry_core.datadir import DataDir
from registry_core.errors import EdgeError

CA_MIME_TYPE = "application/x-x509-ca-cert"


class CertificatesLoaded(Message):
    def __init__(self, certificates: list[CertificateInfo], error: str | None = None) -> None:
        super().__init__()
        self.certificates = certificates
        self.error = error


class OverwriteAsked(Message):
    """The export's target exists: the technician is asked before it is replaced."""

    def __init__(self, path: Path, fmt: ExportFormat) -> None:
        super().__init__()
        self.path = path
        self.fmt = fmt


class ExportFinished(Message):
    def __init__(self, path: Path | None, error: str | None, fingerprint: str,
                 note: str = "", data: bytes | None = None) -> None:
        super().__init__()
        self.path = path
        self.error = error
        self.fingerprint = fingerprint
        self.note = note
        """How the default folder was dealt with (made, or another chosen)."""
        self.data = data
        """In a browser: the certificate, for the browser's downloads (`path`: its name)."""


def default_downloads() -> Path:
    return Path(platformdirs.user_downloads_dir())


def ca_bytes(datadir: DataDir, fmt: ExportFormat) -> bytes:
    """The CA certificate as PEM or DER (what `export_ca` writes)."""
    try:
        cert = x509.load_pem_x509_certificate(datadir.ca_cert.read_bytes())
    except ValueError as exc:
        raise EdgeError(f"{datadir.ca_cert}: not a PEM certificate") from exc
    encoding = serialization.Encoding.PEM if fmt == "pem" else serialization.Encoding.DER
    return cert.public_bytes(encoding)


def usable_default(path: Path) -> tuple[Path, str]:
    """The default export path made to work on a fresh account: its folder (~/Downloads,
    which a new account may lack) is made when missing, or else the home folder is used.
    (path, what was done, or '')."""
    folder = path.parent
    if folder.is_dir():
        return path, ""
    try:
        folder.mkdir(parents=True, mode=0o755)
    except OSError as exc:
        home = Path.home()
        return home / path.name, f"{folder} could not be made ({exc.strerror}): in {home}"
    return path, f"made {folder}"


class CertificatesView(View):
    tab_id = "certificates"
    tab_title = "Certificates"
    help_notes = (
        "up / down choose a certificate: its names, issuer and fingerprint show below.\n"
        "Check the SHA-256 fingerprint on the laptop after copying the file."
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("e", "export", "Export CA", id="certificates.export",
                tooltip="export the CA certificate to the path in the field (edit it: tab)"),
        Binding("f", "toggle_format", "Format", id="certificates.format",
                tooltip="export format: PEM .crt (Linux, macOS, docker) or DER .cer (Windows)"),
    ]

    certificates: reactive[list[CertificateInfo]] = reactive(list, init=False)
    format: reactive[ExportFormat] = reactive("pem", init=False)
    detail_index: reactive[int] = reactive(0, init=False)
    outcome: reactive[ExportFinished | None] = reactive(None, init=False)
    """The last export's result."""

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="certs-scroll"):
            table: DataTable[str | Text] = DataTable(id="certs-table", cursor_type="row")
            yield table
            yield Static("", id="cert-detail")
            yield Static("Download the CA certificate for client machines", classes="section")
            with Horizontal(id="export-row"):
                yield Input(id="export-path", placeholder="path to write the CA certificate",
                            compact=True)
                yield Button("Export", id="export-button", variant="primary", compact=True)
            with RadioSet(id="export-format"):
                yield RadioButton("PEM .crt (Linux, macOS, docker)", value=True, id="fmt-pem")
                yield RadioButton("DER .cer (Windows)", id="fmt-der")
            yield Static("", id="export-result")

    def main_widget(self) -> Widget | None:
        return self.query_one("#certs-table", DataTable)

    def on_mount(self) -> None:
        table = cast("DataTable[str | Text]", self.query_one("#certs-table", DataTable))
        table.add_column("Role", key="role")
        table.add_column("Subject", key="subject")
        table.add_column("Valid until", key="until")
        table.add_column("Expires", key="expires")
        self.query_one("#export-path", Input).value = str(self.default_path(self.format))
        if self.app.is_web:  # the file goes to the browser's downloads, not to a path here
            self.query_one("#export-path", Input).display = False
            self.query_one("#export-button", Button).label = "Download"
        self.load()

    def reload(self) -> None:
        self.load()

    def default_path(self, fmt: ExportFormat) -> Path:
        directory = self.edge.downloads_dir or default_downloads()
        return directory / (CA_PEM_NAME if fmt == "pem" else CA_DER_NAME)

    @work(thread=True, exclusive=True, group="certificates", exit_on_error=False)
    def load(self) -> None:
        try:
            certificates = describe_certificates(self.edge.datadir)
        except (EdgeError, OSError) as exc:
            self.post_message(CertificatesLoaded([], str(exc)))
            return
        self.post_message(CertificatesLoaded(certificates))

    @on(CertificatesLoaded)
    def _loaded(self, message: CertificatesLoaded) -> None:
        if message.error:
            self.edge.error(message.error)
        self.certificates = message.certificates

    def watch_certificates(self) -> None:
        table = cast("DataTable[str | Text]", self.query_one("#certs-table", DataTable))
        table.clear()
        now = self.edge.clock()
        for cert in self.certificates:
            table.add_row(
                cert.role,
                _common_name(cert.subject),
                f"{cert.not_after:%Y-%m-%d}",
                expires_in(cert.not_after, now),
                key=cert.role,
            )
        self.show_detail()

    @on(DataTable.RowHighlighted, "#certs-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.detail_index = event.cursor_row

    def watch_detail_index(self) -> None:
        self.show_detail()

    def repaint(self) -> None:
        self.show_detail()
        self.show_outcome()

    def show_detail(self) -> None:
        index = self.detail_index
        if not 0 <= index < len(self.certificates):
            return
        cert = self.certificates[index]
        now = self.edge.clock()
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        grid.add_row("Subject", cert.subject)
        grid.add_row("Names", ", ".join(cert.sans) or "-")
        grid.add_row("Issuer", cert.issuer)
        grid.add_row("Valid from", f"{cert.not_before:%Y-%m-%d %H:%M} UTC")
        grid.add_row(
            "Valid until",
            f"{cert.not_after:%Y-%m-%d %H:%M} UTC ({expires_in(cert.not_after, now)})",
        )
        grid.add_row("SHA-256", cert.sha256_fingerprint)
        grid.add_row("File", str(cert.path))
        self.query_one("#cert-detail", Static).update(grid)

    def ca_fingerprint(self) -> str:
        for cert in self.certificates:
            if cert.role == "CA":
                return cert.sha256_fingerprint
        return ""

    # ---- export ------------------------------------------------------------------------------

    @on(RadioSet.Changed, "#export-format")
    def _format_chosen(self, event: RadioSet.Changed) -> None:
        self.format = "der" if event.pressed.id == "fmt-der" else "pem"

    def action_toggle_format(self) -> None:
        self.format = "der" if self.format == "pem" else "pem"

    def set_format(self, fmt: ExportFormat) -> None:
        self.format = fmt

    def watch_format(self, old: ExportFormat, fmt: ExportFormat) -> None:
        self.query_one(f"#fmt-{fmt}", RadioButton).value = True
        path_input = self.query_one("#export-path", Input)
        current = path_input.value.strip()
        if current == str(self.default_path(old)):
            path_input.value = str(self.default_path(fmt))
        elif current.endswith((".crt", ".cer", ".pem", ".der")):
            suffix = ".crt" if fmt == "pem" else ".cer"
            path_input.value = str(Path(current).with_suffix(suffix))

    @on(Button.Pressed, "#export-button")
    @on(Input.Submitted, "#export-path")
    def _export_requested(self) -> None:
        self.action_export()

    def action_export(self) -> None:
        if self.app.is_web:
            self.query_one("#export-result", Static).update("Preparing the download…")
            self.export_to_browser(self.format)
            return
        text = self.query_one("#export-path", Input).value.strip()
        if not text:
            self.edge.error("Type the path to write the CA certificate to.")
            return
        self.query_one("#export-result", Static).update("Writing…")
        self.export(text, self.format)

    @work(thread=True, exclusive=True, group="export", exit_on_error=False)
    def export(self, destination: str, fmt: ExportFormat, force: bool = False) -> None:
        fingerprint = self.ca_fingerprint()
        note = ""
        try:
            if destination == str(self.default_path(fmt)):
                target, note = usable_default(Path(destination))
                destination = str(target)
            path = export_ca(self.edge.datadir, destination, fmt, force=force)
        except ExportTargetExists as exc:
            self.post_message(OverwriteAsked(exc.path, fmt))
            return
        except (EdgeError, OSError) as exc:
            self.post_message(ExportFinished(None, str(exc), fingerprint))
            return
        self.post_message(ExportFinished(path, None, fingerprint, note))

    @work(thread=True, exclusive=True, group="export", exit_on_error=False)
    def export_to_browser(self, fmt: ExportFormat) -> None:
        fingerprint = self.ca_fingerprint()
        name = Path(CA_PEM_NAME if fmt == "pem" else CA_DER_NAME)
        try:
            data = ca_bytes(self.edge.datadir, fmt)
        except (EdgeError, OSError) as exc:
            self.post_message(ExportFinished(None, str(exc), fingerprint))
            return
        self.post_message(ExportFinished(name, None, fingerprint, data=data))

    @on(OverwriteAsked)
    def _ask_overwrite(self, message: OverwriteAsked) -> None:
        self.query_one("#export-result", Static).update("")

        def decided(confirmed: bool | None) -> None:
            if confirmed:
                self.query_one("#export-result", Static).update("Writing…")
                self.export(str(message.path), message.fmt, force=True)

        self.app.push_screen(ConfirmationModal(
            f"Overwrite {message.path}?",
            f"A file is there already. It is replaced by the CA certificate "
            f"({message.fmt.upper()}); nothing else changes.",
            confirm_label="Overwrite"), decided)

    @on(ExportFinished)
    def _exported(self, message: ExportFinished) -> None:
        self.outcome = message
        if message.error is not None or message.path is None:
            self.edge.error(f"CA export failed: {message.error or 'export failed'}")
            return
        if message.data is not None:
            self.app.deliver_binary(io.BytesIO(message.data), save_filename=message.path.name,
                                    mime_type=CA_MIME_TYPE)
            self.edge.notify(f"{message.path.name}: see the browser's downloads",
                             title="CA certificate sent", timeout=6, markup=False)
            return
        where = f"{message.path} ({message.note})" if message.note else str(message.path)
        self.edge.notify(where, title="CA certificate exported", timeout=6, markup=False)

    def watch_outcome(self) -> None:
        self.show_outcome()

    def show_outcome(self) -> None:
        result = self.query_one("#export-result", Static)
        outcome = self.outcome
        if outcome is None:
            return
        if outcome.error is not None or outcome.path is None:
            error = outcome.error or "export failed"
            result.update(Text(f"✗ Not exported: {error}", style=self.style("error", bold=True)))
            return
        text = Text()
        done = (f"✓ Sent {outcome.path.name} to the browser's downloads"
                if outcome.data is not None else f"✓ Wrote {outcome.path}")
        text.append(f"{done}\n", style=self.style("success", bold=True))
        if outcome.note:
            text.append(f"({outcome.note})\n")
        text.append("SHA-256 fingerprint (compare on the laptop):\n")
        text.append(outcome.fingerprint)
        result.update(text)


def _common_name(subject: str) -> str:
    for part in subject.split(","):
        if part.startswith("CN="):
            return part[3:]
    return subject

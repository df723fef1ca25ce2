"""`edge-console cert export|show`: the CA certificate for clients, and what is installed."""

from __future__ import annotations

import argparse
from typing import Any

from console.cli_support import data_dir_of, emit
from registry_core.certs import (
    CertificateInfo,
    ca_certificate_info,
    describe_certificates,
    export_ca,
)
from registry_core.errors import NotEnabledError


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "cert",
        parents=[common],
        help="export or show the registry certificates",
        description="Export the CA certificate that clients must trust, or show certificates.",
    )
    actions = parser.add_subparsers(dest="cert_command", metavar="ACTION", required=True)
    export = actions.add_parser(
        "export", parents=[common], help="write the CA certificate to PATH (file or directory)"
    )
    export.add_argument("path", metavar="PATH", help="file, or existing directory")
    export.add_argument("--format", choices=("pem", "der"), default="pem", help="default: pem")
    export.add_argument("--force", action="store_true", help="overwrite an existing PATH")
    actions.add_parser("show", parents=[common], help="list the CA and server certificates")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    datadir = data_dir_of(args)
    if args.cert_command == "export":
        path = export_ca(datadir, args.path, args.format, force=args.force)
        fingerprint = ca_certificate_info(datadir).sha256_fingerprint
        text = f"Wrote {path}\nSHA-256 fingerprint: {fingerprint}"
        payload = {"path": str(path), "format": args.format, "sha256_fingerprint": fingerprint}
        emit(args, text, payload)
        return 0
    certs = describe_certificates(datadir)
    if not certs:
        raise NotEnabledError(f"no certificates in {datadir.root}: run `edge-console enable` first")
    text = "\n\n".join(_describe(c) for c in certs)
    emit(args, text, {"certificates": [_payload(c) for c in certs]})
    return 0


def _payload(cert: CertificateInfo) -> dict[str, Any]:
    return {
        "role": cert.role,
        "path": str(cert.path),
        "subject": cert.subject,
        "issuer": cert.issuer,
        "sans": cert.sans,
        "not_before": cert.not_before.isoformat(),
        "not_after": cert.not_after.isoformat(),
        "sha256_fingerprint": cert.sha256_fingerprint,
        "serial": cert.serial,
    }


def _describe(cert: CertificateInfo) -> str:
    rows = [
        ("Certificate", cert.role),
        ("Path", str(cert.path)),
        ("Subject", cert.subject),
        ("Issuer", cert.issuer),
        ("Names", ", ".join(cert.sans) or "-"),
        ("Valid from", f"{cert.not_before:%Y-%m-%d %H:%M} UTC"),
        ("Valid until", f"{cert.not_after:%Y-%m-%d %H:%M} UTC"),
        ("SHA-256", cert.sha256_fingerprint),
        ("Serial", cert.serial),
    ]
    return "\n".join(f"{label + ':':<13}{value}" for label, value in rows)

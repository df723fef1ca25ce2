"""`edge-console kube status|apply-secrets|pod-snippet`: the cluster side."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from console.arg_types import namespace_name
from console.cli_support import emit, fail, open_registry, wants_json
from console.commands.delete import parse_target
from registry_core.errors import ManifestUnknown
from registry_core.kube import Applied, Cluster, ClusterError, ClusterStatus, pod_snippet
from registry_core.kube.cluster import applied_json, unreachable_status
from registry_core.registry import Registry


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "kube", parents=[common], help="the cluster: pull secrets and images in use",
        description="The Kubernetes cluster whose workloads pull from this registry.",
    )
    cluster = argparse.ArgumentParser(add_help=False)
    cluster.add_argument("--kubeconfig", type=Path, metavar="F",
                         help="kubeconfig file (default: config.toml's, $KUBECONFIG, "
                              "~/.kube/config, in-cluster)")
    cluster.add_argument("--context", metavar="NAME", help="kubeconfig context to use")
    actions = parser.add_subparsers(dest="kube_command", metavar="ACTION", required=True)
    actions.add_parser("status", parents=[common, cluster],
                       help="the API server, each namespace's pull secret, images in use")
    apply = actions.add_parser("apply-secrets", parents=[common, cluster],
                               help="create or repair the pull secret in every namespace")
    apply.add_argument("--namespace", type=namespace_name, metavar="NS",
                       help="only this namespace")
    snippet = actions.add_parser("pod-snippet", parents=[common],
                                 help="a pod manifest pulling REPO:TAG with the pull secret")
    snippet.add_argument("image", metavar="REPO:TAG", help="or REPO@DIGEST")
    snippet.add_argument("--namespace", type=namespace_name, metavar="NS", default="default")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    registry = open_registry(args)
    try:
        if args.kube_command == "pod-snippet":
            return _snippet(args, registry)
        try:
            cluster = Cluster.open(registry, args.kubeconfig, args.context)
        except ClusterError as exc:
            return _unreachable(args, unreachable_status(exc))
        try:
            if args.kube_command == "status":
                return _status(args, cluster.status())
            return _apply(args, cluster.apply_secrets(args.namespace))
        finally:
            cluster.close()
    finally:
        registry.close()


def _status(args: argparse.Namespace, status: ClusterStatus) -> int:
    if not status.reachable:
        return _unreachable(args, status)
    lines = [f"API server  {status.server}  (context {status.context or '-'}, "
             f"from {status.source})", "", "Namespace pull secrets:"]
    width = max((len(s.namespace) for s in status.namespaces), default=9)
    for s in status.namespaces:
        lines.append(f"  {s.namespace:<{width}}  {s.state:<7}  {s.reason}".rstrip())
    uses = status.in_use.uses if status.in_use is not None else ()
    lines += ["", f"Images in use ({len(uses)}):" if uses else "Images in use: none"]
    for u in uses:
        digest = u.digest[:19] if u.digest else "not in the registry"
        lines.append(f"  {u.repository}  {digest}  {u.describe()}")
    emit(args, "\n".join(lines), status.to_json())
    return 0


def _unreachable(args: argparse.Namespace, status: ClusterStatus) -> int:
    if wants_json(args):
        print(json.dumps(status.to_json(), indent=2, sort_keys=True))
        return 1
    return fail(status.error)


def _apply(args: argparse.Namespace, results: list[Applied]) -> int:
    width = max((len(r.namespace) for r in results), default=9)
    lines = [f"{r.namespace:<{width}}  {r.action:<9}  {r.message}".rstrip() for r in results]
    failed = [r for r in results if r.action == "failed"]
    changed = sum(r.action in ("created", "repaired") for r in results)
    lines.append(f"\n{changed} created or repaired, {len(failed)} failed.")
    emit(args, "\n".join(lines), {"namespaces": applied_json(results), "failed": len(failed)})
    return 1 if failed else 0


def _snippet(args: argparse.Namespace, registry: Registry) -> int:
    repository, reference = parse_target(args.image)
    try:
        registry.get_manifest(repository, str(reference))
    except ManifestUnknown:
        return fail(f"{args.image} is not in this registry")
    yaml = pod_snippet(registry.config, repository, str(reference), args.namespace)
    emit(args, yaml.rstrip("\n"), {"yaml": yaml, "namespace": args.namespace})
    return 0

"""``python -m samplez dashboard``: serve the dashboard (its JSON pages
and ``/metrics`` for Prometheus) alone, reading the store the application
writes to."""

from __future__ import annotations

import argparse
import os
import sys
import threading

from ..metric import Metric, Section
from .common import UsageError, load_metrics, stop_on_signals, use_store

__all__ = ["add_command"]


def add_command(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    serve = commands.add_parser("dashboard", parents=[common], help="serve the dashboard alone")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8001, help="port, 0 for any (default: 8001)")
    serve.add_argument(
        "--sections",
        action="append",
        metavar="MODULE:ATTR",
        help="what to show (repeatable; default: every metric a writer published in the store)",
    )
    serve.add_argument(
        "--auth",
        default=os.environ.get("SAMPLEZ_AUTH") or None,
        metavar="USER:PASSWORD",
        help="HTTP basic auth (default: $SAMPLEZ_AUTH; without it, loopback clients only)",
    )
    serve.add_argument(
        "--metrics-auth",
        default=os.environ.get("SAMPLEZ_METRICS_AUTH") or None,
        metavar="USER:PASSWORD",
        help="HTTP basic auth for /metrics alone (default: $SAMPLEZ_METRICS_AUTH; without it, as the dashboard)",
    )
    serve.set_defaults(run=run)


def _credentials(value: str | None, option: str, variable: str) -> tuple[str, str] | None:
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise UsageError(f"{option} must be USER:PASSWORD (or set ${variable})")
    return user, password


def run(args: argparse.Namespace) -> int:
    from werkzeug.serving import make_server

    from ..dashboard import Dashboard

    sections: list[Section] = []
    loose: list[Metric] = []
    for spec in args.sections or ():
        for thing in load_metrics(spec):
            (sections if isinstance(thing, Section) else loose).append(thing)  # type: ignore[arg-type]
    if loose:
        sections.append(Section("Other", *loose))
    auth = _credentials(args.auth, "--auth", "SAMPLEZ_AUTH")
    metrics_auth = _credentials(args.metrics_auth, "--metrics-auth", "SAMPLEZ_METRICS_AUTH")
    use_store(args, "dashboard")
    app = Dashboard(sections=sections or None, auth=auth, metrics_auth=metrics_auth)
    server = make_server(args.host, args.port, app, threaded=True)
    print(f"samplez dashboard: http://{args.host}:{server.server_port}/", flush=True)
    if auth is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        print("samplez dashboard: without --auth it answers loopback clients only", file=sys.stderr, flush=True)
    stop = stop_on_signals()
    thread = threading.Thread(target=server.serve_forever, name="samplez-dashboard", daemon=True)
    thread.start()
    while not stop.wait(0.5) and thread.is_alive():
        pass
    server.shutdown()
    return 0

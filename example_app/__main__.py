"""``python -m example_app``: serve the samplez demo and print the
dashboard URL; ``--traffic`` drives demo traffic at it. Ctrl-C or SIGTERM
stops it cleanly, with every pending sample flushed to the store."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from typing import Sequence

from werkzeug.serving import make_server

import samplez
from samplez.cli.common import UsageError, add_store_options, stop_on_signals, store_from

from .site import create_app
from .traffic import Traffic


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m example_app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on, 0 for any (default: 8000)")
    add_store_options(parser)
    parser.add_argument("--traffic", action="store_true", help="send realistic demo traffic to the server")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    parser.add_argument("--rate", type=float, default=200.0, help="demo requests per second (default: 200)")
    args = parser.parse_args(argv)
    if not 0 <= args.port < 65536:
        parser.error(f"--port must be in [0, 65535], got {args.port}")
    if not 0 < args.rate <= 10_000:
        parser.error(f"--rate must be in (0, 10000], got {args.rate}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.verbose:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    try:
        store = store_from(args.memcache, args.redis)
    except UsageError as exc:
        print(f"python -m example_app: {exc}", file=sys.stderr)
        return 2
    server = make_server(args.host, args.port, create_app(store), threaded=True)
    port = server.server_port
    local = "127.0.0.1" if args.host in ("0.0.0.0", "", "::") else args.host
    where = store.describe() if store is not None else "the in-process MemoryStore (this process only)"
    print(f"samplez demo on http://{local}:{port}/ storing to {where}", flush=True)
    print(f"samplez dashboard: http://{local}:{port}/_samplez/", flush=True)

    stopping = stop_on_signals()
    serving = threading.Thread(target=server.serve_forever, name="demo-server", daemon=True)
    serving.start()
    traffic = Traffic(local, port, rate=args.rate).start() if args.traffic else None
    while not stopping.wait(0.5):
        if not serving.is_alive():
            break
    if traffic is not None:
        traffic.stop()
    server.shutdown()
    summary = samplez.flush()
    sent = f"{traffic.sent} demo requests sent, " if traffic is not None else ""
    print(f"samplez demo stopped: {sent}{summary.applied} pending samples flushed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

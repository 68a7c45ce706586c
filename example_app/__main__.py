"""``python -m example_app``: serve the demo and print the dashboard URL."""

from __future__ import annotations

import argparse
import os

from werkzeug.serving import run_simple


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m example_app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--memcache", help="HOST:PORT[,HOST:PORT] (default: $SAMPLEZ_MEMCACHE, else in-process)")
    args = parser.parse_args()
    if args.memcache:
        os.environ["SAMPLEZ_MEMCACHE"] = args.memcache
    from example_app import app

    print(f"samplez dashboard: http://{args.host}:{args.port}/_samplez/", flush=True)
    run_simple(args.host, args.port, app, threaded=True)


if __name__ == "__main__":
    main()

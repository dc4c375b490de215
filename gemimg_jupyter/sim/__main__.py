"""Run the simulator standalone: ``python -m gemimg_jupyter.sim --port 8787``.

Every :class:`~gemimg_jupyter.sim.SimConfig` field is a flag (``--fail-rate
0.1``, ``--latency 2,6``, ``--top-level-url``). The first line on stdout is
``gemimg simulator listening on http://127.0.0.1:PORT``; it serves until
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from gemimg_jupyter.sim.server import CONFIG_HELP, SimConfig, SimServer

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: host, port, keys, logging, and one flag per config field."""
    parser = argparse.ArgumentParser(
        # the name it was started by: gemimg-sim (the installed command) or python -m gemimg_jupyter.sim
        prog="python -m gemimg_jupyter.sim" if sys.argv[0].endswith("__main__.py") else os.path.basename(sys.argv[0]),
        description="Local simulator of the ToAPIs async image API (submit, status, upload, downloads, faults).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8787, help="port; 0 picks a free one (default: %(default)s)")
    parser.add_argument(
        "--key",
        action="append",
        metavar="KEY",
        help="accept only this API key (repeatable; default: any non-empty key)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log every request line to stderr")
    defaults = SimConfig()
    group = parser.add_argument_group("behaviour and faults (SimConfig fields)")
    for f in dataclasses.fields(SimConfig):
        default = getattr(defaults, f.name)
        shown = (
            ",".join(f"{v:g}" if isinstance(v, float) else v for v in default)
            if isinstance(default, tuple)
            else default
        )
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{CONFIG_HELP[f.name]} (default: {shown})".replace("%", "%%")
        if isinstance(default, bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            metavar = (
                "LIST"
                if f.name in ("fault_endpoints", "unserved_models", "listed_models")
                else "MIN,MAX"
                if isinstance(default, tuple)
                else "X"
            )
            group.add_argument(flag, default=None, metavar=metavar, help=help_text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, start the server, print its URL and serve until interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    names = {f.name for f in dataclasses.fields(SimConfig)}
    changes = {k: v for k, v in vars(args).items() if k in names and v is not None}
    try:
        config = SimConfig(**changes)
    except ValueError as exc:
        parser.error(str(exc))
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(message)s", stream=sys.stderr)
    server = SimServer(config, host=args.host, port=args.port, accepted_keys=args.key)
    try:
        url = server.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    print(f"gemimg simulator listening on {url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``tickwire`` command: ``serve`` and ``calibrate``.

Flags override ``TICKWIRE_*`` environment variables, which override defaults
(:class:`tickwire.config.Settings`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from tickwire import __version__
from tickwire.config import Settings

DEFAULT_PROFILE_PATH = Path(os.path.expanduser("~/.config/tickwire/calibration.json"))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tickwire", description=__doc__)
    p.add_argument("--version", action="version", version=f"tickwire {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the gRPC server until SIGTERM")
    s.add_argument("--host", help="listen address (TICKWIRE_HOST, default 127.0.0.1)")
    s.add_argument("--port", type=int, help="TCP port, 0 for any free one (TICKWIRE_PORT, 50051)")
    s.add_argument("--workers", type=int, help="compute threads (TICKWIRE_WORKERS, cores)")
    s.add_argument("--max-concurrent-calls", type=int, help="admission limit (64)")
    s.add_argument("--max-message-bytes", type=int, help="message size limit (256 MiB)")
    s.add_argument("--grace-seconds", type=float, help="drain time on SIGTERM (10)")
    s.add_argument("--calibration-profile", help="routing profile from `tickwire calibrate`")
    s.add_argument("--backends", help="comma-separated backends the router may use")
    s.add_argument("--compute-threads", type=int, help="BLAS/torch threads per call")
    s.add_argument("--no-tracing", action="store_true", help="make no spans at all")
    s.add_argument("--log-level", help="DEBUG, INFO, WARNING (INFO)")
    s.add_argument("--log-format", choices=["json", "text"], help="log line format (json)")

    c = sub.add_parser("calibrate", help="measure this host's backends, write the routing profile")
    c.add_argument(
        "--output",
        default=os.environ.get("TICKWIRE_CALIBRATION_PROFILE") or str(DEFAULT_PROFILE_PATH),
        help=f"profile path (TICKWIRE_CALIBRATION_PROFILE, default {DEFAULT_PROFILE_PATH})",
    )
    c.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats (~10 s)")
    c.add_argument("--operations", help="comma-separated operation names (default: all)")
    return p


def _settings(args: argparse.Namespace) -> Settings:
    backends = args.backends.split(",") if args.backends else None
    return Settings.from_env(
        host=args.host,
        port=args.port,
        workers=args.workers,
        max_concurrent_calls=args.max_concurrent_calls,
        max_message_bytes=args.max_message_bytes,
        grace_seconds=args.grace_seconds,
        calibration_profile=args.calibration_profile,
        backends=backends,
        compute_threads=args.compute_threads,
        tracing=False if args.no_tracing else None,
        log_level=args.log_level,
        log_format=args.log_format,
    )


def _calibrate(args: argparse.Namespace) -> int:
    from tickwire.routing.backends import detect_backends
    from tickwire.routing.calibrate import calibrate
    from tickwire.routing.operation import all_operations

    ops = all_operations()
    if args.operations:
        wanted = set(args.operations.split(","))
        ops = [op for op in ops if op.name in wanted]
    backends = detect_backends()
    print(f"calibrating {len(ops)} operations on {', '.join(backends)}", flush=True)
    profile = calibrate(
        backends,
        ops,
        repeats=3 if args.quick else 7,
        budget_s=0.5 if args.quick else 2.0,
        size_scale=0.25 if args.quick else 1.0,
        progress=lambda line: print(line, flush=True),
    )
    profile.save(args.output)
    print(f"wrote {args.output}; serve with --calibration-profile {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tickwire`` command."""
    args = _parser().parse_args(argv)
    if args.command == "calibrate":
        return _calibrate(args)
    try:
        settings = _settings(args)
    except ValueError as exc:
        print(f"tickwire: {exc}", file=sys.stderr)
        return 2
    from tickwire.app import serve
    from tickwire.telemetry.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    return asyncio.run(serve(settings))


if __name__ == "__main__":
    sys.exit(main())

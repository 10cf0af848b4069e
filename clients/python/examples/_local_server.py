"""Start a local ``tickwire serve`` for the demos, and stop it (SIGTERM, drain)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

from rich.console import Console
from tickwire_client import Client, TickwireError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_server() -> Iterator[str]:
    """Start ``tickwire serve`` on 127.0.0.1 and a free port; SIGTERM it on exit."""
    port = _free_port()
    env = {**os.environ, "OTEL_SERVICE_NAME": os.environ.get("OTEL_SERVICE_NAME", "tickwire")}
    cmd = [sys.executable, "-m", "tickwire", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--log-format", "text", "--log-level", "WARNING"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env)
    target = f"127.0.0.1:{port}"
    try:
        with Client(target, timeout=5.0, trace=False) as probe:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if probe.health() == "SERVING":
                        break
                except TickwireError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"server did not start (exit code {proc.poll()})")
                time.sleep(0.2)
        Console(stderr=True).print(
            f"[dim]started tickwire serve on {target} (pid {proc.pid})[/dim]"
        )
        yield target
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        Console(stderr=True).print(f"[dim]server drained and exited with code {code}[/dim]")

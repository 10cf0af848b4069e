"""Run a command against a fresh local Tickwire server: ``python clients/with_server.py CMD...``.

Starts ``tickwire serve`` on 127.0.0.1 and a free port, waits until health answers SERVING,
runs CMD with ``TICKWIRE_TARGET=127.0.0.1:<port>`` in its environment (and the target
appended to CMD when ``--append-target`` is given), then stops the server (SIGTERM, drain)
whatever CMD did. Exits with CMD's exit code. The examples of the Go, C++, Java and
TypeScript clients run through it (``make demo-clients``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "python" / "examples"))
from _local_server import local_server


def main(argv: list[str]) -> int:
    """Start the server, run the command, stop the server; return the command's exit code."""
    append = argv[:1] == ["--append-target"]
    cmd = argv[1:] if append else argv
    if not cmd:
        print(__doc__, file=sys.stderr)
        return 2
    with local_server() as target:
        env = {**os.environ, "TICKWIRE_TARGET": target}
        return subprocess.run(cmd + ([target] if append else []), env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Shared by the benchmarks: environment header, statistics, tables, result files.

Every result file under ``bench/results/`` starts with the date (UTC), the
machine, the library versions, the exact command and the settings, so that a
table can be compared with another only when those match.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import shlex
import statistics
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

#: Distributions whose versions go into every table header.
_DISTS = (
    "numpy",
    "torch",
    "mlx",
    "grpcio",
    "protobuf",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation-grpc",
    "opentelemetry-exporter-otlp-proto-grpc",
)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def gpu_model() -> str:
    """The first CUDA device torch sees, or "none"."""
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    except ImportError:
        pass
    return "none"


def environment() -> list[tuple[str, str]]:
    """(name, value) rows describing this run's machine and software."""
    u = platform.uname()
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count() or 0
    try:
        from google.protobuf.internal import api_implementation

        pb_impl = api_implementation.Type()
    except ImportError:
        pb_impl = "?"
    try:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    rows = [
        ("date (UTC)", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")),
        ("machine", f"{u.system} {u.release} {u.machine} ({u.node})"),
        ("CPU", f"{cpu_model()}; {os.cpu_count()} logical cores, {affinity} usable"),
        ("GPU", gpu_model()),
        ("load average at start", load),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
    ]
    for d in _DISTS:
        v = _version(d)
        if d == "protobuf":
            v += f" ({pb_impl} backend)"
        rows.append((d, v))
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "server", "clients"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        rows.append(
            ("git", f"{rev}{' + uncommitted changes in server/ or clients/' if dirty else ''}")
        )
    except OSError:
        pass
    return rows


def command_line() -> str:
    """The command that is running, as typed from the repository root."""
    exe = sys.executable
    with contextlib.suppress(ValueError):
        exe = os.path.relpath(exe, ROOT) if Path(exe).is_relative_to(ROOT) else exe
    return shlex.join([exe, *sys.argv])


# ----- statistics ------------------------------------------------------------
def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation."""
    xs = sorted(samples)
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def median(samples: Sequence[float]) -> float:
    """Median, NaN when empty."""
    return statistics.median(samples) if samples else float("nan")


# ----- tables ----------------------------------------------------------------
def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; numbers right-aligned."""

    def cell(x: Any) -> str:
        return str(x).replace("|", "\\|")

    def numeric(x: Any) -> bool:
        s = str(x).strip().rstrip("x%").replace(",", "").replace(" ", "")
        try:
            float(s)
        except ValueError:
            return False
        return True

    align = [
        "---:" if rows and all(numeric(r[i]) for r in rows if r[i] not in ("", "-")) else "---"
        for i in range(len(headers))
    ]
    lines = [
        "| " + " | ".join(cell(h) for h in headers) + " |",
        "| " + " | ".join(align) + " |",
    ]
    lines += ["| " + " | ".join(cell(x) for x in r) + " |" for r in rows]
    return "\n".join(lines)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a table with rich when it is installed, else as markdown."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(f"\n{title}\n{markdown_table(headers, rows)}\n", flush=True)
        return
    t = Table(title=title, title_justify="left")
    for h in headers:
        t.add_column(str(h), overflow="fold")
    for r in rows:
        t.add_row(*(str(x) for x in r))
    Console(width=max(120, min(200, 20 * len(headers)))).print(t)


def fmt(x: float, digits: int = 3) -> str:
    """A number with ``digits`` significant digits, commas for thousands."""
    if x != x:  # NaN
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}" if abs(x) < 1 else f"{x:,.{max(digits - len(str(int(abs(x)))), 0)}f}"


def write_report(
    name: str,
    title: str,
    settings: Sequence[tuple[str, Any]],
    sections: Sequence[tuple[str, str]],
    env: Sequence[tuple[str, str]] | None = None,
) -> Path:
    """Write ``bench/results/<name>.md``: header, settings, then each (heading, body)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    env = env or environment()
    parts = [
        f"# {title}",
        "",
        "Command (from the repository root):",
        "",
        "```",
        command_line(),
        "```",
        "",
        "## Machine and software",
        "",
        markdown_table(["", ""], list(env)),
        "",
        "## Settings",
        "",
        markdown_table(["setting", "value"], [(k, v) for k, v in settings]),
        "",
    ]
    for heading, body in sections:
        parts += [f"## {heading}", "", body.rstrip(), ""]
    path = RESULTS / f"{name}.md"
    path.write_text("\n".join(parts))
    print(f"wrote {path.relative_to(ROOT)}", flush=True)
    return path

"""The Go, C++, Java and TypeScript clients, live against a real server (issue 6).

One server (the session fixture of conftest.py, with its in-memory span exporter) runs on
127.0.0.1 and a free port. This module asks the Python client for the answers, writes them
with the inputs to a JSON fixture, builds each language's client and runs that language's
own test runner (`node --test`, `go test`, Maven Surefire, `ctest`) against the server.
Each runner checks, in its own language: health is SERVING; ComputeVar and PriceEuropean
give the Python client's float64 results bit for bit; an expired deadline gives
DEADLINE_EXCEEDED; a malformed request gives INVALID_ARGUMENT with the bad fields decoded
from ``grpc-status-details-bin``; the trace context it sends comes back as the response's
trace id. It writes the trace and span id it sent, and this module then checks that the
server's span has that trace and that parent (the in-memory exporter). The VPIN check:
each runner streams the LOBSTER AAPL and AMZN day (46,409 trades, the fixture's hex
protobuf ``StreamVpinRequest`` messages) through ``StreamVpin``, writing and reading
concurrently, and checks that answers come in request order, each symbol's buckets are
numbered without a gap, and the buckets merged per symbol encode to the Python client's
bytes. The example's printed last VPIN per symbol must be Python's too. The results go to
``clients/INTEROP.md``.

A toolchain that is missing (Go, g++/CMake/gRPC C++, JDK/Maven/grpc-java, Node) skips that
language with the reason, except under ``CI=true``, where it fails: ``make setup-clients``
installs them all (Debian packages and npm).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import ServerHandle
from grpc_health.v1 import health_pb2
from tickwire.microstructure.v1 import microstructure_pb2 as mpb
from tickwire_client import Client, TickwireError
from tickwire_client.microstructure import vpin_parameters

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = ROOT / "clients"
INTEROP = CLIENTS / "INTEROP.md"

#: Check name -> test names that implement it in the languages' runners (matched lowercase).
CHECKS = {
    "health SERVING": "health",
    "ComputeVar == Python (bitwise)": "computevar",
    "PriceEuropean == Python (bitwise)": "priceeuropean",
    "DEADLINE_EXCEEDED": "deadline",
    "INVALID_ARGUMENT + field names": "invalid",
    "trace context continues": "trace",
    "retries UNAVAILABLE only": "retr",
    "server stream (health Watch)": "watch",
    "VPIN bidi stream == Python (in order, none missing)": "streamvpin",
    "example runs": "example",
}
SERVER_SPAN = "tickwire.risk.v1.RiskService/ComputeVar"
#: The VPIN stream check: both LOBSTER days of 2012-06-21 (46,409 trades with their sides),
#: replayed in batches of 500 trades, with the parameters of the stream demo and examples.
VPIN_DATASETS = ["lobster-aapl-2012-06-21-l1", "lobster-amzn-2012-06-21-l1"]
VPIN_BUCKET_VOLUME = {"AAPL": 10_000.0, "AMZN": 3_000.0}
VPIN_BAR_NS = 10_000_000_000


# ----- the fixture: inputs and the Python client's answers ---------------------------
@pytest.fixture(scope="module")
def fixture_file(
    server: ServerHandle, returns: np.ndarray, positions: np.ndarray, tmp_path_factory
) -> Path:
    """Write the inputs and the Python client's answers as JSON (floats round-trip exactly)."""
    levels, horizons = [0.95, 0.99], [1, 10]
    with Client(server.target, timeout=60.0, trace=False) as py:
        rep = py.risk.compute_var(returns, positions, method="historical", confidence_levels=levels,
                                  horizon_days=horizons, backend="numpy")  # fmt: skip
        k = np.arange(8)
        option_type = np.where(k % 2 == 0, 1, 2).astype(np.int32)
        spot = np.full(8, 100.0)
        strike = 80.0 + 5.0 * k
        tte = 0.25 + 0.25 * (k % 4)
        rate, div, vol = np.full(8, 0.03), np.full(8, 0.01), 0.15 + 0.02 * k
        px = py.pricing.price_european(option_type, spot, strike, tte, vol, rate, div,
                                       greeks=True, backend="numpy")  # fmt: skip
        bad_positions = positions[:-1]  # one asset short
        with pytest.raises(TickwireError) as bad:
            py.risk.compute_var(returns, bad_positions, confidence_levels=[1.5, 0.99])
    assert bad.value.code == grpc.StatusCode.INVALID_ARGUMENT and bad.value.fields

    def var_input(**kw: object) -> dict:
        base = {
            "scenarios": {"shape": list(returns.shape), "data": returns.ravel().tolist()},
            "positions": positions.tolist(),
            "method": 1,  # VAR_METHOD_HISTORICAL
            "confidence_levels": levels,
            "horizon_days": horizons,
        }
        return {**base, **kw}

    fx = {
        "risk": var_input(
            expected={
                "confidence_level": [e.confidence_level for e in rep.estimates],
                "horizon_days": [e.horizon_days for e in rep.estimates],
                "var": [e.var for e in rep.estimates],
                "cvar": [e.cvar for e in rep.estimates],
                "pnl_mean": rep.pnl_mean,
                "pnl_std": rep.pnl_std,
                "num_scenarios": rep.num_scenarios,
            }
        ),
        # 1e8 Monte Carlo draws take many seconds here; 300 ms is far too short.
        "deadline": var_input(method=4, num_simulations=100_000_000, seed=7, timeout_ms=300),
        "invalid": var_input(
            positions=bad_positions.tolist(), confidence_levels=[1.5, 0.99], fields=bad.value.fields
        ),
        "pricing": {
            "option_type": option_type.tolist(),
            "spot": spot.tolist(),
            "strike": strike.tolist(),
            "time_to_expiry": tte.tolist(),
            "rate": rate.tolist(),
            "dividend_yield": div.tolist(),
            "volatility": vol.tolist(),
            "expected": {
                "price": px.price.tolist(),
                "delta": px.delta.tolist(),
                "vega": px.vega.tolist(),
            },
        },
    }
    fx["vpin"] = _vpin_fixture(server)
    path = tmp_path_factory.mktemp("clients") / "fixture.json"
    path.write_text(json.dumps(fx))
    return path


def _vpin_fixture(server: ServerHandle) -> dict:
    """The StreamVpin requests (config first, then the trade batches of the replayed day)
    and the Python client's answers: per symbol, the buckets of every answer merged into one
    ``VpinBuckets`` (columns concatenated in answer order). Messages are hex strings of their
    protobuf encoding, so int64 times and NaN bits cross JSON exactly; a client passes if
    its own merged buckets serialize to the same bytes."""
    with Client(server.target, timeout=60.0, trace=False) as py:
        batches = [
            m.trades
            for m in py.market_data.replay(VPIN_DATASETS, trades=True, batch_size=500)
            if m.WhichOneof("payload") == "trades"
        ]
        params = {s: vpin_parameters(v, bar_ns=VPIN_BAR_NS) for s, v in VPIN_BUCKET_VOLUME.items()}
        requests = [mpb.StreamVpinRequest(client_batch_id=i, trades=b) for i, b in enumerate(batches, 1)]  # fmt: skip
        answers = list(
            py.microstructure.stream_vpin(requests, symbol_parameters=params, timeout=120)
        )
    # The config the Python client sent (its defaults, and the per-symbol parameters).
    config = mpb.StreamVpinRequest(
        config=mpb.VpinStreamConfig(
            default_parameters=vpin_parameters(),
            symbols=[mpb.SymbolParameters(symbol=s, parameters=p) for s, p in params.items()],
        )
    )
    merged: dict[str, mpb.VpinBuckets] = {}
    ids = [a.client_batch_id for a in answers]
    assert ids == sorted(set(ids)) and answers[0].WhichOneof("payload") == "ack", ids[:3]
    for a in answers:
        assert a.WhichOneof("payload") in ("ack", "buckets"), a
        if a.WhichOneof("payload") == "buckets":
            merged.setdefault(a.buckets.symbol, mpb.VpinBuckets()).MergeFrom(a.buckets)
    trades = sum(len(b.ts_ns) for b in batches)
    assert trades >= 10_000 and set(merged) == set(VPIN_BUCKET_VOLUME)
    for b in merged.values():  # a real day: hundreds of buckets, VPIN defined at the end
        assert list(b.bucket_index) == list(range(len(b.bucket_index))) and len(b.vpin) > 200
        assert 0.0 < b.vpin[-1] < 1.0
    return {
        # Every example prints this line per symbol (same day, same parameters).
        "example_lines": [
            f"VPIN {s}: {b.vpin[-1]:.4f} after {len(b.vpin)} buckets"
            for s, b in sorted(merged.items())
        ],
        "requests": [r.SerializeToString().hex() for r in [config, *requests]],
        "expected": [merged[s].SerializeToString().hex() for s in sorted(merged)],
        "trades": trades,
    }


# ----- a flaky health server: UNAVAILABLE twice, then SERVING ------------------------
class FlakyHealth:
    """``grpc.health.v1.Health/Check`` that counts attempts per service name: "flaky"
    answers UNAVAILABLE to the first two attempts of a call sequence and SERVING to the
    third; "invalid" always answers INVALID_ARGUMENT. A client that retries UNAVAILABLE
    only makes 3 attempts for "flaky" and 1 for "invalid"."""

    def __init__(self) -> None:
        self.attempts: dict[str, int] = {}
        self._lock = threading.Lock()

    def check(self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext):
        with self._lock:
            n = self.attempts[request.service] = self.attempts.get(request.service, 0) + 1
        if request.service == "flaky" and n <= 2:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"attempt {n}: try again")
        if request.service == "invalid":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "never retried")
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


@pytest.fixture(scope="module")
def flaky() -> Iterator[tuple[str, FlakyHealth]]:
    """The flaky health server on 127.0.0.1 and a free port."""
    health = FlakyHealth()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler = grpc.unary_unary_rpc_method_handler(
        health.check,
        request_deserializer=health_pb2.HealthCheckRequest.FromString,
        response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", health
    server.stop(0)


# ----- running one language's runner -------------------------------------------------
@dataclass
class Language:
    """How to build and test one client."""

    name: str
    tools: list[str]
    commands: Callable[[Path], list[list[str]]]
    cwd: Path
    results: Callable[[Path, str], dict[str, bool]]
    env: dict[str, str] = field(default_factory=dict)
    versions: list[list[str]] = field(default_factory=list)


def _versions(lang: Language) -> str:
    """The first output line of each version command (toolchain and gRPC stack)."""
    out = []
    for cmd in lang.versions:
        try:
            p = subprocess.run(cmd, cwd=lang.cwd, capture_output=True, text=True, timeout=60)
        except OSError:
            continue
        lines = (p.stdout or p.stderr).strip().splitlines()
        if lines:
            out.append(lines[0].strip())
    return "; ".join(out)


def _junit(xml_glob: str, base: Path | None = None) -> Callable[[Path, str], dict[str, bool]]:
    """Test name -> passed, from JUnit XML files (node --test, Surefire, ctest) under ``base``
    (the run's output folder when None)."""

    def read(out: Path, _stdout: str) -> dict[str, bool]:
        got: dict[str, bool] = {}
        for path in sorted((base or out).glob(xml_glob)):
            for case in ET.parse(path).getroot().iter("testcase"):
                failed = any(c.tag in ("failure", "error", "skipped") for c in case)
                got[case.get("name", "")] = not failed and case.get("status") != "fail"
        return got

    return read


def _go_results(_out: Path, stdout: str) -> dict[str, bool]:
    return {m[1]: m[0] == "PASS" for m in re.findall(r"--- (PASS|FAIL): (\w+)", stdout)}


def _ts_commands(out: Path) -> list[list[str]]:
    ts = CLIENTS / "typescript"
    return [
        [str(ts / "node_modules/.bin/tsc"), "-p", str(ts)],
        [
            "node",
            "--test",
            "--test-reporter=spec",
            "--test-reporter-destination=stdout",
            "--test-reporter=junit",
            f"--test-reporter-destination={out}/junit-typescript.xml",
            str(ts / "dist/test/live.test.js"),
        ],
        ["node", str(ts / "dist/examples/risk_pricing.js")],
    ]


GO_ENV = {"GOFLAGS": "-mod=vendor", "GOPROXY": "off", "GO111MODULE": "on"}


def _go_commands(_out: Path) -> list[list[str]]:
    return [
        ["./vendor.sh"],
        ["go", "vet", "./..."],
        ["go", "test", "-count=1", "-v", "./..."],
        ["go", "build", "-o", "bin/risk_pricing", "./examples/risk_pricing"],
        ["bin/risk_pricing"],
    ]


MAVEN = ["mvn", "-B", "-q", "-s", "settings.xml", "-Dmaven.repo.local=../../build/java-m2"]


def _java_commands(_out: Path) -> list[list[str]]:
    shutil.rmtree(CLIENTS / "java/target/surefire-reports", ignore_errors=True)
    cp = subprocess.run(["./classpath.sh"], cwd=CLIENTS / "java", capture_output=True, text=True)
    return [
        [*MAVEN, "test"],
        [
            "java",
            "-cp",
            f"target/classes:{cp.stdout.strip()}",
            "tickwire.client.examples.RiskPricing",
        ],
    ]


def _cpp_commands(out: Path) -> list[list[str]]:
    return [
        ["cmake", "-S", ".", "-B", "build"],
        ["cmake", "--build", "build", "-j", str(min(4, os.cpu_count() or 2))],
        [
            "ctest",
            "--test-dir",
            "build",
            "--output-on-failure",
            "--output-junit",
            str(out / "junit-cpp.xml"),
        ],
        ["build/risk_pricing"],
    ]


LANGUAGES = {
    "typescript": Language(
        "TypeScript",
        ["node"],
        _ts_commands,
        CLIENTS / "typescript",
        _junit("junit-typescript.xml"),
        versions=[
            ["sh", "-c", "echo Node $(node --version)"],
            [
                "node",
                "-p",
                "'@connectrpc/connect-node ' + "
                "require('./node_modules/@connectrpc/connect-node/package.json').version",
            ],
        ],
    ),
    "go": Language(
        "Go",
        ["go"],
        _go_commands,
        CLIENTS / "go",
        _go_results,
        GO_ENV,
        [
            ["go", "version"],
            ["sh", "-c", "echo grpc-go $(grep -o 'grpc v[0-9.]*' go.mod | cut -d' ' -f2)"],
        ],
    ),
    "java": Language(
        "Java",
        ["java", "mvn", "/usr/bin/grpc_java_plugin"],
        _java_commands,
        CLIENTS / "java",
        _junit("TEST-*.xml", CLIENTS / "java/target/surefire-reports"),
        versions=[
            ["java", "-version"],
            ["sh", "-c", "echo grpc-java $(grep -o '<grpc.version>[^<]*' pom.xml | cut -d'>' -f2)"],
        ],
    ),
    "cpp": Language(
        "C++",
        ["cmake", "c++", "/usr/bin/grpc_cpp_plugin"],
        _cpp_commands,
        CLIENTS / "cpp",
        _junit("junit-cpp.xml"),
        versions=[
            ["c++", "--version"],
            ["sh", "-c", "echo gRPC C++ $(pkg-config --modversion grpc++)"],
        ],
    ),
}


def _missing(lang: Language) -> str | None:
    missing = [t for t in lang.tools if shutil.which(t) is None and not Path(t).exists()]
    if missing:
        return f"{lang.name} client tests skipped: {', '.join(missing)} not found (run `make setup-clients` as root)"
    if lang.name == "TypeScript" and not (CLIENTS / "typescript/node_modules").is_dir():
        return "TypeScript client tests skipped: clients/typescript/node_modules missing (make setup-clients)"
    return None


_RESULTS: dict[str, dict[str, str]] = {}
_TESTED_WITH: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def interop_table() -> object:
    """Write clients/INTEROP.md (language x check) when the module ends."""
    yield
    if not _RESULTS:
        return
    names = list(CHECKS)
    lines = [
        "# Client interop (written by tests/test_clients.py)",
        "",
        "Each client's own test runner (node --test, go test, Maven Surefire, ctest) against one "
        "live Tickwire server, from `make test`; `pass` / `FAIL` / `skipped` (the reason is in "
        "pytest's output). The checks are described in tests/test_clients.py.",
        "",
        "| language | " + " | ".join(names) + " | tested with |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    for lang, row in _RESULTS.items():
        cells = [row.get(c, "—") for c in names] + [_TESTED_WITH.get(lang, "")]
        lines.append(f"| {lang} | " + " | ".join(cells) + " |")
    INTEROP.write_text("\n".join(lines) + "\n")


def _spans_with_parent(server: ServerHandle, trace_id: str, span_id: str) -> list:
    deadline = time.monotonic() + 5.0
    while True:
        spans = [
            s
            for s in server.spans.get_finished_spans()
            if s.name == SERVER_SPAN and format(s.context.trace_id, "032x") == trace_id
        ]
        if spans or time.monotonic() > deadline:
            return spans
        time.sleep(0.05)


@pytest.mark.parametrize("key", list(LANGUAGES))
def test_client_runner_passes_live_checks(
    key: str,
    server: ServerHandle,
    fixture_file: Path,
    flaky: tuple[str, FlakyHealth],
    tmp_path: Path,
) -> None:
    """Build the client, run its live tests, then check the server span's trace parent."""
    lang = LANGUAGES[key]
    reason = _missing(lang)
    if reason:
        _RESULTS[lang.name] = {c: "skipped" for c in CHECKS}
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        warnings.warn(reason, UserWarning, stacklevel=1)  # listed in pytest's summary
        pytest.skip(reason)
    trace_out = tmp_path / "trace.json"
    env = {
        **os.environ,
        **lang.env,
        "TICKWIRE_TARGET": server.target,
        "TICKWIRE_FIXTURE": str(fixture_file),
        "TICKWIRE_TRACE_OUT": str(trace_out),
        "TICKWIRE_FLAKY_TARGET": flaky[0],
    }
    flaky[1].attempts.clear()
    stdout = ""
    commands = lang.commands(tmp_path)  # build and test ..., then the example last
    for cmd in commands:
        proc = subprocess.run(cmd, cwd=lang.cwd, env=env, capture_output=True, text=True,
                              timeout=600)  # fmt: skip
        stdout += f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}"
        if proc.returncode != 0:
            break
    by_test = lang.results(tmp_path, stdout)
    by_test["example"] = cmd is commands[-1] and proc.returncode == 0
    # The example's last VPIN per symbol is the Python client's.
    vpin_lines = json.loads(fixture_file.read_text())["vpin"]["example_lines"]
    missing_lines = [line for line in vpin_lines if line not in proc.stdout]
    by_test["example"] = by_test["example"] and not missing_lines
    row = {}
    for check, needle in CHECKS.items():
        hits = [ok for name, ok in by_test.items() if needle in name.lower().replace(" ", "")]
        row[check] = "pass" if hits and all(hits) else ("FAIL" if hits else "missing")
    # The server's own record: its span is the child of the span the client sent.
    sent = json.loads(trace_out.read_text()) if trace_out.exists() else None
    spans = _spans_with_parent(server, sent["trace_id"], sent["span_id"]) if sent else []
    parent_ok = bool(spans) and all(
        s.parent is not None
        and s.parent.is_remote
        and format(s.parent.span_id, "016x") == sent["span_id"]
        for s in spans
    )
    if row["trace context continues"] == "pass" and not parent_ok:
        row["trace context continues"] = "FAIL"
    # The flaky server's own count: UNAVAILABLE retried (3 attempts), INVALID_ARGUMENT not.
    attempts = dict(flaky[1].attempts)
    if row["retries UNAVAILABLE only"] == "pass" and attempts != {"flaky": 3, "invalid": 1}:
        row["retries UNAVAILABLE only"] = "FAIL"
    _RESULTS[lang.name] = row
    _TESTED_WITH[lang.name] = _versions(lang)
    assert proc.returncode == 0, stdout[-6000:]
    assert not missing_lines, (missing_lines, proc.stdout[-3000:])
    assert all(v == "pass" for v in row.values()), (row, stdout[-6000:])
    assert parent_ok, f"no server span with trace {sent} and that parent"
    assert attempts == {"flaky": 3, "invalid": 1}, attempts

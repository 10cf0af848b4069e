"""Hardware routing: calibration-driven choice, fallback, pinning, what the RPC reports,
and the calibration profile.

The choice tests calibrate this host's backends (numpy, torch-cpu, mlx here;
torch-cuda too on a CUDA host) and then check the router's pick against the
time of every backend measured on the same input. Nothing about which backend
is faster is assumed: the assertions compare the pick with measurements.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from conftest import ServerHandle, start_server, stop_server
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from tickwire.common.v1 import execution_pb2
from tickwire.config import Settings
from tickwire.engines import risk
from tickwire.risk.v1 import risk_pb2, risk_pb2_grpc
from tickwire.routing.backends import Backend, NumpyBackend, content_id, detect_backends
from tickwire.routing.calibrate import calibrate
from tickwire.routing.cost_model import Coefficients, CostProfile, load_profile
from tickwire.routing.operation import Operation, all_operations
from tickwire.routing.router import BackendNotPresentError, ComputeFailedError, Router
from tickwire_client import Client
from tickwire_client.arrays import to_tensor
from tickwire_client.errors import TickwireError

REPO = Path(__file__).resolve().parents[1]
HIST = risk.HISTORICAL_VAR
LEVELS = np.array([0.95, 0.99])
HORIZONS = np.array([1, 10])
OOM = "RuntimeError: CUDA out of memory"
#: The pick may be this much slower than the fastest backend measured on the
#: same input: a shared 2-core VM gives timings that drift by tens of percent.
TOLERANCE = 1.3


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
class OutOfMemoryBackend(NumpyBackend):
    """A backend that fails like a GPU out of memory, under any name."""

    def __init__(self, name: str = "torch-cuda", copies_input: bool = True) -> None:
        super().__init__()
        self.name = name
        self.copies_input = copies_input

    def matmul(self, a: Any, b: Any) -> Any:
        raise RuntimeError("CUDA out of memory")


class CountingBackend(NumpyBackend):
    """NumPy under another name, counting its matrix products."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.matmuls = 0

    def matmul(self, a: Any, b: Any) -> Any:
        self.matmuls += 1
        return super().matmul(a, b)


class SlowNumpyBackend(NumpyBackend):
    """NumPy that sleeps 2 ms in every matrix product."""

    def matmul(self, a: Any, b: Any) -> Any:
        time.sleep(0.002)
        return super().matmul(a, b)


def favouring(first: str, op: str = HIST.name, others: tuple[str, ...] = ("numpy",)) -> CostProfile:
    """A profile in which ``first`` is by far the cheapest backend for ``op``."""
    per = {b: Coefficients(1e6, 1.0) for b in others}
    per[first] = Coefficients(1.0, 0.0)
    return CostProfile(operations={op: per})


def var_inputs(scenarios: np.ndarray, positions: np.ndarray, **extra: Any) -> dict[str, Any]:
    return {
        "scenarios": scenarios,
        "positions": positions,
        "confidence_levels": LEVELS,
        "horizon_days": HORIZONS,
        **extra,
    }


def measure_each(
    op: Operation, backends: dict[str, Backend], inputs: dict[str, Any], rounds: int = 15
) -> dict[str, float]:
    """Median ns of ``op`` on every backend for the same ``inputs``.

    The backends take turns within each round, so that load drifting on a
    shared machine hits all of them alike. Inputs are timed as a call sees
    them: with no resident key, a copying backend pays its transfer.
    """
    calls = {}
    for name, be in backends.items():
        if op.runs_on(name):

            def call(be: Backend = be) -> None:
                op.run(be, **inputs)
                be.synchronize()

            call()  # warm-up
            calls[name] = call
    samples: dict[str, list[int]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            t0 = time.perf_counter_ns()
            call()
            samples[name].append(time.perf_counter_ns() - t0)
    return {name: float(statistics.median(s)) for name, s in samples.items()}


def rel_close(a: np.ndarray, b: np.ndarray, rtol: float = 1e-9) -> bool:
    return bool(np.allclose(a, b, rtol=rtol, atol=0.0))


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def host_backends() -> dict[str, Backend]:
    return detect_backends()


@pytest.fixture(scope="module")
def measured_profile(host_backends: dict[str, Backend]) -> CostProfile:
    """risk.historical_var calibrated on this host at its full calibration sizes
    (1e3 .. 4e6 work units; about a second)."""
    return calibrate(host_backends, [HIST], repeats=11, budget_s=0.5)


@pytest.fixture(scope="module")
def large_scenarios() -> tuple[np.ndarray, np.ndarray]:
    """20,000 scenarios x 200 assets (4e6 work units, 32 MB) and positions."""
    rng = np.random.default_rng(20241129)
    return rng.standard_normal((20_000, 200)) * 0.01, rng.uniform(-1e5, 2e5, 200)


@pytest.fixture(scope="module")
def rpc_server() -> Iterator[ServerHandle]:
    """A server of this module's own: tests here swap its backends."""
    handle = start_server(Settings(host="127.0.0.1", port=0))
    yield handle
    stop_server(handle)


@pytest.fixture
def rpc_client(rpc_server: ServerHandle) -> Iterator[Client]:
    with Client(rpc_server.target, timeout=60.0) as c:
        yield c


# --------------------------------------------------------------------------
# 1. the router's pick, checked against measurement on this host
# --------------------------------------------------------------------------
def pick_versus_measurement(
    backends: dict[str, Backend], profile: CostProfile, inputs: dict[str, Any]
) -> tuple[bool, str, str]:
    """Whether the router's first candidate measures within TOLERANCE of the
    fastest backend on ``inputs``; a report of estimates and times; the pick."""
    ranked = Router(backends, profile).candidates(HIST, inputs)
    measured = measure_each(HIST, backends, inputs)
    pick = ranked[0].backend
    ok = measured[pick] <= TOLERANCE * min(measured.values())
    report = (
        "estimates (us) "
        + ", ".join(f"{c.backend} {c.estimated_ns / 1e3:.1f}" for c in ranked)
        + "; measured (us) "
        + ", ".join(f"{b} {t / 1e3:.1f}" for b, t in measured.items())
    )
    return ok, report, pick


@pytest.mark.parametrize("size", ["tiny", "large"])
def test_router_picks_a_backend_as_fast_as_the_fastest_measured(
    size: str,
    host_backends: dict[str, Backend],
    measured_profile: CostProfile,
    returns: np.ndarray,
    positions: np.ndarray,
    large_scenarios: tuple[np.ndarray, np.ndarray],
) -> None:
    """Calibrate, route, then time every backend on the same input.

    Other processes on a shared 2-core machine can change the backends' speeds
    between calibration and measurement (multi-threaded BLAS suffers most), so
    a miss is retried twice with a fresh calibration; a router that picks
    wrongly misses every time.
    """
    if size == "tiny":  # one year of the portfolio's daily returns: 250 x 10
        inputs = var_inputs(returns[-250:], positions)
    else:
        inputs = var_inputs(*large_scenarios)
    profile, reports = measured_profile, []
    for _attempt in range(3):
        ok, report, pick = pick_versus_measurement(host_backends, profile, inputs)
        reports.append(report)
        if ok:
            break
        profile = calibrate(host_backends, [HIST], repeats=11, budget_s=0.5)
    else:
        pytest.fail(
            f"{size}: the pick was slower than {TOLERANCE}x the fastest:\n" + "\n".join(reports)
        )
    # And the routed call itself runs there.
    assert Router(host_backends, profile).run(HIST, inputs).backend == pick


def test_calibration_learns_that_mlx_is_slower_than_numpy_here(
    host_backends: dict[str, Backend],
    measured_profile: CostProfile,
    large_scenarios: tuple[np.ndarray, np.ndarray],
) -> None:
    if "mlx" not in host_backends:
        pytest.skip("mlx is not installed")
    s, _ = large_scenarios
    per = measured_profile.operations[HIST.name]
    assert set(per) == {name for name in host_backends if HIST.runs_on(name)}
    work = float(s.size)
    mlx = measured_profile.estimate_ns(HIST.name, "mlx", work, s.nbytes)
    numpy = measured_profile.estimate_ns(HIST.name, "numpy", work, s.nbytes)
    assert mlx > numpy, (per, measured_profile.transfer_ns_per_byte)
    assert per["mlx"].estimate(work) > per["numpy"].estimate(work), per  # compute alone too
    # MLX copies its input on creation: the transfer was measured, not assumed.
    assert measured_profile.transfer_ns_per_byte["mlx"] > 0.0
    assert measured_profile.transfer_ns_per_byte["numpy"] == 0.0


def test_calibration_follows_measurement_not_backend_names(
    host_backends: dict[str, Backend],
) -> None:
    """A numpy backend made slow measures slow: calibration holds no ranking rule."""
    op = dataclasses.replace(HIST, calibration_sizes=(1_000, 10_000, 100_000))
    fast = {name: be for name, be in host_backends.items() if name != "numpy"}
    if not fast:
        pytest.skip("numpy is the only backend on this host")
    profile = calibrate({"numpy": SlowNumpyBackend(), **fast}, [op], repeats=3, budget_s=0.2)
    for name in fast:
        assert profile.estimate_ns(op.name, name, 10_000, 0) < profile.estimate_ns(
            op.name, "numpy", 10_000, 0
        ), profile.operations
    assert profile.operations[op.name]["numpy"].fixed_ns > 1.5e6  # the 2 ms sleep


def test_resident_data_is_not_charged_a_transfer(
    host_backends: dict[str, Backend],
    measured_profile: CostProfile,
    large_scenarios: tuple[np.ndarray, np.ndarray],
) -> None:
    copying = [name for name, be in host_backends.items() if be.copies_input]
    if not copying:
        pytest.skip("no backend here copies its input")
    name = copying[0]
    be = host_backends[name]
    s, w = large_scenarios
    key = content_id(s)
    inputs = var_inputs(s, w, scenarios_key=key)
    router = Router(host_backends, measured_profile)
    compute = measured_profile.estimate_ns(HIST.name, name, s.size, 0)
    transfer = measured_profile.transfer_ns_per_byte[name] * s.nbytes
    assert transfer > 0.0

    def estimate() -> float:
        return {c.backend: c.estimated_ns for c in router.candidates(HIST, inputs)}[name]

    try:
        assert estimate() == pytest.approx(compute + transfer)
        be.asarray(s, key=key)
        assert be.is_resident(key)
        assert estimate() == pytest.approx(compute)
    finally:
        be.evict(key)
    assert not be.is_resident(key)
    assert estimate() == pytest.approx(compute + transfer)


# --------------------------------------------------------------------------
# 2. fallback
# --------------------------------------------------------------------------
def test_a_failing_backend_falls_back_to_the_next(
    returns: np.ndarray, positions: np.ndarray
) -> None:
    router = Router(
        {"numpy": NumpyBackend(), "torch-cuda": OutOfMemoryBackend()}, favouring("torch-cuda")
    )
    inputs = var_inputs(returns, positions)
    assert [c.backend for c in router.candidates(HIST, inputs)] == ["torch-cuda", "numpy"]

    result = router.run(HIST, inputs)
    assert result.backend == "numpy"
    assert result.requested is None
    assert result.fallbacks == [("torch-cuda", OOM)]
    expected = risk.historical_var(NumpyBackend(), **inputs)
    np.testing.assert_array_equal(result.value.var, expected.var)
    np.testing.assert_array_equal(result.value.cvar, expected.cvar)


def test_without_fallback_a_backend_failure_is_compute_failed(
    returns: np.ndarray, positions: np.ndarray
) -> None:
    numpy = CountingBackend("numpy")
    router = Router({"numpy": numpy, "torch-cuda": OutOfMemoryBackend()}, favouring("torch-cuda"))
    with pytest.raises(
        ComputeFailedError, match="torch-cuda: RuntimeError: CUDA out of memory"
    ) as e:
        router.run(HIST, var_inputs(returns, positions), allow_fallback=False)
    assert e.value.fallbacks == [("torch-cuda", OOM)]
    assert numpy.matmuls == 0


def test_when_every_backend_fails_each_failure_is_listed(
    returns: np.ndarray, positions: np.ndarray
) -> None:
    router = Router(
        {"numpy": OutOfMemoryBackend("numpy", False), "torch-cuda": OutOfMemoryBackend()},
        favouring("torch-cuda"),
    )
    with pytest.raises(ComputeFailedError) as e:
        router.run(HIST, var_inputs(returns, positions))
    assert e.value.fallbacks == [("torch-cuda", OOM), ("numpy", OOM)]


def test_an_engine_value_error_is_not_retried_on_another_backend() -> None:
    """Bad input is the caller's fault: every backend would reject it."""
    first, second = CountingBackend("torch-cpu"), CountingBackend("numpy")
    router = Router(
        {"numpy": second, "torch-cpu": first}, favouring("torch-cpu", risk.COMPONENT_VAR.name)
    )
    flat = np.full((100, 3), 0.01)  # every scenario alike: P&L has zero variance
    inputs = {"scenarios": flat, "positions": np.ones(3), "confidence_level": 0.99}
    with pytest.raises(ValueError, match="zero variance"):
        router.run(risk.COMPONENT_VAR, inputs)
    assert first.matmuls == 1
    assert second.matmuls == 0


@pytest.mark.parametrize("error", [ValueError, TimeoutError, ZeroDivisionError])
def test_caller_errors_propagate_from_the_first_backend_only(error: type[Exception]) -> None:
    tried: list[str] = []

    def engine(backend: Backend, **inputs: Any) -> None:
        tried.append(backend.name)
        raise error("x: rejected")

    op = Operation("test.rejects", engine, lambda i: 1.0, lambda i: [], lambda s, r: {})
    router = Router(
        {"numpy": CountingBackend("numpy"), "mlx": CountingBackend("mlx")},
        favouring("mlx", op.name),
    )
    with pytest.raises(error):
        router.run(op, {})
    assert tried == ["mlx"]


# --------------------------------------------------------------------------
# 3. pinning
# --------------------------------------------------------------------------
def test_a_pinned_backend_goes_first_even_when_slower(
    host_backends: dict[str, Backend],
    measured_profile: CostProfile,
    returns: np.ndarray,
    positions: np.ndarray,
) -> None:
    router = Router(host_backends, measured_profile)
    inputs = var_inputs(returns, positions)
    routed = router.candidates(HIST, inputs)
    slowest = routed[-1].backend
    if slowest == routed[0].backend:
        pytest.skip("one backend only")
    pinned = router.candidates(HIST, inputs, pinned=slowest)
    assert pinned[0].backend == slowest
    assert pinned[0].estimated_ns > routed[0].estimated_ns
    assert [c.backend for c in pinned[1:]] == [c.backend for c in routed if c.backend != slowest]

    result = router.run(HIST, inputs, pinned=slowest)
    assert (result.backend, result.requested, result.fallbacks) == (slowest, slowest, [])
    expected = risk.historical_var(NumpyBackend(), **inputs)
    assert rel_close(result.value.var, expected.var)
    assert rel_close(result.value.cvar, expected.cvar)


def test_pinning_a_backend_that_is_not_present_raises(
    returns: np.ndarray, positions: np.ndarray
) -> None:
    router = Router({"numpy": NumpyBackend()}, load_profile())
    inputs = var_inputs(returns, positions)
    with pytest.raises(BackendNotPresentError, match="'torch-cuda' is not present"):
        router.candidates(HIST, inputs, pinned="torch-cuda")
    with pytest.raises(BackendNotPresentError):
        router.run(HIST, inputs, pinned="torch-cuda")


def test_a_numpy_only_operation_is_never_routed_elsewhere(
    host_backends: dict[str, Backend], returns: np.ndarray, positions: np.ndarray
) -> None:
    op = risk.BACKTEST_VAR
    assert op.backends == ("numpy",)
    others = tuple(b for b in host_backends if b != "numpy")
    # Even a profile that calls every other backend free does not move it.
    cheap = CostProfile(operations={op.name: {b: Coefficients(0.0, 0.0) for b in others}})
    router = Router(host_backends, cheap.merged_over(load_profile()))
    inputs = {"pnl": returns @ positions, "confidence_level": 0.99, "window": 250}
    assert [c.backend for c in router.candidates(op, inputs)] == ["numpy"]
    assert router.run(op, inputs).backend == "numpy"
    for other in others:
        with pytest.raises(BackendNotPresentError, match="runs only on numpy"):
            router.candidates(op, inputs, pinned=other)


# --------------------------------------------------------------------------
# 4. through the RPC
# --------------------------------------------------------------------------
def _var_request(
    returns: np.ndarray, positions: np.ndarray, backend: int
) -> risk_pb2.ComputeVarRequest:
    return risk_pb2.ComputeVarRequest(
        scenarios=to_tensor(returns),
        positions=positions.tolist(),
        method=risk_pb2.VAR_METHOD_HISTORICAL,
        confidence_levels=[0.99],
        horizon_days=[1],
        execution=execution_pb2.ExecutionOptions(backend=backend),
    )


def test_rpc_pinning_an_absent_backend_is_failed_precondition(
    rpc_server: ServerHandle, returns: np.ndarray, positions: np.ndarray
) -> None:
    if "torch-cuda" in rpc_server.app.runtime.router.backends:
        pytest.skip("this host has torch-cuda")
    request = _var_request(returns, positions, execution_pb2.BACKEND_TORCH_CUDA)
    with grpc.insecure_channel(rpc_server.target) as channel, pytest.raises(grpc.RpcError) as e:
        risk_pb2_grpc.RiskServiceStub(channel).ComputeVar(request, timeout=30)
    err = e.value
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "torch-cuda" in err.details()
    status = rpc_status.from_call(err)
    subjects, fields = [], []
    for detail in status.details:
        if detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            pf = error_details_pb2.PreconditionFailure()
            detail.Unpack(pf)
            subjects += [v.subject for v in pf.violations]
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            fields.append(info.metadata["field"])
    assert subjects == ["execution.backend"]
    assert fields == ["execution.backend"]


def test_rpc_pinned_mlx_reports_mlx(
    rpc_server: ServerHandle, rpc_client: Client, returns: np.ndarray, positions: np.ndarray
) -> None:
    if "mlx" not in rpc_server.app.runtime.router.backends:
        pytest.skip("mlx is not installed")
    report = rpc_client.risk.compute_var(returns, positions, backend="mlx")
    assert report.execution.backend_used == "mlx"
    assert report.execution.backend_requested == "mlx"
    assert report.execution.fallbacks == []
    numpy = rpc_client.risk.compute_var(returns, positions, backend="numpy")
    assert numpy.execution.backend_used == "numpy"
    for a, b in zip(report.estimates, numpy.estimates, strict=True):
        assert a.var == pytest.approx(b.var, rel=1e-9)
        assert a.cvar == pytest.approx(b.cvar, rel=1e-9)


def _backend_failed_events(rpc_server: ServerHandle) -> list[dict[str, Any]]:
    """The backend_failed events of the compute spans, once the call's spans are out.

    Child spans are emitted right after the handler returns, so poll briefly.
    """
    deadline = time.monotonic() + 5.0
    while True:
        events = [
            dict(ev.attributes or {})
            for span in rpc_server.spans.get_finished_spans()
            if span.name == "compute"
            for ev in span.events
            if ev.name == "backend_failed"
        ]
        if events or time.monotonic() > deadline:
            return events
        time.sleep(0.02)


@pytest.fixture
def failing_torch_cpu(rpc_server: ServerHandle) -> Iterator[None]:
    """The server's torch-cpu backend swapped for one that runs out of memory."""
    backends = rpc_server.app.runtime.router.backends
    original = backends.get("torch-cpu")
    backends["torch-cpu"] = OutOfMemoryBackend("torch-cpu", copies_input=False)
    try:
        yield
    finally:
        if original is None:
            del backends["torch-cpu"]
        else:
            backends["torch-cpu"] = original


@pytest.mark.usefixtures("failing_torch_cpu")
def test_rpc_fallback_is_reported_and_traced(
    rpc_server: ServerHandle, rpc_client: Client, returns: np.ndarray, positions: np.ndarray
) -> None:
    rpc_server.spans.clear()
    report = rpc_client.risk.compute_var(returns, positions, backend="torch-cpu")
    ex = report.execution
    assert ex.backend_requested == "torch-cpu"
    assert ex.backend_used == "numpy"  # the next cheapest in the shipped profile
    assert ex.fallbacks == [("torch-cpu", OOM)]
    expected = risk.historical_var(NumpyBackend(), returns, positions, LEVELS, np.array([1]))
    for i, level in enumerate(LEVELS):
        assert report.get(level, 1).var == pytest.approx(expected.var[i, 0], rel=1e-9)
    assert _backend_failed_events(rpc_server) == [{"backend": "torch-cpu", "reason": OOM}]


@pytest.mark.usefixtures("failing_torch_cpu")
def test_rpc_failure_without_fallback_is_internal_and_traced(
    rpc_server: ServerHandle, rpc_client: Client, returns: np.ndarray, positions: np.ndarray
) -> None:
    rpc_server.spans.clear()
    with pytest.raises(TickwireError) as e:
        rpc_client.risk.compute_var(returns, positions, backend="torch-cpu", disable_fallback=True)
    assert e.value.code == grpc.StatusCode.INTERNAL
    assert "torch-cpu: RuntimeError: CUDA out of memory" in e.value.message
    assert "execution.backend" in e.value.message
    assert _backend_failed_events(rpc_server) == [{"backend": "torch-cpu", "reason": OOM}]


# --------------------------------------------------------------------------
# 5. the calibration profile
# --------------------------------------------------------------------------
def test_profile_json_round_trip(tmp_path: Path) -> None:
    profile = CostProfile(
        operations={
            "risk.historical_var": {
                "numpy": Coefficients(49_000.5, 0.16),
                "mlx": Coefficients(227_000.0, 3.7),
            },
            "risk.monte_carlo_var": {"numpy": Coefficients(129_000.0, 11.3)},
        },
        transfer_ns_per_byte={"numpy": 0.0, "mlx": 0.057},
        metadata={"host": "test", "backends": ["mlx", "numpy"]},
    )
    assert CostProfile.from_json(json.loads(json.dumps(profile.to_json()))) == profile
    path = tmp_path / "nested" / "profile.json"
    profile.save(path)
    assert CostProfile.from_json(json.loads(path.read_text())) == profile


def test_load_profile_overlays_the_shipped_default_per_pair(tmp_path: Path) -> None:
    shipped = load_profile()
    user = CostProfile(
        operations={
            HIST.name: {"numpy": Coefficients(1.0, 2.0)},
            "test.new_operation": {"numpy": Coefficients(3.0, 4.0)},
        },
        transfer_ns_per_byte={"mlx": 9.0},
        metadata={"host": "user-host"},
    )
    path = tmp_path / "calibration.json"
    user.save(path)
    merged = load_profile(path)

    # The user's pairs win ...
    assert merged.operations[HIST.name]["numpy"] == Coefficients(1.0, 2.0)
    assert merged.operations["test.new_operation"] == {"numpy": Coefficients(3.0, 4.0)}
    assert merged.transfer_ns_per_byte["mlx"] == 9.0
    assert merged.metadata["host"] == "user-host"
    # ... and the shipped default fills every pair the user's profile lacks.
    for op, per in shipped.operations.items():
        for backend, coeffs in per.items():
            if (op, backend) != (HIST.name, "numpy"):
                assert merged.operations[op][backend] == coeffs, (op, backend)
    for backend, v in shipped.transfer_ns_per_byte.items():
        if backend != "mlx":
            assert merged.transfer_ns_per_byte[backend] == v
    # Loading did not change the shipped default.
    assert load_profile() == shipped


def test_load_profile_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_profile(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"operations": {HIST.name: {"numpy": {"fixed_ns": 1.0}}}}))
    with pytest.raises(ValueError, match="malformed calibration profile"):
        load_profile(bad)


def test_shipped_profile_covers_every_operation_and_backend() -> None:
    shipped = load_profile()
    # Operations without a torch-cuda derivation in bench/make_default_profile.py
    # are listed as such; the router estimates the missing pair as infinite.
    underived = set(shipped.metadata.get("torch-cuda", {}).get("operations_without_entry", []))
    for op in all_operations():
        for backend in ("numpy", "torch-cpu", "torch-cuda", "mlx"):
            if backend == "torch-cuda" and op.name in underived:
                assert backend not in shipped.operations[op.name]
            elif op.runs_on(backend):
                coeffs = shipped.operations[op.name][backend]
                assert math.isfinite(coeffs.fixed_ns) and coeffs.fixed_ns >= 0.0
                assert math.isfinite(coeffs.ns_per_unit) and coeffs.ns_per_unit >= 0.0
            else:
                assert backend not in shipped.operations[op.name]
    assert set(shipped.transfer_ns_per_byte) >= {"numpy", "torch-cpu", "torch-cuda", "mlx"}
    # The torch-cuda entries are documented as derived, not measured, unless
    # the profile was measured on a CUDA host.
    if "torch-cuda" not in shipped.metadata.get("backends", []):
        assert "DESIGN.md" in json.dumps(shipped.metadata["torch-cuda"])


def test_shipped_profile_sends_tiny_work_to_the_cpu_and_large_resident_work_to_cuda(
    returns: np.ndarray, positions: np.ndarray
) -> None:
    """What a CUDA host gets before it runs ``tickwire calibrate``."""
    cuda = OutOfMemoryBackend("torch-cuda")  # never run: only its estimates matter
    router = Router({"numpy": NumpyBackend(), "torch-cuda": cuda}, load_profile())
    tiny = var_inputs(returns[-250:], positions)
    assert router.candidates(HIST, tiny)[0].backend == "numpy"
    # DESIGN.md's 100,000 x 2,000 VaR, registered and already on the GPU
    # (a broadcast view: the shape and byte count without the 1.6 GB).
    big = np.broadcast_to(np.float64(0.0), (100_000, 2_000))
    key = "sha256:resident-test-matrix"
    cuda.asarray(np.zeros(1), key=key)  # marks the key resident on the fake
    large = var_inputs(big, np.ones(2_000), scenarios_key=key)
    ranked = router.candidates(HIST, large)
    assert ranked[0].backend == "torch-cuda"
    assert ranked[0].estimated_ns < 5e6  # DESIGN.md: 0.77 ms measured on an H100
    mc = {
        "scenarios": returns,
        "positions": positions,
        "confidence_levels": LEVELS,
        "horizon_days": HORIZONS,
        "num_simulations": 10_000_000,
    }
    assert router.candidates(risk.MONTE_CARLO_VAR, mc)[0].backend == "torch-cuda"


def test_tickwire_calibrate_quick_writes_a_profile(
    tmp_path: Path, host_backends: dict[str, Backend]
) -> None:
    out = tmp_path / "calibration.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tickwire",
            "calibrate",
            "--quick",
            "--operations",
            HIST.name,
            "--output",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout
    data = json.loads(out.read_text())
    profile = CostProfile.from_json(data)
    assert set(profile.operations) == {HIST.name}
    assert set(profile.operations[HIST.name]) == set(host_backends)
    assert set(profile.transfer_ns_per_byte) == set(host_backends)
    assert profile.metadata["backends"] == sorted(host_backends)
    for coeffs in profile.operations[HIST.name].values():
        assert math.isfinite(coeffs.fixed_ns) and coeffs.fixed_ns >= 0.0
        assert math.isfinite(coeffs.ns_per_unit) and coeffs.ns_per_unit >= 0.0
        assert coeffs.estimate(1e6) > 0.0
    # It serves as a --calibration-profile: the shipped default fills the rest.
    merged, shipped = load_profile(out), load_profile()
    assert set(merged.operations) == set(shipped.operations)
    for backend in shipped.operations[HIST.name]:
        want = profile.operations[HIST.name].get(backend, shipped.operations[HIST.name][backend])
        assert merged.operations[HIST.name][backend] == want

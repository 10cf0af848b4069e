"""torch-cuda: same numbers as NumPy, device-resident scenarios, reproducible Monte Carlo.

Skipped as a whole on a host where torch has no CUDA device.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("torch reports no CUDA device", allow_module_level=True)

from conftest import ServerHandle, start_server, stop_server  # noqa: E402
from tickwire.config import Settings  # noqa: E402
from tickwire.engines import risk  # noqa: E402
from tickwire.routing.backends import NumpyBackend, TorchBackend, content_id  # noqa: E402
from tickwire.routing.cost_model import load_profile  # noqa: E402
from tickwire.routing.router import Router  # noqa: E402
from tickwire_client import Client  # noqa: E402

pytestmark = pytest.mark.gpu

LEVELS = np.array([0.95, 0.975, 0.99])
HORIZONS = np.array([1, 10])
DEVICE = "cuda"


@pytest.fixture(scope="module")
def cuda() -> TorchBackend:
    return TorchBackend(DEVICE)


@pytest.fixture(scope="module")
def synthetic() -> tuple[np.ndarray, np.ndarray]:
    """20,000 scenarios x 500 assets with fat tails, and long/short positions."""
    rng = np.random.default_rng(99)
    s = rng.standard_t(4, size=(20_000, 500)) * 0.01
    return s, rng.uniform(-1e5, 2e5, 500)


def _inputs(scenarios: np.ndarray, positions: np.ndarray, **extra: Any) -> dict[str, Any]:
    return {
        "scenarios": scenarios,
        "positions": positions,
        "confidence_levels": LEVELS,
        "horizon_days": HORIZONS,
        **extra,
    }


def _assert_same_result(got: risk.VarResult, want: risk.VarResult) -> None:
    np.testing.assert_allclose(got.var, want.var, rtol=1e-9, atol=0)
    np.testing.assert_allclose(got.cvar, want.cvar, rtol=1e-9, atol=0)
    assert got.num_scenarios == want.num_scenarios
    assert got.pnl_mean == pytest.approx(want.pnl_mean, rel=1e-9, abs=1e-6)
    assert got.pnl_std == pytest.approx(want.pnl_std, rel=1e-9)


@pytest.mark.parametrize(
    "method", [risk.historical_var, risk.parametric_normal_var, risk.cornish_fisher_var]
)
@pytest.mark.parametrize("data", ["portfolio", "synthetic"])
def test_cuda_var_equals_numpy(
    method: Any,
    data: str,
    cuda: TorchBackend,
    returns: np.ndarray,
    positions: np.ndarray,
    synthetic: tuple[np.ndarray, np.ndarray],
) -> None:
    inputs = _inputs(returns, positions) if data == "portfolio" else _inputs(*synthetic)
    _assert_same_result(method(cuda, **inputs), method(NumpyBackend(), **inputs))


def test_cuda_component_var_equals_numpy(
    cuda: TorchBackend, synthetic: tuple[np.ndarray, np.ndarray]
) -> None:
    s, w = synthetic
    got = risk.component_var(cuda, s, w, 0.99, 10)
    want = risk.component_var(NumpyBackend(), s, w, 0.99, 10)
    assert got.var == pytest.approx(want.var, rel=1e-9)
    assert got.cvar == pytest.approx(want.cvar, rel=1e-9)
    np.testing.assert_allclose(got.component_var, want.component_var, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(got.component_cvar, want.component_cvar, rtol=1e-9, atol=1e-6)


def test_registered_scenarios_are_moved_to_the_device_once(
    synthetic: tuple[np.ndarray, np.ndarray],
) -> None:
    be = TorchBackend(DEVICE)  # a cache of its own
    s, w = synthetic
    key = content_id(s)
    assert not be.is_resident(key)
    first = be.asarray(s, key=key)
    assert first.device.type == DEVICE
    assert be.is_resident(key)
    assert be.asarray(s, key=key) is first  # the cached device copy: no new transfer

    # The engine uses the resident copy: same numbers, no copy of the matrix.
    inputs = _inputs(s, w, scenarios_key=key)
    _assert_same_result(
        risk.historical_var(be, **inputs), risk.historical_var(NumpyBackend(), **inputs)
    )

    # Timing agrees: a call on resident data beats one that must copy 80 MB.
    def median_ns(call_inputs: dict[str, Any]) -> float:
        samples = []
        for _ in range(7):
            t0 = time.perf_counter_ns()
            risk.historical_var(be, **call_inputs)
            be.synchronize()
            samples.append(time.perf_counter_ns() - t0)
        return statistics.median(samples)

    resident, copied = median_ns(inputs), median_ns(_inputs(s, w))
    assert resident < copied, (resident, copied)

    be.evict(key)
    assert not be.is_resident(key)


def test_the_router_charges_no_transfer_for_resident_scenarios(
    synthetic: tuple[np.ndarray, np.ndarray],
) -> None:
    be = TorchBackend(DEVICE)
    profile = load_profile()
    router = Router({"numpy": NumpyBackend(), "torch-cuda": be}, profile)
    s, w = synthetic
    key = content_id(s)
    inputs = _inputs(s, w, scenarios_key=key)
    op = risk.HISTORICAL_VAR
    compute = profile.estimate_ns(op.name, "torch-cuda", s.size, 0)
    transfer = profile.transfer_ns_per_byte["torch-cuda"] * s.nbytes
    assert transfer > 0.0

    def estimate() -> float:
        return {c.backend: c.estimated_ns for c in router.candidates(op, inputs)}["torch-cuda"]

    assert estimate() == pytest.approx(compute + transfer)
    result = router.run(op, inputs, pinned="torch-cuda")  # moves the matrix once, under key
    assert result.backend == "torch-cuda"
    assert be.is_resident(key)
    assert estimate() == pytest.approx(compute)
    be.evict(key)


def test_cuda_monte_carlo_is_reproducible_per_seed(
    cuda: TorchBackend, returns: np.ndarray, positions: np.ndarray
) -> None:
    def run(seed: int, backend: Any = cuda) -> risk.VarResult:
        return risk.monte_carlo_var(
            backend, returns, positions, LEVELS, HORIZONS, num_simulations=2_000_000, seed=seed
        )

    a, b, other = run(11), run(11), run(12)
    np.testing.assert_array_equal(a.var, b.var)
    np.testing.assert_array_equal(a.cvar, b.cvar)
    np.testing.assert_array_equal(a.var_standard_error, b.var_standard_error)
    assert not np.array_equal(a.var, other.var)
    # Another generator (PCG64 on NumPy, Philox on CUDA) draws other numbers
    # from the same distribution: the VaRs agree within their standard errors.
    host = run(11, NumpyBackend())
    se = np.hypot(a.var_standard_error, host.var_standard_error)
    assert np.all(np.abs(a.var - host.var) <= 6.0 * se), (a.var, host.var, se)


# --------------------------------------------------------------------------
# through the server
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gpu_server() -> Iterator[ServerHandle]:
    handle = start_server(Settings(host="127.0.0.1", port=0))
    yield handle
    stop_server(handle)


def test_rpc_pinned_cuda_reports_cuda(
    gpu_server: ServerHandle, returns: np.ndarray, positions: np.ndarray
) -> None:
    with Client(gpu_server.target, timeout=60.0) as client:
        cuda = client.risk.compute_var(returns, positions, backend="torch-cuda")
        host = client.risk.compute_var(returns, positions, backend="numpy")
    assert cuda.execution.backend_used == "torch-cuda"
    assert cuda.execution.fallbacks == []
    for a, b in zip(cuda.estimates, host.estimates, strict=True):
        assert a.var == pytest.approx(b.var, rel=1e-9)
        assert a.cvar == pytest.approx(b.cvar, rel=1e-9)


def test_rpc_registered_scenarios_stay_on_the_device(
    gpu_server: ServerHandle, synthetic: tuple[np.ndarray, np.ndarray]
) -> None:
    s, w = synthetic
    be = gpu_server.app.runtime.router.backends["torch-cuda"]
    with Client(gpu_server.target, timeout=60.0) as client:
        registered = client.risk.register_scenarios(s)
        first = client.risk.compute_var(registered, w, backend="torch-cuda")
        assert be.is_resident(registered.id)
        second = client.risk.compute_var(registered, w, backend="torch-cuda")
    assert first.execution.backend_used == second.execution.backend_used == "torch-cuda"
    # The second call was not charged the transfer the first one was.
    assert second.execution.estimated_ms < first.execution.estimated_ms

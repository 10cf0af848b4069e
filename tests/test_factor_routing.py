"""Routing of the factor operations: the router sends small models to the backend
with the lower fixed cost and large ones to the one with the lower cost per unit
(a hand-written profile, not the shipped numbers), every backend gives the same
model, and each operation's calibration samples run on every backend it declares."""

from __future__ import annotations

import math

import numpy as np
import pytest
from factor_panel import sp500_panel
from tickwire.engines import (
    factor_fama_french,
    factor_model,
    factor_returns,
    factor_risk,
    factor_styles,
)
from tickwire.routing.backends import NumpyBackend, TorchBackend
from tickwire.routing.calibrate import calibrate
from tickwire.routing.cost_model import Coefficients, CostProfile
from tickwire.routing.router import Router

OPS = [
    factor_styles.STYLE_SCORES,
    factor_returns.FACTOR_RETURNS,
    factor_model.RISK_MODEL,
    factor_risk.PORTFOLIO_RISK,
    factor_fama_french.REGRESS_FACTORS,
]


@pytest.fixture(scope="module")
def backends():
    return {"numpy": NumpyBackend(), "torch-cpu": TorchBackend("cpu")}


def _model_inputs(num_closes: int, window: int) -> dict:
    p = sp500_panel()
    return {
        "closes": p.closes[-num_closes:],
        "shares_outstanding": p.shares,
        "sectors": p.sectors,
        "sector_names": p.sector_names,
        "settings": factor_model.ModelSettings(
            momentum=factor_styles.MomentumParams(window, window / 2, 20)
        ),
    }


def test_router_sends_small_models_to_low_overhead_and_large_ones_to_low_per_unit(backends):
    # numpy: no overhead, 1 ns per unit; torch-cpu: 50 ms overhead, 0.1 ns per unit.
    # The break-even is at 50e6 / 0.9 = 55.6M units.
    profile = CostProfile(
        operations={
            factor_model.RISK_MODEL.name: {
                "numpy": Coefficients(0.0, 1.0),
                "torch-cpu": Coefficients(50e6, 0.1),
            }
        },
        transfer_ns_per_byte={"numpy": 0.0, "torch-cpu": 0.0},
    )
    router = Router(backends, profile)
    small = _model_inputs(200, 60)
    large = _model_inputs(1259, 252)
    w_small = factor_model.RISK_MODEL.work(small)
    w_large = factor_model.RISK_MODEL.work(large)
    assert w_small < 50e6 / 0.9 < w_large
    a = router.run(factor_model.RISK_MODEL, small)
    b = router.run(factor_model.RISK_MODEL, large)
    assert (a.backend, b.backend) == ("numpy", "torch-cpu")
    # Whichever backend ran, the model is the same.
    ref = factor_model.RISK_MODEL.run(backends["numpy"], **large)
    np.testing.assert_allclose(b.value.factor_returns, ref.factor_returns, rtol=0, atol=1e-13)
    np.testing.assert_allclose(b.value.factor_covariance, ref.factor_covariance, rtol=1e-10)


def test_host_only_operations_stay_on_numpy(backends):
    for op in (factor_risk.PORTFOLIO_RISK, factor_fama_french.REGRESS_FACTORS):
        assert op.runs_on("numpy") and not op.runs_on("torch-cpu")
    for op in (factor_styles.STYLE_SCORES, factor_returns.FACTOR_RETURNS, factor_model.RISK_MODEL):
        assert op.runs_on("torch-cpu") and op.runs_on("torch-cuda") and not op.runs_on("mlx")


def test_every_operation_calibrates_on_its_backends(backends):
    """A quick calibration (sizes scaled down) fits finite, non-negative coefficients,
    as ``tickwire calibrate`` needs to regenerate the shipped profile."""
    profile = calibrate(backends, OPS, repeats=1, budget_s=0.05, size_scale=0.01)
    for op in OPS:
        for name in backends:
            if op.runs_on(name):
                c = profile.operations[op.name][name]
                assert math.isfinite(c.fixed_ns) and c.fixed_ns >= 0.0
                assert math.isfinite(c.ns_per_unit) and c.ns_per_unit >= 0.0
            else:
                assert name not in profile.operations.get(op.name, {})


@pytest.mark.parametrize("op", OPS, ids=[op.name for op in OPS])
def test_calibration_sample_work_is_near_the_size_asked(op):
    rng = np.random.default_rng(0)
    size = op.calibration_sizes[1]
    work = op.work(op.sample(size, rng))
    assert size / 4 <= work <= size * 4

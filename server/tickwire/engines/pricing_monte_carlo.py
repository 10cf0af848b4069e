"""Monte Carlo option prices under geometric Brownian motion: European,
arithmetic-average Asian (with the geometric-average control variate) and
knock-in / knock-out barriers, with pathwise delta and vega.

The engine is written once against the NumPy-style namespace
``ops = array_ops(backend)`` and runs on every backend (numpy, torch-cpu,
torch-cuda, mlx). All K contracts of a call are simulated together; the
per-path work happens on the backend and only per-chunk moments, (K,)
vectors, come back to the host, where they are merged in float64.

Model
-----
Under the risk-neutral measure ``dS = (r - q) S dt + sigma S dW``. With
``dt = T / n`` (per contract) the log price is advanced by the exact step

    ``X_j = X_{j-1} + (r - q - sigma^2 / 2) dt + sigma sqrt(dt) z_j``,

``X_j = log(S_j / S_0)``, ``z_j`` i.i.d. N(0, 1), so every monitoring price
``S_j = S_0 exp(X_j)`` at ``t_j = j dt``, ``j = 1..n``, has the exact
distribution (no discretisation bias for the European or Asian payoffs).

Chunks and reproducibility
--------------------------
Paths are simulated in chunks of :func:`chunk_shape` ``(steps per block,
paths per chunk)``, chosen from K and ``num_steps`` only, so that every live
array of a chunk holds at most about :data:`MC_CHUNK_VALUES` float64 values
(64 MiB): memory stays bounded for 1e8 or 1e10 paths. The normals of block
``b`` of chunk ``c`` are drawn by the backend's generator seeded with
``SeedSequence([seed, c, b]).generate_state(1, uint64)[0]``: the same seed,
sizes and backend give the same numbers; different backends use different
generators and agree only within Monte Carlo error.

Estimators
----------
The price is the mean of the discounted payoffs and its standard error the
sample standard deviation (ddof=1) over sqrt(number of samples). A sample is
one path, or with antithetic variates the average of the pair ``(z, -z)``
(Glasserman 2003, sec. 4.2); each pair counts as two paths. Per-chunk means
and centred (co)moments are merged with Chan, Golub and LeVeque's pairwise
update, so the variance does not suffer the cancellation of raw sums of
squares.

References
----------
Glasserman, P. (2003). *Monte Carlo Methods in Financial Engineering*.
    Springer (sec. 3.2 GBM paths; 4.1 control variates; 4.2 antithetic
    variates; 6.4 barrier corrections; 7.2 pathwise derivatives).
Kemna, A. G. Z., Vorst, A. C. F. (1990). A pricing method for options based
    on average asset values. Journal of Banking & Finance 14(1), 113-129.
Broadie, M., Glasserman, P., Kou, S. (1997). A continuity correction for
    discrete barrier options. Mathematical Finance 7(4), 325-349.
Broadie, M., Glasserman, P. (1996). Estimating security price derivatives
    using simulation. Management Science 42(2), 269-285.
Chan, T. F., Golub, G. H., LeVeque, R. J. (1979). Updating formulae and a
    pairwise algorithm for computing sample variances. Stanford CS-79-773.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

from tickwire.engines._common import check_stop, contract_vectors
from tickwire.routing.array_ops import array_ops
from tickwire.routing.backends import Backend, MlxBackend
from tickwire.routing.operation import Operation, Transfer, register

#: A chunk is sized so that each of its live (steps, paths, K) arrays holds
#: at most about this many float64 values (64 MiB).
MC_CHUNK_VALUES = 1 << 23
#: Fewest paths per chunk before the steps of a path are split into blocks.
MC_MIN_CHUNK_PATHS = 1024
#: Broadie-Glasserman-Kou constant ``-zeta(1/2) / sqrt(2 pi)`` (about 0.5826).
BGK_BETA = 0.5825971579390106

PAYOFFS = ("european", "asian_arithmetic", "barrier")
BARRIER_TYPES = ("up_and_out", "up_and_in", "down_and_out", "down_and_in")
MONITORINGS = ("discrete", "continuous")


@dataclass(frozen=True)
class MonteCarloResult:
    """Monte Carlo estimates for K contracts.

    Attributes
    ----------
    price, standard_error : (K,) ndarray of float64
        Discounted mean payoff, in the currency of the spot, and its standard
        error.
    delta, delta_standard_error : (K,) ndarray of float64 or None
        Pathwise dPrice/dSpot and its standard error; None unless Greeks were
        requested.
    vega, vega_standard_error : (K,) ndarray of float64 or None
        Pathwise dPrice/dVolatility per unit of volatility (1.0 = 100 vol
        points) and its standard error; None unless Greeks were requested.
    num_paths : int
        Paths simulated per contract; an antithetic pair counts as two.
    """

    price: np.ndarray
    standard_error: np.ndarray
    delta: np.ndarray | None
    delta_standard_error: np.ndarray | None
    vega: np.ndarray | None
    vega_standard_error: np.ndarray | None
    num_paths: int


# --------------------------------------------------------------------------
# closed forms and small pure helpers
# --------------------------------------------------------------------------
def geometric_asian_price(
    option_type: np.ndarray,
    spot: np.ndarray,
    strike: np.ndarray,
    time_to_expiry: np.ndarray,
    rate: np.ndarray,
    dividend_yield: np.ndarray,
    volatility: np.ndarray,
    num_steps: int,
) -> np.ndarray:
    """Closed-form price of the discretely monitored geometric-average Asian.

    The average is ``G = (prod_j S_{t_j})^(1/n)`` over ``t_j = j T / n``,
    ``j = 1..n`` (spot excluded), the payoff ``max(phi (G - K), 0)`` with
    ``phi = +1`` for a call and ``-1`` for a put. Under GBM ``log G`` is normal
    with mean ``log S_0 + (r - q - sigma^2/2) T (n+1) / (2n)`` and variance
    ``sigma^2 T (n+1)(2n+1) / (6 n^2)``, so the price is Black's formula on
    that lognormal (Kemna and Vorst 1990, discrete version).

    Parameters
    ----------
    option_type : (K,) ndarray of int
        1 call, 2 put.
    spot, strike : (K,) ndarray of float64
        Currency units, > 0.
    time_to_expiry : (K,) ndarray of float64
        Years, > 0.
    rate, dividend_yield : (K,) ndarray of float64
        Continuously compounded, per year.
    volatility : (K,) ndarray of float64
        Per sqrt(year), > 0.
    num_steps : int
        Number n of averaging dates, >= 1.

    Returns
    -------
    (K,) ndarray of float64
        Present value.

    References
    ----------
    Kemna, A. G. Z., Vorst, A. C. F. (1990). Journal of Banking & Finance 14(1).
    Glasserman, P. (2003). Monte Carlo Methods in Financial Engineering,
    sec. 4.1.2. QuantLib's ``AnalyticDiscreteGeometricAveragePriceAsianEngine``.

    Examples
    --------
    >>> import numpy as np
    >>> p = geometric_asian_price(np.array([1]), np.array([100.0]), np.array([100.0]),
    ...                           np.array([1.0]), np.array([0.05]), np.array([0.0]),
    ...                           np.array([0.2]), 12)
    >>> round(float(p[0]), 4)
    5.9402
    """
    n = float(num_steps)
    phi = np.where(np.asarray(option_type) == 1, 1.0, -1.0)
    s, k, t = (np.asarray(a, dtype=np.float64) for a in (spot, strike, time_to_expiry))
    r, q, sig = (np.asarray(a, dtype=np.float64) for a in (rate, dividend_yield, volatility))
    mean_log = (r - q - 0.5 * sig * sig) * t * (n + 1.0) / (2.0 * n)
    var_log = sig * sig * t * (n + 1.0) * (2.0 * n + 1.0) / (6.0 * n * n)
    sd_log = np.sqrt(var_log)
    forward = s * np.exp(mean_log + 0.5 * var_log)
    d1 = (np.log(forward / k) + 0.5 * var_log) / sd_log
    d2 = d1 - sd_log
    undiscounted = phi * (forward * special.ndtr(phi * d1) - k * special.ndtr(phi * d2))
    return np.exp(-r * t) * undiscounted


def chunk_shape(num_contracts: int, num_steps: int) -> tuple[int, int]:
    """``(steps per block, paths per chunk)`` for K contracts and n steps.

    A chunk of P paths is simulated in blocks of B steps; each live
    (B, P, K) array holds at most about :data:`MC_CHUNK_VALUES` values. While
    a whole path fits with at least :data:`MC_MIN_CHUNK_PATHS` paths, B = n;
    otherwise P is at most :data:`MC_MIN_CHUNK_PATHS` and B is cut to fit.
    Depends on K and n only, so the draws are reproducible.
    """
    k, n = max(int(num_contracts), 1), max(int(num_steps), 1)
    if k * n * MC_MIN_CHUNK_PATHS <= MC_CHUNK_VALUES:
        return n, MC_CHUNK_VALUES // (k * n)
    paths = max(1, min(MC_MIN_CHUNK_PATHS, MC_CHUNK_VALUES // k))
    return max(1, min(n, MC_CHUNK_VALUES // (k * paths))), paths


def _block_seed(seed: int, chunk: int, block: int) -> int:
    return int(np.random.SeedSequence([seed, chunk, block]).generate_state(1, np.uint64)[0])


class _Moments:
    """Running count, means and centred (co)moments of m quantities per contract.

    Chunks are merged with the pairwise update of Chan, Golub and LeVeque
    (1979): ``M_ab = M_ab' + M_ab'' + d_a d_b n' n'' / n`` with ``d`` the
    difference of the chunk means.
    """

    def __init__(self, num_quantities: int, num_contracts: int, pairs: list[tuple[int, int]]):
        self.count = 0
        self.mean = np.zeros((num_quantities, num_contracts))
        self.m2 = np.zeros((num_quantities, num_contracts))
        self.pairs = pairs
        self.cross = np.zeros((len(pairs), num_contracts))

    def merge(self, count: int, mean: np.ndarray, m2: np.ndarray, cross: np.ndarray) -> None:
        n_a, n_b = self.count, count
        n = n_a + n_b
        d = mean - self.mean
        w = n_a * n_b / n
        self.mean = self.mean + d * (n_b / n)
        self.m2 = self.m2 + m2 + d * d * w
        for i, (a, b) in enumerate(self.pairs):
            self.cross[i] = self.cross[i] + cross[i] + d[a] * d[b] * w
        self.count = n


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------
def _validate(
    option_type: Any,
    spot: Any,
    strike: Any,
    time_to_expiry: Any,
    rate: Any,
    dividend_yield: Any,
    volatility: Any,
    payoff: str,
    num_paths: int,
    num_steps: int,
    seed: int,
    control_variate: bool,
    greeks: bool,
    barrier_type: str | None,
    barrier: Any,
    monitoring: str | None,
) -> dict[str, np.ndarray]:
    if payoff not in PAYOFFS:
        raise ValueError(f"payoff: must be one of {', '.join(PAYOFFS)}, got {payoff!r}")
    if int(num_paths) != num_paths or num_paths < 1:
        raise ValueError(f"num_paths: must be an integer >= 1, got {num_paths!r}")
    if int(num_steps) != num_steps or num_steps < 1:
        raise ValueError(f"num_steps: must be an integer >= 1, got {num_steps!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed: must be a non-negative integer, got {seed!r}")
    if control_variate and payoff != "asian_arithmetic":
        raise ValueError("control_variate: only available for PAYOFF_ASIAN_ARITHMETIC")
    if greeks and payoff == "barrier":
        raise ValueError(
            "greeks: pathwise Greeks need a continuous payoff; not available for PAYOFF_BARRIER"
        )
    extra: dict[str, Any] = {}
    if payoff == "barrier":
        if barrier is None:
            raise ValueError("barrier: required for PAYOFF_BARRIER")
        if barrier_type not in BARRIER_TYPES:
            raise ValueError(
                f"barrier_type: required for PAYOFF_BARRIER, one of {', '.join(BARRIER_TYPES)}; "
                f"got {barrier_type!r}"
            )
        if monitoring not in MONITORINGS:
            raise ValueError(
                f"monitoring: required for PAYOFF_BARRIER, one of {', '.join(MONITORINGS)}; "
                f"got {monitoring!r}"
            )
        extra["barrier"] = barrier
    elif barrier is not None or barrier_type is not None or monitoring is not None:
        raise ValueError("barrier: only allowed with PAYOFF_BARRIER")

    arrays = contract_vectors(
        option_type, spot, strike, time_to_expiry, rate, dividend_yield, volatility, extra=extra
    )
    if "barrier" in arrays and not (arrays["barrier"] > 0.0).all():
        raise ValueError("barrier: must be > 0")
    # Fresh writable (K,) copies: torch refuses read-only buffers (decoded requests).
    return {name: np.array(a) for name, a in arrays.items()}


# --------------------------------------------------------------------------
# the engine
# --------------------------------------------------------------------------
def monte_carlo_price(
    backend: Backend,
    option_type: np.ndarray,
    spot: np.ndarray,
    strike: np.ndarray,
    time_to_expiry: np.ndarray,
    rate: np.ndarray,
    dividend_yield: np.ndarray,
    volatility: np.ndarray,
    payoff: str,
    num_paths: int,
    num_steps: int,
    seed: int = 0,
    antithetic: bool = False,
    control_variate: bool = False,
    greeks: bool = False,
    barrier_type: str | None = None,
    barrier: np.ndarray | None = None,
    monitoring: str | None = None,
    stop: Callable[[], bool] | None = None,
) -> MonteCarloResult:
    """Monte Carlo prices, standard errors and pathwise Greeks under GBM.

    Parameters
    ----------
    backend : Backend
        Where the paths are simulated.
    option_type : (K,) ndarray of int
        1 call, 2 put.
    spot, strike : (K,) ndarray of float64
        Currency units, > 0.
    time_to_expiry : (K,) ndarray of float64
        Years, > 0.
    rate, dividend_yield : (K,) ndarray of float64
        Continuously compounded, per year.
    volatility : (K,) ndarray of float64
        Per sqrt(year), > 0.
    payoff : {"european", "asian_arithmetic", "barrier"}
        ``max(phi (S_T - K), 0)``; ``max(phi (A - K), 0)`` with A the
        arithmetic mean of ``S_{t_1}, ..., S_{t_n}`` (spot excluded); or the
        European payoff knocked in or out by ``barrier``.
    num_paths : int
        Paths per contract, >= 1. With ``antithetic`` an odd count is rounded
        up to whole pairs (``MonteCarloResult.num_paths`` tells).
    num_steps : int
        Time steps n per path, >= 1; ``dt = time_to_expiry / n``.
    seed : int
        Non-negative; the same seed, sizes and backend give the same result.
    antithetic : bool
        Simulate pairs ``(z, -z)``; the standard error is taken over the pair
        averages.
    control_variate : bool
        Asian only: use the discretely monitored geometric-average Asian
        option (closed form, :func:`geometric_asian_price`) as control variate,
        ``Y - beta (C - E[C])``, with the optimal ``beta = Cov(Y, C) / Var(C)``
        estimated from the same paths (Glasserman 2003, sec. 4.1; the bias
        this causes is O(1/num_paths)). The Greeks do not use the control.
    greeks : bool
        Also estimate pathwise delta and vega (European and Asian only):
        ``delta = e^{-rT} 1{ITM} phi A / S_0`` and
        ``vega = e^{-rT} 1{ITM} phi (1/n) sum_j S_j (W_{t_j} - sigma t_j)``
        (``S_T`` and ``n = 1`` for the European payoff; Broadie and Glasserman
        1996).
    barrier_type : {"up_and_out", "up_and_in", "down_and_out", "down_and_in"}, optional
        Required for the barrier payoff; a touch (``S >= H`` up, ``S <= H``
        down) knocks the option out or in. No rebate.
    barrier : (K,) ndarray of float64, optional
        Barrier level H in currency units, > 0; required for the barrier payoff.
    monitoring : {"discrete", "continuous"}, optional
        Required for the barrier payoff. ``"discrete"``: the barrier is watched
        at ``t_1, ..., t_n`` only. ``"continuous"``: the Broadie, Glasserman
        and Kou (1997) continuity correction. Their result, "a discretely
        monitored barrier H prices like a continuous one at
        ``H exp(+-BGK_BETA sigma sqrt(dt))``" (shifted away from the spot),
        read the other way round: the discrete simulation is run against the
        barrier moved toward the spot, ``H exp(-BGK_BETA sigma sqrt(dt))``
        for up barriers and ``H exp(+BGK_BETA sigma sqrt(dt))`` for down
        barriers; the error is o(sqrt(dt)). A spot already at or through the
        barrier knocks at t = 0.
    stop : callable () -> bool, optional
        Checked between blocks of draws; True stops the computation.

    Returns
    -------
    MonteCarloResult
        (K,) float64 arrays; Greek fields None unless ``greeks``.

    Raises
    ------
    ValueError
        An invalid argument or combination, named in the message
        (``"barrier: required for PAYOFF_BARRIER"``), or simulated prices that
        overflow float64.
    TimeoutError
        ``stop()`` returned True (deadline passed, caller gone).

    References
    ----------
    Glasserman, P. (2003). Monte Carlo Methods in Financial Engineering. Springer.
    Kemna, A. G. Z., Vorst, A. C. F. (1990). Journal of Banking & Finance 14(1).
    Broadie, M., Glasserman, P., Kou, S. (1997). Mathematical Finance 7(4).
    Broadie, M., Glasserman, P. (1996). Management Science 42(2).

    Examples
    --------
    >>> import numpy as np
    >>> from tickwire.routing.backends import NumpyBackend
    >>> one = lambda x: np.array([x])
    >>> res = monte_carlo_price(NumpyBackend(), one(1), one(100.0), one(100.0), one(1.0),
    ...                         one(0.05), one(0.0), one(0.2), "european",
    ...                         num_paths=200_000, num_steps=1, seed=1)
    >>> bool(abs(res.price[0] - 10.4506) < 4 * res.standard_error[0])
    True
    """
    a = _validate(
        option_type,
        spot,
        strike,
        time_to_expiry,
        rate,
        dividend_yield,
        volatility,
        payoff,
        num_paths,
        num_steps,
        seed,
        control_variate,
        greeks,
        barrier_type,
        barrier,
        monitoring,
    )
    ops = array_ops(backend)
    plan = _plan(ops, a, payoff, int(num_steps), control_variate, greeks, barrier_type, monitoring)
    k, n, seed = plan.k, plan.n, int(seed)
    pairs = [(0, 1)] if control_variate else []
    moments = _Moments(1 + int(control_variate) + 2 * int(greeks), k, pairs)
    block_steps, chunk_units = chunk_shape(k, n)
    blocks = [(b0, min(b0 + block_steps, n)) for b0 in range(0, n, block_steps)]
    signs = (1.0, -1.0) if antithetic else (1.0,)
    total_units = -(-int(num_paths) // 2) if antithetic else int(num_paths)

    with _device_scope(backend):
        for chunk, start in enumerate(range(0, total_units, chunk_units)):
            units = min(chunk_units, total_units - start)
            states: list[dict[str, Any]] = [{"x": 0.0} for _ in signs]
            for block, (b0, b1) in enumerate(blocks):
                check_stop(stop)
                z = ops.standard_normal((b1 - b0, units, k), _block_seed(seed, chunk, block))
                for sign, state in zip(signs, states, strict=True):
                    _advance(ops, plan, state, z, sign, b0)
                del z
                if len(blocks) > 1:
                    _materialize(backend, states)
            check_stop(stop)
            samples = [_path_samples(ops, plan, state) for state in states]
            if antithetic:
                rows = [0.5 * (p + m) for p, m in zip(*samples, strict=True)]
            else:
                rows = samples[0]
            moments.merge(units, *_chunk_moments(ops, rows, pairs, units))

    return _finish(moments, control_variate, greeks, a, n, total_units * len(signs))


@dataclass(frozen=True)
class _Plan:
    """Per-call constants, as (K,) arrays on the device unless noted.

    ``drift`` and ``vol`` are the per-step mean and standard deviation of the
    log price; ``vega_drift`` is ``(r - q + sigma^2/2) dt``, so that
    ``dX_j/dsigma = (X_j - j vega_drift) / sigma``; ``vega_t`` maps a block's
    first step to its (B, 1, K) ``j vega_drift`` (Asian Greeks only);
    ``log_barrier`` is ``log(H_eff / S_0)``, +-inf where a continuously
    monitored barrier is already touched at t = 0.
    """

    payoff: str
    k: int
    n: int
    control_variate: bool
    greeks: bool
    up: bool
    knock_in: bool
    drift: Any
    vol: Any
    phi: Any
    spot: Any
    strike: Any
    discount: Any
    sigma: Any
    vega_drift_total: Any
    vega_t: dict[int, Any]
    log_barrier: Any


def _plan(
    ops: Any,
    a: dict[str, np.ndarray],
    payoff: str,
    n: int,
    control_variate: bool,
    greeks: bool,
    barrier_type: str | None,
    monitoring: str | None,
) -> _Plan:
    """Move the per-contract constants of the simulation to the device."""
    k = a["spot"].shape[0]
    s0, r, q, sig = a["spot"], a["rate"], a["dividend_yield"], a["volatility"]
    t = a["time_to_expiry"]
    dt = t / n
    vega_drift = (r - q + 0.5 * sig * sig) * dt
    up = barrier_type is not None and barrier_type.startswith("up")
    log_barrier = None
    if payoff == "barrier":
        h = a["barrier"]
        log_h = np.log(h / s0)
        if monitoring == "continuous":
            # Continuous = discrete with the barrier moved toward the spot.
            shift = BGK_BETA * sig * np.sqrt(dt)
            log_h = log_h + (-shift if up else shift)
            # A spot at or through the (unshifted) barrier knocks at t = 0.
            through = (s0 >= h) if up else (s0 <= h)
            log_h = np.where(through, -np.inf if up else np.inf, log_h)
        log_barrier = ops.asarray(log_h)
    block_steps = chunk_shape(k, n)[0]
    vega_t = {}
    if greeks and payoff == "asian_arithmetic":
        for b0 in range(0, n, block_steps):
            j = np.arange(b0 + 1, min(b0 + block_steps, n) + 1, dtype=np.float64)
            vega_t[b0] = ops.asarray(j[:, None, None] * vega_drift[None, None, :])
    return _Plan(
        payoff=payoff,
        k=k,
        n=n,
        control_variate=control_variate,
        greeks=greeks,
        up=up,
        knock_in=barrier_type is not None and barrier_type.endswith("_in"),
        drift=ops.asarray((r - q - 0.5 * sig * sig) * dt),
        vol=ops.asarray(sig * np.sqrt(dt)),
        phi=ops.asarray(np.where(a["option_type"] == 1.0, 1.0, -1.0)),
        spot=ops.asarray(s0),
        strike=ops.asarray(a["strike"]),
        discount=ops.asarray(np.exp(-r * t)),
        sigma=ops.asarray(sig),
        vega_drift_total=ops.asarray(vega_drift * n),
        vega_t=vega_t,
        log_barrier=log_barrier,
    )


def _advance(ops: Any, plan: _Plan, state: dict[str, Any], z: Any, sign: float, b0: int) -> None:
    """Advance one sign's paths over a (B, P, K) block of normals, in place in ``state``.

    ``state["x"]`` is the (P, K) log price ``X`` at the block's end; the
    running sums (``sum_s`` of ``S_j / S_0``, ``sum_x`` of ``X_j``,
    ``sum_sw`` of ``S_j / S_0 * dX_j/dsigma * sigma``) or the running
    extreme ``ext`` of ``X_j`` are what the payoff needs.
    """
    steps = z.shape[0]
    if plan.payoff == "european":  # only X_T matters: sum the block's normals
        zsum = z[0] if steps == 1 else ops.sum(z, axis=0)
        state["x"] = state["x"] + (plan.drift * float(steps) + (plan.vol * sign) * zsum)
        return
    x = ops.cumsum(plan.drift + (plan.vol * sign) * z, axis=0) + state["x"]
    state["x"] = x[-1]
    if plan.payoff == "asian_arithmetic":
        s = ops.exp(x)
        _accumulate(state, "sum_s", ops.sum(s, axis=0))
        if plan.control_variate:
            _accumulate(state, "sum_x", ops.sum(x, axis=0))
        if plan.greeks:
            _accumulate(state, "sum_sw", ops.sum(s * (x - plan.vega_t[b0]), axis=0))
    elif plan.up:
        m = ops.max(x, axis=0)
        state["ext"] = m if "ext" not in state else ops.maximum(state["ext"], m)
    else:
        m = ops.min(x, axis=0)
        state["ext"] = m if "ext" not in state else ops.minimum(state["ext"], m)


def _path_samples(ops: Any, plan: _Plan, state: dict[str, Any]) -> list[Any]:
    """(P, K) discounted payoff, then the control's payoff and delta, vega if asked."""
    n = plan.n
    if plan.payoff == "asian_arithmetic":
        level = plan.spot * state["sum_s"] * (1.0 / n)
    else:
        level = plan.spot * ops.exp(state["x"])
    intrinsic = plan.phi * (level - plan.strike)
    value = plan.discount * ops.maximum(intrinsic, 0.0)
    if plan.payoff == "barrier":
        ext, h = state["ext"], plan.log_barrier
        if plan.up:
            alive = ext >= h if plan.knock_in else ext < h
        else:
            alive = ext <= h if plan.knock_in else ext > h
        value = value * alive
    row = [value]
    if plan.control_variate:
        geo = plan.spot * ops.exp(state["sum_x"] * (1.0 / n))
        row.append(plan.discount * ops.maximum(plan.phi * (geo - plan.strike), 0.0))
    if plan.greeks:
        weight = (intrinsic > 0.0) * (plan.phi * plan.discount)
        row.append(weight * level / plan.spot)
        if plan.payoff == "asian_arithmetic":
            dlevel = state["sum_sw"] * (plan.spot / (n * plan.sigma))
        else:
            dlevel = level * (state["x"] - plan.vega_drift_total) / plan.sigma
        row.append(weight * dlevel)
    return row


def _device_scope(backend: Backend) -> Any:
    """MLX computes float64 on its CPU stream only; elsewhere a no-op context."""
    if isinstance(backend, MlxBackend):
        import mlx.core as mx

        return mx.stream(mx.cpu)
    return contextlib.nullcontext()


def _materialize(backend: Backend, states: list[dict[str, Any]]) -> None:
    """Evaluate MLX's lazy state so that a block's normals are freed before the next."""
    if isinstance(backend, MlxBackend):
        import mlx.core as mx

        mx.eval([v for state in states for v in state.values() if not isinstance(v, float)])


def _accumulate(state: dict[str, Any], key: str, value: Any) -> None:
    state[key] = value if key not in state else state[key] + value


def _chunk_moments(
    ops: Any, rows: list[Any], pairs: list[tuple[int, int]], units: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means, centred second moments and cross moments over one chunk, on the host."""
    means = [ops.sum(v, axis=0) * (1.0 / units) for v in rows]
    devs = [v - m for v, m in zip(rows, means, strict=True)]
    out = means + [ops.sum(d * d, axis=0) for d in devs]
    out += [ops.sum(devs[i] * devs[j], axis=0) for i, j in pairs]
    host = ops.to_numpy(ops.stack(out, axis=0))
    m = len(rows)
    return host[:m], host[m : 2 * m], host[2 * m :]


def _finish(
    moments: _Moments,
    control_variate: bool,
    greeks: bool,
    a: dict[str, np.ndarray],
    num_steps: int,
    num_paths: int,
) -> MonteCarloResult:
    """Prices, standard errors and Greeks from the merged moments."""
    count = moments.count
    if not (np.isfinite(moments.mean).all() and np.isfinite(moments.m2).all()):
        raise ValueError("volatility: simulated prices overflow float64; scale the inputs down")
    ddof = max(count - 1, 1)

    def standard_error(m2: np.ndarray, dof: int) -> np.ndarray:
        if count < 2:
            return np.full_like(m2, np.nan)
        return np.sqrt(np.maximum(m2, 0.0) / dof / count)

    price = moments.mean[0].copy()
    se = standard_error(moments.m2[0], ddof)
    if control_variate:
        m_cc, m_yc = moments.m2[1], moments.cross[0]
        beta = np.divide(m_yc, m_cc, out=np.zeros_like(m_cc), where=m_cc > 0.0)
        exact = geometric_asian_price(
            a["option_type"],
            a["spot"],
            a["strike"],
            a["time_to_expiry"],
            a["rate"],
            a["dividend_yield"],
            a["volatility"],
            num_steps,
        )
        price = price - beta * (moments.mean[1] - exact)
        residual = moments.m2[0] - beta * m_yc  # sum of (Y - beta C - mean)^2
        se = standard_error(residual, max(count - 2, 1))
    delta = delta_se = vega = vega_se = None
    if greeks:
        g = 2 if control_variate else 1
        delta, vega = moments.mean[g].copy(), moments.mean[g + 1].copy()
        delta_se = standard_error(moments.m2[g], ddof)
        vega_se = standard_error(moments.m2[g + 1], ddof)
    return MonteCarloResult(price, se, delta, delta_se, vega, vega_se, int(num_paths))


# --------------------------------------------------------------------------
# routing declaration
# --------------------------------------------------------------------------
def _mc_work(inputs: Any) -> float:
    k = np.atleast_1d(np.asarray(inputs["spot"])).shape[0]
    return float(k) * float(inputs["num_paths"]) * float(inputs["num_steps"])


def _mc_transfers(inputs: Any) -> list[Transfer]:
    return []  # only (K,) parameter vectors move; the draws are made on the device


def _sample_mc(size: int, rng: np.random.Generator) -> dict[str, Any]:
    k = 4
    steps = 1 if size < 1_000_000 else 16
    return {
        "option_type": np.array([1, 2, 1, 2]),
        "spot": rng.uniform(90.0, 110.0, k),
        "strike": np.full(k, 100.0),
        "time_to_expiry": rng.uniform(0.25, 2.0, k),
        "rate": np.full(k, 0.03),
        "dividend_yield": np.full(k, 0.01),
        "volatility": rng.uniform(0.15, 0.4, k),
        "payoff": "european" if steps == 1 else "asian_arithmetic",
        "num_paths": max(size // (k * steps), 1000),
        "num_steps": steps,
        "seed": 7,
    }


MONTE_CARLO_PRICE = register(
    Operation(
        "pricing.monte_carlo",
        monte_carlo_price,
        _mc_work,
        _mc_transfers,
        _sample_mc,
        calibration_sizes=(100_000, 4_000_000, 40_000_000),
    )
)

"""American vanilla options under Black-Scholes-Merton: binomial trees
(Cox-Ross-Rubinstein, Leisen-Reimer) and Longstaff-Schwartz least-squares
Monte Carlo.

The engine is written once against the NumPy-style namespace
``ops = array_ops(backend)`` and runs on every backend (numpy, torch-cpu,
torch-cuda, mlx). Per-contract tree and regression parameters, (K,) vectors,
are computed in float64 NumPy on the host; the O(K n^2) backward induction
and the O(K paths steps) simulation run on the backend.

Model
-----
Under the risk-neutral measure ``dS = (r - q) S dt + sigma S dW`` with
constant rate ``r``, dividend yield ``q`` (so the carry is ``b = r - q``) and
volatility ``sigma``. The option pays ``max(phi (S - K), 0)`` when exercised,
``phi = +1`` for a call and ``-1`` for a put, at any time in ``[0, T]``.

Binomial trees
--------------
With ``dt = T / n`` every node at step ``i`` and height ``j`` carries the
price ``S_0 u^j d^(i-j)``; values are rolled back as
``V_i = max(e^(-r dt) (p V_{i+1}[j+1] + (1-p) V_{i+1}[j]), payoff(S_i))``
down to the root (early exercise at every node, the root included).

* CRR (Cox, Ross and Rubinstein 1979): ``u = e^(sigma sqrt(dt))``,
  ``d = 1/u``, ``p = (e^(b dt) - d) / (u - d)``, so the discounted stock is a
  martingale on the tree. QuantLib's ``CoxRossRubinstein`` tree uses the
  first-order ``p = 1/2 + (b - sigma^2/2) sqrt(dt) / (2 sigma)`` instead;
  the two agree to O(dt^(3/2)) per step and their prices to O(1/n).
  ``p`` must lie in [0, 1], i.e. ``|b| sqrt(dt) <= sigma`` (up to
  O(dt^(3/2))); otherwise ``ValueError`` asks for more steps.
* Leisen-Reimer (1996), with the Peizer-Pratt method-2 inversion ``h``:
  ``p = h(d2)``, ``p' = h(d1)``, ``u = e^(b dt) p' / p``,
  ``d = (e^(b dt) - p u) / (1 - p)``, centred on the strike. The inversion is
  defined for odd ``n`` only: an even ``num_steps`` is bumped up by one (as
  QuantLib's ``LeisenReimer`` tree does). Converges as O(1/n^2) for European
  options and smoothly (no odd-even oscillation) for American ones.

Node prices are ``S_0 e^(i a) e^(m h)`` with ``a`` and ``h`` the mean and
half-difference of ``log u`` and ``log d`` and ``m = 2j - i``: both factors
are exponentials tabulated on the host in float64, so no rounding
accumulates along the steps (the root is ``S_0`` exactly) and the backend
only multiplies, adds and takes maxima -- exact float64 on every backend,
MLX included (whose float64 ``exp`` is good to about 4e-7 only). Contracts
are processed in chunks of :func:`tree_chunk_contracts` so that every live
(chunk, 2n + 1) array holds at most :data:`TREE_CHUNK_VALUES` values.

Longstaff-Schwartz
------------------
The option is treated as Bermudan, exercisable at ``t_i = i T / N``,
``i = 1..N`` (``N = num_steps``), and at ``t = 0``; as ``N`` grows it tends
to the American price from below. Two independent sets of paths are used:

1. Training (regression) set, ``min(num_paths, LSM_MAX_TRAINING_PATHS)``
   paths, simulated *backwards in time* with the Brownian bridge (exact for
   GBM, O(paths) memory whatever N is). At each date from ``N - 1`` down to
   1 the discounted realised cash flows of the in-the-money paths are
   regressed on ``1, y, y^2, y^3``, ``y = (S/K - 1) / (sigma sqrt(t_i))``
   (moneyness, centred on the strike and scaled to O(1) so that the normal
   equations stay well conditioned): the backend reduces the paths to power
   sums and the host solves the 4 x 4 normal equations. Dates with fewer
   than :data:`LSM_MIN_ITM_PATHS` in-the-money paths are not exercised.
2. Pricing set, ``num_paths`` independent paths simulated forward with exact
   log steps, each exercised at the first date where the payoff exceeds the
   hurdle (the payoff at ``T`` otherwise).

The exercise rule (both sets) is ``payoff > max(fitted continuation,
phi (S e^(-q tau) - K e^(-r tau)), 0)`` with ``tau = T - t_i``: the second
term, the parity lower bound of the European value, is a lower bound of the
continuation value, so the rule never exercises where exercise is surely
sub-optimal (a call without dividends is never exercised early and prices
as its European).

The price is ``max(payoff(S_0), mean of the discounted pricing cash flows)``
and the standard error that of the mean (ddof=1; zero where immediate
exercise wins). Because the exercise policy is fitted on paths independent
of the pricing paths, the estimate is *low biased*: its expectation is the
value of a feasible (sub-optimal) exercise policy for the Bermudan, which is
at most the Bermudan and the American price. The bias is not included in
``standard_error``. Measured over 40 seeds with 50 dates and 100,000 paths
against 3,001-step trees (S = K = 100, T = 1: a put with r = 5%, sigma =
20%, and a call with r = 3%, q = 7%, sigma = 25%; and Longstaff and
Schwartz's put S = 36, K = 40, r = 6%, sigma = 20%), the Bermudan is
0.14-0.19% below the American and the fitted policy a further 0.1-0.25%
below the Bermudan (about 0.1% with 400,000 paths, whose regression uses
262,144 paths).

Memory and reproducibility: all contracts see the same Brownian paths
(common random numbers), scaled to each contract's ``T`` by Brownian scaling
on the unit interval, so a contract's price does not depend on the other
contracts of the call. Paths are held for one date at a time; contracts are
batched so that each live (batch, paths) array holds at most
:data:`LSM_CHUNK_VALUES` values, and pricing paths come in blocks of
:data:`LSM_BLOCK_PATHS`. The normals of training date-chunk ``c`` are drawn by
the backend's generator seeded with ``SeedSequence([seed, 0, c])`` and those
of pricing block ``b``, date-chunk ``c`` with ``SeedSequence([seed, 1, b, c])``
(first 64-bit word): the same seed, sizes and backend give the same numbers;
backends use different generators and agree within Monte Carlo error.
(On MLX the path prices use MLX's float64 ``exp``, good to about 4e-7
relative: far below the Monte Carlo error.)

References
----------
Cox, J. C., Ross, S. A., Rubinstein, M. (1979). Option pricing: a simplified
    approach. Journal of Financial Economics 7(3), 229-263.
Leisen, D. P. J., Reimer, M. (1996). Binomial models for option valuation -
    examining and improving convergence. Applied Mathematical Finance 3(4),
    319-346.
Longstaff, F. A., Schwartz, E. S. (2001). Valuing American options by
    simulation: a simple least-squares approach. Review of Financial Studies
    14(1), 113-147.
Glasserman, P. (2003). *Monte Carlo Methods in Financial Engineering*.
    Springer (sec. 3.1 Brownian bridge; 8.6 regression-based methods and
    their low bias).
QuantLib, ``BinomialVanillaEngine`` with the ``CoxRossRubinstein`` and
    ``LeisenReimer`` trees (https://www.quantlib.org).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tickwire.engines._common import check_stop, contract_vectors
from tickwire.routing.array_ops import MlxOps, NumpyOps, array_ops
from tickwire.routing.backends import Backend
from tickwire.routing.operation import Operation, Transfer, register

METHODS = ("binomial_crr", "binomial_leisen_reimer", "longstaff_schwartz")
#: Each live (contracts, 2n + 1) tree array holds at most this many float64
#: values (32 MiB); a chunk holds at least one contract.
TREE_CHUNK_VALUES = 1 << 22
#: Each live (contracts, paths) Longstaff-Schwartz array holds at most about
#: this many float64 values (8 MiB; about 20 are live at once).
LSM_CHUNK_VALUES = 1 << 20
#: Paths per pricing block, and the cap on the regression (training) paths.
LSM_BLOCK_PATHS = 1 << 18
LSM_MAX_TRAINING_PATHS = 1 << 18
#: Fewest in-the-money training paths for a regression at a date.
LSM_MIN_ITM_PATHS = 8
#: Default number of Longstaff-Schwartz pricing paths.
LSM_DEFAULT_PATHS = 100_000
_BASIS = 4  # 1, y, y^2, y^3
_MAX_LOG_NODE = 700.0  # log of the largest node price a tree may hold


@dataclass(frozen=True)
class AmericanResult:
    """American option values.

    Attributes
    ----------
    price : (K,) ndarray of float64
        Present value per contract, in the currency of ``spot``.
    standard_error : (K,) ndarray of float64
        Monte Carlo standard error of ``price`` (Longstaff-Schwartz); zeros
        for the trees.
    """

    price: np.ndarray
    standard_error: np.ndarray


def _seed(*words: int) -> int:
    return int(np.random.SeedSequence(list(words)).generate_state(1, np.uint64)[0])


def _evaluate(ops: NumpyOps, *arrays: Any) -> None:
    """Materialise MLX's lazy graph (once per step; a no-op elsewhere)."""
    if isinstance(ops, MlxOps):
        import mlx.core as mx

        mx.eval(*arrays)


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
    method: str,
    num_steps: int,
    num_paths: int,
    seed: int,
) -> dict[str, np.ndarray]:
    if method not in METHODS:
        raise ValueError(f"method: must be one of {', '.join(METHODS)}, got {method!r}")
    if int(num_steps) != num_steps or num_steps < 1:
        raise ValueError(f"num_steps: must be an integer >= 1, got {num_steps!r}")
    if method == "longstaff_schwartz":
        if int(num_paths) != num_paths or num_paths < 2:
            raise ValueError(f"num_paths: must be an integer >= 2, got {num_paths!r}")
        if int(seed) != seed or seed < 0:
            raise ValueError(f"seed: must be a non-negative integer, got {seed!r}")
    return contract_vectors(
        option_type,
        spot,
        strike,
        time_to_expiry,
        rate,
        dividend_yield,
        volatility,
        broadcast=False,
    )


# --------------------------------------------------------------------------
# binomial trees
# --------------------------------------------------------------------------
def peizer_pratt_inversion(z: np.ndarray, n: int) -> np.ndarray:
    """Peizer-Pratt method-2 inversion: binomial probability for a normal quantile.

    Parameters
    ----------
    z : (K,) ndarray of float64
        Normal quantiles (``d1`` or ``d2``).
    n : int
        Odd number of tree steps.

    Returns
    -------
    (K,) ndarray of float64 in (0, 1)
        ``1/2 + sign(z) sqrt(1/4 - 1/4 exp(-(z / (n + 1/3 + 0.1/(n+1)))^2
        (n + 1/6)))`` (Leisen and Reimer 1996, eq. 4; zero maps to 1/2).
    """
    t = z / (n + 1.0 / 3.0 + 0.1 / (n + 1.0))
    e = np.exp(-t * t * (n + 1.0 / 6.0))
    return 0.5 + np.where(z > 0.0, 1.0, -1.0) * np.sqrt(0.25 * (1.0 - e))


def tree_parameters(
    method: str,
    spot: np.ndarray,
    strike: np.ndarray,
    time_to_expiry: np.ndarray,
    rate: np.ndarray,
    dividend_yield: np.ndarray,
    volatility: np.ndarray,
    num_steps: int,
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Steps, log up and down factors, up-probability and one-step discount.

    Parameters
    ----------
    method : {"binomial_crr", "binomial_leisen_reimer"}
    spot, strike, time_to_expiry, rate, dividend_yield, volatility : (K,) ndarray
        As in :func:`american_price`.
    num_steps : int
        Requested steps; bumped to the next odd number for Leisen-Reimer.

    Returns
    -------
    n : int
        Steps of the tree.
    log_up, log_down, p, discount : (K,) ndarray of float64
        ``log u``, ``log d``, the risk-neutral up-probability and ``e^(-r dt)``.

    Raises
    ------
    ValueError
        A CRR up-probability outside [0, 1] (too few steps for the carry), or
        node prices beyond float64 (``log S0 + n log u >= 700``).
    """
    n = int(num_steps)
    if method == "binomial_leisen_reimer" and n % 2 == 0:
        n += 1
    dt = time_to_expiry / n
    carry = rate - dividend_yield
    if method == "binomial_crr":
        dx = volatility * np.sqrt(dt)
        # (e^(b dt) - e^(-dx)) / (e^dx - e^(-dx)), without cancellation for small dt
        p = (np.expm1(carry * dt) - np.expm1(-dx)) / (np.expm1(dx) - np.expm1(-dx))
        bad = ~((p >= 0.0) & (p <= 1.0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"num_steps: {n} steps give the CRR tree of contract {i} an up-probability "
                f"{p[i]:.6g} outside [0, 1] (|r - q| sqrt(dt) > volatility); use more steps "
                "or the Leisen-Reimer tree"
            )
        log_up, log_down = dx, -dx
    else:
        sd = volatility * np.sqrt(time_to_expiry)
        d2 = (np.log(spot / strike) + (carry - 0.5 * volatility**2) * time_to_expiry) / sd
        p = peizer_pratt_inversion(d2, n)
        p_dash = peizer_pratt_inversion(d2 + sd, n)
        growth = np.exp(carry * dt)
        up = growth * p_dash / p
        down = (growth - p * up) / (1.0 - p)
        log_up, log_down = np.log(up), np.log(down)
    top = np.log(spot) + n * np.maximum(log_up, 0.0)
    if not (top < _MAX_LOG_NODE).all():
        i = int(np.flatnonzero(~(top < _MAX_LOG_NODE))[0])
        raise ValueError(
            f"volatility: the top node of contract {i}'s {n}-step tree overflows float64 "
            "(volatility * sqrt(time_to_expiry * num_steps) too large); use fewer steps"
        )
    return n, log_up, log_down, p, np.exp(-rate * dt)


def tree_chunk_contracts(num_steps: int) -> int:
    """Contracts per tree chunk: every (chunk, 2n + 1) array within TREE_CHUNK_VALUES."""
    return max(1, TREE_CHUNK_VALUES // (2 * int(num_steps) + 1))


def _tree_rollback(
    ops: NumpyOps,
    phi: np.ndarray,
    spot: np.ndarray,
    strike: np.ndarray,
    n: int,
    log_up: np.ndarray,
    log_down: np.ndarray,
    p: np.ndarray,
    discount: np.ndarray,
    stop: Callable[[], bool] | None,
) -> np.ndarray:
    """Backward induction with early exercise for a chunk of contracts; (Kc,) host array."""

    def col(x: np.ndarray) -> Any:
        return ops.asarray(x[:, None])

    phi_d, strike_d = col(phi), col(strike)
    pu, pd = col(discount * p), col(discount * (1.0 - p))
    # With a = (log u + log d) / 2 and h = (log u - log d) / 2, node j of step
    # i is S0 u^j d^(i-j) = level[:, i] * height[:, n + 2j - i], level_i =
    # S0 e^(i a) and height_m = e^(m h), m = -n..n: every node price takes two
    # roundings (none accumulate over the steps; the root is S0 exactly), and
    # the exponentials run on the host in float64.
    a, h = 0.5 * (log_up + log_down), 0.5 * (log_up - log_down)
    level = ops.asarray(spot[:, None] * np.exp(np.arange(n + 1.0) * a[:, None]))
    height = ops.asarray(np.exp(np.arange(-n, n + 1.0) * h[:, None]))

    def intrinsic(i: int) -> Any:
        return phi_d * (level[:, i : i + 1] * height[:, n - i : n + i + 1 : 2] - strike_d)

    v = ops.maximum(intrinsic(n), 0.0)  # (Kc, n+1) at maturity
    for i in range(n - 1, -1, -1):
        check_stop(stop)
        v = ops.maximum(pu * v[:, 1:] + pd * v[:, :-1], intrinsic(i))
        _evaluate(ops, v)
    # max(continuation, intrinsic) with intrinsic possibly negative: the
    # continuation of a vanilla payoff is >= 0, so the max is the same.
    return ops.to_numpy(v)[:, 0]


def _binomial(
    ops: NumpyOps, a: dict[str, np.ndarray], method: str, num_steps: int, stop: Any
) -> np.ndarray:
    phi = np.where(a["option_type"] == 1.0, 1.0, -1.0)
    n, log_up, log_down, p, disc = tree_parameters(
        method,
        a["spot"],
        a["strike"],
        a["time_to_expiry"],
        a["rate"],
        a["dividend_yield"],
        a["volatility"],
        num_steps,
    )
    k = phi.shape[0]
    price = np.empty(k)
    step = tree_chunk_contracts(n)
    for lo in range(0, k, step):
        sl = slice(lo, min(lo + step, k))
        price[sl] = _tree_rollback(
            ops,
            phi[sl],
            a["spot"][sl],
            a["strike"][sl],
            n,
            log_up[sl],
            log_down[sl],
            p[sl],
            disc[sl],
            stop,
        )
    return price


# --------------------------------------------------------------------------
# Longstaff-Schwartz
# --------------------------------------------------------------------------
def _regression_coefficients(moments: np.ndarray) -> np.ndarray:
    """Least-squares cubic from in-the-money power sums; (Kc, 4) coefficients.

    ``moments[:, k]`` is ``sum w y^k`` for ``k = 0..6`` and
    ``moments[:, 7 + i]`` is ``sum w y^i cash`` for ``i = 0..3`` (``w`` the
    in-the-money indicator), so the normal equations are the Hankel system
    ``sum_j m_(i+j) beta_j = r_i``. Contracts with fewer than
    LSM_MIN_ITM_PATHS in-the-money paths get ``beta_0 = +inf`` (a
    continuation value no payoff beats: no exercise at that date).
    """
    idx = np.arange(_BASIS)
    a = moments[:, idx[:, None] + idx[None, :]]  # (Kc, 4, 4)
    rhs = moments[:, 2 * _BASIS - 1 :]
    beta = np.zeros((moments.shape[0], _BASIS))
    ok = a[:, 0, 0] >= LSM_MIN_ITM_PATHS
    if ok.any():
        try:
            beta[ok] = np.linalg.solve(a[ok], rhs[ok][..., None])[..., 0]
        except np.linalg.LinAlgError:  # degenerate sample (few distinct prices)
            beta[ok] = np.stack(
                [np.linalg.lstsq(m, r, rcond=None)[0] for m, r in zip(a[ok], rhs[ok], strict=True)]
            )
    beta[~ok] = 0.0
    beta[~ok, 0] = np.inf
    return beta


def _continuation(beta: list[Any], y: Any) -> Any:
    """Cubic ``beta_0 + beta_1 y + beta_2 y^2 + beta_3 y^3`` by Horner's rule."""
    return ((beta[3] * y + beta[2]) * y + beta[1]) * y + beta[0]


def lsm_layout(num_paths: int, num_steps: int) -> tuple[int, int, int, int, int]:
    """Sizes of the Longstaff-Schwartz chunks; they depend on paths and steps only.

    Returns
    -------
    training_paths : int
        ``min(num_paths, LSM_MAX_TRAINING_PATHS)``.
    block_paths : int
        Pricing paths per block.
    contracts_per_batch : int
        Contracts simulated together.
    training_dates, block_dates : int
        Dates whose normals are drawn in one call (training, pricing).
    """
    m_train = min(int(num_paths), LSM_MAX_TRAINING_PATHS)
    block = min(int(num_paths), LSM_BLOCK_PATHS)
    batch = max(1, LSM_CHUNK_VALUES // max(m_train, block))
    n = int(num_steps)
    return (
        m_train,
        block,
        batch,
        max(1, min(n, LSM_CHUNK_VALUES // m_train)),
        max(1, min(n, LSM_CHUNK_VALUES // block)),
    )


def _lsm_batch(
    ops: NumpyOps,
    a: dict[str, np.ndarray],
    num_steps: int,
    num_paths: int,
    seed: int,
    stop: Callable[[], bool] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Longstaff-Schwartz for one batch of contracts; (price, standard error)."""
    n = int(num_steps)
    m_train, block, _, train_dates, block_dates = lsm_layout(num_paths, n)
    phi = np.where(a["option_type"] == 1.0, 1.0, -1.0)
    spot, strike, t_exp = a["spot"], a["strike"], a["time_to_expiry"]
    rate, vol = a["rate"], a["volatility"]
    kc = spot.shape[0]
    u = np.arange(n + 1) / n  # dates on the unit interval, t_i = T u_i
    carry = rate - a["dividend_yield"]
    drift = (carry - 0.5 * vol * vol) * t_exp  # (Kc,)
    scale = vol * np.sqrt(t_exp)  # W_t = sqrt(T) B_u

    def col(x: np.ndarray) -> Any:
        return ops.asarray(x[:, None])

    phi_d, strike_d, scale_d = col(phi), col(strike), col(scale)
    log_spot, inv_strike = np.log(spot), col(1.0 / strike)

    def price_at(i: int, b: Any) -> Any:
        """S_{t_i} = S_0 exp((r - q - sigma^2/2) t_i + sigma sqrt(T) B_{u_i})."""
        return ops.exp(col(log_spot + drift * u[i]) + scale_d * b)

    def moneyness(i: int, s: Any) -> Any:
        """Regressor y = (S/K - 1) / (sigma sqrt(t_i)), O(1) near the strike."""
        return (s * inv_strike - 1.0) * col(1.0 / (scale * math.sqrt(u[i])))

    def hurdle(i: int, s: Any) -> Any:
        """max(fitted continuation, phi (S e^(-q tau) - K e^(-r tau)), 0).

        The second term, the parity lower bound of the European value, bounds
        the continuation value from below; the 0 keeps out-of-the-money paths
        alive."""
        tau = t_exp * (1.0 - u[i])
        forward = s * col(np.exp(-a["dividend_yield"] * tau)) - col(strike * np.exp(-rate * tau))
        fitted = _continuation(betas[i], moneyness(i, s))
        return ops.maximum(ops.maximum(fitted, phi_d * forward), 0.0)

    # ---- training: backwards with the Brownian bridge ----------------------
    step_discount = col(np.exp(-rate * t_exp / n))
    betas: list[list[Any] | None] = [None] * (n + 1)
    z: Any = None
    b: Any = None
    cash: Any = None
    for r, i in enumerate(range(n, 0, -1)):
        check_stop(stop)
        if r % train_dates == 0:
            rows = min(train_dates, i)
            z = ops.standard_normal((rows, m_train), _seed(seed, 0, r // train_dates))
        zi = z[r % train_dates]
        # B_1 ~ N(0, 1); B_{u_i} | B_{u_{i+1}} has mean (u_i / u_{i+1}) B_{u_{i+1}}
        # and variance u_i (u_{i+1} - u_i) / u_{i+1} (the Brownian bridge from 0).
        b = zi if i == n else b * (i / (i + 1.0)) + zi * math.sqrt(i / (n * (i + 1.0)))
        s = price_at(i, b)
        payoff = ops.maximum(phi_d * (s - strike_d), 0.0)
        if i == n:
            cash = payoff
            _evaluate(ops, b, cash)
            continue
        cash = cash * step_discount
        y = moneyness(i, s)
        powers = [ops.where(payoff > 0.0, 1.0, 0.0)]  # w y^k, k = 0..6
        for _ in range(2 * _BASIS - 2):
            powers.append(powers[-1] * y)
        sums = [ops.sum(w, axis=1) for w in powers]
        sums += [ops.sum(w * cash, axis=1) for w in powers[:_BASIS]]
        beta = _regression_coefficients(ops.to_numpy(ops.stack(sums, axis=1)))
        betas[i] = [col(beta[:, c]) for c in range(_BASIS)]
        exercise = payoff > hurdle(i, s)
        cash = ops.where(exercise, payoff, cash)
        _evaluate(ops, b, cash)
    del z, b, cash

    # ---- pricing: independent paths, forward --------------------------------
    sqrt_du = math.sqrt(1.0 / n)
    date_discount = [col(np.exp(-rate * t_exp * u[i])) for i in range(n + 1)]
    count = 0
    mean = np.zeros(kc)
    m2 = np.zeros(kc)
    for blk, start in enumerate(range(0, int(num_paths), block)):
        width = min(block, int(num_paths) - start)
        b = ops.zeros((width,))
        alive = ops.full((kc, width), 1.0)
        value = ops.zeros((kc, width))
        for i in range(1, n + 1):
            check_stop(stop)
            r = i - 1
            if r % block_dates == 0:
                rows = min(block_dates, n - r)
                z = ops.standard_normal((rows, width), _seed(seed, 1, blk, r // block_dates))
            b = b + z[r % block_dates] * sqrt_du
            s = price_at(i, b)
            payoff = ops.maximum(phi_d * (s - strike_d), 0.0)
            bar = hurdle(i, s) if i < n else 0.0
            exercised = ops.where(payoff > bar, alive, 0.0)
            value = value + exercised * (payoff * date_discount[i])
            alive = alive - exercised
            _evaluate(ops, b, value, alive)
        block_mean = ops.mean(value, axis=1)
        dev = value - block_mean[:, None]
        block_m2 = ops.to_numpy(ops.sum(dev * dev, axis=1))
        block_mean = ops.to_numpy(block_mean)
        # Chan, Golub and LeVeque's pairwise merge of means and centred moments.
        total = count + width
        d = block_mean - mean
        mean = mean + d * (width / total)
        m2 = m2 + block_m2 + d * d * (count * width / total)
        count = total
    se = np.sqrt(m2 / (count - 1) / count)
    immediate = np.maximum(phi * (spot - strike), 0.0)
    exercise_now = immediate > mean
    return np.where(exercise_now, immediate, mean), np.where(exercise_now, 0.0, se)


def _longstaff_schwartz(
    ops: NumpyOps,
    a: dict[str, np.ndarray],
    num_steps: int,
    num_paths: int,
    seed: int,
    stop: Callable[[], bool] | None,
) -> tuple[np.ndarray, np.ndarray]:
    k = a["spot"].shape[0]
    batch = lsm_layout(num_paths, num_steps)[2]
    price, se = np.empty(k), np.empty(k)
    for lo in range(0, k, batch):
        sl = slice(lo, min(lo + batch, k))
        price[sl], se[sl] = _lsm_batch(
            ops, {name: v[sl] for name, v in a.items()}, num_steps, num_paths, seed, stop
        )
    return price, se


# --------------------------------------------------------------------------
# the engine
# --------------------------------------------------------------------------
def american_price(
    backend: Backend,
    option_type: np.ndarray,
    spot: np.ndarray,
    strike: np.ndarray,
    time_to_expiry: np.ndarray,
    rate: np.ndarray,
    dividend_yield: np.ndarray,
    volatility: np.ndarray,
    method: str,
    num_steps: int,
    num_paths: int = LSM_DEFAULT_PATHS,
    seed: int = 0,
    stop: Callable[[], bool] | None = None,
) -> AmericanResult:
    """Price American calls and puts by binomial tree or Longstaff-Schwartz.

    Parameters
    ----------
    backend : Backend
        Runs the backward induction (trees) or the path simulation (LSM).
    option_type : (K,) ndarray of int
        1 call, 2 put.
    spot, strike : (K,) ndarray of float64
        Underlying price and strike, > 0, in currency units.
    time_to_expiry : (K,) ndarray of float64
        Years, > 0.
    rate, dividend_yield : (K,) ndarray of float64
        Continuously compounded per year.
    volatility : (K,) ndarray of float64
        Per sqrt(year), > 0.
    method : {"binomial_crr", "binomial_leisen_reimer", "longstaff_schwartz"}
        See the module docstring.
    num_steps : int
        Tree steps (Leisen-Reimer bumps an even count up to the next odd
        one), or Longstaff-Schwartz exercise dates ``i T / num_steps``.
    num_paths : int, default 100,000
        Longstaff-Schwartz pricing paths (>= 2); the regression uses an
        independent set of ``min(num_paths, LSM_MAX_TRAINING_PATHS)`` more.
        Ignored by the trees.
    seed : int, default 0
        Longstaff-Schwartz random seed (>= 0); ignored by the trees.
    stop : callable () -> bool, optional
        Polled between tree steps and simulation dates.

    Returns
    -------
    AmericanResult
        ``price`` and ``standard_error``, (K,) float64 each. The standard
        error is zero for the trees; for Longstaff-Schwartz it is the
        sampling error of a low-biased estimate (see the module docstring).

    Raises
    ------
    ValueError
        Unknown ``method``; ``num_steps`` < 1, or too few CRR steps for the
        carry (an up-probability outside [0, 1]); tree nodes beyond float64
        (``volatility: ...``); ``num_paths`` < 2 or a negative ``seed``
        (LSM); inputs of unequal length, non-finite, or
        spot, strike, time_to_expiry or volatility <= 0; option_type not 1
        or 2.
    TimeoutError
        ``stop()`` returned True.

    References
    ----------
    Cox, Ross and Rubinstein (1979); Leisen and Reimer (1996); Longstaff and
    Schwartz (2001); see the module docstring.

    Examples
    --------
    >>> import numpy as np
    >>> from tickwire.routing.backends import NumpyBackend
    >>> one = lambda x: np.array([x], dtype=np.float64)
    >>> res = american_price(NumpyBackend(), np.array([2]), one(100.0), one(100.0),
    ...                      one(1.0), one(0.05), one(0.0), one(0.2),
    ...                      "binomial_leisen_reimer", 501)
    >>> round(float(res.price[0]), 3)
    6.09
    """
    a = _validate(
        option_type,
        spot,
        strike,
        time_to_expiry,
        rate,
        dividend_yield,
        volatility,
        method,
        num_steps,
        num_paths,
        seed,
    )
    ops = array_ops(backend)
    if method == "longstaff_schwartz":
        price, se = _longstaff_schwartz(ops, a, int(num_steps), int(num_paths), int(seed), stop)
        return AmericanResult(price, se)
    price = _binomial(ops, a, method, int(num_steps), stop)
    return AmericanResult(price, np.zeros_like(price))


# --------------------------------------------------------------------------
# routing declaration
# --------------------------------------------------------------------------
def _american_work(inputs: Any) -> float:
    k = float(np.atleast_1d(np.asarray(inputs["spot"])).shape[0])
    n = float(inputs["num_steps"])
    if inputs["method"] == "longstaff_schwartz":
        return k * float(inputs.get("num_paths", LSM_DEFAULT_PATHS)) * n
    return k * n * n


def _american_transfers(inputs: Any) -> list[Transfer]:
    return []  # only (K,) parameter vectors move; trees and paths live on the device


def _sample_american(size: int, rng: np.random.Generator) -> dict[str, Any]:
    n = min(500, max(10, math.isqrt(max(int(size), 1))))
    k = max(1, int(size) // (n * n))
    return {
        "option_type": rng.integers(1, 3, k),
        "spot": rng.uniform(80.0, 120.0, k),
        "strike": np.full(k, 100.0),
        "time_to_expiry": rng.uniform(0.25, 2.0, k),
        "rate": np.full(k, 0.03),
        "dividend_yield": np.full(k, 0.01),
        "volatility": rng.uniform(0.15, 0.4, k),
        "method": "binomial_crr",
        "num_steps": n,
    }


AMERICAN_PRICE = register(
    Operation(
        "pricing.american",
        american_price,
        _american_work,
        _american_transfers,
        _sample_american,
        calibration_sizes=(10_000, 1_000_000, 25_000_000),
    )
)

"""Mean-variance and CVaR portfolio optimisation with Clarabel, and the frontier.

Every problem is the one PyPortfolioOpt 1.6.0 poses (``EfficientFrontier``,
``EfficientCVaR``), written straight into Clarabel's conic form
``min 1/2 x'Px + q'x  s.t.  Ax + s = b, s in K`` (Goulart & Chen 2024) with
SciPy sparse matrices, without a modelling layer:

- minimum volatility ``min w' S w``, ``sum w = 1``;
- efficient return ``min w' S w`` with ``mu' w >= target``;
- efficient risk ``max mu' w`` with ``w' S w <= target^2`` (a second-order
  cone on a square root of S);
- maximum quadratic utility ``max mu' w - delta / 2 w' S w``;
- maximum Sharpe ratio by Cornuejols & Tutuncu's variable scaling
  (``y = k w``, ``(mu - rf)' y = 1``, every linear constraint homogenised in
  ``k``), exactly as ``EfficientFrontier.max_sharpe``;
- minimum CVaR on scenarios, the Rockafellar-Uryasev (2000) linear program.

Constraints: per-asset bounds, a budget (``sum w = 1``, or ``0`` when market
neutral), sector lower and upper limits, L2 regularisation ``gamma ||w||^2``
(PyPortfolioOpt's ``L2_reg``), and a turnover limit
``sum |w - w_current| <= max_turnover``.

Long-only mean-variance problems are solved by constraint screening around
Clarabel: Clarabel solves the problem restricted to a working set of assets
(the others held at their zero lower bound), the full problem's optimality
conditions are checked for every excluded asset with Clarabel's dual
variables (its lower-bound multiplier ``(P w + q + A' z)_i`` must be >= 0),
and violators join the working set until none is left. The answer is the
optimum of the full problem (KKT conditions hold for every asset), found with
dense factorisations of the size of the support instead of N.

The efficient frontier is one DAQP problem (Arnstrom et al. 2022) set up once
over a screened working set: only the target-return bound changes from point
to point, so the dual active-set solver keeps its factorisation and starts
each point from the previous point's active set (a few iterations per point);
a point DAQP does not solve is solved by Clarabel, and when DAQP cannot solve
the first point the frontier is one warm-started OSQP problem (Stellato et
al. 2020) instead (``efficient_frontier``).

References
----------
Markowitz, H. (1952). Portfolio selection. Journal of Finance 7(1), 77-91.
Cornuejols, G., Tutuncu, R. (2006). Optimization Methods in Finance.
    Cambridge University Press (sec. 8.2, maximum Sharpe ratio).
Rockafellar, R. T., Uryasev, S. (2000). Optimization of conditional
    value-at-risk. Journal of Risk 2(3), 21-41.
Goulart, P. J., Chen, Y. (2024). Clarabel: an interior-point solver for conic
    programs with quadratic objectives. arXiv:2405.12762.
Stellato, B., Banjac, G., Goulart, P., Bemporad, A., Boyd, S. (2020). OSQP:
    an operator splitting solver for quadratic programs. Mathematical
    Programming Computation 12(4), 637-672.
Arnstrom, D., Bemporad, A., Axehill, D. (2022). A dual active-set solver for
    embedded quadratic programming using recursive LDL' updates. IEEE
    Transactions on Automatic Control 67(8), 4362-4369 (DAQP).
PyPortfolioOpt 1.6.0, ``pypfopt.efficient_frontier``: the reference.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import clarabel
import daqp
import numpy as np
import osqp
import scipy.linalg as sla
import scipy.sparse as sp

from tickwire.engines._common import check_stop
from tickwire.routing.backends import Backend
from tickwire.routing.operation import Operation, register

OBJECTIVES = (
    "min_volatility",
    "max_sharpe",
    "efficient_return",
    "efficient_risk",
    "max_quadratic_utility",
    "min_cvar",
)
#: Working-set rounds before screening gives up and solves the full problem.
MAX_SCREEN_ROUNDS = 30
_SOLVED = ("Solved", "AlmostSolved")
_INFEASIBLE = ("PrimalInfeasible", "AlmostPrimalInfeasible")


@dataclass(frozen=True)
class Constraints:
    """Constraints on the (N,) weights.

    Attributes
    ----------
    lower, upper : (N,) ndarray
        Per-asset weight bounds, ``lower <= upper``; -inf / inf for none.
    market_neutral : bool
        Weights sum to 0 instead of 1 (efficient return, efficient risk,
        quadratic utility and minimum CVaR, as PyPortfolioOpt).
    sector_membership : (S, N) ndarray of 0/1
        Row s marks the assets of sector s.
    sector_lower, sector_upper : (S,) ndarray
        Limits on each sector's total weight; -inf / inf for none.
    sector_names : tuple of str
        Names used in error messages.
    l2_gamma : float
        L2 regularisation ``gamma * sum(w^2)`` added to the objective.
    current_weights : (N,) ndarray or None
    max_turnover : float
        ``sum |w - current_weights| <= max_turnover``; inf for none.
    """

    lower: np.ndarray
    upper: np.ndarray
    market_neutral: bool = False
    sector_membership: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    sector_lower: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sector_upper: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sector_names: tuple[str, ...] = ()
    l2_gamma: float = 0.0
    current_weights: np.ndarray | None = None
    max_turnover: float = float("inf")

    @classmethod
    def long_only(cls, n: int) -> Constraints:
        """Weights in [0, 1] summing to one (PyPortfolioOpt's default)."""
        return cls(np.zeros(n), np.ones(n))

    @property
    def has_turnover(self) -> bool:
        return self.current_weights is not None and np.isfinite(self.max_turnover)


@dataclass(frozen=True)
class SolverInfo:
    """What the solver did: ``name`` ("clarabel", "closed_form", ...),
    ``status`` (Clarabel's), total interior-point ``iterations`` over the
    screening ``rounds``, and the size of the final working set."""

    name: str
    status: str
    iterations: int
    rounds: int = 1
    working_set: int = 0
    solve_ns: int = 0


@dataclass(frozen=True)
class PortfolioResult:
    """Optimal weights and their performance.

    Attributes
    ----------
    weights : (N,) ndarray
    expected_return, volatility, sharpe_ratio : float
        Annual ``w' mu``, ``sqrt(w' S w)`` and ``(return - rf) / volatility``.
    risk_contributions : (N,) ndarray
        Euler contributions ``w_i (S w)_i / volatility``; they sum to the volatility.
    solver : SolverInfo
    infeasible : tuple of str
        Non-empty when no portfolio satisfies the constraints: the request
        fields that cannot hold together (then ``weights`` is empty).
    cvar : float
        CVaR of the scenario losses at ``beta`` for ``min_cvar`` (per period,
        as a positive fraction of capital); NaN otherwise.
    """

    weights: np.ndarray
    expected_return: float
    volatility: float
    sharpe_ratio: float
    risk_contributions: np.ndarray
    solver: SolverInfo
    infeasible: tuple[str, ...] = ()
    cvar: float = float("nan")


def performance(
    weights: np.ndarray,
    expected_returns: np.ndarray | None,
    cov: np.ndarray,
    risk_free_rate: float = 0.0,
) -> tuple[float, float, float, np.ndarray]:
    """Return, volatility, Sharpe ratio and risk contributions of ``weights``.

    As ``pypfopt.base_optimizer.portfolio_performance``; the return and the
    Sharpe ratio are NaN without expected returns. Risk contributions are
    ``w_i (S w)_i / sigma`` (Euler allocation; they sum to sigma), zeros when
    sigma is 0.
    """
    sw = cov @ weights
    var = float(weights @ sw)
    sigma = float(np.sqrt(max(var, 0.0)))
    rc = weights * sw / sigma if sigma > 0 else np.zeros_like(weights)
    if expected_returns is None:
        return float("nan"), sigma, float("nan"), rc
    ret = float(weights @ expected_returns)
    sharpe = (ret - risk_free_rate) / sigma if sigma > 0 else float("nan")
    return ret, sigma, sharpe, rc


def _result(
    w: np.ndarray,
    mu: np.ndarray | None,
    cov: np.ndarray,
    rf: float,
    info: SolverInfo,
    cvar: float = float("nan"),
) -> PortfolioResult:
    ret, vol, sharpe, rc = performance(w, mu, cov, rf)
    return PortfolioResult(w, ret, vol, sharpe, rc, info, (), cvar)


def _infeasible(groups: tuple[str, ...], info: SolverInfo) -> PortfolioResult:
    nan = float("nan")
    return PortfolioResult(np.zeros(0), nan, nan, nan, np.zeros(0), info, groups)


# --------------------------------------------------------------------------
# problem assembly
# --------------------------------------------------------------------------
@dataclass
class _Block:
    """Rows ``A v (=, <=) c`` or ``c - A v in SOC``; ``owner[r]`` is the asset a
    row belongs to (a bound), -1 for rows shared by many assets."""

    kind: str  # "eq", "le", "soc"
    a: sp.csr_matrix
    c: np.ndarray
    group: str
    owner: np.ndarray


class _Problem:
    """``min 1/2 x' P x + q' v`` over ``v = [x (N assets), extra variables]``."""

    def __init__(self, n: int, p: np.ndarray | None) -> None:
        self.n = n
        self.nvar = n
        self.p = p
        self.q_parts: dict[int, float] = {}
        self.q_assets = np.zeros(n)
        self.blocks: list[_Block] = []
        self.cache: _Assembled | None = None

    def add_vars(self, count: int) -> int:
        """Append ``count`` variables; return the index of the first."""
        start = self.nvar
        self.nvar += count
        return start

    def add(
        self,
        kind: str,
        a: Any,
        c: Any,
        group: str,
        owner: np.ndarray | None = None,
    ) -> None:
        a = sp.csr_matrix(a)
        c = np.atleast_1d(np.asarray(c, dtype=np.float64))
        rows = a.shape[0]
        if owner is None:
            owner = np.full(rows, -1, dtype=np.int64)
        self.blocks.append(_Block(kind, a, c, group, owner))
        self.cache = None

    def q(self) -> np.ndarray:
        q = np.zeros(self.nvar)
        q[: self.n] = self.q_assets
        for i, v in self.q_parts.items():
            q[i] = v
        return q

    def homogenise(self) -> int:
        """Scale every constant by a new variable k >= 0 (Cornuejols & Tutuncu):
        ``a' v <= c`` becomes ``a' v - c k <= 0``. Returns k's index."""
        k = self.add_vars(1)
        for b in self.blocks:
            a = _pad(b.a, self.nvar - 1)
            b.a = sp.hstack([a, sp.csr_matrix(-b.c[:, None])], format="csr")
            b.c = np.zeros_like(b.c)
        self.cache = None
        return k


def _pad(a: sp.csr_matrix, ncols: int) -> sp.csr_matrix:
    if a.shape[1] == ncols:
        return a
    return sp.hstack([a, sp.csr_matrix((a.shape[0], ncols - a.shape[1]))], format="csr")


@dataclass
class _Solution:
    x: np.ndarray
    z_shared: np.ndarray
    shared: sp.csr_matrix  # the shared rows' asset columns, in z order
    status: str
    iterations: int
    #: After screening: each asset's lower-bound multiplier (reduced cost);
    #: the smallest among the excluded assets are the next to enter.
    reduced: np.ndarray | None = None


@dataclass
class _Assembled:
    """Every row of a problem stacked in cone order (equalities, inequalities,
    second-order cones): built once, restricted per working set."""

    a: sp.csr_matrix
    owner: np.ndarray
    kind: np.ndarray  # 0 eq, 1 le, 2 soc
    soc_sizes: list[int]
    shared: sp.csr_matrix  # the shared rows' asset columns
    blocks: list[_Block]


def _assemble(prob: _Problem) -> _Assembled:
    if prob.cache is not None and prob.cache.a.shape[1] == prob.nvar:
        return prob.cache
    order = [b for b in prob.blocks if b.kind == "eq"] + [b for b in prob.blocks if b.kind == "le"]
    order += [b for b in prob.blocks if b.kind == "soc"]
    a = sp.vstack([_pad(b.a, prob.nvar) for b in order], format="csr")
    owner = np.concatenate([b.owner for b in order])
    code = {"eq": 0, "le": 1, "soc": 2}
    kind = np.concatenate([np.full(b.owner.shape[0], code[b.kind]) for b in order])
    soc_sizes = [b.owner.shape[0] for b in order if b.kind == "soc"]
    shared = a[owner < 0][:, : prob.n]
    prob.cache = _Assembled(a, owner, kind, soc_sizes, shared.tocsr(), order)
    return prob.cache


def _clarabel(
    prob: _Problem, assets: np.ndarray | None, stop: Callable[[], bool] | None
) -> _Solution:
    """Solve ``prob`` restricted to ``assets`` (None: all) with Clarabel."""
    check_stop(stop)
    n = prob.n
    asm = _assemble(prob)
    b_all = np.concatenate([b.c for b in asm.blocks])
    if assets is None:
        cols = np.arange(prob.nvar)
        a, b, kind, owner = asm.a, b_all, asm.kind, asm.owner
        na = n
    else:
        cols = np.concatenate([assets, np.arange(n, prob.nvar)])
        keep_asset = np.zeros(n, dtype=bool)
        keep_asset[assets] = True
        rows = (asm.owner < 0) | keep_asset[np.maximum(asm.owner, 0)]
        a = asm.a[rows][:, cols]
        b, kind, owner = b_all[rows], asm.kind[rows], asm.owner[rows]
        na = assets.shape[0]
    nv = cols.shape[0]
    cones = []
    if (eq := int(np.count_nonzero(kind == 0))) > 0:
        cones.append(clarabel.ZeroConeT(eq))
    if (le := int(np.count_nonzero(kind == 1))) > 0:
        cones.append(clarabel.NonnegativeConeT(le))
    cones += [clarabel.SecondOrderConeT(r) for r in asm.soc_sizes]
    q = prob.q()[cols]
    if prob.p is not None:
        p_sub = prob.p if assets is None else prob.p[np.ix_(assets, assets)]
        p_csc = sp.csc_matrix(np.triu(p_sub))
        if nv > na:
            p_csc = sp.block_diag([p_csc, sp.csc_matrix((nv - na, nv - na))], format="csc")
    else:
        p_csc = sp.csc_matrix((nv, nv))
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    sol = clarabel.DefaultSolver(p_csc, q, a.tocsc(), b, cones, settings).solve()
    x = np.zeros(prob.nvar)
    x[cols] = np.asarray(sol.x)
    z_shared = np.asarray(sol.z)[owner < 0]
    return _Solution(x, z_shared, asm.shared, str(sol.status), int(sol.iterations))


def _solve(
    prob: _Problem,
    initial: np.ndarray | None,
    stop: Callable[[], bool] | None,
) -> tuple[_Solution, SolverInfo, np.ndarray | None]:
    """Solve ``prob``; with an ``initial`` working set, by screening (see the
    module docstring). Returns the solution, its info and the final working set."""
    t0 = time.perf_counter_ns()
    n = prob.n
    if initial is None or initial.shape[0] >= n:
        sol = _clarabel(prob, None, stop)
        info = SolverInfo("clarabel", sol.status, sol.iterations, 1, n, time.perf_counter_ns() - t0)
        return sol, info, None
    work = np.unique(initial)
    iterations = 0
    for rounds in range(1, MAX_SCREEN_ROUNDS + 1):
        check_stop(stop)
        sol = _clarabel(prob, work, stop)
        iterations += sol.iterations
        if sol.status not in _SOLVED:
            break  # the restriction may be infeasible while the full problem is not
        x = sol.x[:n]
        grad = prob.q_assets + (prob.p @ x if prob.p is not None else 0.0)
        reduced = grad + sol.shared.T @ sol.z_shared
        excluded = np.ones(n, dtype=bool)
        excluded[work] = False
        scale = 1.0 + float(np.max(np.abs(grad)))
        bad = np.flatnonzero(excluded & (reduced < -1e-7 * scale))
        if bad.size == 0:
            sol.reduced = np.where(excluded, reduced, -np.inf)
            info = SolverInfo(
                "clarabel", sol.status, iterations, rounds, work.shape[0],
                time.perf_counter_ns() - t0,
            )  # fmt: skip
            return sol, info, work
        cap = max(10, work.shape[0] // 2)
        bad = bad[np.argsort(reduced[bad])][:cap]
        work = np.union1d(work, bad)
    sol = _clarabel(prob, None, stop)
    iterations += sol.iterations
    info = SolverInfo(
        "clarabel", sol.status, iterations, MAX_SCREEN_ROUNDS + 1, n, time.perf_counter_ns() - t0
    )
    return sol, info, None


# --------------------------------------------------------------------------
# constraints in weight terms
# --------------------------------------------------------------------------
def _add_bounds(prob: _Problem, cons: Constraints) -> None:
    n = prob.n
    eye = sp.identity(n, format="csr")
    idx = np.arange(n)
    lo = np.isfinite(cons.lower)
    if lo.any():
        prob.add("le", -eye[lo], -cons.lower[lo], "lower_bounds", idx[lo])
    hi = np.isfinite(cons.upper)
    if hi.any():
        prob.add("le", eye[hi], cons.upper[hi], "upper_bounds", idx[hi])


def _add_sectors(prob: _Problem, cons: Constraints) -> None:
    m = cons.sector_membership
    if m.shape[0] == 0:
        return
    hi = np.isfinite(cons.sector_upper)
    if hi.any():
        prob.add("le", m[hi], cons.sector_upper[hi], "sector_limits")
    lo = np.isfinite(cons.sector_lower)
    if lo.any():
        prob.add("le", -m[lo], -cons.sector_lower[lo], "sector_limits")


def _add_turnover(prob: _Problem, cons: Constraints) -> None:
    if not cons.has_turnover:
        return
    n = prob.n
    w0 = np.asarray(cons.current_weights, dtype=np.float64)
    t = prob.add_vars(n)
    eye = sp.identity(n, format="csr")
    a_t = sp.hstack([sp.csr_matrix((n, t)), -eye], format="csr")
    prob.add("le", sp.hstack([eye, sp.csr_matrix((n, n))]) + a_t, w0, "max_turnover")
    prob.add("le", sp.hstack([-eye, sp.csr_matrix((n, n))]) + a_t, -w0, "max_turnover")
    row = np.zeros((1, t + n))
    row[0, t:] = 1.0
    prob.add("le", row, cons.max_turnover, "max_turnover")


def _add_budget(prob: _Problem, total: float) -> None:
    prob.add("eq", np.ones((1, prob.n)), total, "budget")


def _quadratic(cov: np.ndarray, cons: Constraints, scale: float = 2.0) -> np.ndarray:
    """``scale * (S + gamma I)``: the P of ``w' S w + gamma ||w||^2``."""
    p = scale * cov
    if cons.l2_gamma:
        p = p + scale * cons.l2_gamma * np.eye(cov.shape[0])
    return p


def _screenable(cons: Constraints) -> bool:
    return (
        not cons.has_turnover
        and np.all(cons.lower == 0.0)
        and np.all(cons.upper > 0.0)
        and not cons.market_neutral
    )


#: Size of the first working set per score (screening adds the rest).
SCREEN_START = 30
#: Excluded assets with the smallest reduced costs carried to the next
#: frontier point's working set.
SCREEN_NEAR = 8


def _initial_set(
    cov: np.ndarray, mu: np.ndarray | None, cons: Constraints, *scores: np.ndarray
) -> np.ndarray | None:
    """A working set to start screening from; None when screening does not apply.

    The :data:`SCREEN_START` best assets by each score (e.g. ``1 / var_i`` for
    minimum variance, ``(mu_i - rf) / var_i`` for the tangency portfolio: the
    solutions for a diagonal covariance), plus the highest expected returns
    and the least volatile members of sectors with a lower limit, so that
    the restricted problem is feasible.
    """
    if not _screenable(cons):
        return None
    n = cov.shape[0]
    if n <= 2 * SCREEN_START:
        return np.arange(n)
    picks = [np.argsort(s)[-SCREEN_START:] for s in scores]
    if mu is not None:
        picks.append(np.argsort(mu)[-5:])
    m = cons.sector_membership
    for s in np.flatnonzero(np.isfinite(cons.sector_lower) & (cons.sector_lower > 0)):
        members = np.flatnonzero(m[s])
        picks.append(members[np.argsort(np.diag(cov)[members])[:5]])
    return np.unique(np.concatenate(picks))


# --------------------------------------------------------------------------
# infeasibility diagnosis
# --------------------------------------------------------------------------
def _diagnose(cons: Constraints, n: int, extra_groups: dict[str, Callable[[_Problem], None]]):
    """The constraint groups that cannot hold together: each optional group whose
    removal makes the weight constraints feasible (all of them when none does)."""
    groups: dict[str, Callable[[_Problem], None]] = {}
    if cons.sector_membership.shape[0]:
        groups["sector_limits"] = lambda p: _add_sectors(p, cons)
    if cons.has_turnover:
        groups["max_turnover"] = lambda p: _add_turnover(p, cons)
    groups.update(extra_groups)
    budget = 0.0 if cons.market_neutral else 1.0

    def feasible(skip: str | None) -> bool:
        p = _Problem(n, None)
        _add_budget(p, budget)
        _add_bounds(p, cons)
        for name, add in groups.items():
            if name != skip:
                add(p)
        return _clarabel(p, None, None).status in _SOLVED

    culprits = tuple(g for g in groups if feasible(g))
    return culprits or ("lower_bounds", "upper_bounds", *groups)


def _check_bounds(cons: Constraints) -> tuple[str, ...]:
    """Quick checks that need no solver: bounds that cannot sum to the budget."""
    budget = 0.0 if cons.market_neutral else 1.0
    if np.any(cons.lower > cons.upper):
        return ("lower_bounds", "upper_bounds")
    if np.sum(cons.lower) > budget + 1e-12 or np.sum(cons.upper) < budget - 1e-12:
        return ("lower_bounds", "upper_bounds")
    return ()


# --------------------------------------------------------------------------
# optimisers
# --------------------------------------------------------------------------
def _finish(
    sol: _Solution,
    info: SolverInfo,
    cons: Constraints,
    n: int,
    weights: Callable[[np.ndarray], np.ndarray],
    mu: np.ndarray | None,
    cov: np.ndarray,
    rf: float,
    extra_groups: dict[str, Callable[[_Problem], None]] | None = None,
) -> PortfolioResult:
    if sol.status in _SOLVED:
        return _result(weights(sol.x), mu, cov, rf, info)
    if sol.status in _INFEASIBLE:
        return _infeasible(_diagnose(cons, n, extra_groups or {}), info)
    raise RuntimeError(f"clarabel stopped with status {sol.status}")


def min_volatility(
    cov: np.ndarray,
    cons: Constraints,
    mu: np.ndarray | None = None,
    risk_free_rate: float = 0.0,
    stop: Callable[[], bool] | None = None,
) -> PortfolioResult:
    """Minimum-variance weights (``EfficientFrontier.min_volatility``; the budget
    is always ``sum w = 1``). Closed form ``S^-1 1 / 1' S^-1 1`` when no bound
    or other constraint binds-able is given (all bounds infinite)."""
    n = cov.shape[0]
    if (bad := _check_bounds(cons)) and not cons.market_neutral:
        return _infeasible(bad, SolverInfo("none", "PrimalInfeasible", 0))
    unconstrained = (
        not np.isfinite(cons.lower).any()
        and not np.isfinite(cons.upper).any()
        and cons.sector_membership.shape[0] == 0
        and not cons.has_turnover
    )
    if unconstrained:
        p = _quadratic(cov, cons, 1.0)
        x = _solve_pd(p, np.ones(n))
        return _result(x / x.sum(), mu, cov, risk_free_rate, SolverInfo("closed_form", "Solved", 0))
    prob = _Problem(n, _quadratic(cov, cons))
    _add_budget(prob, 1.0)
    _add_bounds(prob, cons)
    _add_sectors(prob, cons)
    _add_turnover(prob, cons)
    init = _initial_set(cov, None, cons, 1.0 / np.diag(cov))
    sol, info, _ = _solve(prob, init, stop)
    return _finish(sol, info, cons, n, lambda x: x[:n], mu, cov, risk_free_rate)


def _solve_pd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a^-1 b`` for a positive definite ``a`` (Cholesky).

    Raises
    ------
    ValueError
        ``covariance``: not positive definite (the closed forms need it).
    """
    try:
        return sla.cho_solve(sla.cho_factor(a, check_finite=False), b, check_finite=False)
    except np.linalg.LinAlgError as exc:
        raise ValueError("covariance: not positive definite; give bounds or repair it") from exc


def max_return(mu: np.ndarray, cons: Constraints) -> float:
    """The largest ``mu' w`` the constraints allow (a linear program)."""
    n = mu.shape[0]
    prob = _Problem(n, None)
    prob.q_assets = -mu
    _add_budget(prob, 0.0 if cons.market_neutral else 1.0)
    _add_bounds(prob, cons)
    _add_sectors(prob, cons)
    _add_turnover(prob, cons)
    sol = _clarabel(prob, None, None)
    if sol.status not in _SOLVED:
        return float("nan")
    return float(mu @ sol.x[:n])


def _return_problem(
    mu: np.ndarray, cov: np.ndarray, target_return: float, cons: Constraints
) -> _Problem:
    """``min w' S w`` with ``mu' w >= target_return``; the target is block 0."""
    prob = _Problem(mu.shape[0], _quadratic(cov, cons))
    prob.add("le", -mu[None, :], -target_return, "target_return")
    _add_budget(prob, 0.0 if cons.market_neutral else 1.0)
    _add_bounds(prob, cons)
    _add_sectors(prob, cons)
    _add_turnover(prob, cons)
    return prob


def efficient_return(
    mu: np.ndarray,
    cov: np.ndarray,
    target_return: float,
    cons: Constraints,
    risk_free_rate: float = 0.0,
    stop: Callable[[], bool] | None = None,
    working_set: np.ndarray | None = None,
) -> tuple[PortfolioResult, np.ndarray | None]:
    """Least variance with ``mu' w >= target_return`` (``efficient_return``).

    Returns the result and the final screening working set (to start the next
    frontier point from).
    """
    n = mu.shape[0]
    if bad := _check_bounds(cons):
        return _infeasible(bad, SolverInfo("none", "PrimalInfeasible", 0)), None
    prob = _return_problem(mu, cov, target_return, cons)
    init = working_set
    if init is None:
        iv = 1.0 / np.diag(cov)
        init = _initial_set(cov, mu, cons, iv, mu * iv)
    sol, info, work = _solve(prob, init, stop)

    def target(p: _Problem) -> None:
        p.add("le", -mu[None, :], -target_return, "target_return")

    res = _finish(
        sol, info, cons, n, lambda x: x[:n], mu, cov, risk_free_rate, {"target_return": target}
    )
    return res, work


def efficient_risk(
    mu: np.ndarray,
    cov: np.ndarray,
    target_volatility: float,
    cons: Constraints,
    risk_free_rate: float = 0.0,
    stop: Callable[[], bool] | None = None,
) -> PortfolioResult:
    """Most return with ``w' S w <= target_volatility^2`` (``efficient_risk``).

    The variance limit is the second-order cone ``||F w|| <= target`` with
    ``F' F = S`` (Cholesky, or the eigendecomposition for a singular S).
    """
    n = mu.shape[0]
    if bad := _check_bounds(cons):
        return _infeasible(bad, SolverInfo("none", "PrimalInfeasible", 0))
    f = _square_root(cov)
    p = _quadratic(cov, cons) - 2.0 * cov if cons.l2_gamma else None
    prob = _Problem(n, p)
    prob.q_assets = -mu

    def risk(pr: _Problem) -> None:
        a = np.vstack([np.zeros((1, n)), -f])
        pr.add("soc", a, np.r_[target_volatility, np.zeros(f.shape[0])], "target_volatility")

    risk(prob)
    _add_budget(prob, 0.0 if cons.market_neutral else 1.0)
    _add_bounds(prob, cons)
    _add_sectors(prob, cons)
    _add_turnover(prob, cons)
    iv = 1.0 / np.diag(cov)
    init = _initial_set(cov, mu, cons, iv, mu * iv, mu)
    sol, info, _ = _solve(prob, init, stop)
    return _finish(
        sol, info, cons, n, lambda x: x[:n], mu, cov, risk_free_rate, {"target_volatility": risk}
    )


def _square_root(cov: np.ndarray) -> np.ndarray:
    """F with ``F' F = cov``: the transposed Cholesky factor, or ``sqrt(q) V'``."""
    try:
        return np.linalg.cholesky(cov).T
    except np.linalg.LinAlgError:
        q, v = np.linalg.eigh(cov)
        return (v * np.sqrt(np.maximum(q, 0.0))).T


def max_quadratic_utility(
    mu: np.ndarray,
    cov: np.ndarray,
    risk_aversion: float,
    cons: Constraints,
    risk_free_rate: float = 0.0,
    stop: Callable[[], bool] | None = None,
) -> PortfolioResult:
    """Maximise ``mu' w - risk_aversion / 2 w' S w`` (``max_quadratic_utility``)."""
    n = mu.shape[0]
    if bad := _check_bounds(cons):
        return _infeasible(bad, SolverInfo("none", "PrimalInfeasible", 0))
    p = risk_aversion * cov
    if cons.l2_gamma:
        p = p + 2.0 * cons.l2_gamma * np.eye(n)
    prob = _Problem(n, p)
    prob.q_assets = -mu
    _add_budget(prob, 0.0 if cons.market_neutral else 1.0)
    _add_bounds(prob, cons)
    _add_sectors(prob, cons)
    _add_turnover(prob, cons)
    iv = 1.0 / np.diag(cov)
    init = _initial_set(cov, mu, cons, iv, mu * iv)
    sol, info, _ = _solve(prob, init, stop)
    return _finish(sol, info, cons, n, lambda x: x[:n], mu, cov, risk_free_rate)


def max_sharpe(
    mu: np.ndarray,
    cov: np.ndarray,
    cons: Constraints,
    risk_free_rate: float = 0.0,
    stop: Callable[[], bool] | None = None,
) -> PortfolioResult:
    """Maximum Sharpe ratio (``EfficientFrontier.max_sharpe``).

    Cornuejols & Tutuncu: minimise ``y' S y`` subject to ``(mu - rf)' y = 1``,
    ``sum y = k``, ``k >= 0`` and every weight constraint ``a' w <= c``
    rewritten as ``a' y <= c k``; then ``w = y / k``. With no bound at all
    (every bound infinite, no sector or turnover limit) the tangency portfolio
    ``S^-1 (mu - rf) / 1' S^-1 (mu - rf)`` in closed form.

    Raises
    ------
    ValueError
        ``risk_free_rate``: no asset's expected return exceeds it.
    """
    n = mu.shape[0]
    excess = mu - risk_free_rate
    if not np.any(excess > 0):
        raise ValueError(
            "risk_free_rate: at least one asset's expected return must exceed the risk-free rate"
        )
    if bad := _check_bounds(cons):
        return _infeasible(bad, SolverInfo("none", "PrimalInfeasible", 0))
    unconstrained = (
        not np.isfinite(cons.lower).any()
        and not np.isfinite(cons.upper).any()
        and cons.sector_membership.shape[0] == 0
        and not cons.has_turnover
    )
    if unconstrained and not cons.l2_gamma:
        x = _solve_pd(cov, excess)
        return _result(x / x.sum(), mu, cov, risk_free_rate, SolverInfo("closed_form", "Solved", 0))
    prob = _Problem(n, _quadratic(cov, cons))
    _add_budget(prob, 1.0)  # sum y = k after homogenising
    _add_bounds(prob, cons)
    _add_sectors(prob, cons)
    _add_turnover(prob, cons)
    k = prob.homogenise()
    row = np.zeros((1, prob.nvar))
    row[0, :n] = excess
    prob.add("eq", row, 1.0, "risk_free_rate")
    kr = np.zeros((1, prob.nvar))
    kr[0, k] = -1.0
    prob.add("le", kr, 0.0, "lower_bounds")
    init = _initial_set(cov, mu, cons, excess / np.diag(cov))
    sol, info, _ = _solve(prob, init, stop)
    return _finish(sol, info, cons, n, lambda x: x[:n] / x[k], mu, cov, risk_free_rate)


def min_cvar(
    scenarios: np.ndarray,
    cons: Constraints,
    beta: float = 0.95,
    mu: np.ndarray | None = None,
    cov: np.ndarray | None = None,
    risk_free_rate: float = 0.0,
    target_return: float | None = None,
    stop: Callable[[], bool] | None = None,
) -> PortfolioResult:
    """Minimum CVaR of the scenario losses (Rockafellar & Uryasev 2000).

    ``min alpha + 1 / (T (1 - beta)) sum u_t`` subject to ``u_t >= 0``,
    ``u_t >= -r_t' w - alpha`` and the weight constraints
    (``EfficientCVaR.min_cvar``; with ``target_return``, ``efficient_return``).

    Parameters
    ----------
    scenarios : (T, N) ndarray
        Per-period simple returns.
    beta : float in (0, 1)
        Confidence level.
    """
    t, n = scenarios.shape
    if bad := _check_bounds(cons):
        return _infeasible(bad, SolverInfo("none", "PrimalInfeasible", 0))
    prob = _Problem(n, _quadratic(np.zeros((n, n)), cons) if cons.l2_gamma else None)
    _add_budget(prob, 0.0 if cons.market_neutral else 1.0)
    _add_bounds(prob, cons)
    _add_sectors(prob, cons)
    _add_turnover(prob, cons)
    alpha = prob.add_vars(1)
    u = prob.add_vars(t)
    prob.q_parts[alpha] = 1.0
    scale = 1.0 / (t * (1.0 - beta))
    width = prob.nvar
    a = sp.hstack(
        [
            sp.csr_matrix(-scenarios),
            sp.csr_matrix((t, alpha - n)),
            sp.csr_matrix(-np.ones((t, 1))),
            -sp.identity(t, format="csr"),
        ],
        format="csr",
    )
    prob.add("le", a, np.zeros(t), "scenarios")
    prob.add("le", sp.hstack([sp.csr_matrix((t, u)), -sp.identity(t)]), np.zeros(t), "scenarios")
    extra = {}
    if target_return is not None and mu is not None:

        def target(p: _Problem) -> None:
            p.add("le", -mu[None, :], -target_return, "target_return")

        target(prob)
        extra["target_return"] = target
    for i in range(u, width):
        prob.q_parts[i] = scale
    sol, info, _ = _solve(prob, None, stop)
    if sol.status in _SOLVED:
        w = sol.x[:n]
        cvar = float(sol.x[alpha] + scale * np.sum(sol.x[u:width]))
        cov_ = cov if cov is not None else np.cov(scenarios, rowvar=False)
        return _result(w, mu, cov_, risk_free_rate, info, cvar)
    if sol.status in _INFEASIBLE:
        return _infeasible(_diagnose(cons, n, extra), info)
    raise RuntimeError(f"clarabel stopped with status {sol.status}")


# --------------------------------------------------------------------------
# frontier
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class FrontierResult:
    """Efficient frontier points, lowest return first.

    Attributes
    ----------
    target_returns, expected_returns, volatilities, sharpe_ratios : (P,) ndarray
    weights : (P, N) ndarray
    solver : SolverInfo
        Totals over the points.
    infeasible : tuple of str
        Non-empty when the constraints admit no portfolio.
    """

    target_returns: np.ndarray
    expected_returns: np.ndarray
    volatilities: np.ndarray
    sharpe_ratios: np.ndarray
    weights: np.ndarray
    solver: SolverInfo
    infeasible: tuple[str, ...] = ()


def efficient_frontier(
    mu: np.ndarray,
    cov: np.ndarray,
    cons: Constraints,
    num_points: int = 50,
    risk_free_rate: float = 0.0,
    stop: Callable[[], bool] | None = None,
    warm_start: bool = True,
) -> FrontierResult:
    """``num_points`` efficient portfolios from minimum volatility to maximum return.

    Targets are evenly spaced returns from the minimum-volatility portfolio's
    return to the largest achievable return less 0.1% of the range (at the
    maximum itself the feasible set is a face with no interior, and its
    weights are as ill-determined as the solver's feasibility tolerance
    divided by the gap between the top returns). Each point is
    ``efficient_return``.

    With ``warm_start`` (and no turnover limit) the points are one DAQP
    problem whose target bound changes from point to point
    (:func:`_warm_frontier` with :class:`_DaqpFrontierQP`: a dual active-set
    method that starts each point from the previous point's active set), with
    Clarabel for the points DAQP does not solve. When DAQP cannot solve the
    minimum-variance point, the same with OSQP (:class:`_FrontierQP`: one KKT
    factorisation, ADMM started from the previous point, polished). Otherwise
    (and when neither solves the minimum-variance point, e.g. infeasible
    constraints, which Clarabel then diagnoses) each point is a Clarabel
    solve; screening starts from the previous point's support and the
    excluded assets closest to entering.
    """
    if warm_start and not cons.has_turnover and not _check_bounds(cons):
        for qp_cls in (_DaqpFrontierQP, _FrontierQP):
            res = _warm_frontier(qp_cls, mu, cov, cons, num_points, risk_free_rate, stop)
            if res is not None:
                return res
    return _clarabel_frontier(mu, cov, cons, num_points, risk_free_rate, stop)


def _clarabel_frontier(
    mu: np.ndarray,
    cov: np.ndarray,
    cons: Constraints,
    num_points: int,
    risk_free_rate: float,
    stop: Callable[[], bool] | None,
) -> FrontierResult:
    """The frontier as one screened Clarabel solve per point."""
    n = mu.shape[0]
    t0 = time.perf_counter_ns()
    first = min_volatility(cov, cons, mu, risk_free_rate, stop)
    if first.infeasible:
        e = np.zeros(0)
        return FrontierResult(e, e, e, e, np.zeros((0, n)), first.solver, first.infeasible)
    r_lo = first.expected_return
    r_hi = max_return(mu, cons)
    targets = np.linspace(r_lo, r_hi - 1e-3 * max(r_hi - r_lo, 1e-12), num_points)
    weights = np.empty((num_points, n))
    weights[0] = first.weights
    iterations, rounds = first.solver.iterations, first.solver.rounds
    prob = _return_problem(mu, cov, targets[0], cons)
    screen = _screenable(cons)
    top = np.argsort(mu)[-3:]
    near = None
    for i in range(1, num_points):
        check_stop(stop)
        prob.blocks[0].c = np.array([-targets[i]])
        init = None
        if screen:
            # the previous support, the highest returns, and the excluded assets
            # closest to entering (smallest reduced costs)
            init = np.union1d(np.flatnonzero(weights[i - 1] > 1e-9), top)
            if near is not None:
                init = np.union1d(init, near)
        sol, info, _ = _solve(prob, init, stop)
        near = None
        if sol.reduced is not None:
            cand = np.flatnonzero(np.isfinite(sol.reduced))
            near = cand[np.argsort(sol.reduced[cand])[:SCREEN_NEAR]]
        if sol.status not in _SOLVED:
            raise RuntimeError(f"frontier point {i}: clarabel stopped with status {sol.status}")
        weights[i] = sol.x[:n]
        iterations += info.iterations
        rounds += info.rounds
    info = SolverInfo("clarabel", "Solved", iterations, rounds, 0, time.perf_counter_ns() - t0)
    return _frontier_result(targets, weights, mu, cov, risk_free_rate, info)


#: OSQP settings of the warm-started frontier. ADMM stops at a loose
#: tolerance, then polishing solves the KKT system of the active set it found,
#: which gives the weights to about 1e-9; a point that needs more than
#: ``max_iter`` ADMM iterations (the near-vertex points at the top of the
#: frontier) goes to Clarabel instead.
OSQP_SETTINGS = {
    "eps_abs": 1e-5,
    "eps_rel": 1e-5,
    "max_iter": 100,
    "polishing": True,
    "polish_refine_iter": 5,
    "warm_starting": True,
    "verbose": False,
}
#: Feasibility a polished OSQP point must meet (budget, target, bounds and
#: sector rows, absolute) and the most negative reduced cost an excluded asset
#: may have (relative to the gradient's scale).
OSQP_FEAS_TOL = 1e-7
#: After this many consecutive points OSQP did not finish (the top of the
#: frontier, where ADMM converges slowly), the remaining points go straight
#: to Clarabel.
OSQP_MAX_MISSES = 2
OSQP_KKT_TOL = 1e-7


class _FrontierQP:
    """The frontier's QP family over the assets ``work``, set up once with OSQP.

    ``min 1/2 w' P w`` (``P = 2 (S + gamma I)``) subject to the budget row,
    the target-return row ``mu' w >= target``, the sector rows and the bounds
    (OSQP's ``l <= A w <= u``). Every point shares P and A, so a new target
    is ``update(l=...)``: OSQP keeps its KKT factorisation and starts ADMM
    from the previous point (Stellato et al. 2020, sec. 3.3 and 5.2).
    """

    name = "osqp"

    def __init__(self, mu: np.ndarray, p_full: np.ndarray, cons: Constraints, work: np.ndarray):
        self.work = work
        m = work.shape[0]
        self.budget = 0.0 if cons.market_neutral else 1.0
        rows = [np.ones((1, m)), mu[work][None, :]]
        lo, hi = [self.budget, -np.inf], [self.budget, np.inf]
        sm = cons.sector_membership
        if sm.shape[0]:
            keep = np.isfinite(cons.sector_lower) | np.isfinite(cons.sector_upper)
            rows.append(sm[keep][:, work])
            lo += list(cons.sector_lower[keep])
            hi += list(cons.sector_upper[keep])
        self.n_shared = sum(r.shape[0] for r in rows)
        self.shared_full = np.vstack([np.ones((1, mu.shape[0])), mu[None, :]] + (
            [sm[keep]] if sm.shape[0] else []
        ))  # fmt: skip
        self.l = np.r_[lo, cons.lower[work]]
        self.u = np.r_[hi, cons.upper[work]]
        a = sp.vstack([sp.csc_matrix(np.vstack(rows)), sp.identity(m)], format="csc")
        p = sp.csc_matrix(np.triu(p_full[np.ix_(work, work)]))
        self.p_cols = np.ascontiguousarray(p_full[:, work])
        self.a = a
        self.solver = osqp.OSQP()
        self.solver.setup(p, np.zeros(m), a, self.l, self.u, **OSQP_SETTINGS)

    def warm_start(self, x_full: np.ndarray) -> None:
        """Start ADMM's next point from ``x_full`` (a full weight vector)."""
        self.solver.warm_start(x=x_full[self.work])

    def solve(self, target: float, x0: np.ndarray | None = None):
        """Solve with ``mu' w >= target`` (-inf: minimum variance). Returns
        (x on ``work``, y, ADMM iterations, ok): ok when OSQP solved and
        polished and the point is feasible to :data:`OSQP_FEAS_TOL`."""
        self.l[1] = target
        self.solver.update(l=self.l)
        if x0 is not None:
            self.solver.warm_start(x=x0[self.work])
        r = self.solver.solve(raise_error=False)
        ok = r.info.status_val == 1 and r.info.status_polish == 1
        x, y = np.asarray(r.x), np.asarray(r.y)
        if ok:
            ax = self.a @ x
            ok = bool(np.all(ax >= self.l - OSQP_FEAS_TOL) and np.all(ax <= self.u + OSQP_FEAS_TOL))
        return x, y, int(r.info.iter), ok


#: DAQP settings of the warm-started frontier: inactive constraints hold to
#: 1e-9 (DAQP's default is 1e-6; an active-set point is exact on its active
#: constraints), and no proximal regularisation: a covariance that is singular
#: on the working set (non-unique weights) fails the setup and goes to the
#: OSQP / Clarabel paths, as before DAQP.
DAQP_SETTINGS = {"primal_tol": 1e-9, "iter_limit": 2000, "eps_prox": 0.0}
#: DAQP's constraint flags: active (1), at the lower bound (2), equality (5).
_DAQP_ACTIVE, _DAQP_LOWER, _DAQP_EQ = 1, 2, 5
_DAQP_INF = 1e30


class _DaqpFrontierQP:
    """The frontier's QP family over the assets ``work`` with DAQP.

    The problem of :class:`_FrontierQP` (``min 1/2 w' P w``, budget, target
    and sector rows, bounds) in DAQP's form ``blower <= [w; A w] <= bupper``
    (simple bounds first), set up once (a Cholesky factorisation of P on the
    working set). A new target is ``update(blower=...)``: DAQP keeps the
    previous point's active set and its factorisation and starts the dual
    active-set iterations from it, so neighbouring points take a few
    iterations each (Arnstrom, Bemporad & Axehill 2022).
    """

    name = "daqp"

    def __init__(self, mu: np.ndarray, p_full: np.ndarray, cons: Constraints, work: np.ndarray):
        self.work = work
        m = work.shape[0]
        self.budget = 0.0 if cons.market_neutral else 1.0
        rows = [np.ones((1, m)), mu[work][None, :]]
        lo, hi = [self.budget, -np.inf], [self.budget, np.inf]
        sm = cons.sector_membership
        if sm.shape[0]:
            keep = np.isfinite(cons.sector_lower) | np.isfinite(cons.sector_upper)
            rows.append(sm[keep][:, work])
            lo += list(cons.sector_lower[keep])
            hi += list(cons.sector_upper[keep])
        self.n_shared = sum(r.shape[0] for r in rows)
        self.shared_full = np.vstack([np.ones((1, mu.shape[0])), mu[None, :]] + (
            [sm[keep]] if sm.shape[0] else []
        ))  # fmt: skip
        self.a_rows = np.ascontiguousarray(np.vstack(rows))
        self.l = np.r_[cons.lower[work], lo]
        self.u = np.r_[cons.upper[work], hi]
        self.bl = np.clip(self.l, -_DAQP_INF, _DAQP_INF)
        self.bu = np.clip(self.u, -_DAQP_INF, _DAQP_INF)
        self.sense = np.zeros(self.l.shape[0], dtype=np.int32)
        self.sense[m] = _DAQP_EQ
        self.h = np.ascontiguousarray(p_full[np.ix_(work, work)])
        self.p_cols = np.ascontiguousarray(p_full[:, work])
        self.solver: daqp.Model | None = None

    def warm_start(self, x_full: np.ndarray) -> None:
        """DAQP starts the next point from its own last active set."""

    def solve(self, target: float, x0: np.ndarray | None = None):
        """Solve with ``mu' w >= target`` (-inf: minimum variance). Returns
        (x on ``work``, y (the shared rows' duals first, then the bounds'), DAQP
        iterations, ok): ok when DAQP reports an optimal point and it is
        feasible to :data:`OSQP_FEAS_TOL`. ``x0`` (a full weight vector) gives
        a new working set its first active set."""
        m = self.work.shape[0]
        self.l[m + 1] = target
        self.bl[m + 1] = max(target, -_DAQP_INF)
        f = np.zeros(m)
        if self.solver is None:
            self.solver = daqp.Model()
            self.solver.settings = DAQP_SETTINGS
            start = None if x0 is None else x0[self.work]
            flag = self.solver.setup(
                self.h, f, self.a_rows, self.bu, self.bl, self.sense, primal_start=start
            )[0]
            if flag < 0:  # P not positive definite on the working set
                return np.zeros(m), np.zeros(self.l.shape[0]), 0, False
        else:
            self.solver.update(blower=self.bl)
        x, _, flag, info = self.solver.solve()
        x = np.asarray(x, dtype=float)
        lam = np.asarray(info["lam"], dtype=float)
        y = np.r_[lam[m:], lam[:m]]
        ok = flag == 1 and bool(np.all(np.isfinite(x)))
        if ok:
            ax = np.r_[x, self.a_rows @ x]
            ok = bool(np.all(ax >= self.l - OSQP_FEAS_TOL) and np.all(ax <= self.u + OSQP_FEAS_TOL))
        return x, y, int(info["iterations"]), ok


def _warm_frontier(
    qp_cls: type,
    mu: np.ndarray,
    cov: np.ndarray,
    cons: Constraints,
    num_points: int,
    risk_free_rate: float,
    stop: Callable[[], bool] | None,
) -> FrontierResult | None:
    """The frontier with one QP (``qp_cls``: DAQP or OSQP) warm-started from
    point to point.

    Long-only problems are solved over a working set of assets (screening):
    the excluded assets' reduced costs ``(P w)_j + a_j' y`` (the solver's duals
    of the budget, target and sector rows) must be >= 0 at every point, and
    violators join the set (a new setup). A point the solver does not solve
    (optimal, and feasible to :data:`OSQP_FEAS_TOL`) is solved by Clarabel
    (screened), and the solver report counts it. Returns None when the first
    point (minimum variance) is not solved, for the next path to try.
    """
    t0 = time.perf_counter_ns()
    n = mu.shape[0]
    p_full = _quadratic(cov, cons)
    screen = _screenable(cons)
    if screen:
        iv = 1.0 / np.diag(cov)
        work = _initial_set(cov, mu, cons, iv, mu * iv, mu)
    else:
        work = np.arange(n)
    qp = qp_cls(mu, p_full, cons, work)
    setups, iterations, fallback, clarabel_its = 1, 0, 0, 0
    weights = np.zeros((num_points, n))
    prob: _Problem | None = None
    near: np.ndarray | None = None
    top = np.argsort(mu)[-3:]

    def point(target: float, prev: np.ndarray | None) -> tuple[np.ndarray | None, bool]:
        nonlocal qp, setups, iterations, work
        for _ in range(MAX_SCREEN_ROUNDS):
            check_stop(stop)
            x, y, its, ok = qp.solve(target, prev)
            iterations += its
            if not ok:
                return None, False
            w = np.zeros(n)
            w[work] = x
            if not screen:
                return w, True
            grad = qp.p_cols @ x
            reduced = grad + qp.shared_full.T @ y[: qp.n_shared]
            excluded = np.ones(n, dtype=bool)
            excluded[work] = False
            scale = 1.0 + float(np.max(np.abs(grad)))
            bad = np.flatnonzero(excluded & (reduced < -OSQP_KKT_TOL * scale))
            if bad.size == 0:
                return w, True
            # the violators, most negative first, and the next excluded assets
            # closest to entering (they would be the next setup's violators)
            out = np.flatnonzero(excluded)
            out = out[np.argsort(reduced[out])]
            work = np.union1d(work, out[: min(bad.size, max(10, work.shape[0] // 4)) + SCREEN_NEAR])
            qp = qp_cls(mu, p_full, cons, work)
            setups += 1
            prev = w
        return None, False

    w0, ok = point(-np.inf, None)
    if not ok:
        return None
    weights[0] = w0
    r_lo = float(mu @ w0)
    r_hi = _max_return_box(mu, cons) if screen else max_return(mu, cons)
    targets = np.linspace(r_lo, r_hi - 1e-3 * max(r_hi - r_lo, 1e-12), num_points)
    misses = 0  # consecutive points the warm-started solver did not finish
    for i in range(1, num_points):
        w, ok = point(float(targets[i]), None) if misses < OSQP_MAX_MISSES else (None, False)
        misses = 0 if ok else misses + 1
        if not ok:
            # Clarabel, screened from the previous support as in the pure
            # Clarabel frontier
            if prob is None:
                prob = _return_problem(mu, cov, targets[i], cons)
            prob.blocks[0].c = np.array([-targets[i]])
            init = None
            if screen:
                init = np.union1d(np.flatnonzero(weights[i - 1] > 1e-9), top)
                if near is not None:
                    init = np.union1d(init, near)
            sol, info, _ = _solve(prob, init, stop)
            if sol.status not in _SOLVED:
                raise RuntimeError(f"frontier point {i}: clarabel stopped with status {sol.status}")
            near = None
            if sol.reduced is not None:
                cand = np.flatnonzero(np.isfinite(sol.reduced))
                near = cand[np.argsort(sol.reduced[cand])[:SCREEN_NEAR]]
            w = sol.x[:n]
            fallback += 1
            clarabel_its += info.iterations
            setups += info.rounds
            qp.warm_start(w)
        weights[i] = w
    status = (
        "Solved" if not fallback else f"Solved (clarabel for {fallback} of {num_points} points)"
    )
    info = SolverInfo(
        qp.name if not fallback else f"{qp.name}+clarabel", status, iterations + clarabel_its,
        setups, qp.work.shape[0], time.perf_counter_ns() - t0,
    )  # fmt: skip
    return _frontier_result(targets, weights, mu, cov, risk_free_rate, info)


def _max_return_box(mu: np.ndarray, cons: Constraints) -> float:
    """The largest ``mu' w`` for ``0 <= w <= upper``, ``sum w = 1`` and the
    sector rows: greedy (fill the highest returns first) when there is no
    sector row, the linear program otherwise."""
    if cons.sector_membership.shape[0]:
        return max_return(mu, cons)
    left, total = 1.0, 0.0
    for i in np.argsort(mu)[::-1]:
        take = min(float(cons.upper[i]), left)
        total += take * float(mu[i])
        left -= take
        if left <= 0.0:
            break
    return total


def _frontier_result(
    targets: np.ndarray,
    weights: np.ndarray,
    mu: np.ndarray,
    cov: np.ndarray,
    risk_free_rate: float,
    info: SolverInfo,
) -> FrontierResult:
    rets = weights @ mu
    # the variances over the assets any point holds (the rest are exact zeros)
    held = np.flatnonzero(np.any(weights != 0.0, axis=0))
    ws = weights[:, held]
    vols = np.sqrt(np.maximum(np.sum((ws @ cov[np.ix_(held, held)]) * ws, axis=1), 0.0))
    sharpe = (rets - risk_free_rate) / vols
    return FrontierResult(targets, rets, vols, sharpe, weights, info)


# --------------------------------------------------------------------------
# routed operations (host only: the solver runs on the CPU)
# --------------------------------------------------------------------------
def optimise(
    backend: Backend,
    objective: str,
    mu: np.ndarray | None,
    cov: np.ndarray,
    constraints: Constraints,
    risk_free_rate: float = 0.0,
    target_return: float = float("nan"),
    target_volatility: float = float("nan"),
    risk_aversion: float = 1.0,
    scenarios: np.ndarray | None = None,
    beta: float = 0.95,
    stop: Callable[[], bool] | None = None,
) -> PortfolioResult:
    """Dispatch to one of :data:`OBJECTIVES` (the servicer's entry point).

    Raises
    ------
    ValueError
        ``objective`` unknown, or a target outside what the inputs allow
        (``target_volatility`` below the minimum volatility).
    """
    if objective == "min_volatility":
        return min_volatility(cov, constraints, mu, risk_free_rate, stop)
    if objective == "max_sharpe":
        return max_sharpe(mu, cov, constraints, risk_free_rate, stop)
    if objective == "efficient_return":
        return efficient_return(mu, cov, target_return, constraints, risk_free_rate, stop)[0]
    if objective == "efficient_risk":
        return efficient_risk(mu, cov, target_volatility, constraints, risk_free_rate, stop)
    if objective == "max_quadratic_utility":
        return max_quadratic_utility(mu, cov, risk_aversion, constraints, risk_free_rate, stop)
    if objective == "min_cvar":
        tr = None if np.isnan(target_return) else target_return
        return min_cvar(scenarios, constraints, beta, mu, cov, risk_free_rate, tr, stop)
    raise ValueError(f"objective: unknown objective {objective!r}")


def _opt_work(inputs: Any) -> float:
    n = inputs["cov"].shape[0]
    return float(n) ** 3


def _sample_opt(size: int, rng: np.random.Generator) -> dict[str, Any]:
    n = int(min(max(round(size ** (1 / 3)), 4), 500))
    r = rng.standard_normal((max(2 * n, 60), n)) * 0.01 + 0.0004
    return {
        "objective": "max_sharpe",
        "mu": r.mean(0) * 252,
        "cov": np.cov(r, rowvar=False) * 252,
        "constraints": Constraints.long_only(n),
    }


def frontier(
    backend: Backend,
    mu: np.ndarray,
    cov: np.ndarray,
    constraints: Constraints,
    num_points: int = 50,
    risk_free_rate: float = 0.0,
    stop: Callable[[], bool] | None = None,
) -> FrontierResult:
    """:func:`efficient_frontier` as a routed operation."""
    return efficient_frontier(mu, cov, constraints, num_points, risk_free_rate, stop)


def _sample_frontier(size: int, rng: np.random.Generator) -> dict[str, Any]:
    d = _sample_opt(size, rng)
    return {k: d[k] for k in ("mu", "cov", "constraints")} | {"num_points": 10}


OPTIMISE = register(
    Operation(
        "portfolio.optimise",
        optimise,
        _opt_work,
        lambda inputs: [],
        _sample_opt,
        calibration_sizes=(1_000, 100_000, 8_000_000),
        backends=("numpy",),
    )
)
FRONTIER = register(
    Operation(
        "portfolio.efficient_frontier",
        frontier,
        lambda inputs: _opt_work(inputs) * inputs.get("num_points", 50),
        lambda inputs: [],
        _sample_frontier,
        calibration_sizes=(10_000, 1_000_000, 80_000_000),
        backends=("numpy",),
    )
)

"""``tickwire.portfolio.v1.PortfolioService``: estimators, optimisers, HRP, risk
parity, Black-Litterman, the efficient frontier and discrete allocation.

Validation and conversion only; the math is in
:mod:`tickwire.engines.portfolio_estimators`, :mod:`~tickwire.engines.portfolio_optimise`,
:mod:`~tickwire.engines.portfolio_hrp`, :mod:`~tickwire.engines.portfolio_black_litterman`
and :mod:`~tickwire.engines.portfolio_allocation`.

A call runs up to three engine operations in turn: the routed estimation of
expected returns and covariance (NumPy or PyTorch by size) when the inputs
come from a history, the Black-Litterman posterior when a model is given, and
the host-only optimiser. The response's ``execution`` is the last step's
(with ``compute_ns`` summed over the steps) and ``estimation_execution`` the
first's.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from tickwire.common.v1 import execution_pb2
from tickwire.engines import (
    portfolio_allocation,
    portfolio_black_litterman,
    portfolio_estimators,
    portfolio_hrp,
    portfolio_optimise,
)
from tickwire.engines.portfolio_optimise import Constraints, PortfolioResult
from tickwire.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from tickwire.services import errors, tensors
from tickwire.services.errors import Violations
from tickwire.services.runtime import EngineRuntime, ServiceSpec, rpc

#: Largest universe accepted (the covariance is N x N).
MAX_ASSETS = 10_000
MAX_FRONTIER_POINTS = 1_000
MAX_VIEWS = 1_000

_COV_METHODS = {
    portfolio_pb2.COVARIANCE_METHOD_UNSPECIFIED: "sample",
    portfolio_pb2.COVARIANCE_METHOD_SAMPLE: "sample",
    portfolio_pb2.COVARIANCE_METHOD_EXPONENTIAL: "exponential",
    portfolio_pb2.COVARIANCE_METHOD_SEMICOVARIANCE: "semicovariance",
    portfolio_pb2.COVARIANCE_METHOD_LEDOIT_WOLF_CONSTANT_VARIANCE: "ledoit_wolf_constant_variance",
    portfolio_pb2.COVARIANCE_METHOD_LEDOIT_WOLF_SINGLE_FACTOR: "ledoit_wolf_single_factor",
    portfolio_pb2.COVARIANCE_METHOD_LEDOIT_WOLF_CONSTANT_CORRELATION: (
        "ledoit_wolf_constant_correlation"
    ),
    portfolio_pb2.COVARIANCE_METHOD_ORACLE_APPROXIMATING: "oracle_approximating",
}
_RETURN_METHODS = {
    portfolio_pb2.EXPECTED_RETURNS_METHOD_UNSPECIFIED: "mean_historical",
    portfolio_pb2.EXPECTED_RETURNS_METHOD_MEAN_HISTORICAL: "mean_historical",
    portfolio_pb2.EXPECTED_RETURNS_METHOD_EMA_HISTORICAL: "ema_historical",
    portfolio_pb2.EXPECTED_RETURNS_METHOD_CAPM: "capm",
}
_OBJECTIVES = {
    portfolio_pb2.OBJECTIVE_MIN_VOLATILITY: "min_volatility",
    portfolio_pb2.OBJECTIVE_MAX_SHARPE: "max_sharpe",
    portfolio_pb2.OBJECTIVE_EFFICIENT_RETURN: "efficient_return",
    portfolio_pb2.OBJECTIVE_EFFICIENT_RISK: "efficient_risk",
    portfolio_pb2.OBJECTIVE_MAX_QUADRATIC_UTILITY: "max_quadratic_utility",
    portfolio_pb2.OBJECTIVE_MIN_CVAR: "min_cvar",
    portfolio_pb2.OBJECTIVE_RISK_PARITY: "risk_parity",
    portfolio_pb2.OBJECTIVE_HIERARCHICAL_RISK_PARITY: "hrp",
}
#: Objectives that need expected returns to be defined at all.
_NEEDS_MU = {"max_sharpe", "efficient_return", "efficient_risk", "max_quadratic_utility"}
#: Engine constraint groups -> request fields, for FAILED_PRECONDITION.
_GROUP_FIELDS = {
    "lower_bounds": "constraints.lower_bounds",
    "upper_bounds": "constraints.upper_bounds",
    "sector_limits": "constraints.sector_limits",
    "max_turnover": "constraints.max_turnover",
    "budget": "constraints.market_neutral",
    "target_return": "target_return",
    "target_volatility": "target_volatility",
    "risk_free_rate": "risk_free_rate",
}


def infeasible(groups: tuple[str, ...]) -> errors.RpcError:
    """FAILED_PRECONDITION naming the constraints that cannot hold together."""
    fields = [_GROUP_FIELDS.get(g, g) for g in groups]
    message = "no portfolio satisfies the constraints together: " + ", ".join(fields)
    pf = error_details_pb2.PreconditionFailure(
        violations=[
            error_details_pb2.PreconditionFailure.Violation(
                type="INFEASIBLE", subject=f, description="cannot hold with the other constraints"
            )
            for f in fields
        ]
    )
    info = error_details_pb2.ErrorInfo(
        reason="INFEASIBLE", domain=errors.ERROR_DOMAIN, metadata={"fields": ",".join(fields)}
    )
    details = []
    for d in (pf, info):
        a = any_pb2.Any()
        a.Pack(d)
        details.append(a)
    return errors.RpcError(
        status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message=message, details=details)
    )


@dataclass
class _Inputs:
    """Decoded PortfolioInputs: what is known before any compute."""

    n: int = 0
    returns: np.ndarray | None = None
    returns_key: str | None = None
    frequency: float = portfolio_estimators.DEFAULT_FREQUENCY
    estimate: dict[str, Any] = field(default_factory=dict)
    mu: np.ndarray | None = None
    cov: np.ndarray | None = None
    bl: dict[str, Any] | None = None
    bl_posterior_cov: bool = False
    cached: bool = False
    estimation_info: Any = None


def _optional_tensor_set(t: Any) -> bool:
    return bool(t.shape or t.data or t.dtype)


class _EstimateCache:
    """Estimates of registered datasets by (dataset id, estimator settings): an
    LRU bounded in bytes. Ids are content hashes, so an entry can never be
    stale; a replica without it estimates again."""

    def __init__(self, max_bytes: int) -> None:
        self._items: OrderedDict[tuple, portfolio_estimators.InputsEstimate] = OrderedDict()
        self._max = max_bytes
        self._used = 0

    @staticmethod
    def _nbytes(e: portfolio_estimators.InputsEstimate) -> int:
        mu = 0 if e.expected_returns is None else e.expected_returns.nbytes
        return mu + (0 if e.covariance is None else e.covariance.matrix.nbytes)

    def get(self, key: tuple) -> portfolio_estimators.InputsEstimate | None:
        e = self._items.get(key)
        if e is not None:
            self._items.move_to_end(key)
        return e

    def put(self, key: tuple, e: portfolio_estimators.InputsEstimate) -> None:
        size = self._nbytes(e)
        if size > self._max or key in self._items:
            return
        for a in (e.expected_returns, None if e.covariance is None else e.covariance.matrix):
            if a is not None:
                a.flags.writeable = False
        self._items[key] = e
        self._used += size
        while self._used > self._max:
            _, old = self._items.popitem(last=False)
            self._used -= self._nbytes(old)


#: Bytes of cached estimates of registered datasets.
ESTIMATE_CACHE_BYTES = 256 << 20


class PortfolioServicer(portfolio_pb2_grpc.PortfolioServiceServicer):
    """Serves :class:`tickwire.portfolio.v1.PortfolioService` over an :class:`EngineRuntime`.

    Estimates of a registered dataset (``History.dataset_id`` of returns) are
    kept by dataset id and estimator settings, so that a portfolio manager
    optimising one universe under many constraint sets pays the estimation
    once; responses say when they used a cached estimate.
    """

    def __init__(self, runtime: EngineRuntime) -> None:
        self.rt = runtime
        self._estimates = _EstimateCache(ESTIMATE_CACHE_BYTES)

    # ----- decoding ------------------------------------------------------------
    def _history(
        self, h: portfolio_pb2.History, field: str, v: Violations, inp: _Inputs
    ) -> np.ndarray | None:
        """The (T, N) returns of a History, or None after recording violations."""
        source = h.WhichOneof("source")
        key = None
        if source == "values":
            values = tensors.decode(h.values, f"{field}.values", v, ndim=2, min_shape=(3, 1))
        elif source == "dataset_id":
            values = self.rt.store.get(h.dataset_id)
            if values is None:
                raise errors.not_found("Dataset", h.dataset_id, f"{field}.dataset_id")
            key = h.dataset_id
            if values.shape[0] < 3:
                v.add(f"{field}.dataset_id", "the dataset needs at least 3 rows")
                return None
        else:
            v.add(field, "required: set `values` or `dataset_id`")
            return None
        freq = h.periods_per_year or portfolio_estimators.DEFAULT_FREQUENCY
        if not (math.isfinite(freq) and 0 < freq <= 100_000):
            v.add(f"{field}.periods_per_year", f"must be in (0, 100000], got {freq}")
        inp.frequency = freq
        if values is None:
            return None
        if values.shape[1] > MAX_ASSETS:
            v.add(f"{field}.values.shape", f"at most {MAX_ASSETS} assets")
            return None
        if h.kind == portfolio_pb2.HISTORY_KIND_PRICES:
            if not np.all(values > 0):
                v.add(f"{field}.values.data", "prices must be > 0")
                return None
            return values[1:] / values[:-1] - 1.0
        if h.kind == portfolio_pb2.HISTORY_KIND_RETURNS:
            if not np.all(values > -1.0):
                v.add(f"{field}.values.data", "simple returns must be > -1")
                return None
            inp.returns_key = key
            return values
        v.add(f"{field}.kind", "must be HISTORY_KIND_PRICES or HISTORY_KIND_RETURNS")
        return None

    def _inputs(
        self,
        p: portfolio_pb2.PortfolioInputs,
        v: Violations,
        *,
        need_mu: bool,
        need_cov: bool = True,
        need_history: bool = False,
    ) -> _Inputs:
        inp = _Inputs()
        has_history = p.HasField("history")
        if has_history:
            inp.returns = self._history(p.history, "inputs.history", v, inp)
        elif need_history:
            v.add("inputs.history", "required: this objective needs the return history")
        if _optional_tensor_set(p.covariance):
            inp.cov = tensors.decode(p.covariance, "inputs.covariance", v, ndim=2)
            if inp.cov is not None:
                c = inp.cov
                if c.shape[0] != c.shape[1]:
                    v.add("inputs.covariance.shape", f"must be square, got {list(c.shape)}")
                    inp.cov = None
                elif not np.allclose(c, c.T, rtol=1e-10, atol=1e-14):
                    v.add("inputs.covariance", "must be symmetric")
                    inp.cov = None
                elif not np.all(np.diag(c) > 0):
                    v.add("inputs.covariance", "every variance (diagonal element) must be > 0")
                    inp.cov = None
                elif c.shape[0] > MAX_ASSETS:
                    v.add("inputs.covariance.shape", f"at most {MAX_ASSETS} assets")
                    inp.cov = None
        if _optional_tensor_set(p.expected_returns):
            inp.mu = tensors.decode(p.expected_returns, "inputs.expected_returns", v, ndim=1)
        sizes = {
            name: a.shape[-1]
            for name, a in (
                ("inputs.history", inp.returns),
                ("inputs.covariance", inp.cov),
                ("inputs.expected_returns", inp.mu),
            )
            if a is not None
        }
        if len(set(sizes.values())) > 1:
            first = next(iter(sizes))
            for name, size in sizes.items():
                if size != sizes[first]:
                    v.add(name, f"has {size} assets; {first} has {sizes[first]}")
        inp.n = next(iter(sizes.values()), 0)
        cov_bad = any(x.field.startswith("inputs.covariance") for x in v.items)
        if need_cov and inp.cov is None and not has_history and not cov_bad:
            v.add("inputs.covariance", "required: give `covariance` or a `history`")
        wants_mu = inp.mu is None and has_history
        if need_mu and inp.mu is None and not has_history and not p.HasField("black_litterman"):
            v.add("inputs.expected_returns", "required: give `expected_returns` or a `history`")
        # estimation settings
        cm = p.covariance_model
        if cm.method not in _COV_METHODS:
            v.add("inputs.covariance_model.method", f"unknown method {cm.method}")
        span = cm.span or portfolio_estimators.DEFAULT_COVARIANCE_SPAN
        if not (math.isfinite(span) and span >= 1):
            v.add("inputs.covariance_model.span", f"must be >= 1, got {span}")
        bench = (
            cm.benchmark
            if cm.HasField("benchmark")
            else portfolio_estimators.DEFAULT_SEMICOVARIANCE_BENCHMARK
        )
        if not math.isfinite(bench):
            v.add("inputs.covariance_model.benchmark", "must be finite")
        rm = p.expected_returns_model
        if rm.method not in _RETURN_METHODS:
            v.add("inputs.expected_returns_model.method", f"unknown method {rm.method}")
        rspan = rm.span or portfolio_estimators.DEFAULT_RETURN_SPAN
        if not (math.isfinite(rspan) and rspan >= 1):
            v.add("inputs.expected_returns_model.span", f"must be >= 1, got {rspan}")
        if not math.isfinite(rm.risk_free_rate):
            v.add("inputs.expected_returns_model.risk_free_rate", "must be finite")
        market = None
        if _optional_tensor_set(rm.market):
            market = tensors.decode(rm.market, "inputs.expected_returns_model.market", v, ndim=1)
            if market is not None and p.history.kind == portfolio_pb2.HISTORY_KIND_PRICES:
                if not np.all(market > 0):
                    v.add("inputs.expected_returns_model.market", "prices must be > 0")
                    market = None
                else:
                    market = market[1:] / market[:-1] - 1.0
            if (
                market is not None
                and inp.returns is not None
                and market.shape[0] != inp.returns.shape[0]
            ):
                v.add(
                    "inputs.expected_returns_model.market",
                    f"needs one value per period of the history ({inp.returns.shape[0]} returns)",
                )
        inp.estimate = {
            "frequency": inp.frequency,
            "covariance_method": _COV_METHODS.get(cm.method, "sample")
            if (inp.cov is None and need_cov)
            else None,
            "span": float(span),
            "benchmark": float(bench),
            "returns_method": _RETURN_METHODS.get(rm.method, "mean_historical")
            if wants_mu
            else None,
            "compounding": not rm.arithmetic,
            "return_span": float(rspan),
            "market_returns": market,
            "risk_free_rate": float(rm.risk_free_rate),
            "returns_key": inp.returns_key,
        }
        if p.HasField("black_litterman"):
            inp.bl, inp.bl_posterior_cov = self._black_litterman(p.black_litterman, inp.n, v)
        return inp

    @staticmethod
    def _black_litterman(
        m: portfolio_pb2.BlackLittermanModel, n: int, v: Violations
    ) -> tuple[dict[str, Any] | None, bool]:
        f = "inputs.black_litterman"
        if not m.views:
            v.add(f"{f}.views", "required: at least one view")
            return None, False
        if len(m.views) > MAX_VIEWS:
            v.add(f"{f}.views", f"at most {MAX_VIEWS} views")
            return None, False
        picking = np.zeros((len(m.views), n))
        q = np.zeros(len(m.views))
        conf = []
        for i, view in enumerate(m.views):
            row = tensors.finite_values(view.picking, f"{f}.views[{i}].picking", v)
            if row is not None and row.shape[0] != n:
                v.add(f"{f}.views[{i}].picking", f"needs {n} values, one per asset")
            elif row is not None:
                if not np.any(row):
                    v.add(f"{f}.views[{i}].picking", "must not be all zero")
                picking[i] = row
            if not math.isfinite(view.expected_return):
                v.add(f"{f}.views[{i}].expected_return", "must be finite")
            q[i] = view.expected_return
            if view.HasField("confidence"):
                if not 0.0 <= view.confidence <= 1.0:
                    v.add(f"{f}.views[{i}].confidence", "must be in [0, 1]")
                conf.append(view.confidence)
        if conf and len(conf) != len(m.views):
            v.add(f"{f}.views", "give a confidence for every view or for none")
        prior = mcaps = None
        if m.prior_returns:
            prior = tensors.finite_values(m.prior_returns, f"{f}.prior_returns", v)
            if prior is not None and prior.shape[0] != n:
                v.add(f"{f}.prior_returns", f"needs {n} values")
        elif m.market_caps:
            mcaps = tensors.finite_values(m.market_caps, f"{f}.market_caps", v)
            if mcaps is not None and (
                mcaps.shape[0] != n or not np.all(mcaps >= 0) or not mcaps.sum() > 0
            ):
                v.add(f"{f}.market_caps", f"needs {n} values >= 0 with a positive total")
        delta = m.risk_aversion or 1.0
        if not (math.isfinite(delta) and delta > 0):
            v.add(f"{f}.risk_aversion", "must be > 0")
        tau = m.tau or 0.05
        if not 0.0 < tau <= 1.0:
            v.add(f"{f}.tau", "must be in (0, 1]")
        if not math.isfinite(m.risk_free_rate):
            v.add(f"{f}.risk_free_rate", "must be finite")
        return {
            "picking": picking,
            "view_returns": q,
            "confidences": np.array(conf) if conf else None,
            "prior_returns": prior,
            "market_caps": mcaps,
            "risk_aversion": float(delta),
            "tau": float(tau),
            "risk_free_rate": float(m.risk_free_rate),
        }, bool(m.use_posterior_covariance)

    @staticmethod
    def _constraints(c: portfolio_pb2.WeightConstraints, n: int, v: Violations) -> Constraints:
        f = "constraints"

        def bounds(values: Any, name: str, default: float) -> np.ndarray:
            a = tensors.finite_values(values, f"{f}.{name}", v) if len(values) else None
            if a is None or a.size == 0:
                return np.full(n, default)
            if a.size == 1:
                return np.full(n, float(a[0]))
            if a.size != n:
                v.add(f"{f}.{name}", f"needs {n} values (one per asset), one value, or none")
                return np.full(n, default)
            return a

        lower = bounds(c.lower_bounds, "lower_bounds", -1.0 if c.market_neutral else 0.0)
        upper = bounds(c.upper_bounds, "upper_bounds", 1.0)
        if np.any(lower > upper):
            i = int(np.flatnonzero(lower > upper)[0])
            v.add(f"{f}.lower_bounds", f"asset {i}: lower bound {lower[i]} > upper {upper[i]}")
        membership = np.zeros((0, n))
        s_lo, s_hi, names = np.zeros(0), np.zeros(0), ()
        if c.sector_limits:
            if len(c.asset_sectors) != n:
                v.add(f"{f}.asset_sectors", f"needs {n} sector names, one per asset")
            else:
                sectors = np.array(list(c.asset_sectors))
                rows, los, his, nm = [], [], [], []
                for i, lim in enumerate(c.sector_limits):
                    members = sectors == lim.sector
                    if not members.any():
                        v.add(f"{f}.sector_limits[{i}].sector", f"no asset in {lim.sector!r}")
                        continue
                    lo = lim.lower if lim.HasField("lower") else -np.inf
                    hi = lim.upper if lim.HasField("upper") else np.inf
                    if math.isnan(lo) or math.isnan(hi) or lo > hi:
                        v.add(f"{f}.sector_limits[{i}]", "lower must be <= upper")
                    rows.append(members.astype(float))
                    los.append(lo)
                    his.append(hi)
                    nm.append(lim.sector)
                if rows:
                    membership = np.vstack(rows)
                    s_lo, s_hi, names = np.array(los), np.array(his), tuple(nm)
        gamma = c.l2_gamma
        if not (math.isfinite(gamma) and gamma >= 0):
            v.add(f"{f}.l2_gamma", "must be >= 0")
        current = None
        turnover = math.inf
        if c.HasField("max_turnover"):
            turnover = c.max_turnover
            if not (math.isfinite(turnover) and turnover >= 0):
                v.add(f"{f}.max_turnover", "must be >= 0")
            current = tensors.finite_values(c.current_weights, f"{f}.current_weights", v)
            if current is not None and current.shape[0] != n:
                v.add(f"{f}.current_weights", f"needs {n} values with max_turnover")
                current = None
        return Constraints(
            lower, upper, c.market_neutral, membership, s_lo, s_hi, names, float(gamma),
            current, float(turnover),
        )  # fmt: skip

    def _decode_optimise(self, request: portfolio_pb2.OptimizePortfolioRequest) -> dict[str, Any]:
        v = Violations()
        objective = _OBJECTIVES.get(request.objective)
        if objective is None:
            v.add("objective", "required: one of the OBJECTIVE_ values")
            raise errors.invalid_argument(v)
        inp = self._inputs(
            request.inputs,
            v,
            need_mu=objective in _NEEDS_MU,
            need_history=objective == "min_cvar",
        )
        rf = request.risk_free_rate
        if not math.isfinite(rf):
            v.add("risk_free_rate", "must be finite")
        params: dict[str, Any] = {"objective": objective, "risk_free_rate": float(rf)}
        if objective == "efficient_return" and not request.HasField("target_return"):
            v.add("target_return", "required for OBJECTIVE_EFFICIENT_RETURN")
        if request.HasField("target_return"):
            if not math.isfinite(request.target_return):
                v.add("target_return", "must be finite")
            params["target_return"] = float(request.target_return)
        if objective == "efficient_risk":
            tv = request.target_volatility
            if not request.HasField("target_volatility") or not (math.isfinite(tv) and tv > 0):
                v.add("target_volatility", "required for OBJECTIVE_EFFICIENT_RISK, > 0")
            params["target_volatility"] = float(tv)
        ra = request.risk_aversion or 1.0
        if not (math.isfinite(ra) and ra > 0):
            v.add("risk_aversion", "must be > 0")
        params["risk_aversion"] = float(ra)
        beta = request.cvar_confidence_level or 0.95
        if not 0.0 < beta < 1.0:
            v.add("cvar_confidence_level", "must be in (0, 1)")
        params["beta"] = float(beta)
        if objective in ("risk_parity", "hrp"):
            if request.HasField("constraints") and request.constraints.ByteSize():
                v.add("constraints", f"not supported by {objective}: leave empty")
            if request.risk_budgets:
                b = tensors.finite_values(request.risk_budgets, "risk_budgets", v)
                if b is not None and (b.shape[0] != inp.n or not np.all(b > 0)):
                    v.add("risk_budgets", f"needs {inp.n} values, each > 0")
                params["risk_budgets"] = b
            link = request.linkage_method or "single"
            if link not in portfolio_hrp.LINKAGE_METHODS:
                v.add(
                    "linkage_method", f"must be one of {', '.join(portfolio_hrp.LINKAGE_METHODS)}"
                )
            params["linkage_method"] = link
        else:
            params["constraints"] = self._constraints(request.constraints, inp.n, v)
        self.rt.check_execution(request.execution, "execution", v)
        if v:
            raise errors.invalid_argument(v)
        return {"inputs": inp, "params": params}

    # ----- shared steps ------------------------------------------------------------
    async def _prepare(
        self,
        inp: _Inputs,
        execution: Any,
        context: grpc.aio.ServicerContext,
        use_cache: bool = True,
    ) -> tuple[Any, Any, list]:
        """Estimate (or reuse a cached estimate) and apply Black-Litterman.

        Returns the Black-Litterman result (or None), the covariance report and
        the ExecutionInfo of each step that ran; ``inp`` gets mu and cov.
        """
        infos: list = []
        report = None
        est = inp.estimate
        inp.cached = False
        if inp.returns is not None and (
            est["covariance_method"] is not None or est["returns_method"] is not None
        ):
            key = None
            if inp.returns_key is not None and est["market_returns"] is None:
                key = (
                    inp.returns_key,
                    *sorted(
                        (k, v)
                        for k, v in est.items()
                        if k != "returns_key" and k != "market_returns"
                    ),
                )
            e = self._estimates.get(key) if key is not None and use_cache else None
            if e is None:
                result, info = await self.rt.run(
                    portfolio_estimators.ESTIMATE_INPUTS,
                    {"returns": inp.returns, **est},
                    execution,
                    context,
                )
                infos.append(info)
                inp.estimation_info = info
                e = result.value
                if key is not None:
                    self._estimates.put(key, e)
            else:
                inp.cached = True
            if e.covariance is not None:
                inp.cov = e.covariance.matrix
                report = portfolio_pb2.CovarianceReport(
                    shrinkage=e.covariance.shrinkage,
                    psd_repaired=e.covariance.repaired,
                    min_eigenvalue_before_repair=e.covariance.min_eigenvalue,
                )
            if inp.mu is None and e.expected_returns is not None:
                inp.mu = e.expected_returns
        if inp.bl is not None:
            host = execution_pb2.ExecutionOptions()
            result, info = await self.rt.run(
                portfolio_black_litterman.BLACK_LITTERMAN,
                {"cov": inp.cov, **inp.bl},
                host,
                context,
            )
            infos.append(info)
            bl: portfolio_black_litterman.BlackLittermanResult = result.value
            inp.mu = bl.posterior_returns
            if inp.bl_posterior_cov:
                inp.cov = bl.posterior_covariance
            return bl, report, infos
        return None, report, infos

    @staticmethod
    def _execution(infos: list, inp: _Inputs) -> tuple[Any, Any]:
        """The last step's ExecutionInfo with the compute of every step, and the
        estimation step's (None when nothing was estimated)."""
        main = infos[-1]
        main.compute_ns = sum(i.compute_ns for i in infos)
        return main, inp.estimation_info

    @staticmethod
    def _solver(r: portfolio_optimise.SolverInfo) -> portfolio_pb2.SolverReport:
        return portfolio_pb2.SolverReport(
            solver=r.name,
            status=r.status,
            iterations=r.iterations,
            screening_rounds=r.rounds,
            working_set_size=r.working_set,
        )

    # ----- RPCs ------------------------------------------------------------------
    @rpc
    async def EstimateInputs(
        self, request: portfolio_pb2.EstimateInputsRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.EstimateInputsResponse:
        """Expected returns and covariance of a history."""

        def decode(req: portfolio_pb2.EstimateInputsRequest) -> _Inputs:
            v = Violations()
            if not req.HasField("history"):
                v.add("history", "required")
                raise errors.invalid_argument(v)
            p = portfolio_pb2.PortfolioInputs(
                history=req.history,
                expected_returns_model=req.expected_returns_model,
                covariance_model=req.covariance_model,
            )
            inp = self._inputs(p, v, need_mu=True)
            self.rt.check_execution(req.execution, "execution", v)
            if v:
                raise errors.invalid_argument(v)
            return inp

        inp = await self.rt.decode(decode, request)
        _, report, infos = await self._prepare(inp, request.execution, context, use_cache=False)
        with self.rt.span("encode"):
            return portfolio_pb2.EstimateInputsResponse(
                expected_returns=tensors.encode(inp.mu),
                covariance=tensors.encode(inp.cov),
                covariance_report=report,
                num_periods=inp.returns.shape[0],
                num_assets=inp.n,
                execution=infos[0],
            )

    @rpc
    async def OptimizePortfolio(
        self, request: portfolio_pb2.OptimizePortfolioRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.OptimizePortfolioResponse:
        """Optimal weights for one objective."""
        d = await self.rt.decode(self._decode_optimise, request)
        inp: _Inputs = d["inputs"]
        params: dict[str, Any] = d["params"]
        _, report, infos = await self._prepare(inp, request.execution, context)
        objective = params["objective"]
        if objective in _NEEDS_MU and inp.mu is None:
            raise errors.invalid_argument(
                [errors.FieldViolation("inputs.expected_returns", f"required for {objective}")]
            )
        host = execution_pb2.ExecutionOptions()
        rf = params["risk_free_rate"]
        if objective == "hrp":
            op = portfolio_hrp.HRP
            run_inputs = {
                "cov": inp.cov,
                "mu": inp.mu,
                "linkage_method": params["linkage_method"],
                "risk_free_rate": rf,
            }
        elif objective == "risk_parity":
            op = portfolio_hrp.RISK_PARITY
            run_inputs = {
                "cov": inp.cov,
                "mu": inp.mu,
                "risk_budgets": params.get("risk_budgets"),
                "risk_free_rate": rf,
            }
        else:
            op = portfolio_optimise.OPTIMISE
            run_inputs = {
                "objective": objective,
                "mu": inp.mu,
                "cov": inp.cov,
                "constraints": params["constraints"],
                "risk_free_rate": rf,
                "target_return": params.get("target_return", float("nan")),
                "target_volatility": params.get("target_volatility", float("nan")),
                "risk_aversion": params["risk_aversion"],
                "scenarios": inp.returns,
                "beta": params["beta"],
            }
        result, info = await self.rt.run(op, run_inputs, host, context)
        infos.append(info)
        r: PortfolioResult = result.value
        if r.infeasible:
            raise infeasible(r.infeasible)
        main, estimation = self._execution(infos, inp)
        with self.rt.span("encode"):
            return portfolio_pb2.OptimizePortfolioResponse(
                weights=r.weights.tolist(),
                expected_return=r.expected_return,
                volatility=r.volatility,
                sharpe_ratio=r.sharpe_ratio,
                risk_contributions=r.risk_contributions.tolist(),
                cvar=r.cvar,
                solver=self._solver(r.solver),
                covariance_report=report,
                expected_returns=[] if inp.mu is None else inp.mu.tolist(),
                execution=main,
                estimation_execution=estimation,
                estimate_cached=inp.cached,
            )

    @rpc
    async def ComputeEfficientFrontier(
        self,
        request: portfolio_pb2.ComputeEfficientFrontierRequest,
        context: grpc.aio.ServicerContext,
    ) -> portfolio_pb2.ComputeEfficientFrontierResponse:
        """``num_points`` efficient portfolios."""

        def decode(req: portfolio_pb2.ComputeEfficientFrontierRequest) -> dict[str, Any]:
            v = Violations()
            inp = self._inputs(req.inputs, v, need_mu=True)
            points = req.num_points or 50
            if not 2 <= points <= MAX_FRONTIER_POINTS:
                v.add("num_points", f"must be in [2, {MAX_FRONTIER_POINTS}], got {points}")
            if not math.isfinite(req.risk_free_rate):
                v.add("risk_free_rate", "must be finite")
            cons = self._constraints(req.constraints, inp.n, v)
            self.rt.check_execution(req.execution, "execution", v)
            if v:
                raise errors.invalid_argument(v)
            return {"inputs": inp, "constraints": cons, "num_points": int(points)}

        d = await self.rt.decode(decode, request)
        inp = d["inputs"]
        _, report, infos = await self._prepare(inp, request.execution, context)
        result, info = await self.rt.run(
            portfolio_optimise.FRONTIER,
            {
                "mu": inp.mu,
                "cov": inp.cov,
                "constraints": d["constraints"],
                "num_points": d["num_points"],
                "risk_free_rate": float(request.risk_free_rate),
            },
            execution_pb2.ExecutionOptions(),
            context,
        )
        infos.append(info)
        fr: portfolio_optimise.FrontierResult = result.value
        if fr.infeasible:
            raise infeasible(fr.infeasible)
        main, estimation = self._execution(infos, inp)
        with self.rt.span("encode"):
            return portfolio_pb2.ComputeEfficientFrontierResponse(
                target_returns=fr.target_returns.tolist(),
                expected_returns=fr.expected_returns.tolist(),
                volatilities=fr.volatilities.tolist(),
                sharpe_ratios=fr.sharpe_ratios.tolist(),
                weights=tensors.encode(fr.weights),
                solver=self._solver(fr.solver),
                covariance_report=report,
                execution=main,
                estimation_execution=estimation,
                estimate_cached=inp.cached,
            )

    @rpc
    async def ComputeBlackLitterman(
        self,
        request: portfolio_pb2.ComputeBlackLittermanRequest,
        context: grpc.aio.ServicerContext,
    ) -> portfolio_pb2.ComputeBlackLittermanResponse:
        """Black-Litterman posterior returns and covariance."""

        def decode(req: portfolio_pb2.ComputeBlackLittermanRequest) -> _Inputs:
            v = Violations()
            if not req.inputs.HasField("black_litterman"):
                v.add("inputs.black_litterman", "required: the views")
            inp = self._inputs(req.inputs, v, need_mu=False)
            inp.estimate["returns_method"] = None
            self.rt.check_execution(req.execution, "execution", v)
            if v:
                raise errors.invalid_argument(v)
            return inp

        inp = await self.rt.decode(decode, request)
        bl, _, infos = await self._prepare(inp, request.execution, context)
        main, _ = self._execution(infos, inp)
        with self.rt.span("encode"):
            return portfolio_pb2.ComputeBlackLittermanResponse(
                prior_returns=bl.prior_returns.tolist(),
                posterior_returns=bl.posterior_returns.tolist(),
                posterior_covariance=tensors.encode(bl.posterior_covariance),
                omega=bl.omega.tolist(),
                implied_weights=bl.implied_weights.tolist(),
                execution=main,
            )

    @rpc
    async def AllocateShares(
        self, request: portfolio_pb2.AllocateSharesRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.AllocateSharesResponse:
        """Whole shares for a capital amount."""

        def decode(req: portfolio_pb2.AllocateSharesRequest) -> dict[str, Any]:
            v = Violations()
            w = tensors.finite_values(req.weights, "weights", v)
            p = tensors.finite_values(req.latest_prices, "latest_prices", v)
            if w is not None and (w.size == 0 or not np.any(w)):
                v.add("weights", "required: not all zero")
            if w is not None and w.size > MAX_ASSETS:
                v.add("weights", f"at most {MAX_ASSETS} assets")
            if p is not None and w is not None and p.shape != w.shape:
                v.add("latest_prices", f"needs {w.shape[0]} prices, one per weight")
            elif p is not None and not np.all(p > 0):
                v.add("latest_prices", "every price must be > 0")
            if not (math.isfinite(req.total_value) and req.total_value > 0):
                v.add("total_value", "must be > 0")
            if req.HasField("short_ratio") and not (
                math.isfinite(req.short_ratio) and req.short_ratio >= 0
            ):
                v.add("short_ratio", "must be >= 0")
            methods = {0: "greedy", 1: "greedy", 2: "lp"}
            if req.method not in methods:
                v.add("method", "must be ALLOCATION_METHOD_GREEDY or _LP")
            self.rt.check_execution(req.execution, "execution", v)
            if v:
                raise errors.invalid_argument(v)
            return {
                "weights": w,
                "prices": p,
                "total_value": float(req.total_value),
                "method": methods[req.method],
                "short_ratio": req.short_ratio if req.HasField("short_ratio") else None,
            }

        inputs = await self.rt.decode(decode, request)
        result, info = await self.rt.run(
            portfolio_allocation.ALLOCATE, inputs, request.execution, context
        )
        a: portfolio_allocation.Allocation = result.value
        with self.rt.span("encode"):
            return portfolio_pb2.AllocateSharesResponse(
                shares=a.shares.tolist(),
                leftover=a.leftover,
                allocated_weights=a.allocated_weights.tolist(),
                rmse=a.rmse,
                execution=info,
            )


SERVICE = ServiceSpec(
    name=portfolio_pb2.DESCRIPTOR.services_by_name["PortfolioService"].full_name,
    create=PortfolioServicer,
    add_to_server=portfolio_pb2_grpc.add_PortfolioServiceServicer_to_server,
)

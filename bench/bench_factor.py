"""The factor risk model against toraniko 1.1.1, side by side in one run.

Data: the S&P 500 panel of ``data/`` (448 stocks with a market cap in the
2017-03-08 constituents snapshot and a close on all 1,259 days; one snapshot,
not point in time: market cap = shares outstanding x previous close).
Model: momentum (252-day window, half-life 126, lag 20), size, value;
market + 11 GICS sectors + 3 styles; 987 regression dates.

1. toraniko 1.1.1, once: ``factor_mom`` + ``factor_sze`` (the styles) and
   ``estimate_factor_returns`` over the 987 dates x 448 stocks (styles from
   our engine, so both regress on the same NaN-free inputs). toraniko has no
   covariance step. ``--toraniko-dates N`` times it on the last N return
   dates instead (say so when reading the ratio).
2. Tickwire in-process, per backend (numpy, torch-cpu; torch-cuda on a CUDA
   host): ``estimate_risk_model`` -- styles, factor returns, EW covariance,
   specific variance, exposures -- median of ``--repeats`` runs.
3. Tickwire through the RPC: ``Client.factor.estimate_risk_model`` against a
   server in its own process (routed, and pinned per backend), wall time at
   the client including encoding and decoding, median of ``--repeats``.

The factor returns of 1 and 2 are compared (max abs difference). Run:
``python bench/bench_factor.py``; results go to ``bench/results/factor-cpu.md``
(``factor-cuda.md`` when torch-cuda is present).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import _common as common
import numpy as np
from bench_var_backends import thread_settings

WINDOW, HALF_LIFE, LAG = 252, 126, 20


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def _long(pl, dates, symbols, **cols):
    d, n = next(iter(cols.values())).shape
    frame = {"date": np.repeat(dates, n), "symbol": np.tile(symbols, d)}
    frame.update({k: v.ravel() for k, v in cols.items()})
    return pl.DataFrame(frame)


def time_toraniko(panel, styles: np.ndarray, first: int, dates_limit: int | None) -> dict:
    """toraniko's styles and factor returns; seconds and its factor returns."""
    import polars as pl
    from toraniko import model as tm
    from toraniko import styles as ts

    r, caps = panel.returns(), panel.market_caps()
    dates = panel.dates[1:].to_numpy()
    start = 0 if dates_limit is None else max(r.shape[0] - dates_limit, 0)
    symbols = np.array(panel.symbols)
    t0 = time.perf_counter()
    ts.factor_mom(
        _long(pl, dates[start:], symbols, asset_returns=r[start:]),
        trailing_days=WINDOW,
        half_life=HALF_LIFE,
        lag=LAG,
        winsor_factor=0.01,
    ).collect()
    ts.factor_sze(_long(pl, dates[start:], symbols, market_cap=caps[start:])).collect()
    t_styles = time.perf_counter() - t0
    d0 = max(first, start)
    d = r.shape[0] - d0
    sectors = {
        name: np.repeat((panel.sectors == i).astype(float)[None, :], d, 0)
        for i, name in enumerate(panel.sector_names)
    }
    x = styles[d0:]
    t0 = time.perf_counter()
    fr, _ = tm.estimate_factor_returns(
        _long(pl, dates[d0:], symbols, asset_returns=r[d0:]),
        _long(pl, dates[d0:], symbols, market_cap=caps[d0:]),
        _long(pl, dates[d0:], symbols, **sectors),
        _long(
            pl, dates[d0:], symbols, mom_score=x[..., 0], sze_score=x[..., 1], val_score=x[..., 2]
        ),
        winsor_factor=0.05,
        residualize_styles=True,
    )
    t_returns = time.perf_counter() - t0
    return {
        "styles_s": t_styles,
        "returns_s": t_returns,
        "dates": r.shape[0] - start,
        "regression_dates": d,
        "factor_returns": fr.sort("date").drop("date").to_numpy(),
    }


def rpc_times(panel, weights, backends: list[str | None], repeats: int) -> dict:
    """Median client wall time of EstimateRiskModel per pinned backend (None: routed)."""
    import bench_latency as bl
    from bench_pricing import rpc_server
    from tickwire_client import Client

    labels = [panel.sector_names[i] for i in panel.sectors]
    kwargs = {
        "book_value_per_share": panel.book_per_share,
        "sales_per_share": panel.sales_per_share,
        "earnings_per_share": panel.earnings_per_share,
        "momentum_trailing_days": WINDOW,
        "momentum_half_life_days": HALF_LIFE,
        "momentum_lag_days": LAG,
        "portfolio_weights": weights,
    }
    out: dict = {}
    server = bl.ServerProcess(rpc_server)
    try:
        with Client(f"127.0.0.1:{server.port}", timeout=600, trace=False) as client:
            for backend in backends:
                client.factor.estimate_risk_model(
                    panel.closes, panel.shares, labels, backend=backend, **kwargs
                )  # warm-up
                wall, compute, used = [], [], set()
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    m = client.factor.estimate_risk_model(
                        panel.closes, panel.shares, labels, backend=backend, **kwargs
                    )
                    wall.append(time.perf_counter() - t0)
                    compute.append(m.execution.compute_ms / 1e3)
                    used.add(m.execution.backend_used)
                out[backend or "routed"] = {
                    "wall_s": statistics.median(wall),
                    "compute_s": statistics.median(compute),
                    "used": ", ".join(sorted(used)),
                    "factor_returns": m.factor_returns,
                }
    finally:
        server.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--toraniko-dates",
        type=int,
        default=None,
        help="time toraniko on the last N return dates only",
    )
    ap.add_argument("--no-toraniko", action="store_true")
    args = ap.parse_args(argv)

    from factor_panel import sp500_panel
    from tickwire.engines import factor_model, factor_styles
    from tickwire.routing.backends import detect_backends

    env = common.environment()
    panel = sp500_panel()
    settings = factor_model.ModelSettings(
        momentum=factor_styles.MomentumParams(WINDOW, HALF_LIFE, LAG)
    )
    n = len(panel.symbols)
    weights = np.full((1, n), 1.0 / n)
    backends = {
        k: v for k, v in detect_backends().items() if k in ("numpy", "torch-cpu", "torch-cuda")
    }

    def run(be):
        return factor_model.estimate_risk_model(
            be,
            panel.closes,
            panel.shares,
            panel.sectors,
            panel.sector_names,
            panel.book_per_share,
            panel.sales_per_share,
            panel.earnings_per_share,
            settings,
            portfolio_weights=weights,
            return_style_scores=True,
        )

    def measure(phase: str) -> tuple[dict, dict]:
        inproc = {}
        for name, be in backends.items():
            run(be)  # warm-up
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                model = run(be)
                times.append(time.perf_counter() - t0)
            inproc[name] = (statistics.median(times), model)
            print(f"{phase}: in-process {name}: {statistics.median(times):.3f} s", flush=True)
        rpc = rpc_times(panel, weights, [None, *backends], args.repeats)
        for k, v in rpc.items():
            print(f"{phase}: RPC {k}: {v['wall_s']:.3f} s (server {v['compute_s']:.3f} s)")
        return inproc, rpc

    # Tickwire is timed before and after toraniko, and the slower median of the
    # two phases is compared with toraniko: load from other jobs that comes and
    # goes during toraniko's minute or two then counts against Tickwire.
    inproc, rpc = measure("before")
    ref_model = inproc["numpy"][1]
    tor = None
    phases: dict[str, tuple[float, float]] = {}
    if not args.no_toraniko:
        print("toraniko (once) ...", flush=True)
        tor = time_toraniko(
            panel, ref_model.style_scores, ref_model.first_date, args.toraniko_dates
        )
        print(f"toraniko styles {tor['styles_s']:.1f} s, returns {tor['returns_s']:.1f} s")
        after_inproc, after_rpc = measure("after")
        for k, (t, m) in after_inproc.items():
            phases[f"in-process {k}"] = (inproc[k][0], t)
            inproc[k] = (max(t, inproc[k][0]), m)
        for k, v in after_rpc.items():
            phases[f"RPC {k}"] = (rpc[k]["wall_s"], v["wall_s"])
            rpc[k] = {**v, "wall_s": max(v["wall_s"], rpc[k]["wall_s"])}

    d = ref_model.factor_returns.shape[0]
    rows = []
    if tor is not None:
        total = tor["styles_s"] + tor["returns_s"]
        rows.append(("toraniko 1.1.1: momentum + size scores", f"{tor['styles_s']:.2f}", "", ""))
        rows.append(("toraniko 1.1.1: factor returns", f"{tor['returns_s']:.2f}", "", ""))
        rows.append(("toraniko 1.1.1: total (no covariance step)", f"{total:.2f}", "1", ""))
    else:
        total = None

    def ratio(t: float) -> str:
        return f"{total / t:.0f}x" if total else "n/a"

    for name, (t, _) in inproc.items():
        rows.append((f"Tickwire in-process, {name}: whole pipeline", f"{t:.3f}", ratio(t), ""))
    for name, v in rpc.items():
        rows.append(
            (
                f"Tickwire through the RPC, {name}: whole pipeline",
                f"{v['wall_s']:.3f}",
                ratio(v["wall_s"]),
                v["used"],
            )
        )
    headers = [
        "what",
        "seconds (slower median of before/after)",
        "toraniko total / this",
        "backend used",
    ]
    common.print_table("Factor model, S&P 500, 987 dates x 448 stocks", headers, rows)

    checks = []
    for name, (_, m) in inproc.items():
        diff = np.abs(m.factor_returns - ref_model.factor_returns).max()
        checks.append((f"in-process {name} vs numpy, factor returns", f"{diff:.1e}"))
    for name, v in rpc.items():
        diff = np.abs(v["factor_returns"] - ref_model.factor_returns).max()
        checks.append((f"RPC {name} vs in-process numpy, factor returns", f"{diff:.1e}"))
    if tor is not None and tor["regression_dates"] == d:
        diff = np.abs(tor["factor_returns"] - ref_model.factor_returns).max()
        checks.append(("toraniko vs Tickwire numpy, factor returns", f"{diff:.1e}"))

    settings_rows = [
        ("data", "data/sp500-stocks-5yr-2013-2018 closes + sp500-constituents-2017-03 snapshot"),
        ("panel", f"{panel.closes.shape[0]} closes x {n} stocks; {d} regression dates"),
        (
            "model",
            f"momentum {WINDOW}/{HALF_LIFE}/{LAG}, size 0.2/0.8, value (B/P, S/P, E/P); "
            "market + 11 sectors + 3 styles; returns winsorised 5%; styles residualised",
        ),
        ("risk", "EW factor covariance half-life 126 d, specific half-life 63 d, 1 portfolio"),
        (
            "toraniko",
            "full size"
            if args.toraniko_dates is None and tor
            else f"last {args.toraniko_dates} return dates"
            if tor
            else "not run",
        ),
        (
            "reference",
            f"toraniko {_version('toraniko')} (installed --no-deps: it pins "
            f"numpy~=1.26), polars {_version('polars')}",
        ),
        (
            "repeats",
            f"Tickwire {args.repeats} per phase, before and after toraniko (the "
            "slower phase's median is reported); toraniko once",
        ),
        ("threads", thread_settings()),
        (
            "host",
            "shared with other engineers' jobs (2 cores): compare the ratios, "
            "measured side by side in this run",
        ),
    ]
    notes = (
        "toraniko loops in Python: a `rolling_map` call per (stock, date) for momentum and a "
        "frame filter plus two `lstsq` per date for the regressions. Tickwire computes every "
        "momentum window as one product over a strided (windows, stocks, 252) view and solves "
        "all 987 dates' weighted least squares as one batched (D, F, F) system. The Tickwire "
        "rows include what toraniko does not do: the value scores, the EW factor covariance, "
        "the specific variances, the exposures and a portfolio's risk decomposition; the RPC "
        "rows add encoding the 4.5 MB of closes, decoding, validation and the response."
    )
    common.write_report(
        "factor-cuda" if "torch-cuda" in backends else "factor-cpu",
        "Factor risk model: Tickwire vs toraniko 1.1.1",
        settings_rows,
        [
            ("Times", common.markdown_table(headers, rows)),
            (
                "Tickwire before and after toraniko",
                common.markdown_table(
                    ["Tickwire, whole pipeline", "before (s, median)", "after (s, median)"],
                    [(k, f"{a:.3f}", f"{b:.3f}") for k, (a, b) in phases.items()],
                ),
            ),
            ("Agreement", common.markdown_table(["check", "max abs difference"], checks)),
            ("Notes", notes),
        ],
        env,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Regenerate the shipped routing profile, ``server/tickwire/routing/default_profile.json``.

1. ``tickwire calibrate`` (all operations, full sizes) measures every backend
   present on this host, ``--runs`` times (3 by default); each coefficient is
   the median over the runs, so that a burst of load from other processes
   during one run does not ship in the default.
2. Unless torch-cuda was among them, entries for torch-cuda are added, derived
   by hand from the H100 measurements in DESIGN.md ("Hardware routing"), so
   that a CUDA host routes sensibly before it runs ``tickwire calibrate``
   itself. They are marked as derived in the profile's metadata; a profile
   measured on the CUDA host replaces them pair by pair (``load_profile``
   overlays the shipped default per (operation, backend)).

How the torch-cuda entries are derived, per operation:

- ``fixed_ns``: the host-side work every backend does (this host's measured
  numpy ``fixed_ns`` for the operation) plus one GPU round trip (about 47 us on
  the H100) per host/device synchronisation the engine makes. This errs on the
  slow side, so that small requests stay on the CPU.
- ``ns_per_unit``: scenario operations: 0.77 ms for a 100,000 x 2,000 VaR with
  the matrix resident, i.e. 0.77e6 / 2e8 ns per scenario x asset, times the
  passes the operation makes over the matrix. Monte Carlo: 2.1 ms for 1e8
  one-step paths in float32, times 4 for float64 (half the FP64 rate and twice
  the bytes, rounded up), per path x asset. (The engine's host-side tail
  selection per chunk is not in that figure; it does not change which side of
  the CPU/GPU line a large Monte Carlo falls on.) Factor-model and
  covariance operations: by analogy with the scenario product, one
  multiply-add per unit of work times the multiply-adds each unit costs (see
  ``CUDA_DERIVATION``).
- ``transfer_ns_per_byte``: (95 ms - 0.77 ms) to copy the 1.6 GB matrix for the
  call, per byte.

Usage (from the repository root)::

    .venv/bin/python bench/make_default_profile.py   # ~3.5 min on a 2-core VM
    .venv/bin/python bench/make_default_profile.py --quick --output /tmp/p.json
    .venv/bin/python bench/make_default_profile.py --derive-only  # torch-cuda entries only
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from tickwire.cli import main as tickwire_main
from tickwire.routing.cost_model import Coefficients, CostProfile
from tickwire.routing.operation import all_operations

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "server" / "tickwire" / "routing" / "default_profile.json"

# DESIGN.md, "Hardware routing": measured on an H100, torch 2.11, eager PyTorch.
GPU_ROUND_TRIP_NS = 47_000.0  # a tiny GPU op round trip
VAR_WORK = 100_000 * 2_000  # scenarios x assets
VAR_BYTES = VAR_WORK * 8  # float64 scenario matrix, 1.6 GB
VAR_RESIDENT_NS = 0.77e6  # VaR with the matrix already on the GPU
VAR_COPIED_NS = 95e6  # the same VaR when the matrix is copied there for the call
MC_PATHS = 1e8  # one-step Monte Carlo European call ...
MC_FLOAT32_NS = 2.1e6  # ... took 2.1 ms in float32
MC_FLOAT64_FACTOR = 4.0  # conservative float64 cost over float32

SCENARIO_NS_PER_UNIT = VAR_RESIDENT_NS / VAR_WORK
MC_NS_PER_UNIT = MC_FLOAT32_NS / MC_PATHS * MC_FLOAT64_FACTOR
TRANSFER_NS_PER_BYTE = (VAR_COPIED_NS - VAR_RESIDENT_NS) / VAR_BYTES

#: operation -> (GPU round trips per call, per-unit cost on the GPU); from the
#: engine code in tickwire/engines/risk.py.
CUDA_DERIVATION: dict[str, tuple[int, float]] = {
    # one product S @ w, its P&L copied back
    "risk.historical_var": (1, SCENARIO_NS_PER_UNIT),
    "risk.parametric_normal_var": (1, SCENARIO_NS_PER_UNIT),
    "risk.cornish_fisher_var": (1, SCENARIO_NS_PER_UNIT),
    # S @ w, S^T @ (pnl - mean) and the column sums: three passes, three copies back
    "risk.component_var": (3, 3 * SCENARIO_NS_PER_UNIT),
    # the loading vector moved once; draws made on the device, P&L copied back per chunk
    "risk.monte_carlo_var": (2, MC_NS_PER_UNIT),
    # Pricing: rough, by analogy with the one-step Monte Carlo kernel above (one
    # normal draw, an exp and a payoff per unit); replace by a CUDA calibration.
    # BSM: inputs in, prices and Greeks out; a few exp/log/erfc per contract.
    "pricing.bsm": (2, 2 * MC_NS_PER_UNIT),
    # Newton/bisection: about ten BSM evaluations, each with a host check.
    "pricing.implied_volatility": (10, 20 * MC_NS_PER_UNIT),
    # Paths x steps: one draw, an exp and the path state per unit.
    "pricing.monte_carlo": (2, MC_NS_PER_UNIT),
    # Trees: one max/multiply-add per node; Longstaff-Schwartz: per path-date.
    "pricing.american": (2, MC_NS_PER_UNIT),
    # Factor model, by analogy with the scenario product (one multiply-add per
    # unit of work over data resident on the device), from tickwire/engines/factor_*.py.
    # Styles: work = dates x assets x momentum window, one multiply-add each;
    # the winsorising percentiles and the masks sync with the host a few times.
    "factor.style_scores": (4, SCENARIO_NS_PER_UNIT),
    # Batched (D, F, F) normal equations: work = dates x assets x factors, and
    # X'WX costs about F (~16) multiply-adds per unit; one batched solve.
    "factor.factor_returns": (3, 16 * SCENARIO_NS_PER_UNIT),
    # The whole pipeline: work = dates x assets x (window + factors).
    "factor.risk_model": (8, 4 * SCENARIO_NS_PER_UNIT),
    # Covariance estimators: work = T x N^2 x passes, one multiply-add per unit.
    "portfolio.estimate_inputs": (2, SCENARIO_NS_PER_UNIT),
}


def cuda_entries(measured: CostProfile) -> dict[str, Coefficients]:
    """torch-cuda coefficients per operation, derived as the module docstring says."""
    out = {}
    for op in all_operations():
        if not op.runs_on("torch-cuda") or op.name not in CUDA_DERIVATION:
            continue
        round_trips, per_unit = CUDA_DERIVATION[op.name]
        host = measured.operations[op.name]["numpy"].fixed_ns
        out[op.name] = Coefficients(host + round_trips * GPU_ROUND_TRIP_NS, per_unit)
    return out


def add_derived_cuda(profile: CostProfile) -> CostProfile:
    """``profile`` with the derived torch-cuda entries and their provenance added."""
    entries = cuda_entries(profile)
    for op, coeffs in entries.items():
        profile.operations.setdefault(op, {})["torch-cuda"] = coeffs
    profile.transfer_ns_per_byte["torch-cuda"] = TRANSFER_NS_PER_BYTE
    missing = [
        op.name for op in all_operations() if op.runs_on("torch-cuda") and op.name not in entries
    ]
    profile.metadata["torch-cuda"] = {
        "source": (
            "derived from the H100 measurements in DESIGN.md (Hardware routing), "
            "not measured on this host; run `tickwire calibrate` on a CUDA host to "
            "replace them"
        ),
        "design_measurements": {
            "gpu_round_trip_ns": GPU_ROUND_TRIP_NS,
            "var_100000x2000_resident_ns": VAR_RESIDENT_NS,
            "var_100000x2000_copied_ns": VAR_COPIED_NS,
            "monte_carlo_1e8_paths_float32_ns": MC_FLOAT32_NS,
        },
        "rules": {
            "fixed_ns": "numpy fixed_ns measured here + 47 us per GPU round trip",
            "ns_per_unit": (
                "scenario ops: 0.77e6 / 2e8 per pass over the matrix; "
                "monte carlo: 2.1e6 / 1e8 x 4 (float64)"
            ),
            "transfer_ns_per_byte": "(95e6 - 0.77e6) / 1.6e9",
        },
        "generated_by": "bench/make_default_profile.py",
        "operations_without_entry": missing,
    }
    return profile


def median_profile(runs: list[CostProfile]) -> CostProfile:
    """Per-coefficient median of several calibrations (metadata of the last one)."""
    out = CostProfile(metadata=dict(runs[-1].metadata))
    for op in runs[-1].operations:
        for backend in runs[-1].operations[op]:
            fits = [r.operations[op][backend] for r in runs]
            out.operations.setdefault(op, {})[backend] = Coefficients(
                statistics.median(c.fixed_ns for c in fits),
                statistics.median(c.ns_per_unit for c in fits),
            )
    for backend in runs[-1].transfer_ns_per_byte:
        out.transfer_ns_per_byte[backend] = statistics.median(
            r.transfer_ns_per_byte[backend] for r in runs
        )
    if len(runs) > 1:
        out.metadata["calibration"] = (
            f"per-coefficient median of {len(runs)} runs of `tickwire calibrate`"
        )
    return out


def print_table(profile: CostProfile, title: str) -> None:
    print(title)
    for op in sorted(profile.operations):
        for backend, c in profile.operations[op].items():
            print(
                f"{op:<32} {backend:<11} fixed {c.fixed_ns / 1e3:9.1f} us"
                f"  per unit {c.ns_per_unit:8.5f} ns"
            )
    for backend, v in sorted(profile.transfer_ns_per_byte.items()):
        print(f"transfer {backend:<11} {v:.4f} ns/byte")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", default=str(DEFAULT_OUTPUT), help=f"default {DEFAULT_OUTPUT}")
    p.add_argument("--quick", action="store_true", help="tickwire calibrate --quick")
    p.add_argument("--runs", type=int, default=3, help="calibrations to take the median of")
    p.add_argument(
        "--derive-only",
        action="store_true",
        help="no calibration: re-derive the torch-cuda entries of the profile at --output",
    )
    args = p.parse_args(argv)
    if args.derive_only:
        profile = add_derived_cuda(CostProfile.from_json(json.loads(Path(args.output).read_text())))
        profile.save(args.output)
        print_table(profile, f"--- wrote {args.output} (torch-cuda entries re-derived)")
        return 0

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(max(args.runs, 1)):
            path = str(Path(tmp) / f"run{i}.json")
            print(f"--- tickwire calibrate, run {i + 1} of {args.runs}", flush=True)
            rc = tickwire_main(["calibrate", "--output", path, *(["--quick"] * args.quick)])
            if rc != 0:
                return rc
            runs.append(CostProfile.from_json(json.loads(Path(path).read_text())))
    profile = median_profile(runs)
    if "torch-cuda" in profile.metadata.get("backends", []):
        print("torch-cuda was measured on this host; no derived entries added")
    else:
        profile = add_derived_cuda(profile)
    profile.save(args.output)
    print_table(profile, f"--- wrote {args.output} (torch-cuda derived unless measured)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

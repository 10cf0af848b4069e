"""Tickwire streaming demo: order-flow toxicity (VPIN) through a trading day.

1. Replays the LOBSTER NASDAQ days of 2012-06-21 for AAPL and AMZN
   (``data/lobster-*-2012-06-21-l1``) with ``client.market_data.replay``, as
   fast as the stream takes them, merged in time order.
2. Forwards every trade batch into one ``StreamVpin`` bidirectional stream;
   the server keeps VPIN state per symbol and answers each completed volume
   bucket: VPIN (bulk volume classification, n = 50 buckets), its CDF rank,
   the bucket's order imbalance.
3. Shows a live view (VPIN per symbol, CDF rank, buckets, a progress bar over
   the session), then the accuracy of BVC against the true aggressor sides
   that LOBSTER records, and writes a PNG of price and VPIN through the day.

Parameters: bucket volume V = 10,000 AAPL shares and 3,000 AMZN shares (about
a 285th and a 270th of the day's executed volume: a stream must fix V before
the day's volume is known), 10-second BVC bars, normal CDF, expanding sigma.

Usage::

    python clients/python/examples/stream_demo.py [--target host:port] [--plot out/vpin.png]
                                                  [--speed 600]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np
from _local_server import local_server
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from tickwire_client import Client
from tickwire_client.microstructure import VpinBuckets, vpin_parameters

console = Console(width=None if sys.stdout.isatty() else 150)

DATASETS = ["lobster-aapl-2012-06-21-l1", "lobster-amzn-2012-06-21-l1"]
BUCKET_VOLUME = {"AAPL": 10_000.0, "AMZN": 3_000.0}
BAR_NS = 10_000_000_000
WINDOW = 50


class Session:
    """What the live view shows, filled by the replay thread and the stream."""

    def __init__(self) -> None:
        self.progress = 0.0
        self.replay_ts_ns = 0
        self.trades = {s: 0 for s in BUCKET_VOLUME}
        self.batches = 0
        self.updates: dict[str, list[VpinBuckets]] = {s: [] for s in BUCKET_VOLUME}
        self.rejections: list[str] = []

    def column(self, symbol: str, name: str) -> np.ndarray:
        parts = [getattr(u, name) for u in self.updates[symbol]]
        return np.concatenate(parts) if parts else np.empty(0)


def trade_batches(client: Client, session: Session, speed: float):
    """The replay's trade batches, counting progress as they pass."""
    for msg in client.market_data.replay(DATASETS, speed=speed, trades=True, batch_size=500):
        session.progress = msg.progress
        session.replay_ts_ns = msg.replay_ts_ns
        if msg.WhichOneof("payload") == "trades":
            session.trades[msg.trades.symbol] += len(msg.trades.ts_ns)
            session.batches += 1
            yield msg.trades


def view(session: Session, progress: Progress, task: int) -> Group:
    progress.update(task, completed=session.progress * 100)
    table = Table(title="VPIN per symbol (bulk volume classification, n = 50)")
    for col in ("symbol", "trades", "buckets", "last price", "imbalance", "VPIN", "CDF rank"):
        table.add_column(col, justify="right")
    for s in BUCKET_VOLUME:
        ups = session.updates[s]
        if ups:
            u = ups[-1]
            vpin = u.vpin[-1]
            color = "red" if u.cdf_rank[-1] >= 0.9 else "yellow" if u.cdf_rank[-1] >= 0.7 else ""
            vp = (
                "warming up"
                if np.isnan(vpin)
                else f"[{color}]{vpin:.3f}[/{color}]"
                if color
                else f"{vpin:.3f}"
            )
            rank = "" if np.isnan(u.cdf_rank[-1]) else f"{u.cdf_rank[-1]:.2f}"
            table.add_row(s, f"{session.trades[s]:,}", f"{u.bucket_index[-1] + 1:,}",
                          f"{u.end_price[-1]:.2f}", f"{u.order_imbalance[-1]:+.2f}", vp, rank)  # fmt: skip
        else:
            table.add_row(s, f"{session.trades[s]:,}", "0", "", "", "", "")
    clock = ""
    if session.replay_ts_ns:
        import pandas as pd

        clock = pd.Timestamp(session.replay_ts_ns, tz="UTC").tz_convert("America/New_York")
        clock = f"replay clock {clock:%H:%M:%S} New York"
    return Group(progress, table, clock)


def accuracy_table(session: Session) -> Table:
    """BVC against the true aggressor sides, per symbol, from the streamed buckets."""
    t = Table(title="Bulk volume classification vs LOBSTER's true aggressor sides")
    for col in ("symbol", "V (shares)", "buckets", "BVC accuracy", "VPIN corr (BVC, true)",
                "mean |VPIN BVC - VPIN true|", "mean VPIN BVC", "mean VPIN true"):  # fmt: skip
        t.add_column(col, justify="right")
    for s, v in BUCKET_VOLUME.items():
        bvc, true = session.column(s, "bvc_buy_volume"), session.column(s, "true_buy_volume")
        correct = np.minimum(bvc, true) + np.minimum(v - bvc, v - true)
        acc = correct.sum() / (len(bvc) * v)
        a, b = session.column(s, "vpin_bvc"), session.column(s, "vpin_true_side")
        ok = ~np.isnan(a) & ~np.isnan(b)
        corr = np.corrcoef(a[ok], b[ok])[0, 1]
        t.add_row(s, f"{v:,.0f}", f"{len(bvc):,}", f"{acc:.1%}", f"{corr:.2f}",
                  f"{np.abs(a[ok] - b[ok]).mean():.3f}", f"{a[ok].mean():.3f}",
                  f"{b[ok].mean():.3f}")  # fmt: skip
    return t


def plot(session: Session, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import pandas as pd

    fig, axes = plt.subplots(2, 2, figsize=(13, 7), sharex="col")
    for col, s in enumerate(BUCKET_VOLUME):
        ts = pd.to_datetime(session.column(s, "end_ts_ns"), utc=True).tz_convert(
            "America/New_York"
        ).tz_localize(None)  # fmt: skip
        ax = axes[0, col]
        ax.plot(ts, session.column(s, "end_price"), color="black", lw=1)
        ax.set_title(f"{s} 2012-06-21: price at each volume bucket (V = {BUCKET_VOLUME[s]:,.0f})")
        ax.set_ylabel("USD")
        ax = axes[1, col]
        ax.plot(ts, session.column(s, "vpin_bvc"), label="VPIN (BVC)", color="tab:red")
        ax.plot(ts, session.column(s, "vpin_true_side"), label="VPIN (true sides)",
                color="tab:blue", alpha=0.7)  # fmt: skip
        ax.set_ylabel(f"VPIN, n = {WINDOW}")
        ax.legend(loc="upper right")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
        ax.set_xlabel("New York time")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def run(target: str, plot_path: Path, speed: float) -> None:
    session = Session()
    params = {
        s: vpin_parameters(v, window_buckets=WINDOW, bar_ns=BAR_NS)
        for s, v in BUCKET_VOLUME.items()
    }
    progress = Progress(TextColumn("session"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                        TimeElapsedColumn())  # fmt: skip
    task = progress.add_task("replay", total=100)
    t0 = time.perf_counter()
    with (
        Client(target, timeout=60.0) as client,
        Live(console=console, refresh_per_second=8) as live,
    ):
        stop = threading.Event()

        def refresh() -> None:
            while not stop.wait(0.125):
                live.update(view(session, progress, task))

        painter = threading.Thread(target=refresh, daemon=True)
        painter.start()
        try:
            for msg in client.microstructure.stream_vpin(
                trade_batches(client, session, speed), symbol_parameters=params
            ):
                kind = msg.WhichOneof("payload")
                if kind == "buckets":
                    session.updates[msg.buckets.symbol].append(VpinBuckets.from_proto(msg.buckets))
                elif kind == "rejection":
                    session.rejections.append(str(msg.rejection))
        finally:
            stop.set()
            painter.join()
        live.update(view(session, progress, task))
    console.print()
    elapsed = time.perf_counter() - t0
    trades = sum(session.trades.values())
    console.print(
        f"{trades:,} trades in {session.batches:,} batches through Replay -> StreamVpin in "
        f"{elapsed:.1f} s ({trades / elapsed:,.0f} trades/s end to end, with the live view)"
    )
    if session.rejections:
        console.print(f"[red]{len(session.rejections)} batches rejected[/red]")
    console.print(accuracy_table(session))
    console.print(
        "[dim]BVC accuracy: sum over buckets of min(BVC buy, true buy) + min(BVC sell, true "
        "sell), over the buckets' volume (Chakrabarty, Pascual and Shkilko 2015).[/dim]"
    )
    plot(session, plot_path)
    console.print(f"price and VPIN through the session: [bold]{plot_path}[/bold]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", help="host:port of a running server (default: start one)")
    parser.add_argument("--plot", default="out/vpin_2012-06-21.png", help="PNG path for the plot")
    parser.add_argument(
        "--speed", type=float, default=0.0,
        help="replay speed: 0 as fast as possible (default), N for N x real time (e.g. 600)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.target:
        run(args.target, Path(args.plot), args.speed)
    else:
        with local_server() as target:
            run(target, Path(args.plot), args.speed)


if __name__ == "__main__":
    main()

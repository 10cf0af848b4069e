/**
 * Tickwire from TypeScript: server health, VaR and CVaR of a real 10-stock book, a batch of
 * European options, and a day of real trades replayed through the server and streamed back
 * into VPIN.
 *
 *   node dist/examples/risk_pricing.js 127.0.0.1:50051      (or TICKWIRE_TARGET=host:port)
 *   make demo-clients                                       (starts a server for it)
 *
 * Reads data/daily-prices/stock_prices_1990_2024.csv.gz (adjusted daily closes), keeps the
 * dates from 2015-01-01 on which all ten stocks have a price, and sends the (T, 10) simple
 * returns as a float64 Tensor (row-major, little-endian), the same book as
 * clients/python/examples/risk_demo.py.
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { Backend } from "../gen/tickwire/common/v1/execution_pb.js";
import { MarketDataService } from "../gen/tickwire/marketdata/v1/market_data_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { MicrostructureService, StreamVpinRequestSchema } from "../gen/tickwire/microstructure/v1/microstructure_pb.js";
import { OptionType, PricingService } from "../gen/tickwire/pricing/v1/pricing_pb.js";
import { RiskService, VarMethod } from "../gen/tickwire/risk/v1/risk_pb.js";
import { connect, fromTensorF64, matrixToTensor, toTensor } from "../src/index.js";

const TICKERS = ["AAPL", "AMZN", "GOOG", "JPM", "BAC", "XOM", "PFE", "WMT", "MA", "SBUX"];
const WEIGHTS = [0.15, 0.15, 0.12, 0.1, 0.08, 0.1, 0.08, 0.1, 0.12, -0.1];
const BOOK_USD = 10_000_000;

/** (T, K) simple returns p_t / p_{t-1} - 1 over the dates where every ticker has a close. */
function loadReturns(path: string, tickers: string[], start: string): number[][] {
  const [header, ...lines] = gunzipSync(readFileSync(path)).toString("utf8").trim().split("\n");
  const cols = tickers.map((t) => header.split(",").indexOf(t));
  const closes = lines
    .map((l) => l.split(","))
    .filter((f) => f[0] >= start && cols.every((c) => f[c] !== ""))
    .map((f) => cols.map((c) => Number(f[c])));
  return closes.slice(1).map((row, t) => row.map((p, i) => p / closes[t][i] - 1));
}

const root = join(dirname(fileURLToPath(import.meta.url)), "../../../..");
const returns = loadReturns(join(root, "data/daily-prices/stock_prices_1990_2024.csv.gz"), TICKERS, "2015-01-01");
const tw = connect(process.argv[2] ?? process.env.TICKWIRE_TARGET ?? "127.0.0.1:50051", { timeoutMs: 30_000 });
console.log(`health: ${await tw.health()}; ${returns.length} daily returns of ${TICKERS.join(" ")}`);

const r = await tw.client(RiskService).computeVar({
  scenarioSource: { case: "scenarios", value: matrixToTensor(returns) },
  positions: WEIGHTS.map((w) => w * BOOK_USD),
  method: VarMethod.HISTORICAL,
  confidenceLevels: [0.95, 0.99],
  horizonDays: [1, 10],
});
for (const e of r.estimates) {
  console.log(`VaR ${e.confidenceLevel * 100}% ${e.horizonDays}d: ${e.var.toFixed(0)} USD, CVaR ${e.cvar.toFixed(0)} USD`);
}
console.log(`backend ${Backend[r.execution!.backendUsed]}, trace ${r.execution!.traceId}`);

const strikes = Float64Array.from([90, 95, 100, 105, 110]);
const p = await tw.client(PricingService).priceEuropean({
  contracts: {
    optionType: toTensor(Int32Array.from(strikes, () => OptionType.CALL)),
    spot: toTensor([100]), strike: toTensor(strikes), timeToExpiry: toTensor([0.5]),
    rate: toTensor([0.03]), volatility: toTensor([0.2]),
  },
  greeks: true,
});
const price = fromTensorF64(p.price!).data, delta = fromTensorF64(p.delta!).data;
strikes.forEach((k, i) => console.log(`call K=${k}: price ${price[i].toFixed(4)}, delta ${delta[i].toFixed(4)}`));

// A day of real trades: the LOBSTER AAPL and AMZN days of 2012-06-21, replayed by the server
// (MarketDataService.Replay) and piped into one StreamVpin stream; Connect writes each batch as
// flow control allows while the loop below reads the answers. Parameters as
// clients/python/examples/stream_demo.py: 10,000 AAPL / 3,000 AMZN shares per bucket, 10 s bars.
async function* vpinRequests(): AsyncGenerator<MessageInitShape<typeof StreamVpinRequestSchema>> {
  const params = (bucketVolume: number) => ({ bucketVolume, barNs: 10_000_000_000n });
  yield { payload: { case: "config", value: { symbols: [
    { symbol: "AAPL", parameters: params(10_000) }, { symbol: "AMZN", parameters: params(3_000) }] } } };
  let id = 0n;
  const replay = tw.client(MarketDataService).replay(
    { datasets: ["lobster-aapl-2012-06-21-l1", "lobster-amzn-2012-06-21-l1"], trades: true, batchSize: 500 },
    { timeoutMs: 300_000 });
  for await (const m of replay) {
    if (m.payload.case === "trades") yield { clientBatchId: ++id, payload: m.payload };
  }
}
const last = new Map<string, [number, number]>(); // symbol -> [last VPIN, buckets]
for await (const resp of tw.client(MicrostructureService).streamVpin(vpinRequests(), { timeoutMs: 300_000 })) {
  for (const a of resp.answers) {
    if (a.payload.case === "rejection") throw new Error(`batch ${a.clientBatchId} rejected`);
    if (a.payload.case !== "buckets") continue;
    const b = a.payload.value;
    last.set(b.symbol, [b.vpin[b.vpin.length - 1], (last.get(b.symbol)?.[1] ?? 0) + b.vpin.length]);
  }
}
[...last].sort().forEach(([s, [v, n]]) => console.log(`VPIN ${s}: ${v.toFixed(4)} after ${n} buckets`));

/**
 * Live tests against a real Tickwire server started by tests/test_clients.py, which passes
 * TICKWIRE_TARGET, TICKWIRE_FIXTURE (inputs and the Python client's answers, JSON) and
 * TICKWIRE_TRACE_OUT (where to write the trace and span id this client sent).
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { after, test } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { context, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { BasicTracerProvider } from "@opentelemetry/sdk-trace-base";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { Backend } from "../gen/tickwire/common/v1/execution_pb.js";
import {
  MicrostructureService,
  StreamVpinRequestSchema,
  VpinBucketsSchema,
} from "../gen/tickwire/microstructure/v1/microstructure_pb.js";
import type { VpinBuckets } from "../gen/tickwire/microstructure/v1/microstructure_pb.js";
import { PricingService } from "../gen/tickwire/pricing/v1/pricing_pb.js";
import { RiskService, VarMethod } from "../gen/tickwire/risk/v1/risk_pb.js";
import { Code, TickwireError, connect, fromTensorF64, toTensor } from "../src/index.js";

const fx = JSON.parse(readFileSync(process.env.TICKWIRE_FIXTURE ?? "", "utf8"));
const tw = connect(process.env.TICKWIRE_TARGET ?? "", { timeoutMs: 60_000 });
const risk = tw.client(RiskService);
const pricing = tw.client(PricingService);
const contextManager = new AsyncLocalStorageContextManager().enable();
context.setGlobalContextManager(contextManager);
after(() => contextManager.disable());

function varRequest(r: any) {
  return {
    scenarioSource: { case: "scenarios" as const, value: toTensor(Float64Array.from(r.scenarios.data), r.scenarios.shape) },
    positions: r.positions,
    method: r.method as VarMethod,
    confidenceLevels: r.confidence_levels,
    horizonDays: r.horizon_days,
    monteCarlo: r.num_simulations ? { numSimulations: BigInt(r.num_simulations), seed: BigInt(r.seed ?? 0) } : undefined,
    execution: { backend: Backend.NUMPY },
  };
}

/** Bitwise equality of two float64 arrays (Object.is tells 0 from -0 and NaN from NaN). */
function assertSameBits(got: ArrayLike<number>, want: ArrayLike<number>, what: string) {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) assert.ok(Object.is(got[i], want[i]), `${what}[${i}]: ${got[i]} != ${want[i]}`);
}

async function expectError(p: Promise<unknown>): Promise<TickwireError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof TickwireError, `expected a TickwireError, got ${e}`);
    return e;
  }
  assert.fail("the call succeeded");
}

test("health answers SERVING", async () => {
  assert.equal(await tw.health(), "SERVING");
});

test("ComputeVar matches the Python client bit for bit", async () => {
  const r = await risk.computeVar(varRequest(fx.risk));
  const e = fx.risk.expected;
  assertSameBits(r.estimates.map((x) => x.var), e.var, "var");
  assertSameBits(r.estimates.map((x) => x.cvar), e.cvar, "cvar");
  assertSameBits(r.estimates.map((x) => x.confidenceLevel), e.confidence_level, "confidence_level");
  assert.deepEqual(r.estimates.map((x) => x.horizonDays), e.horizon_days);
  assertSameBits([r.pnlMean, r.pnlStd], [e.pnl_mean, e.pnl_std], "pnl");
  assert.equal(Number(r.numScenarios), e.num_scenarios);
});

test("PriceEuropean matches the Python client bit for bit", async () => {
  const p = fx.pricing;
  const f64 = (xs: number[]) => toTensor(Float64Array.from(xs));
  const r = await pricing.priceEuropean({
    contracts: {
      optionType: toTensor(Int32Array.from(p.option_type)),
      spot: f64(p.spot), strike: f64(p.strike), timeToExpiry: f64(p.time_to_expiry),
      rate: f64(p.rate), dividendYield: f64(p.dividend_yield), volatility: f64(p.volatility),
    },
    greeks: true,
    execution: { backend: Backend.NUMPY },
  });
  assertSameBits(fromTensorF64(r.price!).data, p.expected.price, "price");
  assertSameBits(fromTensorF64(r.delta!).data, p.expected.delta, "delta");
  assertSameBits(fromTensorF64(r.vega!).data, p.expected.vega, "vega");
});

test("an expired deadline gives DEADLINE_EXCEEDED", async () => {
  const err = await expectError(risk.computeVar(varRequest(fx.deadline), { timeoutMs: fx.deadline.timeout_ms }));
  assert.equal(err.code, Code.DeadlineExceeded);
  assert.equal(err.codeName, "DEADLINE_EXCEEDED");
});

test("a malformed request gives INVALID_ARGUMENT naming the bad fields", async () => {
  const err = await expectError(risk.computeVar(varRequest(fx.invalid)));
  assert.equal(err.code, Code.InvalidArgument);
  assert.equal(err.codeName, "INVALID_ARGUMENT");
  assert.deepEqual(err.fields, fx.invalid.fields);
  assert.ok(err.fieldViolations.every((v) => v.description.length > 0));
});

test("the caller's active OpenTelemetry span continues into the server's trace", async () => {
  const provider = new BasicTracerProvider();
  const span = provider.getTracer("tickwire-ts-test").startSpan("desk-request");
  const r = await context.with(trace.setSpan(context.active(), span), () => risk.computeVar(varRequest(fx.risk)));
  span.end();
  const sc = span.spanContext();
  assert.equal(r.execution?.traceId, sc.traceId);
  writeFileSync(process.env.TICKWIRE_TRACE_OUT ?? "", JSON.stringify({ trace_id: sc.traceId, span_id: sc.spanId }));
});

test("retries UNAVAILABLE only (3 attempts against the flaky server, a bad request once)", async () => {
  const flaky = connect(process.env.TICKWIRE_FLAKY_TARGET ?? "", { timeoutMs: 10_000 });
  assert.equal(await flaky.health("flaky"), "SERVING");
  const err = await expectError(flaky.health("invalid"));
  assert.equal(err.codeName, "INVALID_ARGUMENT");
});

test("Tensor helpers: little-endian row-major bytes, shape checks", () => {
  const t = toTensor(Float64Array.from([1, 2, 3, 4, 5, 6]), [2, 3]);
  assert.deepEqual(t.shape, [2n, 3n]);
  // element [1, 0] = 4.0 = 0x4010000000000000, least significant byte first, at offset 24
  assert.deepEqual([...t.data.subarray(24, 32)], [0, 0, 0, 0, 0, 0, 0x10, 0x40]);
  assert.deepEqual([...fromTensorF64(t).data], [1, 2, 3, 4, 5, 6]);
  assert.throws(() => toTensor([1, 2, 3], [2, 2]), RangeError);
  assert.throws(() => fromTensorF64({ ...t, data: t.data.subarray(0, 8) }), RangeError);
});

test("a server stream through the layer: Watch yields SERVING, then ends at its timeout", async () => {
  const seen: string[] = [];
  const watch = async () => {
    for await (const r of tw.client(Health).watch({ service: "" }, { timeoutMs: 500 })) {
      seen.push(HealthCheckResponse_ServingStatus[r.status]);
    }
  };
  const err = await expectError(watch());
  assert.deepEqual(seen, ["SERVING"]);
  assert.equal(err.codeName, "DEADLINE_EXCEEDED");
});

test("a day of trades through the StreamVpin bidi stream equals the Python client's answers", async () => {
  // Fixture "vpin": hex protobuf requests (config, then trade batches) and, per symbol, the
  // Python client's buckets merged into one VpinBuckets. Connect pulls the requests from the
  // generator as HTTP/2 flow control lets it write, while this loop reads the answers.
  const requests = fx.vpin.requests.map((h: string) => fromBinary(StreamVpinRequestSchema, Buffer.from(h, "hex")));
  const trades = requests.reduce((n: number, r: any) => n + (r.payload.case === "trades" ? r.payload.value.tsNs.length : 0), 0);
  assert.equal(trades, fx.vpin.trades);
  assert.ok(trades >= 10_000);
  async function* send() {
    yield* requests;
  }
  const got = new Map<string, VpinBuckets>();
  let lastId = -1n;
  for await (const resp of tw.client(MicrostructureService).streamVpin(send(), { timeoutMs: 120_000 })) {
    for (const a of resp.answers) {
      assert.ok(a.clientBatchId > lastId, `answer ${a.clientBatchId} after ${lastId}`);
      assert.notEqual(a.payload.case, "rejection");
      lastId = a.clientBatchId;
      if (a.payload.case !== "buckets") continue;
      const b = a.payload.value;
      const acc = got.get(b.symbol) ?? create(VpinBucketsSchema, { symbol: b.symbol });
      got.set(b.symbol, acc);
      b.bucketIndex.forEach((k, j) => assert.equal(k, BigInt(acc.bucketIndex.length + j), `${b.symbol} bucket ${k}`));
      for (const f of VpinBucketsSchema.fields) {
        if (f.fieldKind === "list") (acc as any)[f.localName].push(...(b as any)[f.localName]);
      }
    }
  }
  assert.equal(got.size, fx.vpin.expected.length);
  for (const h of fx.vpin.expected) {
    const want = Buffer.from(h, "hex");
    const symbol = fromBinary(VpinBucketsSchema, want).symbol;
    assert.ok(want.equals(toBinary(VpinBucketsSchema, got.get(symbol)!)), `${symbol}: buckets differ from Python's`);
  }
});

/**
 * Round trip of the smallest VaR call and of a health check, sequential calls on one
 * connection: `node dist/examples/bench_var.js host:port N [requests.hex R]`. With a file of
 * StreamVpinRequest messages (hex, one a line, the config first) it also streams them R times
 * through StreamVpin and times each stream. Prints one JSON line (µs; vpin_s in seconds).
 * Used by bench/bench_clients.py.
 */
import { readFileSync } from "node:fs";
import { fromBinary } from "@bufbuild/protobuf";
import { MicrostructureService, StreamVpinRequestSchema } from "../gen/tickwire/microstructure/v1/microstructure_pb.js";
import { RiskService, VarMethod } from "../gen/tickwire/risk/v1/risk_pb.js";
import { connect, toTensor } from "../src/index.js";

const [target, n] = [process.argv[2], Number(process.argv[3] ?? 2000)];
const tw = connect(target);
const risk = tw.client(RiskService);
const request = {
  scenarioSource: { case: "scenarios" as const, value: toTensor([-0.01, 0.02], [2, 1]) },
  positions: [1e6], method: VarMethod.HISTORICAL, confidenceLevels: [0.99], horizonDays: [1],
};

async function time(call: () => Promise<unknown>): Promise<number[]> {
  for (let i = 0; i < Math.min(200, n); i++) await call();
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await call();
    out.push(Number(process.hrtime.bigint() - t0) / 1e3);
  }
  return out;
}

const varUs = await time(() => risk.computeVar(request));
const healthUs = await time(() => tw.health());
const result: Record<string, number[]> = { var_us: varUs, health_us: healthUs };
if (process.argv.length > 5) {
  const requests = readFileSync(process.argv[4], "utf8").trim().split("\n")
    .map((h) => fromBinary(StreamVpinRequestSchema, Buffer.from(h, "hex")));
  async function* send() {
    yield* requests;
  }
  result.vpin_s = [];
  for (let i = 0; i < Number(process.argv[5]); i++) {
    const t0 = process.hrtime.bigint();
    for await (const resp of tw.client(MicrostructureService).streamVpin(send(), { timeoutMs: 300_000 })) {
      if (resp.answers.some((a) => a.payload.case === "rejection")) throw new Error("a batch was rejected");
    }
    result.vpin_s.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
}
console.log(JSON.stringify(result));

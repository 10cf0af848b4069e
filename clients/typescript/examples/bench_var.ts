/**
 * Round trip of the smallest VaR call and of a health check, sequential calls on one
 * connection: `node dist/examples/bench_var.js host:port N`. Prints one JSON line (µs).
 * Used by bench/bench_clients.py.
 */
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
console.log(JSON.stringify({ var_us: varUs, health_us: healthUs }));

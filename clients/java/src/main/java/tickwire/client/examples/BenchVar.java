package tickwire.client.examples;

import io.grpc.ManagedChannel;
import java.util.Arrays;
import java.util.function.Supplier;
import java.util.stream.Collectors;
import tickwire.client.Tensors;
import tickwire.client.Tickwire;
import tickwire.risk.v1.Risk;
import tickwire.risk.v1.RiskServiceGrpc;

/**
 * Times the smallest VaR call and a health check, sequential calls on one channel: {@code
 * BenchVar host:port N}. Prints one JSON line (µs). Used by bench/bench_clients.py.
 */
public final class BenchVar {
  static double[] time(int n, Supplier<?> call) {
    for (int i = 0; i < Math.min(1000, n); i++) {
      call.get(); // JIT warm-up
    }
    double[] out = new double[n];
    for (int i = 0; i < n; i++) {
      long t0 = System.nanoTime();
      call.get();
      out[i] = (System.nanoTime() - t0) / 1e3;
    }
    return out;
  }

  static String json(double[] xs) {
    return Arrays.stream(xs).mapToObj(Double::toString).collect(Collectors.joining(",", "[", "]"));
  }

  public static void main(String[] args) {
    int n = Integer.parseInt(args[1]);
    ManagedChannel ch = Tickwire.connect(args[0]);
    var risk = RiskServiceGrpc.newBlockingStub(ch);
    Risk.ComputeVarRequest req =
        Risk.ComputeVarRequest.newBuilder()
            .setScenarios(Tensors.ofDoubles(new double[] {-0.01, 0.02}, 2, 1))
            .addPositions(1e6)
            .setMethod(Risk.VarMethod.VAR_METHOD_HISTORICAL)
            .addConfidenceLevels(0.99)
            .addHorizonDays(1)
            .build();
    double[] v = time(n, () -> Tickwire.call(() -> risk.computeVar(req)));
    double[] h = time(n, () -> Tickwire.health(ch, ""));
    System.out.println("{\"var_us\": " + json(v) + ", \"health_us\": " + json(h) + "}");
    ch.shutdownNow();
  }
}

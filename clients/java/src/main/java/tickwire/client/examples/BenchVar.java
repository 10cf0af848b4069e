package tickwire.client.examples;

import io.grpc.ManagedChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import java.util.stream.Collectors;
import tickwire.client.Streams;
import tickwire.client.Tensors;
import tickwire.client.Tickwire;
import tickwire.microstructure.v1.Microstructure.StreamVpinRequest;
import tickwire.microstructure.v1.Microstructure.StreamVpinResponse;
import tickwire.microstructure.v1.MicrostructureServiceGrpc;
import tickwire.risk.v1.Risk;
import tickwire.risk.v1.RiskServiceGrpc;

/**
 * Times the smallest VaR call and a health check, sequential calls on one channel: {@code
 * BenchVar host:port N [requests.hex R]}. With a file of StreamVpinRequest messages (hex, one a
 * line, the config first) it also streams them R times through StreamVpin ({@link
 * Streams#bidi}) and times each stream. Prints one JSON line (µs; vpin_s in seconds). Used by
 * bench/bench_clients.py.
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

  /** Seconds from the first write to the end of the answers, per stream. */
  static double[] timeStreams(ManagedChannel ch, List<StreamVpinRequest> requests, int reps) {
    double[] out = new double[reps];
    for (int i = 0; i < reps; i++) {
      long t0 = System.nanoTime();
      var rpc = MicrostructureServiceGrpc.newStub(ch).withDeadlineAfter(5, TimeUnit.MINUTES);
      Iterator<StreamVpinResponse> answers = Streams.bidi(rpc::streamVpin, requests.iterator());
      while (answers.hasNext()) {
        if (answers.next().getAnswersList().stream().anyMatch(a -> a.hasRejection())) {
          throw new IllegalStateException("a batch was rejected");
        }
      }
      out[i] = (System.nanoTime() - t0) / 1e9;
    }
    return out;
  }

  public static void main(String[] args) throws Exception {
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
    String vpin = "";
    if (args.length > 3) {
      HexFormat hex = HexFormat.of();
      List<StreamVpinRequest> requests = Files.readAllLines(Path.of(args[2])).stream()
          .map(l -> Tickwire.call(() -> StreamVpinRequest.parseFrom(hex.parseHex(l)))).toList();
      vpin = ", \"vpin_s\": " + json(timeStreams(ch, requests, Integer.parseInt(args[3])));
    }
    System.out.println("{\"var_us\": " + json(v) + ", \"health_us\": " + json(h) + vpin + "}");
    ch.shutdownNow();
  }
}

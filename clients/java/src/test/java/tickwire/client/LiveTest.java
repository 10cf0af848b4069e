package tickwire.client;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;
import static org.junit.Assume.assumeTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import org.junit.AfterClass;
import org.junit.BeforeClass;
import org.junit.Test;
import tickwire.common.v1.Execution.Backend;
import tickwire.common.v1.Execution.ExecutionOptions;
import tickwire.microstructure.v1.MicrostructureServiceGrpc;
import tickwire.microstructure.v1.Microstructure.StreamVpinAnswer;
import tickwire.microstructure.v1.Microstructure.StreamVpinRequest;
import tickwire.microstructure.v1.Microstructure.StreamVpinResponse;
import tickwire.microstructure.v1.Microstructure.VpinBuckets;
import tickwire.pricing.v1.Pricing;
import tickwire.pricing.v1.PricingServiceGrpc;
import tickwire.risk.v1.Risk;
import tickwire.risk.v1.RiskServiceGrpc;

/**
 * Live tests against a real Tickwire server started by tests/test_clients.py, which sets
 * TICKWIRE_TARGET, TICKWIRE_FIXTURE (inputs and the Python client's answers, JSON) and
 * TICKWIRE_TRACE_OUT. Without TICKWIRE_TARGET the live tests are skipped.
 */
public class LiveTest {
  private static ManagedChannel channel;
  private static JsonObject fx;

  @BeforeClass
  public static void connect() throws Exception {
    String target = System.getenv("TICKWIRE_TARGET");
    if (target == null || target.isEmpty()) {
      return;
    }
    fx = JsonParser.parseString(Files.readString(Path.of(System.getenv("TICKWIRE_FIXTURE")))).getAsJsonObject();
    channel = Tickwire.connect(target, 60_000, Tickwire.DEFAULT_MAX_MESSAGE_BYTES);
  }

  @AfterClass
  public static void close() throws Exception {
    if (channel != null) {
      channel.shutdown().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  private static RiskServiceGrpc.RiskServiceBlockingStub risk() {
    assumeTrue("TICKWIRE_TARGET not set: run through tests/test_clients.py", channel != null);
    return RiskServiceGrpc.newBlockingStub(channel);
  }

  static double[] doubles(JsonArray a) {
    double[] out = new double[a.size()];
    for (int i = 0; i < out.length; i++) {
      out[i] = a.get(i).getAsDouble();
    }
    return out;
  }

  static Risk.ComputeVarRequest varRequest(JsonObject in) {
    JsonObject sc = in.getAsJsonObject("scenarios");
    JsonArray shape = sc.getAsJsonArray("shape");
    Risk.ComputeVarRequest.Builder b =
        Risk.ComputeVarRequest.newBuilder()
            .setScenarios(
                Tensors.ofDoubles(doubles(sc.getAsJsonArray("data")), shape.get(0).getAsLong(), shape.get(1).getAsLong()))
            .setMethodValue(in.get("method").getAsInt())
            .setExecution(ExecutionOptions.newBuilder().setBackend(Backend.BACKEND_NUMPY));
    for (double p : doubles(in.getAsJsonArray("positions"))) {
      b.addPositions(p);
    }
    for (double c : doubles(in.getAsJsonArray("confidence_levels"))) {
      b.addConfidenceLevels(c);
    }
    in.getAsJsonArray("horizon_days").forEach(h -> b.addHorizonDays(h.getAsInt()));
    if (in.has("num_simulations")) {
      b.setMonteCarlo(
          Risk.MonteCarloOptions.newBuilder()
              .setNumSimulations(in.get("num_simulations").getAsLong())
              .setSeed(in.get("seed").getAsLong()));
    }
    return b.build();
  }

  /** Bitwise equality of float64 arrays. */
  static void assertSameBits(String what, double[] want, double[] got) {
    assertEquals(what + ": length", want.length, got.length);
    for (int i = 0; i < want.length; i++) {
      assertEquals(
          what + "[" + i + "]: " + got[i] + " vs Python " + want[i],
          Double.doubleToRawLongBits(want[i]),
          Double.doubleToRawLongBits(got[i]));
    }
  }

  @Test
  public void healthIsServing() {
    risk();
    assertEquals("SERVING", Tickwire.health(channel, ""));
  }

  @Test
  public void computeVarMatchesPython() {
    var rpc = risk();
    Risk.ComputeVarResponse r = Tickwire.call(() -> rpc.computeVar(varRequest(fx.getAsJsonObject("risk"))));
    JsonObject e = fx.getAsJsonObject("risk").getAsJsonObject("expected");
    List<Risk.VarEstimate> es = r.getEstimatesList();
    assertSameBits("var", doubles(e.getAsJsonArray("var")), es.stream().mapToDouble(Risk.VarEstimate::getVar).toArray());
    assertSameBits("cvar", doubles(e.getAsJsonArray("cvar")), es.stream().mapToDouble(Risk.VarEstimate::getCvar).toArray());
    assertSameBits(
        "confidence_level",
        doubles(e.getAsJsonArray("confidence_level")),
        es.stream().mapToDouble(Risk.VarEstimate::getConfidenceLevel).toArray());
    assertSameBits(
        "pnl",
        new double[] {e.get("pnl_mean").getAsDouble(), e.get("pnl_std").getAsDouble()},
        new double[] {r.getPnlMean(), r.getPnlStd()});
    List<Integer> horizons = new ArrayList<>();
    e.getAsJsonArray("horizon_days").forEach(h -> horizons.add(h.getAsInt()));
    assertEquals(horizons, es.stream().map(Risk.VarEstimate::getHorizonDays).toList());
    assertEquals(e.get("num_scenarios").getAsLong(), r.getNumScenarios());
  }

  @Test
  public void priceEuropeanMatchesPython() {
    risk();
    JsonObject p = fx.getAsJsonObject("pricing");
    int[] types = new int[p.getAsJsonArray("option_type").size()];
    for (int i = 0; i < types.length; i++) {
      types[i] = p.getAsJsonArray("option_type").get(i).getAsInt();
    }
    Pricing.PriceEuropeanRequest req =
        Pricing.PriceEuropeanRequest.newBuilder()
            .setContracts(
                Pricing.OptionContracts.newBuilder()
                    .setOptionType(Tensors.ofInts(types))
                    .setSpot(Tensors.ofDoubles(doubles(p.getAsJsonArray("spot"))))
                    .setStrike(Tensors.ofDoubles(doubles(p.getAsJsonArray("strike"))))
                    .setTimeToExpiry(Tensors.ofDoubles(doubles(p.getAsJsonArray("time_to_expiry"))))
                    .setRate(Tensors.ofDoubles(doubles(p.getAsJsonArray("rate"))))
                    .setDividendYield(Tensors.ofDoubles(doubles(p.getAsJsonArray("dividend_yield"))))
                    .setVolatility(Tensors.ofDoubles(doubles(p.getAsJsonArray("volatility")))))
            .setGreeks(true)
            .setExecution(ExecutionOptions.newBuilder().setBackend(Backend.BACKEND_NUMPY))
            .build();
    Pricing.PriceEuropeanResponse r = Tickwire.call(() -> PricingServiceGrpc.newBlockingStub(channel).priceEuropean(req));
    JsonObject e = p.getAsJsonObject("expected");
    assertSameBits("price", doubles(e.getAsJsonArray("price")), Tensors.toDoubles(r.getPrice()));
    assertSameBits("delta", doubles(e.getAsJsonArray("delta")), Tensors.toDoubles(r.getDelta()));
    assertSameBits("vega", doubles(e.getAsJsonArray("vega")), Tensors.toDoubles(r.getVega()));
  }

  @Test
  public void deadlineExceeded() {
    JsonObject in = fx == null ? null : fx.getAsJsonObject("deadline");
    var rpc = risk();
    TickwireError err =
        assertThrows(
            TickwireError.class,
            () ->
                Tickwire.call(
                    () -> rpc.withDeadlineAfter(in.get("timeout_ms").getAsLong(), TimeUnit.MILLISECONDS).computeVar(varRequest(in))));
    assertEquals(Status.Code.DEADLINE_EXCEEDED, err.code());
    assertEquals("DEADLINE_EXCEEDED", err.code().name());
  }

  @Test
  public void invalidArgumentNamesTheFields() {
    var rpc = risk();
    JsonObject in = fx.getAsJsonObject("invalid");
    TickwireError err = assertThrows(TickwireError.class, () -> Tickwire.call(() -> rpc.computeVar(varRequest(in))));
    assertEquals(Status.Code.INVALID_ARGUMENT, err.code());
    List<String> want = new ArrayList<>();
    in.getAsJsonArray("fields").forEach(f -> want.add(f.getAsString()));
    assertEquals(want, err.fields());
    err.fieldViolations().forEach(v -> assertFalse(v.field(), v.description().isEmpty()));
  }

  @Test
  public void traceContextContinues() throws Exception {
    var rpc = risk();
    String[] tp = Tickwire.newTraceparent();
    Risk.ComputeVarResponse r =
        Tickwire.withTraceparent(tp[0], () -> rpc.computeVar(varRequest(fx.getAsJsonObject("risk"))));
    assertEquals(tp[1], r.getExecution().getTraceId());
    Files.writeString(
        Path.of(System.getenv("TICKWIRE_TRACE_OUT")),
        "{\"trace_id\": \"" + tp[1] + "\", \"span_id\": \"" + tp[2] + "\"}");
  }

  @Test
  public void retriesUnavailableOnly() throws Exception {
    String target = System.getenv("TICKWIRE_FLAKY_TARGET");
    assumeTrue("TICKWIRE_FLAKY_TARGET not set: run through tests/test_clients.py", target != null);
    ManagedChannel flaky = Tickwire.connect(target, 10_000, Tickwire.DEFAULT_MAX_MESSAGE_BYTES);
    try {
      assertEquals("SERVING", Tickwire.health(flaky, "flaky"));
      TickwireError err = assertThrows(TickwireError.class, () -> Tickwire.health(flaky, "invalid"));
      assertEquals(Status.Code.INVALID_ARGUMENT, err.code());
    } finally {
      flaky.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  @Test
  public void serverStreamWatch() {
    risk();
    var updates =
        HealthGrpc.newBlockingStub(channel)
            .withDeadlineAfter(500, TimeUnit.MILLISECONDS)
            .watch(HealthCheckRequest.getDefaultInstance());
    assertEquals(HealthCheckResponse.ServingStatus.SERVING, updates.next().getStatus());
    TickwireError err = assertThrows(TickwireError.class, () -> Tickwire.call(updates::hasNext));
    assertEquals(Status.Code.DEADLINE_EXCEEDED, err.code());
  }

  @Test
  public void tensorIsLittleEndianRowMajor() {
    var t = Tensors.ofMatrix(new double[][] {{1, 2, 3}, {4, 5, 6}});
    assertArrayEquals(new long[] {2, 3}, Tensors.shape(t));
    // element [1, 0] = 4.0 = 0x4010000000000000, least significant byte first, at offset 24
    assertEquals(0x10, t.getData().byteAt(30));
    assertEquals(0x40, t.getData().byteAt(31));
    assertArrayEquals(new double[] {1, 2, 3, 4, 5, 6}, Tensors.toDoubles(t), 0.0);
  }

  /**
   * A day of trades through the bidi stream (Streams.bidi: a writer thread sends while this
   * thread reads, flow control both ways): answers in request order, each symbol's buckets
   * numbered 0, 1, 2, ... without a gap, and merged per symbol the same bytes as the Python
   * client's (fixture "vpin": hex protobuf messages).
   */
  @Test
  public void streamVpinMatchesPython() throws Exception {
    risk();
    JsonObject v = fx.getAsJsonObject("vpin");
    HexFormat hex = HexFormat.of();
    List<StreamVpinRequest> requests = new ArrayList<>();
    long trades = 0;
    for (var h : v.getAsJsonArray("requests")) {
      StreamVpinRequest r = StreamVpinRequest.parseFrom(hex.parseHex(h.getAsString()));
      requests.add(r);
      trades += r.getTrades().getTsNsCount();
    }
    assertEquals(v.get("trades").getAsLong(), trades);
    assertTrue(trades >= 10_000);
    var rpc = MicrostructureServiceGrpc.newStub(channel).withDeadlineAfter(120, TimeUnit.SECONDS);
    Iterator<StreamVpinResponse> responses = Streams.bidi(rpc::streamVpin, requests.iterator());
    Map<String, VpinBuckets.Builder> got = new TreeMap<>();
    long lastId = -1;
    while (responses.hasNext()) {
      for (StreamVpinAnswer a : responses.next().getAnswersList()) {
        assertTrue("answer " + a.getClientBatchId() + " after " + lastId, a.getClientBatchId() > lastId);
        assertFalse(a.toString(), a.hasRejection());
        lastId = a.getClientBatchId();
        if (a.hasBuckets()) {
          VpinBuckets.Builder acc = got.computeIfAbsent(a.getBuckets().getSymbol(), k -> VpinBuckets.newBuilder());
          for (int j = 0; j < a.getBuckets().getBucketIndexCount(); j++) {
            assertEquals(acc.getBucketIndexCount() + j, a.getBuckets().getBucketIndex(j));
          }
          acc.mergeFrom(a.getBuckets());
        }
      }
    }
    assertEquals(v.getAsJsonArray("expected").size(), got.size());
    for (var h : v.getAsJsonArray("expected")) {
      byte[] want = hex.parseHex(h.getAsString());
      String symbol = VpinBuckets.parseFrom(want).getSymbol();
      assertArrayEquals(symbol, want, got.get(symbol).build().toByteArray());
    }
  }
}

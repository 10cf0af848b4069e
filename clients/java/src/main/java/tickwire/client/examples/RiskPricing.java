package tickwire.client.examples;

import io.grpc.ManagedChannel;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Spliterators;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import java.util.stream.StreamSupport;
import java.util.zip.GZIPInputStream;
import tickwire.client.Streams;
import tickwire.client.Tensors;
import tickwire.client.Tickwire;
import tickwire.marketdata.v1.MarketData.ReplayRequest;
import tickwire.marketdata.v1.MarketData.ReplayResponse;
import tickwire.marketdata.v1.MarketDataServiceGrpc;
import tickwire.microstructure.v1.Microstructure.StreamVpinAnswer;
import tickwire.microstructure.v1.Microstructure.StreamVpinRequest;
import tickwire.microstructure.v1.Microstructure.StreamVpinResponse;
import tickwire.microstructure.v1.Microstructure.SymbolParameters;
import tickwire.microstructure.v1.Microstructure.VpinParameters;
import tickwire.microstructure.v1.Microstructure.VpinStreamConfig;
import tickwire.microstructure.v1.MicrostructureServiceGrpc;
import tickwire.pricing.v1.Pricing;
import tickwire.pricing.v1.PricingServiceGrpc;
import tickwire.risk.v1.Risk;
import tickwire.risk.v1.RiskServiceGrpc;

/**
 * Tickwire from Java: server health, VaR and CVaR of a real 10-stock book, a batch of
 * European options, and a day of real trades replayed through the server and streamed back into
 * VPIN (see {@link #vpinOfTheDay}). Usage: {@code RiskPricing host:port} (or TICKWIRE_TARGET), run from the
 * repository's clients/java folder; {@code make demo-clients} starts a server for it.
 *
 * <p>Reads data/daily-prices/stock_prices_1990_2024.csv.gz (adjusted daily closes), keeps the
 * dates from 2015-01-01 on which all ten stocks have a price, and sends the (T, 10) simple
 * returns as a float64 Tensor, the same book as clients/python/examples/risk_demo.py.
 */
public final class RiskPricing {
  static final String[] TICKERS = {"AAPL", "AMZN", "GOOG", "JPM", "BAC", "XOM", "PFE", "WMT", "MA", "SBUX"};
  static final double[] WEIGHTS = {0.15, 0.15, 0.12, 0.10, 0.08, 0.10, 0.08, 0.10, 0.12, -0.10};

  /** (T, K) simple returns p_t / p_{t-1} - 1 over the dates where every ticker has a close. */
  static double[][] loadReturns(Path csvGz, String start) throws Exception {
    List<double[]> closes = new ArrayList<>();
    try (BufferedReader r =
        new BufferedReader(new InputStreamReader(new GZIPInputStream(Files.newInputStream(csvGz)), StandardCharsets.UTF_8))) {
      List<String> header = Arrays.asList(r.readLine().split(",", -1));
      int[] cols = Arrays.stream(TICKERS).mapToInt(header::indexOf).toArray();
      for (String line = r.readLine(); line != null; line = r.readLine()) {
        String[] f = line.split(",", -1);
        if (f[0].compareTo(start) < 0 || Arrays.stream(cols).anyMatch(c -> f[c].isEmpty())) {
          continue;
        }
        closes.add(Arrays.stream(cols).mapToDouble(c -> Double.parseDouble(f[c])).toArray());
      }
    }
    double[][] out = new double[closes.size() - 1][TICKERS.length];
    for (int t = 1; t < closes.size(); t++) {
      for (int i = 0; i < TICKERS.length; i++) {
        out[t - 1][i] = closes.get(t)[i] / closes.get(t - 1)[i] - 1;
      }
    }
    return out;
  }

  public static void main(String[] args) throws Exception {
    String target = args.length > 0 ? args[0] : System.getenv("TICKWIRE_TARGET");
    double[][] returns = loadReturns(Path.of("../../data/daily-prices/stock_prices_1990_2024.csv.gz"), "2015-01-01");
    ManagedChannel ch = Tickwire.connect(target);
    try {
      System.out.printf("health: %s; %d daily returns of %s%n", Tickwire.health(ch, ""), returns.length, String.join(" ", TICKERS));
      Risk.ComputeVarRequest.Builder req =
          Risk.ComputeVarRequest.newBuilder()
              .setScenarios(Tensors.ofMatrix(returns))
              .setMethod(Risk.VarMethod.VAR_METHOD_HISTORICAL)
              .addConfidenceLevels(0.95).addConfidenceLevels(0.99)
              .addHorizonDays(1).addHorizonDays(10);
      for (double w : WEIGHTS) {
        req.addPositions(w * 10_000_000);
      }
      Risk.ComputeVarResponse r = Tickwire.call(() -> RiskServiceGrpc.newBlockingStub(ch).computeVar(req.build()));
      for (Risk.VarEstimate e : r.getEstimatesList()) {
        System.out.printf("VaR %.0f%% %dd: %.0f USD, CVaR %.0f USD%n", 100 * e.getConfidenceLevel(), e.getHorizonDays(), e.getVar(), e.getCvar());
      }
      System.out.printf("backend %s, trace %s%n", r.getExecution().getBackendUsed(), r.getExecution().getTraceId());

      double[] strikes = {90, 95, 100, 105, 110};
      Pricing.PriceEuropeanRequest preq =
          Pricing.PriceEuropeanRequest.newBuilder()
              .setContracts(
                  Pricing.OptionContracts.newBuilder()
                      .setOptionType(Tensors.ofInts(new int[] {1, 1, 1, 1, 1})) // OPTION_TYPE_CALL
                      .setSpot(Tensors.ofDoubles(new double[] {100}))
                      .setStrike(Tensors.ofDoubles(strikes))
                      .setTimeToExpiry(Tensors.ofDoubles(new double[] {0.5}))
                      .setRate(Tensors.ofDoubles(new double[] {0.03}))
                      .setVolatility(Tensors.ofDoubles(new double[] {0.2})))
              .setGreeks(true)
              .build();
      Pricing.PriceEuropeanResponse p = Tickwire.call(() -> PricingServiceGrpc.newBlockingStub(ch).priceEuropean(preq));
      double[] price = Tensors.toDoubles(p.getPrice());
      double[] delta = Tensors.toDoubles(p.getDelta());
      for (int i = 0; i < strikes.length; i++) {
        System.out.printf("call K=%.0f: price %.4f, delta %.4f%n", strikes[i], price[i], delta[i]);
      }
      vpinOfTheDay(ch);
    } finally {
      ch.shutdownNow();
    }
  }

  /**
   * Replays the LOBSTER AAPL and AMZN days of 2012-06-21 from the server (MarketDataService
   * Replay) and pipes every trade batch into one StreamVpin stream ({@link Streams#bidi}: a
   * writer thread sends while this thread reads), then prints the last VPIN of each symbol.
   * Parameters as clients/python/examples/stream_demo.py: buckets of 10,000 AAPL / 3,000 AMZN
   * shares, 10 s BVC bars, n = 50.
   */
  static void vpinOfTheDay(ManagedChannel ch) {
    VpinStreamConfig.Builder config = VpinStreamConfig.newBuilder();
    Map.of("AAPL", 10_000.0, "AMZN", 3_000.0).forEach((sym, v) -> config.addSymbols(SymbolParameters.newBuilder()
        .setSymbol(sym).setParameters(VpinParameters.newBuilder().setBucketVolume(v).setBarNs(10_000_000_000L))));
    Iterator<ReplayResponse> replay = MarketDataServiceGrpc.newBlockingStub(ch).withDeadlineAfter(5, TimeUnit.MINUTES)
        .replay(ReplayRequest.newBuilder().addDatasets("lobster-aapl-2012-06-21-l1")
            .addDatasets("lobster-amzn-2012-06-21-l1").setTrades(true).setBatchSize(500).build());
    long[] id = {0};
    Iterator<StreamVpinRequest> requests = Stream.concat(
        Stream.of(StreamVpinRequest.newBuilder().setConfig(config).build()),
        StreamSupport.stream(Spliterators.spliteratorUnknownSize(replay, 0), false)
            .filter(ReplayResponse::hasTrades)
            .map(m -> StreamVpinRequest.newBuilder().setClientBatchId(++id[0]).setTrades(m.getTrades()).build()))
        .iterator();
    var rpc = MicrostructureServiceGrpc.newStub(ch).withDeadlineAfter(5, TimeUnit.MINUTES);
    Iterator<StreamVpinResponse> answers = Streams.bidi(rpc::streamVpin, requests);
    Map<String, double[]> last = new TreeMap<>(); // symbol -> {last VPIN, buckets}
    while (answers.hasNext()) {
      for (StreamVpinAnswer a : answers.next().getAnswersList()) {
        if (a.hasRejection()) {
          throw new IllegalStateException("batch " + a.getClientBatchId() + " rejected: " + a.getRejection());
        }
        if (a.hasBuckets()) {
          double[] s = last.computeIfAbsent(a.getBuckets().getSymbol(), k -> new double[2]);
          s[0] = a.getBuckets().getVpin(a.getBuckets().getVpinCount() - 1);
          s[1] += a.getBuckets().getVpinCount();
        }
      }
    }
    last.forEach((sym, s) -> System.out.printf("VPIN %s: %.4f after %d buckets%n", sym, s[0], (long) s[1]));
  }
}

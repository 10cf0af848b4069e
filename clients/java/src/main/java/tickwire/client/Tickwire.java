package tickwire.client;

import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.Context;
import io.grpc.ForwardingClientCall.SimpleForwardingClientCall;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.netty.NettyChannelBuilder;
import java.security.SecureRandom;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;

/**
 * Connections to a Tickwire server: a thin layer over the classes that protoc and
 * grpc_java_plugin generate from protos/ ({@code make proto}), shared by every service, so a
 * new service needs no code here.
 *
 * <pre>{@code
 * ManagedChannel ch = Tickwire.connect("127.0.0.1:50051");
 * var risk = RiskServiceGrpc.newBlockingStub(ch);         // any generated rpc
 * Risk.ComputeVarResponse r = Tickwire.call(() -> risk.computeVar(request)); // TickwireError on failure
 * }</pre>
 *
 * <p>Connection behaviour, the same in every Tickwire client language (see
 * clients/python/tickwire_client/client.py):
 *
 * <ul>
 *   <li>a default deadline on every call that sets none (30 s; {@code rpc.withDeadlineAfter});
 *   <li>send and receive limits of 256 MiB, the server's default;
 *   <li>keepalive pings every 30 s, also without calls, 10 s ping timeout (the server accepts
 *       pings 10 s apart or more);
 *   <li>retries on UNAVAILABLE only, through gRPC's retry policy (4 attempts, exponential
 *       backoff from 50 ms to 1 s);
 *   <li>errors decoded by {@link TickwireError#from}: code, message, BadRequest violations;
 *   <li>W3C trace context: the traceparent in {@link #TRACEPARENT} of the current
 *       {@code io.grpc.Context} (see {@link #withTraceparent}) is sent as metadata, so the
 *       server's span becomes a child of that span.
 * </ul>
 *
 * <p>Tested with OpenJDK 17, grpc-java 1.41.3 (Netty), protobuf-java 3.21.12 (Debian bookworm)
 * against the Python grpcio 1.85 server.
 */
public final class Tickwire {
  /** Send and receive limit, bytes: the server's default (256 MiB). */
  public static final int DEFAULT_MAX_MESSAGE_BYTES = 256 << 20;

  /** Default deadline of a call, milliseconds. */
  public static final long DEFAULT_TIMEOUT_MS = 30_000;

  /** The W3C traceparent that calls made in the current gRPC Context send. */
  public static final Context.Key<String> TRACEPARENT = Context.key("tickwire-traceparent");

  private static final Metadata.Key<String> TRACEPARENT_HEADER =
      Metadata.Key.of("traceparent", Metadata.ASCII_STRING_MARSHALLER);
  private static final Pattern TRACEPARENT_FORMAT =
      Pattern.compile("00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}");
  private static final SecureRandom RANDOM = new SecureRandom();

  private Tickwire() {}

  /** A plaintext channel to {@code target} ("host:port") with the defaults above. */
  public static ManagedChannel connect(String target) {
    return connect(target, DEFAULT_TIMEOUT_MS, DEFAULT_MAX_MESSAGE_BYTES);
  }

  /**
   * A plaintext channel to {@code target} with a default deadline of {@code timeoutMs} and a
   * send and receive limit of {@code maxMessageBytes}.
   */
  public static ManagedChannel connect(String target, long timeoutMs, int maxMessageBytes) {
    return builder(target, timeoutMs, maxMessageBytes).usePlaintext().build();
  }

  /** The channel builder behind {@link #connect}, to add TLS or options of your own. */
  public static NettyChannelBuilder builder(String target, long timeoutMs, int maxMessageBytes) {
    return NettyChannelBuilder.forTarget(target)
        .maxInboundMessageSize(maxMessageBytes)
        .keepAliveTime(30, TimeUnit.SECONDS)
        .keepAliveTimeout(10, TimeUnit.SECONDS)
        .keepAliveWithoutCalls(true)
        .defaultServiceConfig(retryServiceConfig())
        .enableRetry()
        .intercept(new DefaultsInterceptor(timeoutMs, maxMessageBytes));
  }

  /** gRPC's retry policy: UNAVAILABLE only, 4 attempts, backoff 50 ms doubling to 1 s. */
  static Map<String, ?> retryServiceConfig() {
    Map<String, Object> retry =
        Map.of(
            "maxAttempts", 4.0,
            "initialBackoff", "0.05s",
            "maxBackoff", "1s",
            "backoffMultiplier", 2.0,
            "retryableStatusCodes", List.of("UNAVAILABLE"));
    return Map.of("methodConfig", List.of(Map.of("name", List.of(Map.of()), "retryPolicy", retry)));
  }

  /**
   * Runs a call and turns a failure into a {@link TickwireError}.
   *
   * @throws TickwireError the call failed (code, message, field violations)
   */
  public static <T> T call(Callable<T> rpc) {
    try {
      return rpc.call();
    } catch (Exception e) {
      throw TickwireError.from(e);
    }
  }

  /** Runs {@code rpc} with {@code traceparent} sent on every call it makes. */
  public static <T> T withTraceparent(String traceparent, Callable<T> rpc) {
    if (!TRACEPARENT_FORMAT.matcher(traceparent).matches()) {
      throw new IllegalArgumentException("malformed traceparent: " + traceparent);
    }
    return call(() -> Context.current().withValue(TRACEPARENT, traceparent).call(rpc));
  }

  /**
   * A sampled traceparent with random ids, for callers without an OpenTelemetry SDK:
   * {@code {traceparent, traceId, spanId}} (lowercase hex).
   */
  public static String[] newTraceparent() {
    byte[] b = new byte[24];
    RANDOM.nextBytes(b);
    HexFormat hex = HexFormat.of();
    String traceId = hex.formatHex(b, 0, 16);
    String spanId = hex.formatHex(b, 16, 24);
    return new String[] {"00-" + traceId + "-" + spanId + "-01", traceId, spanId};
  }

  /** grpc.health.v1 status of the server ("") or of one service: "SERVING", "NOT_SERVING"... */
  public static String health(Channel channel, String service) {
    return call(
        () ->
            HealthGrpc.newBlockingStub(channel)
                .check(HealthCheckRequest.newBuilder().setService(service).build())
                .getStatus()
                .name());
  }

  /** Default deadline, outbound size limit and traceparent on every call. */
  static final class DefaultsInterceptor implements ClientInterceptor {
    private final long timeoutMs;
    private final int maxMessageBytes;

    DefaultsInterceptor(long timeoutMs, int maxMessageBytes) {
      this.timeoutMs = timeoutMs;
      this.maxMessageBytes = maxMessageBytes;
    }

    @Override
    public <Q, R> ClientCall<Q, R> interceptCall(
        MethodDescriptor<Q, R> method, CallOptions options, Channel next) {
      CallOptions o = options.withMaxOutboundMessageSize(maxMessageBytes);
      if (o.getDeadline() == null && Context.current().getDeadline() == null && timeoutMs > 0) {
        o = o.withDeadlineAfter(timeoutMs, TimeUnit.MILLISECONDS);
      }
      String traceparent = TRACEPARENT.get();
      return new SimpleForwardingClientCall<Q, R>(next.newCall(method, o)) {
        @Override
        public void start(Listener<R> listener, Metadata headers) {
          if (traceparent != null) {
            headers.put(TRACEPARENT_HEADER, traceparent);
          }
          super.start(listener, headers);
        }
      };
    }
  }
}

package tickwire.client;

import com.google.protobuf.Any;
import com.google.protobuf.CodedInputStream;
import com.google.rpc.BadRequest;
import io.grpc.Status;
import io.grpc.protobuf.StatusProto;
import java.util.ArrayList;
import java.util.List;

/**
 * A failed call: the gRPC status code, the server's message, and the {@code
 * google.rpc.BadRequest} field violations (and {@code ErrorInfo} reason) decoded from the
 * {@code grpc-status-details-bin} trailer.
 */
public final class TickwireError extends RuntimeException {
  /** A request field the server rejected, and why. */
  public record FieldViolation(String field, String description) {}

  private final Status.Code code;
  private final String rawMessage;
  private final List<FieldViolation> fieldViolations;
  private final String reason;

  private TickwireError(
      Status.Code code, String message, List<FieldViolation> violations, String reason, Throwable cause) {
    super(code + ": " + message, cause);
    this.code = code;
    this.rawMessage = message;
    this.fieldViolations = List.copyOf(violations);
    this.reason = reason;
  }

  /** Decodes any exception of a call (StatusRuntimeException, StatusException...). */
  public static TickwireError from(Throwable t) {
    if (t instanceof TickwireError e) {
      return e;
    }
    Status status = Status.fromThrowable(t);
    List<FieldViolation> violations = new ArrayList<>();
    String reason = "";
    com.google.rpc.Status rich = StatusProto.fromThrowable(t);
    if (rich != null) {
      for (Any detail : rich.getDetailsList()) {
        try {
          if (detail.is(BadRequest.class)) {
            for (BadRequest.FieldViolation v : detail.unpack(BadRequest.class).getFieldViolationsList()) {
              violations.add(new FieldViolation(v.getField(), v.getDescription()));
            }
          } else if (detail.getTypeUrl().endsWith("/google.rpc.ErrorInfo")) {
            reason = errorInfoReason(detail);
          }
        } catch (java.io.IOException ignored) {
          // a detail that does not parse is left out; the code and message stand
        }
      }
    }
    String message = status.getDescription() == null ? "" : status.getDescription();
    return new TickwireError(status.getCode(), message, violations, reason, t);
  }

  /**
   * Field 1 ({@code reason}) of a {@code google.rpc.ErrorInfo}, read from the wire: the
   * proto-google-common-protos 1.16 that Debian ships predates the ErrorInfo class.
   */
  private static String errorInfoReason(Any detail) throws java.io.IOException {
    CodedInputStream in = detail.getValue().newCodedInput();
    String reason = "";
    for (int tag = in.readTag(); tag != 0; tag = in.readTag()) {
      if (tag == (1 << 3 | 2)) {
        reason = in.readStringRequireUtf8();
      } else {
        in.skipField(tag);
      }
    }
    return reason;
  }

  /** gRPC status code; {@code code().name()} spells it as gRPC does ("INVALID_ARGUMENT"). */
  public Status.Code code() {
    return code;
  }

  /** The server's message, without the code. */
  public String rawMessage() {
    return rawMessage;
  }

  /** Non-empty for INVALID_ARGUMENT. */
  public List<FieldViolation> fieldViolations() {
    return fieldViolations;
  }

  /** Names of the rejected fields. */
  public List<String> fields() {
    return fieldViolations.stream().map(FieldViolation::field).toList();
  }

  /** {@code google.rpc.ErrorInfo.reason} when the server sent one, else "". */
  public String reason() {
    return reason;
  }
}

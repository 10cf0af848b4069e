// Package tickwire is a thin layer over the Go code that protoc-gen-go and
// protoc-gen-go-grpc generate from protos/ (`make proto`, package tickwire/clients/go/gen/...),
// shared by every Tickwire service: a new service needs no code here.
//
//	conn, err := tickwire.Dial(ctx, "127.0.0.1:50051")
//	risk := riskv1.NewRiskServiceClient(conn) // any generated client takes the connection
//	resp, err := risk.ComputeVar(ctx, &riskv1.ComputeVarRequest{...})
//	var tw *tickwire.Error; errors.As(err, &tw) // code, message, field violations
//
// Connection behaviour, the same in every Tickwire client language (see
// clients/python/tickwire_client/client.py):
//   - a default deadline on every call whose context has none (30 s, WithTimeout);
//   - send and receive limits of 256 MiB, the server's default;
//   - keepalive pings every 30 s, also without active calls, 10 s ping timeout (the server
//     accepts pings 10 s apart or more);
//   - retries of unary calls on UNAVAILABLE only (4 attempts, exponential backoff from
//     50 ms to 1 s with full jitter, as gRPC's retry policy); every other status fails at once;
//   - every failure is an *Error: gRPC code, message, google.rpc.BadRequest field violations;
//   - W3C trace context: the OpenTelemetry span active in the call's context (OpenTelemetry
//     Go API), or a traceparent stored in it with WithTraceparent, is sent as metadata, so the
//     server's span becomes a child of that span.
//
// Tested with Go 1.19.8, grpc-go 1.33.3, google.golang.org/protobuf 1.28.1 and
// go.opentelemetry.io/otel 1.1.0 (Debian bookworm)
// against the Python grpcio 1.85 server. grpc-go 1.33 predates grpc.NewClient and
// credentials/insecure, hence grpc.DialContext and grpc.WithInsecure.
package tickwire

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"regexp"
	"strings"
	"time"

	"go.opentelemetry.io/otel/propagation"
	oteltrace "go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// DefaultMaxMessageBytes is the send and receive limit: the server's default (256 MiB).
const DefaultMaxMessageBytes = 256 << 20

// DefaultTimeout is the deadline of a call whose context has none.
const DefaultTimeout = 30 * time.Second

type options struct {
	timeout     time.Duration
	maxBytes    int
	maxAttempts int
	creds       credentials.TransportCredentials
	block       bool
	extra       []grpc.DialOption
}

// Option configures Dial.
type Option func(*options)

// WithTimeout sets the default deadline of calls whose context has none.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithMaxMessageBytes sets the send and receive limit.
func WithMaxMessageBytes(n int) Option { return func(o *options) { o.maxBytes = n } }

// WithMaxAttempts sets the attempts of a unary call failing with UNAVAILABLE (1: no retry).
func WithMaxAttempts(n int) Option { return func(o *options) { o.maxAttempts = n } }

// WithTLS uses TLS credentials instead of plaintext.
func WithTLS(c credentials.TransportCredentials) Option { return func(o *options) { o.creds = c } }

// WithBlock makes Dial wait until the connection is up (or ctx ends).
func WithBlock() Option { return func(o *options) { o.block = true } }

// WithDialOptions appends raw grpc.DialOptions (interceptors of your own, ...).
func WithDialOptions(d ...grpc.DialOption) Option {
	return func(o *options) { o.extra = append(o.extra, d...) }
}

// Conn is a connection to one Tickwire server. It is a *grpc.ClientConn, so every
// generated New<Service>Client accepts it. Safe for concurrent use; Close it when done.
type Conn struct {
	*grpc.ClientConn
	timeout time.Duration
}

// Dial connects to target ("host:port" or any gRPC target) with the defaults above.
func Dial(ctx context.Context, target string, opts ...Option) (*Conn, error) {
	o := options{timeout: DefaultTimeout, maxBytes: DefaultMaxMessageBytes, maxAttempts: 4}
	for _, f := range opts {
		f(&o)
	}
	dial := []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(o.maxBytes), grpc.MaxCallSendMsgSize(o.maxBytes)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true,
		}),
		grpc.WithChainUnaryInterceptor(unaryInterceptor(o.timeout, o.maxAttempts)),
		grpc.WithChainStreamInterceptor(streamInterceptor),
	}
	if o.creds != nil {
		dial = append(dial, grpc.WithTransportCredentials(o.creds))
	} else {
		dial = append(dial, grpc.WithInsecure())
	}
	if o.block {
		dial = append(dial, grpc.WithBlock())
	}
	cc, err := grpc.DialContext(ctx, target, append(dial, o.extra...)...)
	if err != nil {
		return nil, err
	}
	return &Conn{ClientConn: cc, timeout: o.timeout}, nil
}

// Health returns the grpc.health.v1 status of the server (service "") or of one service:
// "SERVING", "NOT_SERVING", ...
func (c *Conn) Health(ctx context.Context, service string) (string, error) {
	r, err := healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return "", err
	}
	return r.GetStatus().String(), nil
}

// ----- errors ---------------------------------------------------------------------------

// FieldViolation is a request field the server rejected, and why.
type FieldViolation struct {
	Field       string
	Description string
}

// Error is a failed call: gRPC code, the server's message, the google.rpc.BadRequest field
// violations and the google.rpc.ErrorInfo reason decoded from grpc-status-details-bin.
type Error struct {
	Code            codes.Code
	Message         string
	FieldViolations []FieldViolation
	Reason          string
	status          *status.Status
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", CodeName(e.Code), e.Message) }

// GRPCStatus lets status.FromError and status.Code see the original status.
func (e *Error) GRPCStatus() *status.Status { return e.status }

// Fields returns the names of the rejected fields.
func (e *Error) Fields() []string {
	out := make([]string, len(e.FieldViolations))
	for i, v := range e.FieldViolations {
		out[i] = v.Field
	}
	return out
}

// CodeName spells a code as gRPC does: "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", ...
func CodeName(c codes.Code) string {
	return strings.ToUpper(upperSnake.ReplaceAllString(c.String(), "${1}_${2}"))
}

var upperSnake = regexp.MustCompile(`([a-z])([A-Z])`)

// AsError decodes any error of a call into an *Error (nil for nil). Errors that carry no
// gRPC status become UNKNOWN.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var tw *Error
	if errors.As(err, &tw) {
		return tw
	}
	st, _ := status.FromError(err)
	if ctxErr := status.FromContextError(err); st.Code() == codes.Unknown && ctxErr.Code() != codes.Unknown {
		st = ctxErr
	}
	out := &Error{Code: st.Code(), Message: st.Message(), status: st}
	for _, d := range st.Details() {
		switch v := d.(type) {
		case *errdetails.BadRequest:
			for _, f := range v.GetFieldViolations() {
				out.FieldViolations = append(out.FieldViolations, FieldViolation{f.GetField(), f.GetDescription()})
			}
		case *errdetails.ErrorInfo:
			out.Reason = v.GetReason()
		}
	}
	return out
}

// ----- trace context ----------------------------------------------------------------------

type traceKey struct{}

var traceparentRE = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$`)

// WithTraceparent returns a context whose calls send this W3C traceparent
// ("00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>"), making the server's span
// a child of that span. It panics on a malformed header.
func WithTraceparent(ctx context.Context, traceparent string) context.Context {
	if !traceparentRE.MatchString(traceparent) {
		panic("tickwire: malformed traceparent " + traceparent)
	}
	return context.WithValue(ctx, traceKey{}, traceparent)
}

// NewTraceparent makes a sampled traceparent with random ids and returns it with its trace
// id and span id (lowercase hex), for callers without an OpenTelemetry SDK.
func NewTraceparent() (traceparent, traceID, spanID string) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	traceID, spanID = hex.EncodeToString(b[:16]), hex.EncodeToString(b[16:])
	return "00-" + traceID + "-" + spanID + "-01", traceID, spanID
}

// withTrace adds the W3C trace context to the outgoing metadata: the traceparent set with
// WithTraceparent, else the OpenTelemetry span active in ctx (go.opentelemetry.io/otel).
func withTrace(ctx context.Context) context.Context {
	if tp, ok := ctx.Value(traceKey{}).(string); ok {
		return metadata.AppendToOutgoingContext(ctx, "traceparent", tp)
	}
	if !oteltrace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	carrier := mapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	kv := make([]string, 0, 2*len(carrier))
	for k, v := range carrier {
		kv = append(kv, k, v)
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

// mapCarrier is a propagation.TextMapCarrier over a map (otel-go 1.1 has none).
type mapCarrier map[string]string

func (c mapCarrier) Get(key string) string        { return c[key] }
func (c mapCarrier) Set(key string, value string) { c[key] = value }
func (c mapCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// ----- interceptors -----------------------------------------------------------------------

func unaryInterceptor(timeout time.Duration, maxAttempts int) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply interface{}, cc *grpc.ClientConn,
		invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := ctx.Deadline(); !ok && timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		ctx = withTrace(ctx)
		backoff := 50 * time.Millisecond
		for attempt := 1; ; attempt++ {
			err := invoker(ctx, method, req, reply, cc, opts...)
			if err == nil {
				return nil
			}
			if status.Code(err) != codes.Unavailable || attempt >= maxAttempts {
				return AsError(err)
			}
			n, _ := rand.Int(rand.Reader, big.NewInt(int64(backoff)+1))
			select {
			case <-ctx.Done():
				return AsError(err)
			case <-time.After(time.Duration(n.Int64())):
			}
			if backoff *= 2; backoff > time.Second {
				backoff = time.Second
			}
		}
	}
}

func streamInterceptor(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
	streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(withTrace(ctx), desc, cc, method, opts...)
	if err != nil {
		return nil, AsError(err)
	}
	return &errorStream{s}, nil
}

// errorStream turns the errors of a stream into *Error (io.EOF passes through).
type errorStream struct{ grpc.ClientStream }

func (s *errorStream) RecvMsg(m interface{}) error { return streamErr(s.ClientStream.RecvMsg(m)) }
func (s *errorStream) SendMsg(m interface{}) error { return streamErr(s.ClientStream.SendMsg(m)) }

func streamErr(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return err
	}
	return AsError(err)
}

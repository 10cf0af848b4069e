package tickwire_test

// Live tests against a real Tickwire server started by tests/test_clients.py, which sets
// TICKWIRE_TARGET, TICKWIRE_FIXTURE (inputs and the Python client's answers, JSON) and
// TICKWIRE_TRACE_OUT. Without TICKWIRE_TARGET they are skipped.

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"reflect"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	commonv1 "tickwire/clients/go/gen/tickwire/common/v1"
	microv1 "tickwire/clients/go/gen/tickwire/microstructure/v1"
	pricingv1 "tickwire/clients/go/gen/tickwire/pricing/v1"
	riskv1 "tickwire/clients/go/gen/tickwire/risk/v1"
	"tickwire/clients/go/tickwire"
)

type varInput struct {
	Scenarios struct {
		Shape []int64   `json:"shape"`
		Data  []float64 `json:"data"`
	} `json:"scenarios"`
	Positions        []float64 `json:"positions"`
	Method           int32     `json:"method"`
	ConfidenceLevels []float64 `json:"confidence_levels"`
	HorizonDays      []int32   `json:"horizon_days"`
	NumSimulations   int64     `json:"num_simulations"`
	Seed             uint64    `json:"seed"`
	TimeoutMs        int64     `json:"timeout_ms"`
	Fields           []string  `json:"fields"`
	Expected         struct {
		ConfidenceLevel []float64 `json:"confidence_level"`
		HorizonDays     []int32   `json:"horizon_days"`
		Var             []float64 `json:"var"`
		Cvar            []float64 `json:"cvar"`
		PnlMean         float64   `json:"pnl_mean"`
		PnlStd          float64   `json:"pnl_std"`
		NumScenarios    int64     `json:"num_scenarios"`
	} `json:"expected"`
}

type fixture struct {
	Risk     varInput `json:"risk"`
	Deadline varInput `json:"deadline"`
	Invalid  varInput `json:"invalid"`
	Pricing  struct {
		OptionType    []int32   `json:"option_type"`
		Spot          []float64 `json:"spot"`
		Strike        []float64 `json:"strike"`
		TimeToExpiry  []float64 `json:"time_to_expiry"`
		Rate          []float64 `json:"rate"`
		DividendYield []float64 `json:"dividend_yield"`
		Volatility    []float64 `json:"volatility"`
		Expected      struct {
			Price []float64 `json:"price"`
			Delta []float64 `json:"delta"`
			Vega  []float64 `json:"vega"`
		} `json:"expected"`
	} `json:"pricing"`
	// StreamVpin: hex protobuf messages (config first, then trade batches) and, per symbol,
	// the Python client's buckets merged into one VpinBuckets.
	Vpin struct {
		Requests []string `json:"requests"`
		Expected []string `json:"expected"`
		Trades   int      `json:"trades"`
	} `json:"vpin"`
}

func load(t *testing.T) (*tickwire.Conn, *fixture) {
	t.Helper()
	target := os.Getenv("TICKWIRE_TARGET")
	if target == "" {
		t.Skip("TICKWIRE_TARGET not set: run through tests/test_clients.py")
	}
	raw, err := os.ReadFile(os.Getenv("TICKWIRE_FIXTURE"))
	if err != nil {
		t.Fatal(err)
	}
	fx := &fixture{}
	if err := json.Unmarshal(raw, fx); err != nil {
		t.Fatal(err)
	}
	conn, err := tickwire.Dial(context.Background(), target, tickwire.WithTimeout(60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, fx
}

func varRequest(in *varInput) *riskv1.ComputeVarRequest {
	req := &riskv1.ComputeVarRequest{
		ScenarioSource: &riskv1.ComputeVarRequest_Scenarios{
			Scenarios: tickwire.Float64Tensor(in.Scenarios.Data, in.Scenarios.Shape...),
		},
		Positions:        in.Positions,
		Method:           riskv1.VarMethod(in.Method),
		ConfidenceLevels: in.ConfidenceLevels,
		HorizonDays:      in.HorizonDays,
		Execution:        &commonv1.ExecutionOptions{Backend: commonv1.Backend_BACKEND_NUMPY},
	}
	if in.NumSimulations > 0 {
		req.MonteCarlo = &riskv1.MonteCarloOptions{NumSimulations: in.NumSimulations, Seed: in.Seed}
	}
	return req
}

// sameBits fails unless got and want are the same float64 values bit for bit.
func sameBits(t *testing.T, what string, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		if math.Float64bits(got[i]) != math.Float64bits(want[i]) {
			t.Errorf("%s[%d] = %v (%#x), Python gave %v (%#x)", what, i, got[i], math.Float64bits(got[i]), want[i], math.Float64bits(want[i]))
		}
	}
}

func TestHealth(t *testing.T) {
	conn, _ := load(t)
	got, err := conn.Health(context.Background(), "")
	if err != nil || got != "SERVING" {
		t.Fatalf("health = %q, %v", got, err)
	}
}

func TestComputeVarMatchesPython(t *testing.T) {
	conn, fx := load(t)
	r, err := riskv1.NewRiskServiceClient(conn).ComputeVar(context.Background(), varRequest(&fx.Risk))
	if err != nil {
		t.Fatal(err)
	}
	var v, cv, cl []float64
	var h []int32
	for _, e := range r.GetEstimates() {
		v, cv, cl, h = append(v, e.GetVar()), append(cv, e.GetCvar()), append(cl, e.GetConfidenceLevel()), append(h, e.GetHorizonDays())
	}
	want := fx.Risk.Expected
	sameBits(t, "var", v, want.Var)
	sameBits(t, "cvar", cv, want.Cvar)
	sameBits(t, "confidence_level", cl, want.ConfidenceLevel)
	sameBits(t, "pnl", []float64{r.GetPnlMean(), r.GetPnlStd()}, []float64{want.PnlMean, want.PnlStd})
	if !reflect.DeepEqual(h, want.HorizonDays) || r.GetNumScenarios() != want.NumScenarios {
		t.Errorf("horizons %v / scenarios %d, want %v / %d", h, r.GetNumScenarios(), want.HorizonDays, want.NumScenarios)
	}
}

func TestPriceEuropeanMatchesPython(t *testing.T) {
	conn, fx := load(t)
	p := fx.Pricing
	r, err := pricingv1.NewPricingServiceClient(conn).PriceEuropean(context.Background(), &pricingv1.PriceEuropeanRequest{
		Contracts: &pricingv1.OptionContracts{
			OptionType: tickwire.Int32Tensor(p.OptionType), Spot: tickwire.Float64Tensor(p.Spot),
			Strike: tickwire.Float64Tensor(p.Strike), TimeToExpiry: tickwire.Float64Tensor(p.TimeToExpiry),
			Rate: tickwire.Float64Tensor(p.Rate), DividendYield: tickwire.Float64Tensor(p.DividendYield),
			Volatility: tickwire.Float64Tensor(p.Volatility),
		},
		Greeks:    true,
		Execution: &commonv1.ExecutionOptions{Backend: commonv1.Backend_BACKEND_NUMPY},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		got  *commonv1.Tensor
		want []float64
	}{{"price", r.GetPrice(), p.Expected.Price}, {"delta", r.GetDelta(), p.Expected.Delta}, {"vega", r.GetVega(), p.Expected.Vega}} {
		got, _, err := tickwire.Float64s(c.got)
		if err != nil {
			t.Fatal(err)
		}
		sameBits(t, c.name, got, c.want)
	}
}

func TestDeadlineExceeded(t *testing.T) {
	conn, fx := load(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(fx.Deadline.TimeoutMs)*time.Millisecond)
	defer cancel()
	_, err := riskv1.NewRiskServiceClient(conn).ComputeVar(ctx, varRequest(&fx.Deadline))
	var tw *tickwire.Error
	if !errors.As(err, &tw) || tw.Code != codes.DeadlineExceeded || tickwire.CodeName(tw.Code) != "DEADLINE_EXCEEDED" {
		t.Fatalf("err = %v, want DEADLINE_EXCEEDED", err)
	}
}

func TestInvalidArgument(t *testing.T) {
	conn, fx := load(t)
	_, err := riskv1.NewRiskServiceClient(conn).ComputeVar(context.Background(), varRequest(&fx.Invalid))
	var tw *tickwire.Error
	if !errors.As(err, &tw) || tw.Code != codes.InvalidArgument {
		t.Fatalf("err = %v, want INVALID_ARGUMENT", err)
	}
	if !reflect.DeepEqual(tw.Fields(), fx.Invalid.Fields) {
		t.Errorf("fields %v, Python decoded %v", tw.Fields(), fx.Invalid.Fields)
	}
	for _, v := range tw.FieldViolations {
		if v.Description == "" {
			t.Errorf("%s: empty description", v.Field)
		}
	}
}

func TestTraceContextContinues(t *testing.T) {
	conn, fx := load(t)
	tracer := sdktrace.NewTracerProvider().Tracer("tickwire-go-test")
	ctx, span := tracer.Start(context.Background(), "desk-request")
	r, err := riskv1.NewRiskServiceClient(conn).ComputeVar(ctx, varRequest(&fx.Risk))
	span.End()
	if err != nil {
		t.Fatal(err)
	}
	sc := span.SpanContext()
	if r.GetExecution().GetTraceId() != sc.TraceID().String() {
		t.Fatalf("server trace id %q, caller's span %q", r.GetExecution().GetTraceId(), sc.TraceID())
	}
	out, _ := json.Marshal(map[string]string{"trace_id": sc.TraceID().String(), "span_id": sc.SpanID().String()})
	if err := os.WriteFile(os.Getenv("TICKWIRE_TRACE_OUT"), out, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestTraceparentHelperSetsTheTrace(t *testing.T) {
	conn, fx := load(t)
	tp, traceID, _ := tickwire.NewTraceparent()
	r, err := riskv1.NewRiskServiceClient(conn).ComputeVar(tickwire.WithTraceparent(context.Background(), tp), varRequest(&fx.Risk))
	if err != nil {
		t.Fatal(err)
	}
	if r.GetExecution().GetTraceId() != traceID {
		t.Fatalf("server trace id %q, sent %q", r.GetExecution().GetTraceId(), traceID)
	}
}

func TestRetriesUnavailableOnly(t *testing.T) {
	target := os.Getenv("TICKWIRE_FLAKY_TARGET")
	if target == "" {
		t.Skip("TICKWIRE_FLAKY_TARGET not set: run through tests/test_clients.py")
	}
	conn, err := tickwire.Dial(context.Background(), target, tickwire.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got, err := conn.Health(context.Background(), "flaky"); err != nil || got != "SERVING" {
		t.Fatalf("flaky health = %q, %v (UNAVAILABLE twice must be retried)", got, err)
	}
	_, err = conn.Health(context.Background(), "invalid")
	if tickwire.AsError(err).Code != codes.InvalidArgument {
		t.Fatalf("err = %v, want INVALID_ARGUMENT", err)
	}
}

func TestServerStreamWatch(t *testing.T) {
	conn, _ := load(t)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	stream, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := stream.Recv()
	if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first update %v, %v; want SERVING", r, err)
	}
	_, err = stream.Recv()
	var tw *tickwire.Error
	if !errors.As(err, &tw) || tw.Code != codes.DeadlineExceeded {
		t.Fatalf("end of stream %v, want a *tickwire.Error DEADLINE_EXCEEDED", err)
	}
}

func TestTensorRoundTripIsLittleEndianRowMajor(t *testing.T) {
	m := tickwire.Matrix([][]float64{{1, 2, 3}, {4, 5, 6}})
	if !reflect.DeepEqual(m.GetShape(), []int64{2, 3}) || m.GetData()[8*3+6] != 0x10 || m.GetData()[8*3+7] != 0x40 {
		t.Fatalf("element [1,0] = 4.0 must be bytes 00..00 10 40 at offset 24: %v", m.GetData()[24:32])
	}
	got, shape, err := tickwire.Float64s(m)
	if err != nil || !reflect.DeepEqual(got, []float64{1, 2, 3, 4, 5, 6}) || !reflect.DeepEqual(shape, []int64{2, 3}) {
		t.Fatalf("round trip: %v %v %v", got, shape, err)
	}
	if _, _, err := tickwire.Float64s(&commonv1.Tensor{Dtype: commonv1.DType_D_TYPE_FLOAT64, Shape: []int64{2}, Data: make([]byte, 8)}); err == nil {
		t.Fatal("a short buffer must fail")
	}
}

func unhex(t *testing.T, h string, m proto.Message) []byte {
	t.Helper()
	b, err := hex.DecodeString(h)
	if err == nil {
		err = proto.Unmarshal(b, m)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A day of trades through the bidi stream: a goroutine writes (Send blocks on HTTP/2 flow
// control, so nothing piles up) while the test reads; answers come in request order and each
// symbol's buckets are numbered 0, 1, 2, ... without a gap; merged per symbol they encode to
// the same bytes as the Python client's.
func TestStreamVpinMatchesPython(t *testing.T) {
	conn, fx := load(t)
	var reqs []*microv1.StreamVpinRequest
	trades := 0
	for _, h := range fx.Vpin.Requests {
		r := &microv1.StreamVpinRequest{}
		unhex(t, h, r)
		reqs, trades = append(reqs, r), trades+len(r.GetTrades().GetTsNs())
	}
	if trades < 10_000 || trades != fx.Vpin.Trades {
		t.Fatalf("%d trades in the fixture, want %d (>= 10,000)", trades, fx.Vpin.Trades)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	stream, err := microv1.NewMicrostructureServiceClient(conn).StreamVpin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sent := make(chan error, 1)
	go func() {
		for _, r := range reqs {
			if err := stream.Send(r); err != nil {
				sent <- err
				return
			}
		}
		sent <- stream.CloseSend()
	}()
	got := map[string]*microv1.VpinBuckets{}
	lastID := int64(-1)
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		for _, a := range resp.GetAnswers() {
			if int64(a.GetClientBatchId()) <= lastID || a.GetRejection() != nil {
				t.Fatalf("answer to %d after %d: %v", a.GetClientBatchId(), lastID, a)
			}
			lastID = int64(a.GetClientBatchId())
			if b := a.GetBuckets(); b != nil {
				acc, ok := got[b.GetSymbol()]
				if !ok {
					acc = &microv1.VpinBuckets{}
					got[b.GetSymbol()] = acc
				}
				for j, k := range b.GetBucketIndex() {
					if k != int64(len(acc.GetBucketIndex())+j) {
						t.Fatalf("%s: bucket %d where %d was due", b.GetSymbol(), k, len(acc.GetBucketIndex())+j)
					}
				}
				proto.Merge(acc, b)
			}
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if len(got) != len(fx.Vpin.Expected) {
		t.Fatalf("%d symbols answered, Python got %d", len(got), len(fx.Vpin.Expected))
	}
	for _, h := range fx.Vpin.Expected {
		want := &microv1.VpinBuckets{}
		wantBytes := unhex(t, h, want)
		gotBytes, err := proto.MarshalOptions{Deterministic: true}.Marshal(got[want.GetSymbol()])
		if err != nil || !bytes.Equal(gotBytes, wantBytes) {
			t.Errorf("%s: %d buckets differ from Python's %d (%v)", want.GetSymbol(), len(got[want.GetSymbol()].GetBucketIndex()), len(want.GetBucketIndex()), err)
		}
	}
}

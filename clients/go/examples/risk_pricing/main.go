// Command risk_pricing calls Tickwire from Go: server health, VaR and CVaR of a real
// 10-stock book, a batch of European options, and a day of real trades replayed through
// the server (MarketDataService.Replay) and streamed back into VPIN (StreamVpin).
//
//	go run ./examples/risk_pricing 127.0.0.1:50051   (or TICKWIRE_TARGET=host:port)
//	make demo-clients                                (starts a server for it)
//
// It reads data/daily-prices/stock_prices_1990_2024.csv.gz (adjusted daily closes), keeps
// the dates from 2015-01-01 on which all ten stocks have a price, and sends the (T, 10)
// simple returns as a float64 Tensor, the same book as clients/python/examples/risk_demo.py.
package main

import (
	"compress/gzip"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	marketdatav1 "tickwire/clients/go/gen/tickwire/marketdata/v1"
	microv1 "tickwire/clients/go/gen/tickwire/microstructure/v1"
	pricingv1 "tickwire/clients/go/gen/tickwire/pricing/v1"
	riskv1 "tickwire/clients/go/gen/tickwire/risk/v1"
	"tickwire/clients/go/tickwire"
)

var (
	tickers = []string{"AAPL", "AMZN", "GOOG", "JPM", "BAC", "XOM", "PFE", "WMT", "MA", "SBUX"}
	weights = []float64{0.15, 0.15, 0.12, 0.10, 0.08, 0.10, 0.08, 0.10, 0.12, -0.10}
)

// loadReturns gives the (T, K) simple returns p_t/p_{t-1} - 1 over the dates >= start on
// which every ticker has a close.
func loadReturns(path string, start string) [][]float64 {
	f, err := os.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		log.Fatal(err)
	}
	rows, err := csv.NewReader(gz).ReadAll()
	if err != nil {
		log.Fatal(err)
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	var closes [][]float64
	for _, r := range rows[1:] {
		if r[0] < start {
			continue
		}
		c := make([]float64, len(tickers))
		ok := true
		for i, t := range tickers {
			v, err := strconv.ParseFloat(r[col[t]], 64)
			c[i], ok = v, ok && err == nil
		}
		if ok {
			closes = append(closes, c)
		}
	}
	out := make([][]float64, len(closes)-1)
	for t := 1; t < len(closes); t++ {
		out[t-1] = make([]float64, len(tickers))
		for i := range tickers {
			out[t-1][i] = closes[t][i]/closes[t-1][i] - 1
		}
	}
	return out
}

func main() {
	target := os.Getenv("TICKWIRE_TARGET")
	if len(os.Args) > 1 {
		target = os.Args[1]
	}
	_, here, _, _ := runtime.Caller(0)
	data := filepath.Join(filepath.Dir(here), "../../../../data/daily-prices/stock_prices_1990_2024.csv.gz")
	returns := loadReturns(data, "2015-01-01")

	ctx := context.Background()
	conn, err := tickwire.Dial(ctx, target)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	health, err := conn.Health(ctx, "")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("health: %s; %d daily returns of %v\n", health, len(returns), tickers)

	positions := make([]float64, len(weights))
	for i, w := range weights {
		positions[i] = w * 10_000_000
	}
	r, err := riskv1.NewRiskServiceClient(conn).ComputeVar(ctx, &riskv1.ComputeVarRequest{
		ScenarioSource:   &riskv1.ComputeVarRequest_Scenarios{Scenarios: tickwire.Matrix(returns)},
		Positions:        positions,
		Method:           riskv1.VarMethod_VAR_METHOD_HISTORICAL,
		ConfidenceLevels: []float64{0.95, 0.99},
		HorizonDays:      []int32{1, 10},
	})
	if err != nil {
		log.Fatal(err) // a *tickwire.Error: code, message and field violations
	}
	for _, e := range r.GetEstimates() {
		fmt.Printf("VaR %g%% %dd: %.0f USD, CVaR %.0f USD\n", 100*e.GetConfidenceLevel(), e.GetHorizonDays(), e.GetVar(), e.GetCvar())
	}
	fmt.Printf("backend %v, trace %s\n", r.GetExecution().GetBackendUsed(), r.GetExecution().GetTraceId())

	strikes := []float64{90, 95, 100, 105, 110}
	calls := []int32{1, 1, 1, 1, 1} // OPTION_TYPE_CALL
	p, err := pricingv1.NewPricingServiceClient(conn).PriceEuropean(ctx, &pricingv1.PriceEuropeanRequest{
		Contracts: &pricingv1.OptionContracts{
			OptionType: tickwire.Int32Tensor(calls), Spot: tickwire.Float64Tensor([]float64{100}),
			Strike: tickwire.Float64Tensor(strikes), TimeToExpiry: tickwire.Float64Tensor([]float64{0.5}),
			Rate: tickwire.Float64Tensor([]float64{0.03}), Volatility: tickwire.Float64Tensor([]float64{0.2}),
		},
		Greeks: true,
	})
	if err != nil {
		log.Fatal(err)
	}
	price, _, _ := tickwire.Float64s(p.GetPrice())
	delta, _, _ := tickwire.Float64s(p.GetDelta())
	for i, k := range strikes {
		fmt.Printf("call K=%g: price %.4f, delta %.4f\n", k, price[i], delta[i])
	}

	vpinOfTheDay(conn)
}

// vpinOfTheDay replays the LOBSTER AAPL and AMZN days of 2012-06-21 from the server and
// pipes every trade batch into one StreamVpin stream (a goroutine writes while main reads;
// Send blocks on flow control), then prints the last VPIN of each symbol. Parameters as
// clients/python/examples/stream_demo.py: buckets of 10,000 AAPL / 3,000 AMZN shares,
// 10 s BVC bars, n = 50.
func vpinOfTheDay(conn *tickwire.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	config := &microv1.VpinStreamConfig{}
	for sym, v := range map[string]float64{"AAPL": 10_000, "AMZN": 3_000} {
		config.Symbols = append(config.Symbols, &microv1.SymbolParameters{Symbol: sym,
			Parameters: &microv1.VpinParameters{BucketVolume: v, BarNs: 10_000_000_000}})
	}
	replay, err := marketdatav1.NewMarketDataServiceClient(conn).Replay(ctx, &marketdatav1.ReplayRequest{
		Datasets: []string{"lobster-aapl-2012-06-21-l1", "lobster-amzn-2012-06-21-l1"}, Trades: true, BatchSize: 500})
	if err != nil {
		log.Fatal(err)
	}
	vpin, err := microv1.NewMicrostructureServiceClient(conn).StreamVpin(ctx)
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		err := vpin.Send(&microv1.StreamVpinRequest{Payload: &microv1.StreamVpinRequest_Config{Config: config}})
		for m, id := (*marketdatav1.ReplayResponse)(nil), uint64(1); err == nil; id++ {
			if m, err = replay.Recv(); err == nil && m.GetTrades() != nil {
				err = vpin.Send(&microv1.StreamVpinRequest{ClientBatchId: id, Payload: &microv1.StreamVpinRequest_Trades{Trades: m.GetTrades()}})
			}
		}
		if err != io.EOF {
			log.Fatal(err)
		}
		vpin.CloseSend()
	}()
	last, buckets := map[string]float64{}, map[string]int{}
	for {
		r, err := vpin.Recv()
		if err == io.EOF {
			break
		} else if err != nil {
			log.Fatal(err)
		}
		for _, a := range r.GetAnswers() {
			if b := a.GetBuckets(); b != nil {
				last[b.GetSymbol()] = b.GetVpin()[len(b.GetVpin())-1]
				buckets[b.GetSymbol()] += len(b.GetVpin())
			} else if a.GetRejection() != nil {
				log.Fatalf("batch %d rejected: %v", a.GetClientBatchId(), a.GetRejection())
			}
		}
	}
	for _, sym := range []string{"AAPL", "AMZN"} {
		fmt.Printf("VPIN %s: %.4f after %d buckets\n", sym, last[sym], buckets[sym])
	}
}

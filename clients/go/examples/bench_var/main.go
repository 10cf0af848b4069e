// Command bench_var times the smallest VaR call and a health check, sequential calls on
// one connection: bench_var host:port N. Prints one JSON line (µs). Used by
// bench/bench_clients.py.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"strconv"
	"time"

	riskv1 "tickwire/clients/go/gen/tickwire/risk/v1"
	"tickwire/clients/go/tickwire"
)

func timeCalls(n int, call func() error) []float64 {
	for i := 0; i < 200 && i < n; i++ {
		if err := call(); err != nil {
			log.Fatal(err)
		}
	}
	out := make([]float64, n)
	for i := range out {
		t0 := time.Now()
		if err := call(); err != nil {
			log.Fatal(err)
		}
		out[i] = float64(time.Since(t0).Nanoseconds()) / 1e3
	}
	return out
}

func main() {
	n, _ := strconv.Atoi(os.Args[2])
	ctx := context.Background()
	conn, err := tickwire.Dial(ctx, os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	risk := riskv1.NewRiskServiceClient(conn)
	req := &riskv1.ComputeVarRequest{
		ScenarioSource:   &riskv1.ComputeVarRequest_Scenarios{Scenarios: tickwire.Float64Tensor([]float64{-0.01, 0.02}, 2, 1)},
		Positions:        []float64{1e6},
		Method:           riskv1.VarMethod_VAR_METHOD_HISTORICAL,
		ConfidenceLevels: []float64{0.99},
		HorizonDays:      []int32{1},
	}
	varUs := timeCalls(n, func() error { _, err := risk.ComputeVar(ctx, req); return err })
	healthUs := timeCalls(n, func() error { _, err := conn.Health(ctx, ""); return err })
	out, _ := json.Marshal(map[string][]float64{"var_us": varUs, "health_us": healthUs})
	fmt.Println(string(out))
}

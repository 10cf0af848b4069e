// Command bench_var times the smallest VaR call and a health check, sequential calls on
// one connection: bench_var host:port N [requests.hex R]. With a file of StreamVpinRequest
// messages (hex, one a line, the config first) it also streams them R times through
// StreamVpin (a goroutine writes while main reads) and times each stream. Prints one JSON
// line (µs; vpin_s in seconds). Used by bench/bench_clients.py.
package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"os"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	microv1 "tickwire/clients/go/gen/tickwire/microstructure/v1"
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
	result := map[string][]float64{"var_us": varUs, "health_us": healthUs}
	if len(os.Args) > 4 {
		reps, _ := strconv.Atoi(os.Args[4])
		result["vpin_s"] = timeStreams(conn, readRequests(os.Args[3]), reps)
	}
	out, _ := json.Marshal(result)
	fmt.Println(string(out))
}

func readRequests(path string) []*microv1.StreamVpinRequest {
	f, err := os.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	var reqs []*microv1.StreamVpinRequest
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		b, err := hex.DecodeString(sc.Text())
		r := &microv1.StreamVpinRequest{}
		if err == nil {
			err = proto.Unmarshal(b, r)
		}
		if err != nil {
			log.Fatal(err)
		}
		reqs = append(reqs, r)
	}
	return reqs
}

// timeStreams sends every request through a new StreamVpin stream, reps times; seconds from
// the first write to the end of the answers, per stream.
func timeStreams(conn *tickwire.Conn, reqs []*microv1.StreamVpinRequest, reps int) []float64 {
	client := microv1.NewMicrostructureServiceClient(conn)
	var out []float64
	for i := 0; i < reps; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		t0 := time.Now()
		stream, err := client.StreamVpin(ctx)
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			for _, r := range reqs {
				if stream.Send(r) != nil {
					return
				}
			}
			stream.CloseSend()
		}()
		for {
			resp, err := stream.Recv()
			if err == io.EOF {
				break
			} else if err != nil {
				log.Fatal(err)
			}
			for _, a := range resp.GetAnswers() {
				if a.GetRejection() != nil {
					log.Fatalf("rejected: %v", a)
				}
			}
		}
		out = append(out, time.Since(t0).Seconds())
		cancel()
	}
	return out
}

// Times the smallest VaR call and a health check, sequential calls on one channel:
// bench_var host:port N. Prints one JSON line (µs). Used by bench/bench_clients.py.
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "tickwire/client.h"
#include "tickwire/risk/v1/risk.grpc.pb.h"

static std::vector<double> Time(int n, const std::function<void()>& call) {
  for (int i = 0; i < std::min(200, n); ++i) call();
  std::vector<double> out(n);
  for (auto& x : out) {
    auto t0 = std::chrono::steady_clock::now();
    call();
    x = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  }
  return out;
}

static std::string Json(const std::vector<double>& xs) {
  std::string s = "[";
  for (size_t i = 0; i < xs.size(); ++i) s += (i ? "," : "") + std::to_string(xs[i]);
  return s + "]";
}

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  int n = std::stoi(argv[2]);
  auto channel = tickwire::Connect(argv[1]);
  auto risk = tickwire::risk::v1::RiskService::NewStub(channel);
  tickwire::risk::v1::ComputeVarRequest req;
  *req.mutable_scenarios() = tickwire::ToTensor(std::vector<double>{-0.01, 0.02}, {2, 1});
  req.add_positions(1e6);
  req.set_method(tickwire::risk::v1::VAR_METHOD_HISTORICAL);
  req.add_confidence_levels(0.99);
  req.add_horizon_days(1);
  auto v = Time(n, [&] {
    tickwire::risk::v1::ComputeVarResponse resp;
    auto ctx = tickwire::NewContext();
    tickwire::Check(risk->ComputeVar(ctx.get(), req, &resp));
  });
  auto h = Time(n, [&] { tickwire::Health(channel); });
  std::printf("{\"var_us\": %s, \"health_us\": %s}\n", Json(v).c_str(), Json(h).c_str());
  return 0;
}

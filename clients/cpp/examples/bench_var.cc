// Times the smallest VaR call and a health check, sequential calls on one channel:
// bench_var host:port N [requests.hex R]. With a file of StreamVpinRequest messages (hex,
// one a line, the config first) it also streams them R times through StreamVpin (a second
// thread writes while this one reads) and times each stream. Prints one JSON line (µs;
// vpin_s in seconds). Used by bench/bench_clients.py.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "tickwire/client.h"
#include "tickwire/microstructure/v1/microstructure.grpc.pb.h"
#include "tickwire/risk/v1/risk.grpc.pb.h"

namespace micro = tickwire::microstructure::v1;

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

static std::vector<micro::StreamVpinRequest> ReadRequests(const char* path) {
  std::vector<micro::StreamVpinRequest> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    std::string bytes(line.size() / 2, '\0');
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(std::stoi(line.substr(2 * i, 2), nullptr, 16));
    out.emplace_back();
    if (!out.back().ParseFromString(bytes)) std::abort();
  }
  return out;
}

// Seconds from the first write to the end of the answers, per stream.
static std::vector<double> TimeStreams(const std::shared_ptr<grpc::Channel>& channel,
                                       const std::vector<micro::StreamVpinRequest>& requests, int reps) {
  auto rpc = micro::MicrostructureService::NewStub(channel);
  std::vector<double> out;
  for (int i = 0; i < reps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    auto ctx = tickwire::NewContext(std::chrono::minutes(5));
    auto stream = rpc->StreamVpin(ctx.get());
    std::thread writer([&] {
      for (const auto& r : requests) {
        if (!stream->Write(r)) return;
      }
      stream->WritesDone();
    });
    micro::StreamVpinResponse resp;
    while (stream->Read(&resp)) {
      for (const auto& a : resp.answers()) {
        if (a.has_rejection()) std::abort();
      }
    }
    writer.join();
    tickwire::Check(stream->Finish());
    out.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return out;
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
  std::string vpin;
  if (argc > 4) vpin = ", \"vpin_s\": " + Json(TimeStreams(channel, ReadRequests(argv[3]), std::stoi(argv[4])));
  std::printf("{\"var_us\": %s, \"health_us\": %s%s}\n", Json(v).c_str(), Json(h).c_str(), vpin.c_str());
  return 0;
}

// Live tests against a real Tickwire server started by tests/test_clients.py, which sets
// TICKWIRE_TARGET, TICKWIRE_FIXTURE (inputs and the Python client's answers, JSON) and
// TICKWIRE_TRACE_OUT. One ctest test per check: `live_test <Check>`; exit code 0 = pass.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "grpc/health/v1/health.grpc.pb.h"
#include "tickwire/client.h"
#include "tickwire/microstructure/v1/microstructure.grpc.pb.h"
#include "tickwire/pricing/v1/pricing.grpc.pb.h"
#include "tickwire/risk/v1/risk.grpc.pb.h"

using nlohmann::json;
namespace risk = tickwire::risk::v1;
namespace pricing = tickwire::pricing::v1;
namespace micro = tickwire::microstructure::v1;

namespace {

int failures = 0;

void Expect(bool ok, const std::string& what) {
  if (!ok) {
    std::cerr << "FAILED: " << what << "\n";
    ++failures;
  }
}

uint64_t Bits(double x) {
  uint64_t b;
  std::memcpy(&b, &x, 8);
  return b;
}

// Bitwise equality of float64 arrays.
void ExpectSameBits(const std::string& what, const std::vector<double>& got, const std::vector<double>& want) {
  Expect(got.size() == want.size(), what + ": length");
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    std::ostringstream m;
    m.precision(17);
    m << what << "[" << i << "] = " << got[i] << ", Python gave " << want[i];
    Expect(Bits(got[i]) == Bits(want[i]), m.str());
  }
}

json LoadFixture() {
  std::ifstream in(std::getenv("TICKWIRE_FIXTURE"));
  return json::parse(in);
}

risk::ComputeVarRequest VarRequest(const json& in) {
  risk::ComputeVarRequest req;
  *req.mutable_scenarios() = tickwire::ToTensor(in["scenarios"]["data"].get<std::vector<double>>(),
                                                in["scenarios"]["shape"].get<std::vector<int64_t>>());
  for (double p : in["positions"]) req.add_positions(p);
  req.set_method(static_cast<risk::VarMethod>(in["method"].get<int>()));
  for (double c : in["confidence_levels"]) req.add_confidence_levels(c);
  for (int h : in["horizon_days"]) req.add_horizon_days(h);
  if (in.contains("num_simulations")) {
    req.mutable_monte_carlo()->set_num_simulations(in["num_simulations"].get<int64_t>());
    req.mutable_monte_carlo()->set_seed(in["seed"].get<uint64_t>());
  }
  req.mutable_execution()->set_backend(tickwire::common::v1::BACKEND_NUMPY);
  return req;
}

// Runs `call`, expecting a tickwire::Error; returns it (code OK when none was thrown).
tickwire::Error ExpectError(const std::function<void()>& call) {
  try {
    call();
  } catch (const tickwire::Error& e) {
    return e;
  }
  Expect(false, "the call succeeded");
  return tickwire::Error(grpc::Status::OK);
}

const std::chrono::milliseconds kLong{60000};

// Bytes of a hex string (the fixture's protobuf messages).
std::string Unhex(const std::string& h) {
  std::string out(h.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<char>(std::stoi(h.substr(2 * i, 2), nullptr, 16));
  return out;
}

// A day of trades through the bidi stream: a second thread writes (Write blocks on HTTP/2
// flow control, so nothing piles up) while this one reads; answers in request order, each
// symbol's buckets numbered 0, 1, 2, ... without a gap, and merged per symbol the same bytes
// as the Python client's (fixture "vpin": hex protobuf messages).
void StreamVpinMatchesPython(const std::shared_ptr<grpc::Channel>& channel, const json& fx) {
  std::vector<micro::StreamVpinRequest> requests;
  int64_t trades = 0;
  for (const auto& h : fx["requests"]) {
    requests.emplace_back();
    Expect(requests.back().ParseFromString(Unhex(h.get<std::string>())), "parse a request");
    trades += requests.back().trades().ts_ns_size();
  }
  Expect(trades == fx["trades"].get<int64_t>() && trades >= 10000, "trades in the fixture");
  auto rpc = micro::MicrostructureService::NewStub(channel);
  auto ctx = tickwire::NewContext(std::chrono::milliseconds(120000));
  auto stream = rpc->StreamVpin(ctx.get());
  std::thread writer([&] {
    for (const auto& r : requests) {
      if (!stream->Write(r)) return;  // the call ended; Finish() tells why
    }
    stream->WritesDone();
  });
  std::map<std::string, micro::VpinBuckets> got;
  int64_t last_id = -1;
  micro::StreamVpinResponse resp;
  while (stream->Read(&resp)) {
    for (const auto& a : resp.answers()) {
      Expect(static_cast<int64_t>(a.client_batch_id()) > last_id && !a.has_rejection(),
             "answer " + std::to_string(a.client_batch_id()) + " after " + std::to_string(last_id));
      last_id = static_cast<int64_t>(a.client_batch_id());
      if (!a.has_buckets()) continue;
      auto& acc = got[a.buckets().symbol()];
      for (int j = 0; j < a.buckets().bucket_index_size(); ++j) {
        Expect(a.buckets().bucket_index(j) == acc.bucket_index_size() + j, a.buckets().symbol() + ": bucket order");
      }
      acc.MergeFrom(a.buckets());
    }
  }
  writer.join();
  tickwire::Check(stream->Finish());
  Expect(got.size() == fx["expected"].size(), "symbols answered");
  for (const auto& h : fx["expected"]) {
    const std::string want = Unhex(h.get<std::string>());
    micro::VpinBuckets w;
    w.ParseFromString(want);
    Expect(got[w.symbol()].SerializeAsString() == want,
           w.symbol() + ": " + std::to_string(got[w.symbol()].bucket_index_size()) + " buckets differ from Python's " +
               std::to_string(w.bucket_index_size()));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string check = argc > 1 ? argv[1] : "";
  if (check == "TensorIsLittleEndianRowMajor") {
    auto t = tickwire::MatrixToTensor({{1, 2, 3}, {4, 5, 6}});
    Expect(t.shape_size() == 2 && t.shape(0) == 2 && t.shape(1) == 3, "shape (2, 3)");
    // element [1, 0] = 4.0 = 0x4010000000000000: least significant byte first, at offset 24
    Expect(static_cast<unsigned char>(t.data()[30]) == 0x10 && static_cast<unsigned char>(t.data()[31]) == 0x40,
           "little-endian bytes of element [1, 0]");
    Expect(tickwire::ToDoubles(t) == std::vector<double>{1, 2, 3, 4, 5, 6}, "round trip");
    return failures ? 1 : 0;
  }
  if (check == "RetriesUnavailableOnly") {
    const char* flaky_target = std::getenv("TICKWIRE_FLAKY_TARGET");
    if (flaky_target == nullptr) return 1;
    auto flaky = tickwire::Connect(flaky_target);
    Expect(tickwire::Health(flaky, "flaky") == "SERVING", "UNAVAILABLE twice, then SERVING");
    auto err = ExpectError([&] { tickwire::Health(flaky, "invalid"); });
    Expect(err.code() == grpc::StatusCode::INVALID_ARGUMENT, "INVALID_ARGUMENT, got " + err.code_name());
    return failures ? 1 : 0;
  }
  const char* target = std::getenv("TICKWIRE_TARGET");
  if (target == nullptr || *target == '\0') {
    std::cerr << "TICKWIRE_TARGET not set: run through tests/test_clients.py\n";
    return 1;
  }
  const json fx = LoadFixture();
  auto channel = tickwire::Connect(target);
  auto risk_rpc = risk::RiskService::NewStub(channel);

  if (check == "Health") {
    Expect(tickwire::Health(channel) == "SERVING", "health is SERVING");
  } else if (check == "ComputeVarMatchesPython") {
    risk::ComputeVarResponse r;
    auto ctx = tickwire::NewContext(kLong);
    tickwire::Check(risk_rpc->ComputeVar(ctx.get(), VarRequest(fx["risk"]), &r));
    std::vector<double> var, cvar, level;
    std::vector<int> horizon;
    for (const auto& e : r.estimates()) {
      var.push_back(e.var());
      cvar.push_back(e.cvar());
      level.push_back(e.confidence_level());
      horizon.push_back(e.horizon_days());
    }
    const json& want = fx["risk"]["expected"];
    ExpectSameBits("var", var, want["var"].get<std::vector<double>>());
    ExpectSameBits("cvar", cvar, want["cvar"].get<std::vector<double>>());
    ExpectSameBits("confidence_level", level, want["confidence_level"].get<std::vector<double>>());
    ExpectSameBits("pnl", {r.pnl_mean(), r.pnl_std()}, {want["pnl_mean"].get<double>(), want["pnl_std"].get<double>()});
    Expect(horizon == want["horizon_days"].get<std::vector<int>>(), "horizons");
    Expect(r.num_scenarios() == want["num_scenarios"].get<int64_t>(), "num_scenarios");
  } else if (check == "PriceEuropeanMatchesPython") {
    const json& p = fx["pricing"];
    pricing::PriceEuropeanRequest req;
    auto* c = req.mutable_contracts();
    *c->mutable_option_type() = tickwire::ToTensor(p["option_type"].get<std::vector<int32_t>>());
    *c->mutable_spot() = tickwire::ToTensor(p["spot"].get<std::vector<double>>());
    *c->mutable_strike() = tickwire::ToTensor(p["strike"].get<std::vector<double>>());
    *c->mutable_time_to_expiry() = tickwire::ToTensor(p["time_to_expiry"].get<std::vector<double>>());
    *c->mutable_rate() = tickwire::ToTensor(p["rate"].get<std::vector<double>>());
    *c->mutable_dividend_yield() = tickwire::ToTensor(p["dividend_yield"].get<std::vector<double>>());
    *c->mutable_volatility() = tickwire::ToTensor(p["volatility"].get<std::vector<double>>());
    req.set_greeks(true);
    req.mutable_execution()->set_backend(tickwire::common::v1::BACKEND_NUMPY);
    pricing::PriceEuropeanResponse r;
    auto ctx = tickwire::NewContext(kLong);
    tickwire::Check(pricing::PricingService::NewStub(channel)->PriceEuropean(ctx.get(), req, &r));
    const json& want = p["expected"];
    ExpectSameBits("price", tickwire::ToDoubles(r.price()), want["price"].get<std::vector<double>>());
    ExpectSameBits("delta", tickwire::ToDoubles(r.delta()), want["delta"].get<std::vector<double>>());
    ExpectSameBits("vega", tickwire::ToDoubles(r.vega()), want["vega"].get<std::vector<double>>());
  } else if (check == "DeadlineExceeded") {
    const json& in = fx["deadline"];
    auto err = ExpectError([&] {
      risk::ComputeVarResponse r;
      auto ctx = tickwire::NewContext(std::chrono::milliseconds(in["timeout_ms"].get<int>()));
      tickwire::Check(risk_rpc->ComputeVar(ctx.get(), VarRequest(in), &r));
    });
    Expect(err.code() == grpc::StatusCode::DEADLINE_EXCEEDED && err.code_name() == "DEADLINE_EXCEEDED",
           "DEADLINE_EXCEEDED, got " + err.code_name());
  } else if (check == "InvalidArgument") {
    const json& in = fx["invalid"];
    auto err = ExpectError([&] {
      risk::ComputeVarResponse r;
      auto ctx = tickwire::NewContext(kLong);
      tickwire::Check(risk_rpc->ComputeVar(ctx.get(), VarRequest(in), &r));
    });
    Expect(err.code() == grpc::StatusCode::INVALID_ARGUMENT, "INVALID_ARGUMENT, got " + err.code_name());
    Expect(err.fields() == in["fields"].get<std::vector<std::string>>(), "the fields the Python client decoded");
    for (const auto& v : err.field_violations()) Expect(!v.description.empty(), v.field + ": description");
  } else if (check == "TraceContextContinues") {
    auto tp = tickwire::NewTraceparent();
    risk::ComputeVarResponse r;
    auto ctx = tickwire::NewContext(kLong, tp.header);
    tickwire::Check(risk_rpc->ComputeVar(ctx.get(), VarRequest(fx["risk"]), &r));
    Expect(r.execution().trace_id() == tp.trace_id, "server trace id " + r.execution().trace_id());
    std::ofstream(std::getenv("TICKWIRE_TRACE_OUT")) << json{{"trace_id", tp.trace_id}, {"span_id", tp.span_id}};
  } else if (check == "StreamVpinMatchesPython") {
    StreamVpinMatchesPython(channel, fx["vpin"]);
  } else if (check == "ServerStreamWatch") {
    auto rpc = grpc::health::v1::Health::NewStub(channel);
    auto ctx = tickwire::NewContext(std::chrono::milliseconds(500));
    auto reader = rpc->Watch(ctx.get(), grpc::health::v1::HealthCheckRequest());
    grpc::health::v1::HealthCheckResponse update;
    std::vector<int> seen;
    while (reader->Read(&update)) seen.push_back(update.status());
    auto err = ExpectError([&] { tickwire::Check(reader->Finish()); });
    Expect(seen == std::vector<int>{grpc::health::v1::HealthCheckResponse::SERVING}, "one SERVING update");
    Expect(err.code() == grpc::StatusCode::DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED, got " + err.code_name());
  } else {
    std::cerr << "unknown check " << check << "\n";
    return 2;
  }
  return failures ? 1 : 0;
}

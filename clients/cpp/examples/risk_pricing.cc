// Tickwire from C++: server health, VaR and CVaR of a real 10-stock book, a batch of
// European options, and a day of real trades replayed through the server
// (MarketDataService.Replay) and streamed back into VPIN (StreamVpin).
//
//   build/risk_pricing 127.0.0.1:50051     (or TICKWIRE_TARGET=host:port)
//   make demo-clients                      (starts a server for it)
//
// Reads data/daily-prices/stock_prices_1990_2024.csv.gz (adjusted daily closes), keeps the
// dates from 2015-01-01 on which all ten stocks have a price, and sends the (T, 10) simple
// returns as a float64 Tensor, the same book as clients/python/examples/risk_demo.py.
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tickwire/client.h"
#include "tickwire/marketdata/v1/market_data.grpc.pb.h"
#include "tickwire/microstructure/v1/microstructure.grpc.pb.h"
#include "tickwire/pricing/v1/pricing.grpc.pb.h"
#include "tickwire/risk/v1/risk.grpc.pb.h"

namespace {

const std::vector<std::string> kTickers = {"AAPL", "AMZN", "GOOG", "JPM", "BAC", "XOM", "PFE", "WMT", "MA", "SBUX"};
const std::vector<double> kWeights = {0.15, 0.15, 0.12, 0.10, 0.08, 0.10, 0.08, 0.10, 0.12, -0.10};

std::vector<std::string> Split(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream s(line);
  std::string f;
  while (std::getline(s, f, ',')) out.push_back(f);
  if (!line.empty() && line.back() == ',') out.emplace_back();
  return out;
}

// (T, K) simple returns p_t / p_{t-1} - 1 over the dates >= start where every ticker has a close.
std::vector<std::vector<double>> LoadReturns(const std::string& path, const std::string& start) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) throw std::runtime_error("cannot open " + path);
  std::string text;
  char buf[1 << 16];
  for (int n; (n = gzread(f, buf, sizeof buf)) > 0;) text.append(buf, n);
  gzclose(f);
  std::stringstream lines(text);
  std::string line;
  std::getline(lines, line);
  auto header = Split(line);
  std::vector<size_t> cols;
  for (const auto& t : kTickers) cols.push_back(std::find(header.begin(), header.end(), t) - header.begin());
  std::vector<std::vector<double>> closes;
  while (std::getline(lines, line)) {
    auto f = Split(line);
    if (f[0] < start) continue;
    std::vector<double> row;
    for (auto c : cols) {
      if (c < f.size() && !f[c].empty()) row.push_back(std::strtod(f[c].c_str(), nullptr));
    }
    if (row.size() == cols.size()) closes.push_back(row);
  }
  std::vector<std::vector<double>> out;
  for (size_t t = 1; t < closes.size(); ++t) {
    std::vector<double> r;
    for (size_t i = 0; i < cols.size(); ++i) r.push_back(closes[t][i] / closes[t - 1][i] - 1);
    out.push_back(r);
  }
  return out;
}

namespace md = tickwire::marketdata::v1;
namespace micro = tickwire::microstructure::v1;

// Replays the LOBSTER AAPL and AMZN days of 2012-06-21 from the server and pipes every trade
// batch into one StreamVpin stream (a second thread writes, Write blocking on flow control,
// while this one reads), then prints the last VPIN of each symbol. Parameters as
// clients/python/examples/stream_demo.py: 10,000 AAPL / 3,000 AMZN shares per bucket, 10 s bars.
void VpinOfTheDay(const std::shared_ptr<grpc::Channel>& channel) {
  md::ReplayRequest rreq;
  for (const char* d : {"lobster-aapl-2012-06-21-l1", "lobster-amzn-2012-06-21-l1"}) rreq.add_datasets(d);
  rreq.set_trades(true);
  rreq.set_batch_size(500);
  auto rctx = tickwire::NewContext(std::chrono::minutes(5)), vctx = tickwire::NewContext(std::chrono::minutes(5));
  auto replay = md::MarketDataService::NewStub(channel)->Replay(rctx.get(), rreq);
  auto vpin = micro::MicrostructureService::NewStub(channel)->StreamVpin(vctx.get());
  std::thread writer([&] {
    micro::StreamVpinRequest req;
    for (auto [symbol, volume] : std::map<std::string, double>{{"AAPL", 10'000}, {"AMZN", 3'000}}) {
      auto* s = req.mutable_config()->add_symbols();
      s->set_symbol(symbol);
      s->mutable_parameters()->set_bucket_volume(volume);
      s->mutable_parameters()->set_bar_ns(10'000'000'000);
    }
    bool ok = vpin->Write(req);  // the config, then each replayed trade batch
    md::ReplayResponse m;
    for (uint64_t id = 1; ok && replay->Read(&m);) {
      if (!m.has_trades()) continue;
      req.set_client_batch_id(id++);
      *req.mutable_trades() = std::move(*m.mutable_trades());  // replaces the config (oneof)
      ok = vpin->Write(req);
    }
    if (!ok) rctx->TryCancel();  // the VPIN stream ended early: stop the replay too
    vpin->WritesDone();
  });
  std::map<std::string, std::pair<double, int>> last;  // symbol -> (last VPIN, buckets)
  micro::StreamVpinResponse resp;
  while (vpin->Read(&resp)) {
    for (const auto& a : resp.answers()) {
      if (a.has_rejection()) std::cerr << "batch " << a.client_batch_id() << " rejected\n";
      if (!a.has_buckets()) continue;
      auto& [v, n] = last[a.buckets().symbol()];
      v = a.buckets().vpin(a.buckets().vpin_size() - 1);
      n += a.buckets().vpin_size();
    }
  }
  writer.join();
  tickwire::Check(vpin->Finish());
  tickwire::Check(replay->Finish());
  for (const auto& [symbol, vn] : last) std::printf("VPIN %s: %.4f after %d buckets\n", symbol.c_str(), vn.first, vn.second);
}

}  // namespace

int main(int argc, char** argv) try {
  const char* env = std::getenv("TICKWIRE_TARGET");
  std::string target = argc > 1 ? argv[1] : env ? env : "127.0.0.1:50051";
  auto returns = LoadReturns(TICKWIRE_DATA_DIR "/daily-prices/stock_prices_1990_2024.csv.gz", "2015-01-01");
  auto channel = tickwire::Connect(target);
  std::cout << "health: " << tickwire::Health(channel) << "; " << returns.size() << " daily returns\n";

  tickwire::risk::v1::ComputeVarRequest req;
  *req.mutable_scenarios() = tickwire::MatrixToTensor(returns);
  for (double w : kWeights) req.add_positions(w * 10'000'000);
  req.set_method(tickwire::risk::v1::VAR_METHOD_HISTORICAL);
  for (double c : {0.95, 0.99}) req.add_confidence_levels(c);
  for (int h : {1, 10}) req.add_horizon_days(h);
  tickwire::risk::v1::ComputeVarResponse r;
  auto ctx = tickwire::NewContext();
  tickwire::Check(tickwire::risk::v1::RiskService::NewStub(channel)->ComputeVar(ctx.get(), req, &r));
  for (const auto& e : r.estimates()) {
    std::printf("VaR %.0f%% %dd: %.0f USD, CVaR %.0f USD\n", 100 * e.confidence_level(), e.horizon_days(), e.var(), e.cvar());
  }
  std::printf("backend %s, trace %s\n", tickwire::common::v1::Backend_Name(r.execution().backend_used()).c_str(),
              r.execution().trace_id().c_str());

  std::vector<double> strikes = {90, 95, 100, 105, 110};
  tickwire::pricing::v1::PriceEuropeanRequest preq;
  auto* c = preq.mutable_contracts();
  *c->mutable_option_type() = tickwire::ToTensor(std::vector<int32_t>(strikes.size(), tickwire::pricing::v1::OPTION_TYPE_CALL));
  *c->mutable_spot() = tickwire::ToTensor(std::vector<double>{100});
  *c->mutable_strike() = tickwire::ToTensor(strikes);
  *c->mutable_time_to_expiry() = tickwire::ToTensor(std::vector<double>{0.5});
  *c->mutable_rate() = tickwire::ToTensor(std::vector<double>{0.03});
  *c->mutable_volatility() = tickwire::ToTensor(std::vector<double>{0.2});
  preq.set_greeks(true);
  tickwire::pricing::v1::PriceEuropeanResponse p;
  auto pctx = tickwire::NewContext();
  tickwire::Check(tickwire::pricing::v1::PricingService::NewStub(channel)->PriceEuropean(pctx.get(), preq, &p));
  auto price = tickwire::ToDoubles(p.price()), delta = tickwire::ToDoubles(p.delta());
  for (size_t i = 0; i < strikes.size(); ++i) {
    std::printf("call K=%.0f: price %.4f, delta %.4f\n", strikes[i], price[i], delta[i]);
  }
  VpinOfTheDay(channel);
  return 0;
} catch (const tickwire::Error& e) {
  std::cerr << e.what() << "\n";  // code, message; e.field_violations() for INVALID_ARGUMENT
  return 1;
}

// Tickwire from C++: server health, VaR and CVaR of a real 10-stock book, and a batch of
// European options.
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
#include <sstream>
#include <string>
#include <vector>

#include "tickwire/client.h"
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
  return 0;
} catch (const tickwire::Error& e) {
  std::cerr << e.what() << "\n";  // code, message; e.field_violations() for INVALID_ARGUMENT
  return 1;
}

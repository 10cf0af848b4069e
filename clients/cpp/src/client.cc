#include "tickwire/client.h"

#include <algorithm>
#include <cstring>
#include <random>
#include <regex>

#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace tickwire {

grpc::ChannelArguments ChannelArguments(const Options& o) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(o.max_message_bytes);
  args.SetMaxSendMessageSize(o.max_message_bytes);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 1);
  if (o.max_attempts > 1) {
    args.SetServiceConfigJSON(
        R"({"methodConfig": [{"name": [{}], "retryPolicy": {"maxAttempts": )" +
        std::to_string(o.max_attempts) +
        R"(, "initialBackoff": "0.05s", "maxBackoff": "1s", "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"]}}]})");
  }
  return args;
}

std::shared_ptr<grpc::Channel> Connect(const std::string& target, const Options& o) {
  auto creds = o.credentials ? o.credentials : grpc::InsecureChannelCredentials();
  return grpc::CreateCustomChannel(target, creds, ChannelArguments(o));
}

std::unique_ptr<grpc::ClientContext> NewContext(std::chrono::milliseconds timeout,
                                                const std::string& traceparent) {
  static const std::regex format("00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}");
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + timeout);
  if (!traceparent.empty()) {
    if (!std::regex_match(traceparent, format)) {
      throw std::invalid_argument("malformed traceparent: " + traceparent);
    }
    ctx->AddMetadata("traceparent", traceparent);
  }
  return ctx;
}

Traceparent NewTraceparent() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  auto hex = [](int digits) {
    static const char* d = "0123456789abcdef";
    std::string s;
    for (int i = 0; i < digits; ++i) s += d[rng() & 15];
    return s;
  };
  Traceparent t;
  t.trace_id = hex(32);
  t.span_id = hex(16);
  t.header = "00-" + t.trace_id + "-" + t.span_id + "-01";
  return t;
}

std::string Error::CodeName(grpc::StatusCode code) {
  static const char* names[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT",
                                "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
                                "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
                                "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
                                "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  int c = static_cast<int>(code);
  return c >= 0 && c <= 16 ? names[c] : "UNKNOWN";
}

Error::Error(const grpc::Status& status)
    : std::runtime_error(CodeName(status.error_code()) + ": " + status.error_message()),
      code_(status.error_code()),
      message_(status.error_message()) {
  google::rpc::Status rich;
  if (status.error_details().empty() || !rich.ParseFromString(status.error_details())) return;
  for (const auto& detail : rich.details()) {
    google::rpc::BadRequest bad;
    google::rpc::ErrorInfo info;
    if (detail.UnpackTo(&bad)) {
      for (const auto& v : bad.field_violations()) violations_.push_back({v.field(), v.description()});
    } else if (detail.UnpackTo(&info)) {
      reason_ = info.reason();
    }
  }
}

std::vector<std::string> Error::fields() const {
  std::vector<std::string> out;
  for (const auto& v : violations_) out.push_back(v.field);
  return out;
}

void Check(const grpc::Status& status) {
  if (!status.ok()) throw Error(status);
}

std::string Health(const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
                   std::chrono::milliseconds timeout) {
  auto rpc = grpc::health::v1::Health::NewStub(channel);
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(service);
  grpc::health::v1::HealthCheckResponse resp;
  auto ctx = NewContext(timeout);
  Check(rpc->Check(ctx.get(), req, &resp));
  return grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status());
}

namespace {

constexpr bool kLittleEndianHost = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;

std::vector<int64_t> CheckShape(size_t n, std::vector<int64_t> shape) {
  if (shape.empty()) return {static_cast<int64_t>(n)};
  int64_t p = 1;
  for (auto d : shape) p *= d;
  if (p != static_cast<int64_t>(n)) {
    throw std::invalid_argument("shape needs " + std::to_string(p) + " values, got " + std::to_string(n));
  }
  return shape;
}

template <typename T>
common::v1::Tensor Encode(const std::vector<T>& data, std::vector<int64_t> shape, common::v1::DType dtype) {
  common::v1::Tensor t;
  t.set_dtype(dtype);
  for (auto d : CheckShape(data.size(), std::move(shape))) t.add_shape(d);
  std::string bytes(data.size() * sizeof(T), '\0');
  std::memcpy(bytes.data(), data.data(), bytes.size());
  if (!kLittleEndianHost) {
    for (size_t i = 0; i < bytes.size(); i += sizeof(T)) std::reverse(&bytes[i], &bytes[i] + sizeof(T));
  }
  t.set_data(std::move(bytes));
  return t;
}

}  // namespace

common::v1::Tensor ToTensor(const std::vector<double>& data, std::vector<int64_t> shape) {
  return Encode(data, std::move(shape), common::v1::D_TYPE_FLOAT64);
}

common::v1::Tensor ToTensor(const std::vector<int32_t>& data, std::vector<int64_t> shape) {
  return Encode(data, std::move(shape), common::v1::D_TYPE_INT32);
}

common::v1::Tensor MatrixToTensor(const std::vector<std::vector<double>>& rows) {
  size_t cols = rows.empty() ? 0 : rows[0].size();
  std::vector<double> flat;
  flat.reserve(rows.size() * cols);
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i].size() != cols) throw std::invalid_argument("row " + std::to_string(i) + " has a different length");
    flat.insert(flat.end(), rows[i].begin(), rows[i].end());
  }
  return ToTensor(flat, {static_cast<int64_t>(rows.size()), static_cast<int64_t>(cols)});
}

std::vector<double> ToDoubles(const common::v1::Tensor& t) {
  if (t.dtype() != common::v1::D_TYPE_FLOAT64) throw std::invalid_argument("expected a FLOAT64 tensor");
  int64_t n = 1;
  for (auto d : t.shape()) n *= d;
  if (static_cast<int64_t>(t.data().size()) != 8 * n) {
    throw std::invalid_argument("tensor data length does not match its shape");
  }
  std::string bytes = t.data();
  if (!kLittleEndianHost) {
    for (size_t i = 0; i < bytes.size(); i += 8) std::reverse(&bytes[i], &bytes[i] + 8);
  }
  std::vector<double> out(n);
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

}  // namespace tickwire

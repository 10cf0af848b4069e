// Tickwire C++ client: a thin layer over the code that protoc and grpc_cpp_plugin generate
// from protos/ (`make proto`, into clients/cpp/gen), shared by every service, so a new
// service needs no code here.
//
//   auto channel = tickwire::Connect("127.0.0.1:50051");
//   auto risk = tickwire::risk::v1::RiskService::NewStub(channel);   // any generated service
//   auto ctx = tickwire::NewContext();                               // default deadline
//   tickwire::risk::v1::ComputeVarResponse resp;
//   tickwire::Check(risk->ComputeVar(ctx.get(), request, &resp));    // throws tickwire::Error
//
// Connection behaviour, the same in every Tickwire client language (see
// clients/python/tickwire_client/client.py):
//  - a deadline on every call made with NewContext (30 s by default);
//  - send and receive limits of 256 MiB, the server's default;
//  - keepalive pings every 30 s, also without calls, 10 s ping timeout (the server accepts
//    pings 10 s apart or more);
//  - retries on UNAVAILABLE only, through gRPC's retry policy (4 attempts, exponential
//    backoff from 50 ms to 1 s);
//  - tickwire::Error: gRPC code, message, google.rpc.BadRequest field violations decoded
//    from grpc-status-details-bin;
//  - W3C trace context: NewContext(timeout, traceparent) sends the traceparent, so the
//    server's span becomes a child of that span.
//
// Tested with g++ 12 (C++17), gRPC C++ 1.51.1 and protobuf 3.21.12 (Debian bookworm),
// CMake 3.25, against the Python grpcio 1.85 server.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "tickwire/common/v1/tensor.pb.h"

namespace tickwire {

// Send and receive limit, bytes: the server's default (256 MiB).
constexpr int kDefaultMaxMessageBytes = 256 << 20;
// Default deadline of a call.
constexpr std::chrono::milliseconds kDefaultTimeout{30000};

struct Options {
  // Send and receive limit, bytes.
  int max_message_bytes = kDefaultMaxMessageBytes;
  // Attempts of a call failing with UNAVAILABLE (1: no retry).
  int max_attempts = 4;
  // TLS credentials; plaintext when null.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
};

// A channel to `target` ("host:port" or any gRPC target) with the settings above.
std::shared_ptr<grpc::Channel> Connect(const std::string& target, const Options& options = {});

// The channel arguments Connect uses (to build a channel of your own).
grpc::ChannelArguments ChannelArguments(const Options& options = {});

// A ClientContext with a deadline `timeout` from now and, when not empty, the W3C
// `traceparent` ("00-<32 hex trace id>-<16 hex span id>-<2 hex flags>") as metadata.
// Throws std::invalid_argument for a malformed traceparent.
std::unique_ptr<grpc::ClientContext> NewContext(std::chrono::milliseconds timeout = kDefaultTimeout,
                                                const std::string& traceparent = "");

// A sampled traceparent with random ids, for callers without an OpenTelemetry SDK.
struct Traceparent {
  std::string header;    // 00-<trace_id>-<span_id>-01
  std::string trace_id;  // 32 lowercase hex digits
  std::string span_id;   // 16 lowercase hex digits
};
Traceparent NewTraceparent();

// A request field the server rejected, and why.
struct FieldViolation {
  std::string field;
  std::string description;
};

// A failed call: gRPC code, the server's message, the google.rpc.BadRequest field
// violations and the google.rpc.ErrorInfo reason decoded from grpc-status-details-bin.
class Error : public std::runtime_error {
 public:
  explicit Error(const grpc::Status& status);
  grpc::StatusCode code() const { return code_; }
  // The code as gRPC spells it: "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", ...
  std::string code_name() const { return CodeName(code_); }
  const std::string& message() const { return message_; }
  const std::vector<FieldViolation>& field_violations() const { return violations_; }
  // Names of the rejected fields.
  std::vector<std::string> fields() const;
  const std::string& reason() const { return reason_; }
  static std::string CodeName(grpc::StatusCode code);

 private:
  grpc::StatusCode code_;
  std::string message_;
  std::vector<FieldViolation> violations_;
  std::string reason_;
};

// Throws tickwire::Error unless `status` is OK.
void Check(const grpc::Status& status);

// grpc.health.v1 status of the server ("") or of one service: "SERVING", "NOT_SERVING"...
// Throws tickwire::Error when the check fails.
std::string Health(const std::shared_ptr<grpc::Channel>& channel, const std::string& service = "",
                   std::chrono::milliseconds timeout = kDefaultTimeout);

// ----- arrays <-> tickwire.common.v1.Tensor --------------------------------------------
// Layout: elements row-major (C order), little-endian on the wire whatever the host (bytes
// are swapped on a big-endian host), no padding; a (T, N) matrix holds row t in bytes
// [t*N*8, (t+1)*N*8) for float64. An empty shape means {data.size()}.
// Throws std::invalid_argument when the shape does not match the number of values.
common::v1::Tensor ToTensor(const std::vector<double>& data, std::vector<int64_t> shape = {});
common::v1::Tensor ToTensor(const std::vector<int32_t>& data, std::vector<int64_t> shape = {});
// A (rows, cols) FLOAT64 tensor of a rectangular matrix given as rows.
common::v1::Tensor MatrixToTensor(const std::vector<std::vector<double>>& rows);
// The values of a FLOAT64 tensor, row-major. Throws std::invalid_argument for another
// dtype or a buffer whose length does not match the shape.
std::vector<double> ToDoubles(const common::v1::Tensor& tensor);

}  // namespace tickwire

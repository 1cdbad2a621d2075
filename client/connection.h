// A connection to a cellflux server: the gRPC channel, the stub, and per-call setup.
//
// TLS: when `tls_ca_file` is set the channel uses TLS and verifies the server against that PEM CA
// bundle; otherwise it is plaintext (loopback / trusted networks only).
// Token: when `auth_token_file` is set its contents (surrounding whitespace trimmed) are sent on
// every call as the metadata "authorization: Bearer <token>" — the same header the server checks.
// The header is added per call rather than through call credentials because gRPC refuses call
// credentials on plaintext channels, and a token on a plaintext loopback channel is legitimate in
// tests and behind a TLS-terminating proxy.
//
// Thread-safety: a Connection is immutable after Create(); stub() and PrepareContext() may be used
// from any number of threads at once (gRPC stubs are thread-safe).
#ifndef CELLFLUX_CLIENT_CONNECTION_H_
#define CELLFLUX_CLIENT_CONNECTION_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cellflux/v1/cellflux.grpc.pb.h"

namespace cellflux::client {

struct ConnectionOptions {
  std::string server;           // HOST:PORT
  std::string tls_ca_file;      // PEM CA bundle; empty = plaintext
  std::string auth_token_file;  // file holding the bearer token; empty = no token
  int max_message_mb = 64;      // receive/send limit for large images, MiB

  absl::Status Validate() const;
};

class Connection {
 public:
  // Reads the CA and token files (NOT_FOUND / INVALID_ARGUMENT naming the file) and creates the
  // channel. Does not contact the server: the first call does.
  static absl::StatusOr<std::unique_ptr<Connection>> Create(const ConnectionOptions& options);
  // Wraps an existing channel (tests: an in-process server's channel). `token` may be empty.
  static std::unique_ptr<Connection> FromChannel(std::shared_ptr<grpc::Channel> channel,
                                                 std::string token = "");

  cellflux::v1::CellFlux::StubInterface* stub() const { return stub_.get(); }
  const std::string& target() const { return target_; }

  // Sets the deadline (seconds from now; ≤ 0 = none) and the authorization metadata.
  void PrepareContext(grpc::ClientContext* context, double deadline_seconds) const;

 private:
  Connection(std::string target, std::shared_ptr<grpc::Channel> channel, std::string token);

  const std::string target_;
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<cellflux::v1::CellFlux::Stub> stub_;
  const std::string token_;
};

// grpc::Status → absl::Status with the same code and message (the server's message is kept
// verbatim: it names the offending field).
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace cellflux::client

#endif  // CELLFLUX_CLIENT_CONNECTION_H_

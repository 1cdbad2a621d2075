#include "client/connection.h"

#include <chrono>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/util/files.h"
#include "common/util/status_macros.h"

namespace cellflux::client {

absl::Status ConnectionOptions::Validate() const {
  if (server.empty()) {
    return absl::InvalidArgumentError("--server is required (HOST:PORT, e.g. localhost:50051)");
  }
  if (server.find(':') == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--server '", server, "' has no port; expected HOST:PORT"));
  }
  if (max_message_mb <= 0) {
    return absl::InvalidArgumentError("max_message_mb must be positive");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Connection>> Connection::Create(const ConnectionOptions& options) {
  CF_RETURN_IF_ERROR(options.Validate());
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.tls_ca_file.empty()) {
    credentials = grpc::InsecureChannelCredentials();
  } else {
    auto ca = ReadFile(options.tls_ca_file);
    if (!ca.ok()) {
      return absl::Status(ca.status().code(), absl::StrCat("--tls-ca: ", ca.status().message()));
    }
    if (ca->find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--tls-ca ", options.tls_ca_file, " holds no PEM certificate (BEGIN CERTIFICATE)"));
    }
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *ca;
    credentials = grpc::SslCredentials(ssl);
  }
  std::string token;
  if (!options.auth_token_file.empty()) {
    auto text = ReadFile(options.auth_token_file);
    if (!text.ok()) {
      return absl::Status(text.status().code(),
                          absl::StrCat("--auth-token-file: ", text.status().message()));
    }
    token = std::string(absl::StripAsciiWhitespace(*text));
    if (token.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--auth-token-file ", options.auth_token_file, " is empty"));
    }
  }
  grpc::ChannelArguments args;
  const int limit = options.max_message_mb * 1024 * 1024;
  args.SetMaxReceiveMessageSize(limit);
  args.SetMaxSendMessageSize(limit);
  auto channel = grpc::CreateCustomChannel(options.server, credentials, args);
  return std::unique_ptr<Connection>(
      new Connection(options.server, std::move(channel), std::move(token)));
}

std::unique_ptr<Connection> Connection::FromChannel(std::shared_ptr<grpc::Channel> channel,
                                                    std::string token) {
  return std::unique_ptr<Connection>(
      new Connection("in-process", std::move(channel), std::move(token)));
}

Connection::Connection(std::string target, std::shared_ptr<grpc::Channel> channel,
                       std::string token)
    : target_(std::move(target)),
      channel_(std::move(channel)),
      stub_(cellflux::v1::CellFlux::NewStub(channel_)),
      token_(std::move(token)) {}

void Connection::PrepareContext(grpc::ClientContext* context, double deadline_seconds) const {
  if (deadline_seconds > 0) {
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::microseconds(static_cast<int64_t>(deadline_seconds * 1e6)));
  }
  if (!token_.empty()) context->AddMetadata("authorization", absl::StrCat("Bearer ", token_));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

}  // namespace cellflux::client

#include "server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/util/files.h"
#include "common/util/logging.h"
#include "common/util/status_macros.h"

namespace cellflux::server {
namespace {

constexpr char kServiceName[] = "cellflux.v1.CellFlux";

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(const ServerOptions& o) {
  if (o.tls_cert_file.empty()) return grpc::InsecureServerCredentials();
  CF_ASSIGN_OR_RETURN(std::string cert, ReadFile(o.tls_cert_file));
  CF_ASSIGN_OR_RETURN(std::string key, ReadFile(o.tls_key_file));
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back({std::move(key), std::move(cert)});
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

absl::Status ServerOptions::Validate() const {
  if (listen.empty()) return absl::InvalidArgumentError("listen address is empty");
  if (tls_cert_file.empty() != tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "TLS needs both a certificate and a key (--tls-cert, --tls-key)");
  }
  if (drain_grace < absl::ZeroDuration())
    return absl::InvalidArgumentError("drain grace must be ≥ 0");
  if (max_message_bytes < (1 << 20)) {
    return absl::InvalidArgumentError("max_message_bytes must be at least 1 MiB");
  }
  if (service.response_threads < 1) {
    return absl::InvalidArgumentError("response_threads must be ≥ 1");
  }
  if (service.structure_cache.capacity < 1) {
    return absl::InvalidArgumentError(absl::StrCat("structure cache capacity must be ≥ 1, got ",
                                                   service.structure_cache.capacity));
  }
  return scheduler.Validate();
}

absl::StatusOr<std::unique_ptr<CellFluxServer>> CellFluxServer::Start(
    const ServerOptions& options) {
  CF_RETURN_IF_ERROR(options.Validate());
  std::unique_ptr<CellFluxServer> s(new CellFluxServer());
  s->options_ = options;
  s->registry_ = std::make_shared<prometheus::Registry>();
  s->metrics_ = std::make_unique<ServerMetrics>(*s->registry_);
  CF_ASSIGN_OR_RETURN(s->scheduler_, Scheduler::Create(options.scheduler, s->metrics_.get()));
  ServiceOptions service = options.service;
  service.max_queue_samples = options.scheduler.max_queue;
  s->service_ = std::make_unique<CellFluxService>(service, s->scheduler_.get(), s->metrics_.get());
  CF_ASSIGN_OR_RETURN(auto credentials, Credentials(options));

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, credentials, &s->port_);
  builder.RegisterService(s->service_.get());
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen));
  }
  s->SetServing(false);  // until a model is set

  if (!options.metrics_listen.empty()) {
    auto http = MetricsHttpServer::Start(options.metrics_listen, s->registry_);
    if (!http.ok()) {
      s->Shutdown();
      return http.status();
    }
    s->metrics_http_ = std::move(http).value();
  }
  if (!options.service.auth_token.empty() && options.tls_cert_file.empty()) {
    CF_LOG(WARNING) << "token auth is on but the gRPC port is plaintext: every call carries the "
                       "token unencrypted; serve TLS (--tls-cert/--tls-key) or keep the port on a "
                       "trusted network";
  }
  CF_LOG(INFO) << "cellflux-server listening on port " << s->port_
               << (options.tls_cert_file.empty() ? " (plaintext)" : " (TLS)")
               << (options.service.auth_token.empty() ? "" : ", token auth on");
  return s;
}

CellFluxServer::~CellFluxServer() { Shutdown(); }

std::vector<int> CellFluxServer::metrics_ports() const {
  return metrics_http_ != nullptr ? std::vector<int>{metrics_http_->port()} : std::vector<int>();
}

void CellFluxServer::SetServing(bool serving) {
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  if (health == nullptr) return;
  health->SetServingStatus(serving);  // overall ("")
  health->SetServingStatus(kServiceName, serving);
}

void CellFluxServer::SetBackend(std::shared_ptr<Backend> backend, double load_seconds) {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
  }
  const ModelInfo& info = backend->info();
  metrics_->SetModel(info.model_id, info.step, load_seconds);
  service_->SetBackend(std::move(backend));
  SetServing(true);
  CF_LOG(INFO) << "serving model " << info.model_id << " (step " << info.step << ", "
               << info.perturbations.size() << " perturbations, " << info.controls.size()
               << " bank controls), loaded in " << load_seconds << " s";
}

void CellFluxServer::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  const absl::Time grace_end = absl::Now() + options_.drain_grace;
  if (server_ != nullptr) SetServing(false);
  if (service_ != nullptr) service_->StartDraining();
  if (scheduler_ != nullptr) scheduler_->Stop(options_.drain_grace);  // in-flight finish
  if (service_ != nullptr) {
    service_->WaitForResponses();  // and are answered,
    // and the answers are out (until the grace ends at the latest).
    if (!service_->WaitForCallsDone(grace_end)) {
      CF_LOG(WARNING) << "drain grace over with Predict responses still being sent; cutting them";
    }
  }
  if (server_ != nullptr) {
    // Every call is done: a deadline of now closes the connections left (idle clients), which
    // gRPC would otherwise wait on until the deadline.
    server_->Shutdown(std::chrono::system_clock::now());
    server_->Wait();
  }
  metrics_http_.reset();
  CF_LOG(INFO) << "cellflux-server stopped";
}

}  // namespace cellflux::server

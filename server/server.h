// CellFluxServer: the whole serving process minus flags and signals (main.cc has those) — the
// gRPC server (CellFlux service, grpc.health.v1, reflection), the scheduler, the response
// workers, the Prometheus registry and its /metrics endpoint.
//
//   auto server = CellFluxServer::Start(options);   // listening; health NOT_SERVING
//   server->SetBackend(backend, load_seconds);      // a loaded, warmed-up model: SERVING
//   ...                                             // SIGHUP: SetBackend(new one) again
//   server->Shutdown();                             // SIGTERM: drain, then stop
//
// Health: the overall service ("") and "cellflux.v1.CellFlux" report SERVING only while a model
// is set and the server is not draining.
//
// Shutdown(): health → NOT_SERVING and every new call → UNAVAILABLE at once; queued and running
// Predict calls get up to drain_grace to finish (then UNAVAILABLE); every accepted call is
// answered (its response sent, within the grace) before the gRPC server stops, and then every
// connection is closed at once, idle clients' included, so exit never waits on them. Idempotent;
// the destructor calls it.
#ifndef CELLFLUX_SERVER_SERVER_H_
#define CELLFLUX_SERVER_SERVER_H_

#include <grpcpp/grpcpp.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/backend.h"
#include "server/metrics.h"
#include "server/metrics_http.h"
#include "server/scheduler.h"
#include "server/service.h"

namespace cellflux::server {

struct ServerOptions {
  std::string listen = "0.0.0.0:50051";  // gRPC address; port 0 picks a free port (tests)
  std::string metrics_listen;            // "host:port" of /metrics; empty = no endpoint
  SchedulerOptions scheduler;
  ServiceOptions service;
  std::string tls_cert_file;  // PEM certificate chain; with tls_key_file, serve TLS
  std::string tls_key_file;   // PEM private key
  absl::Duration drain_grace = absl::Seconds(30);  // how long Shutdown lets calls finish
  int max_message_bytes = 64 << 20;  // largest request/response (5 × 696×520 16-bit ≈ 3.6 MB)

  absl::Status Validate() const;
};

class CellFluxServer {
 public:
  // Builds and starts everything. Errors: INVALID_ARGUMENT (options), NOT_FOUND (TLS files),
  // UNAVAILABLE (cannot bind the gRPC or metrics address).
  static absl::StatusOr<std::unique_ptr<CellFluxServer>> Start(const ServerOptions& options);
  ~CellFluxServer();

  // The bound gRPC port (useful with port 0).
  int port() const { return port_; }
  // The bound /metrics ports (empty without an endpoint).
  std::vector<int> metrics_ports() const;
  prometheus::Registry& registry() { return *registry_; }
  ServerMetrics& metrics() { return *metrics_; }

  // Serves `backend` for new requests from now on (in-flight ones keep theirs), records its load
  // time and flips health to SERVING. Ignored after Shutdown().
  void SetBackend(std::shared_ptr<Backend> backend, double load_seconds);

  void Shutdown();

 private:
  CellFluxServer() = default;
  void SetServing(bool serving);

  ServerOptions options_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<CellFluxService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<MetricsHttpServer> metrics_http_;
  int port_ = 0;

  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace cellflux::server

#endif  // CELLFLUX_SERVER_SERVER_H_

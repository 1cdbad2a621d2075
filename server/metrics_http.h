// The /metrics HTTP endpoint: GET /metrics → the registry in Prometheus text format 0.0.4, served
// by GNU libmicrohttpd (Debian's libmicrohttpd12).
//
// Why not prometheus::Exposer: its civetweb server fails to start ("null context when
// constructing CivetServer") in any process that also links LibTorch 1.13 (reproduced with a
// 10-line program), i.e. in cellflux-server.
//
// Robustness: libmicrohttpd multiplexes connections with epoll on `worker_threads` event-loop
// threads, so a connection costs a slot, not a thread: a client that sends one byte a second (or
// nothing) never delays another's scrape. Each connection must deliver a complete request within
// `request_timeout` of connecting (or of its previous response, on keep-alive); otherwise it is
// shut down, so slow clients cannot keep slots either. At most `max_connections` are open at once
// (beyond that new connections are refused until slots free up). Anything but GET /metrics gets
// 404 (405 for other methods on /metrics).
//
// Exposure: the endpoint binds exactly where --metrics-listen says and has no authentication; keep
// it on an address reachable only inside the cluster (the Prometheus scraper's network), not on
// a public interface.
#ifndef CELLFLUX_SERVER_METRICS_HTTP_H_
#define CELLFLUX_SERVER_METRICS_HTTP_H_

#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

struct MHD_Daemon;
struct MHD_Connection;

namespace cellflux::server {

struct MetricsHttpOptions {
  int worker_threads = 2;                             // event-loop threads; ≥ 1
  int max_connections = 64;                           // open connections at once; ≥ 1
  absl::Duration request_timeout = absl::Seconds(5);  // connect → complete request; > 0
};

class MetricsHttpServer {
 public:
  // address: "host:port" with an IPv4 host ("0.0.0.0", "127.0.0.1"); port 0 picks a free port.
  // INVALID_ARGUMENT for a malformed address or options, UNAVAILABLE when it cannot bind.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& address, std::shared_ptr<prometheus::Registry> registry,
      const MetricsHttpOptions& options = {});
  // Stops accepting, closes every connection and joins the threads.
  ~MetricsHttpServer();

  int port() const { return port_; }

  // Implementation details follow (public only for libmicrohttpd's C callbacks).
  std::string Scrape() const;
  void ConnectionStarted(MHD_Connection* connection);
  void ConnectionClosed(MHD_Connection* connection);
  // A request is in (headers and body): its connection's timer stops until the response is sent.
  void RequestArrived(MHD_Connection* connection);
  // The response went out: the next request on this connection gets request_timeout again.
  void RequestCompleted(MHD_Connection* connection);

 private:
  MetricsHttpServer() = default;
  // Shuts down connections past their deadline, until stop_.
  void ReapLoop();

  std::shared_ptr<prometheus::Registry> registry_;
  MetricsHttpOptions options_;
  MHD_Daemon* daemon_ = nullptr;
  int port_ = 0;
  std::thread reaper_;

  absl::Mutex mu_;
  // Open connections → their socket and the time by which the pending request must be complete
  // (InfiniteFuture while one is being answered). Entries are added and removed by
  // libmicrohttpd's connection callbacks, which run before it closes the socket, so a socket in
  // here is always open and owned by that connection.
  struct Open {
    int fd = -1;
    absl::Time deadline = absl::InfiniteFuture();
  };
  std::map<MHD_Connection*, Open> open_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace cellflux::server

#endif  // CELLFLUX_SERVER_METRICS_HTTP_H_

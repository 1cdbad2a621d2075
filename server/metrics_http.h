// The /metrics HTTP endpoint: GET /metrics → the registry in Prometheus text format 0.0.4.
//
// Why not prometheus::Exposer: its civetweb server fails to start ("null context when
// constructing CivetServer") in any process that also links LibTorch 1.13 (reproduced with a
// 10-line program), i.e. in cellflux-server. This is a deliberately small HTTP/1.0 responder:
// one thread, one connection at a time (Prometheus scrapes are rare and small), 2 s socket
// timeouts, request bodies ignored, anything but GET /metrics answered 404.
#ifndef CELLFLUX_SERVER_METRICS_HTTP_H_
#define CELLFLUX_SERVER_METRICS_HTTP_H_

#include <prometheus/registry.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace cellflux::server {

class MetricsHttpServer {
 public:
  // address: "host:port" with an IPv4 host ("0.0.0.0", "127.0.0.1"); port 0 picks a free port.
  // INVALID_ARGUMENT for a malformed address, UNAVAILABLE when it cannot bind.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& address, std::shared_ptr<prometheus::Registry> registry);
  ~MetricsHttpServer();  // stops the thread and closes the socket

  int port() const { return port_; }

 private:
  MetricsHttpServer() = default;
  void Serve();
  void Answer(int fd);

  std::shared_ptr<prometheus::Registry> registry_;
  int listen_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};  // written on stop to wake poll()
  int port_ = 0;
  std::thread thread_;
};

}  // namespace cellflux::server

#endif  // CELLFLUX_SERVER_METRICS_HTTP_H_

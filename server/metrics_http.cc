#include "server/metrics_http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace cellflux::server {
namespace {

MHD_Result Respond(MHD_Connection* connection, unsigned int code, const std::string& body,
                   const char* content_type) {
  MHD_Response* response = MHD_create_response_from_buffer(
      body.size(), const_cast<char*>(body.data()), MHD_RESPMEM_MUST_COPY);
  if (response == nullptr) return MHD_NO;
  MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
  const MHD_Result queued = MHD_queue_response(connection, code, response);
  MHD_destroy_response(response);
  return queued;
}

MHD_Result Handle(void* cls, MHD_Connection* connection, const char* url, const char* method,
                  const char* /*version*/, const char* /*upload_data*/, size_t* upload_data_size,
                  void** request_context) {
  auto* self = static_cast<MetricsHttpServer*>(cls);
  // libmicrohttpd calls once when the headers are in, then per body chunk, then once more with
  // no data. A response queued before that last call makes it close the connection (the client
  // might still be sending a body), which would defeat keep-alive; so answer on the last call.
  static int started;
  if (*request_context == nullptr) {
    *request_context = &started;
    return MHD_YES;
  }
  if (*upload_data_size != 0) {
    *upload_data_size = 0;  // bodies are ignored
    return MHD_YES;
  }
  self->RequestArrived(connection);  // complete, body included: the deadline no longer applies
  const bool metrics = std::strcmp(url, "/metrics") == 0;
  if (metrics && std::strcmp(method, MHD_HTTP_METHOD_GET) == 0) {
    return Respond(connection, MHD_HTTP_OK, self->Scrape(),
                   "text/plain; version=0.0.4; charset=utf-8");
  }
  if (metrics) return Respond(connection, 405, "only GET /metrics is served here\n", "text/plain");
  return Respond(connection, MHD_HTTP_NOT_FOUND, "only GET /metrics is served here\n",
                 "text/plain");
}

void NotifyConnection(void* cls, MHD_Connection* connection, void** /*socket_context*/,
                      MHD_ConnectionNotificationCode code) {
  auto* self = static_cast<MetricsHttpServer*>(cls);
  if (code == MHD_CONNECTION_NOTIFY_STARTED) self->ConnectionStarted(connection);
  if (code == MHD_CONNECTION_NOTIFY_CLOSED) self->ConnectionClosed(connection);
}

void NotifyCompleted(void* cls, MHD_Connection* connection, void** /*request_context*/,
                     MHD_RequestTerminationCode /*code*/) {
  static_cast<MetricsHttpServer*>(cls)->RequestCompleted(connection);
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& address, std::shared_ptr<prometheus::Registry> registry,
    const MetricsHttpOptions& options) {
  const size_t colon = address.rfind(':');
  int port = -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
      port < 0 || port > 65535 ||
      inet_pton(AF_INET, address.substr(0, colon).c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("metrics address \"", address,
                                                   "\" must be IPv4 host:port, e.g. 0.0.0.0:9464"));
  }
  if (options.worker_threads < 1 || options.max_connections < 1 ||
      options.request_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "metrics server: worker_threads and max_connections must be ≥ 1, request_timeout > 0");
  }
  addr.sin_port = htons(static_cast<uint16_t>(port));
  std::unique_ptr<MetricsHttpServer> s(new MetricsHttpServer());
  s->registry_ = std::move(registry);
  s->options_ = options;
  // The daemon's own idle timeout backs up the whole-request deadline the reaper enforces.
  const unsigned int idle_s = static_cast<unsigned int>(
      std::max<int64_t>(1, absl::ToInt64Seconds(options.request_timeout) + 1));
  s->daemon_ = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, nullptr, nullptr, &Handle, s.get(),
      MHD_OPTION_SOCK_ADDR, reinterpret_cast<sockaddr*>(&addr), MHD_OPTION_THREAD_POOL_SIZE,
      static_cast<unsigned int>(options.worker_threads), MHD_OPTION_CONNECTION_LIMIT,
      static_cast<unsigned int>(options.max_connections), MHD_OPTION_CONNECTION_TIMEOUT, idle_s,
      MHD_OPTION_NOTIFY_CONNECTION, &NotifyConnection, s.get(), MHD_OPTION_NOTIFY_COMPLETED,
      &NotifyCompleted, s.get(), MHD_OPTION_END);
  if (s->daemon_ == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", address, ": ", std::strerror(errno)));
  }
  const MHD_DaemonInfo* info = MHD_get_daemon_info(s->daemon_, MHD_DAEMON_INFO_BIND_PORT);
  s->port_ = info != nullptr ? info->port : port;
  MetricsHttpServer* self = s.get();
  s->reaper_ = std::thread([self] { self->ReapLoop(); });
  return s;
}

MetricsHttpServer::~MetricsHttpServer() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (reaper_.joinable()) reaper_.join();
  if (daemon_ != nullptr) MHD_stop_daemon(daemon_);  // runs ConnectionClosed for every connection
}

std::string MetricsHttpServer::Scrape() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

void MetricsHttpServer::ConnectionStarted(MHD_Connection* connection) {
  const MHD_ConnectionInfo* info =
      MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
  absl::MutexLock lock(&mu_);
  open_[connection] = {info != nullptr ? info->connect_fd : -1,
                       absl::Now() + options_.request_timeout};
}

void MetricsHttpServer::ConnectionClosed(MHD_Connection* connection) {
  absl::MutexLock lock(&mu_);  // waits for a reaper that may be shutting this socket down
  open_.erase(connection);
}

void MetricsHttpServer::RequestArrived(MHD_Connection* connection) {
  absl::MutexLock lock(&mu_);
  auto it = open_.find(connection);
  if (it != open_.end()) it->second.deadline = absl::InfiniteFuture();
}

void MetricsHttpServer::RequestCompleted(MHD_Connection* connection) {
  absl::MutexLock lock(&mu_);
  auto it = open_.find(connection);
  if (it != open_.end()) it->second.deadline = absl::Now() + options_.request_timeout;
}

void MetricsHttpServer::ReapLoop() {
  const absl::Duration tick =
      std::clamp(options_.request_timeout / 4, absl::Milliseconds(10), absl::Seconds(1));
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    const absl::Time now = absl::Now();
    for (auto& [connection, open] : open_) {
      if (open.deadline > now || open.fd < 0) continue;
      // libmicrohttpd sees the end of the stream and closes the connection itself (it owns the
      // socket); the lock keeps the socket from being closed under us meanwhile.
      shutdown(open.fd, SHUT_RDWR);
      open.deadline = absl::InfiniteFuture();
    }
    mu_.AwaitWithTimeout(absl::Condition(&stop_), tick);
  }
}

}  // namespace cellflux::server

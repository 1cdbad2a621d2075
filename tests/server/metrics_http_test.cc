// The /metrics endpoint over real loopback sockets: scrapes, 404s, and (issue 19.5) slow or stuck
// clients that must neither block a scrape nor keep their connection. Timing enters only as
// generous upper bounds (a scrape that takes 20 s has failed), never as a guess of how fast
// something happens.
#include "server/metrics_http.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"

namespace cellflux::server {
namespace {

using ::testing::HasSubstr;

// A loopback TCP connection with receive and send timeouts of `timeout`; -1 on failure.
int Connect(int port, absl::Duration timeout = absl::Seconds(20)) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{static_cast<time_t>(absl::ToInt64Seconds(timeout)), 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool SendAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Everything the server sends until it closes the connection (or the receive timeout).
std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  while (true) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

std::string Get(int port, const std::string& path, const std::string& method = "GET") {
  const int fd = Connect(port);
  if (fd < 0) return "connect failed";
  SendAll(fd, method + " " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  std::string response = ReadAll(fd);
  close(fd);
  return response;
}

class MetricsHttpTest : public ::testing::Test {
 protected:
  void Start(MetricsHttpOptions options = {}) {
    registry_ = std::make_shared<prometheus::Registry>();
    prometheus::BuildCounter()
        .Name("cellflux_test_total")
        .Help("a test counter")
        .Register(*registry_)
        .Add({})
        .Increment(3);
    auto s = MetricsHttpServer::Start("127.0.0.1:0", registry_, options);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(s).value();
  }
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<MetricsHttpServer> server_;
};

TEST_F(MetricsHttpTest, ServesMetricsAndNothingElse) {
  Start();
  ASSERT_GT(server_->port(), 0);
  const std::string ok = Get(server_->port(), "/metrics");
  EXPECT_THAT(ok, HasSubstr("200 OK"));
  EXPECT_THAT(ok, HasSubstr("text/plain; version=0.0.4"));
  EXPECT_THAT(ok, HasSubstr("cellflux_test_total 3"));
  EXPECT_THAT(Get(server_->port(), "/"), HasSubstr("404"));
  EXPECT_THAT(Get(server_->port(), "/metrics", "POST"), HasSubstr("405"));
}

TEST_F(MetricsHttpTest, BadAddressesAreRejected) {
  auto registry = std::make_shared<prometheus::Registry>();
  EXPECT_EQ(MetricsHttpServer::Start("nohost", registry).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MetricsHttpServer::Start("localhost:9464", registry).status().code(),
            absl::StatusCode::kInvalidArgument);
  Start();
  EXPECT_EQ(MetricsHttpServer::Start("127.0.0.1:" + std::to_string(server_->port()), registry)
                .status()
                .code(),
            absl::StatusCode::kUnavailable);
}

// Clients that dribble a never-ending request one byte at a time, until stopped.
class SlowClients {
 public:
  SlowClients(int port, int n) {
    for (int i = 0; i < n; ++i) {
      const int fd = Connect(port);
      fds_.push_back(fd);
      if (fd >= 0) SendAll(fd, "GET /metrics HTTP/1.1\r\nX-Slow: ");
    }
    thread_ = std::thread([this] {
      while (!stop_.WaitForNotificationWithTimeout(absl::Milliseconds(200))) {
        for (int fd : fds_) {
          if (fd >= 0) send(fd, "a", 1, MSG_NOSIGNAL);
        }
      }
    });
  }
  ~SlowClients() {
    stop_.Notify();
    thread_.join();
    for (int fd : fds_) {
      if (fd >= 0) close(fd);
    }
  }
  const std::vector<int>& fds() const { return fds_; }

 private:
  std::vector<int> fds_;
  absl::Notification stop_;
  std::thread thread_;
};

// Issue 19.5: one connection sending a byte at a time blocked every scrape of the old one-thread
// responder. Here more slow clients than worker threads hold their connections open (their
// request deadline is far away) while scrapes must succeed.
TEST_F(MetricsHttpTest, SlowClientsDoNotBlockScrapes) {
  MetricsHttpOptions o;
  o.request_timeout = absl::Minutes(10);  // the slow clients keep their connections meanwhile
  Start(o);
  SlowClients slow(server_->port(), 4 * o.worker_threads);
  for (int fd : slow.fds()) ASSERT_GE(fd, 0);
  for (int i = 0; i < 3; ++i) {
    EXPECT_THAT(Get(server_->port(), "/metrics"), HasSubstr("cellflux_test_total 3")) << i;
  }
}

// A request that is still incomplete after request_timeout loses its connection, however
// steadily it trickles in.
TEST_F(MetricsHttpTest, IncompleteRequestsAreCutOffAfterTheRequestTimeout) {
  MetricsHttpOptions o;
  o.request_timeout = absl::Seconds(1);
  Start(o);
  SlowClients slow(server_->port(), 1);
  ASSERT_GE(slow.fds()[0], 0);
  const absl::Time start = absl::Now();
  const std::string got = ReadAll(slow.fds()[0]);  // returns when the server closes (or 20 s)
  EXPECT_LT(absl::Now() - start, absl::Seconds(15)) << "the slow client kept its connection";
  EXPECT_THAT(got, ::testing::Not(HasSubstr("cellflux_test_total")));
  // And the server is fine afterwards.
  EXPECT_THAT(Get(server_->port(), "/metrics"), HasSubstr("200 OK"));
}

TEST_F(MetricsHttpTest, KeepAliveConnectionsServeSeveralScrapes) {
  Start();
  const int fd = Connect(server_->port());
  ASSERT_GE(fd, 0);
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(SendAll(fd, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
    std::string got;
    char buf[4096];
    while (got.find("cellflux_test_total 3") == std::string::npos) {
      const ssize_t n = recv(fd, buf, sizeof(buf), 0);
      ASSERT_GT(n, 0) << i;
      got.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
}

}  // namespace
}  // namespace cellflux::server

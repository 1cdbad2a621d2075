#include "common/util/logging.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>

namespace cellflux {
namespace {

std::atomic<int> g_min_level{0};
std::mutex g_write_mu;  // one fwrite per line; the mutex only orders whole lines

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kINFO:
      return "INFO";
    case LogLevel::kWARNING:
      return "WARNING";
    case LogLevel::kERROR:
      return "ERROR";
  }
  return "?";
}

}  // namespace

void SetMinLogLevel(LogLevel level) { g_min_level = static_cast<int>(level); }
LogLevel MinLogLevel() { return static_cast<LogLevel>(g_min_level.load()); }

LogMessage::LogMessage(LogLevel level, const char* file, int line) : level_(level) {
  auto now = std::chrono::system_clock::now();
  std::time_t secs = std::chrono::system_clock::to_time_t(now);
  int ms = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  const char* base = std::strrchr(file, '/');
  char msbuf[8];
  std::snprintf(msbuf, sizeof(msbuf), ".%03dZ", ms);
  stream_ << buf << msbuf << " " << LevelName(level) << " " << (base ? base + 1 : file) << ":"
          << line << "] ";
}

LogMessage::~LogMessage() {
  if (static_cast<int>(level_) < g_min_level.load()) return;
  stream_ << '\n';
  std::string line = stream_.str();
  std::lock_guard<std::mutex> lock(g_write_mu);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace cellflux

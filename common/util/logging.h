// Minimal thread-safe logging to stderr (Debian 12's Abseil predates absl/log).
//
//   CF_LOG(INFO) << "loaded " << n << " tensors";
//   CF_LOG(WARNING) << ...;  CF_LOG(ERROR) << ...;
//
// Each message is one line: "<ISO time> <LEVEL> <file>:<line>] <text>". Lines from several threads
// never interleave. SetMinLogLevel() silences lower levels (tests use it to keep output short).
#ifndef CELLFLUX_COMMON_UTIL_LOGGING_H_
#define CELLFLUX_COMMON_UTIL_LOGGING_H_

#include <sstream>
#include <string>

namespace cellflux {

enum class LogLevel { kINFO = 0, kWARNING = 1, kERROR = 2 };

void SetMinLogLevel(LogLevel level);
LogLevel MinLogLevel();

class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();  // writes the line
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};

}  // namespace cellflux

#define CF_LOG(level) \
  ::cellflux::LogMessage(::cellflux::LogLevel::k##level, __FILE__, __LINE__).stream()

#endif  // CELLFLUX_COMMON_UTIL_LOGGING_H_

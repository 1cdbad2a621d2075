// Small helpers for the client tests: temp folders, text files, CSV line counts.
#ifndef CELLFLUX_TESTS_CLIENT_TEST_UTIL_H_
#define CELLFLUX_TESTS_CLIENT_TEST_UTIL_H_

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"

namespace cellflux::client::testing {

// A fresh folder under $TMPDIR (or /tmp); left behind for inspection when a test fails.
inline std::string MakeTempDir(const std::string& tag) {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string(base ? base : "/tmp") + "/cf_client_" + tag + "_XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  const char* dir = mkdtemp(buffer.data());
  return dir ? std::string(dir) : std::string();
}

inline void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

inline std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Non-empty lines of a text file (header included).
inline std::vector<std::string> Lines(const std::string& path) {
  return absl::StrSplit(ReadText(path), '\n', absl::SkipEmpty());
}

inline const std::string kFixtures = "tests/fixtures";

}  // namespace cellflux::client::testing

#endif  // CELLFLUX_TESTS_CLIENT_TEST_UTIL_H_

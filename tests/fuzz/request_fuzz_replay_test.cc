// The PredictRequest fuzz body over its committed seed corpus (make_request_corpus.py): valid_*
// requests validate, every other one fails with a validation code and a short message. The
// fixed-run driver (request_fuzz_runs, run by tests/reliability) mutates from here.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/fuzz/request_fuzz.h"

namespace cellflux::fuzz {
namespace {

TEST(RequestFuzzReplayTest, SeedCorpusValidatesAsNamed) {
  int valid = 0, invalid = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator("tests/fuzz/corpus/predict_request")) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string name = entry.path().filename().string();
    absl::Status st = FuzzPredictRequest(ss.str());
    EXPECT_NE(st.code(), absl::StatusCode::kInternal) << name << ": " << st;
    if (name.rfind("valid_", 0) == 0) {
      EXPECT_TRUE(st.ok()) << name << ": " << st;
      ++valid;
    } else {
      EXPECT_FALSE(st.ok()) << name;
      ++invalid;
    }
  }
  EXPECT_GE(valid, 4);
  EXPECT_GE(invalid, 10);
}

TEST(RequestFuzzReplayTest, BuiltInSeedsValidate) {
  EXPECT_TRUE(FuzzPredictRequest(ValidRequestBytes(/*bank=*/true)).ok());
  EXPECT_TRUE(FuzzPredictRequest(ValidRequestBytes(/*bank=*/false)).ok());
}

}  // namespace
}  // namespace cellflux::fuzz

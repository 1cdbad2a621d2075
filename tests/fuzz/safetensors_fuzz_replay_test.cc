// Runs the safetensors fuzz body (safetensors_fuzz_body.cc) over the committed seed corpus and a
// few thousand deterministic mutations of it, so every build exercises the fuzz invariants
// without clang/libFuzzer. The libFuzzer target (safetensors_fuzz.cc) is the open-ended version.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/fuzz/safetensors_fuzz.h"

namespace cellflux::fuzz {
namespace {

constexpr char kCorpusDir[] = "tests/fuzz/corpus/safetensors";

struct Seed {
  std::string name;
  std::string bytes;
};

std::vector<Seed> LoadCorpus() {
  std::vector<Seed> seeds;
  for (const auto& entry : std::filesystem::directory_iterator(kCorpusDir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    seeds.push_back({entry.path().filename().string(), ss.str()});
  }
  std::sort(seeds.begin(), seeds.end(),
            [](const Seed& a, const Seed& b) { return a.name < b.name; });
  return seeds;
}

bool StartsWith(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

TEST(SafetensorsFuzzReplayTest, SeedCorpusParsesAsNamed) {
  std::vector<Seed> seeds = LoadCorpus();
  ASSERT_GE(seeds.size(), 10u) << "seed corpus missing from " << kCorpusDir
                               << " (run from the repo root)";
  int valid = 0, invalid = 0;
  for (const Seed& s : seeds) {
    absl::Status st = FuzzSafetensors(s.bytes);
    EXPECT_NE(st.code(), absl::StatusCode::kInternal) << s.name << ": " << st;
    if (StartsWith(s.name, "valid_")) {
      EXPECT_TRUE(st.ok()) << s.name << ": " << st;
      ++valid;
    } else {
      EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << s.name << ": " << st;
      ++invalid;
    }
  }
  EXPECT_GE(valid, 4);
  EXPECT_GE(invalid, 4);
}

// Rewrites the 8-byte length so it covers the header up to the first byte after its last '}'.
void FixHeaderLength(std::string& b) {
  if (b.size() < 9) return;
  size_t close = b.rfind('}');
  if (close == std::string::npos || close < 8) return;
  uint64_t n = close + 1 - 8;
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((n >> (8 * i)) & 0xff);
}

std::string Mutate(const std::string& in, std::mt19937_64& rng) {
  static const char kInteresting[] = {'{', '}', '[', ']', '"', ',',  ':',    '-',    '0',
                                      '1', '9', 'e', '.', ' ', '\0', '\x7f', '\xff', '\xc3'};
  std::string b = in;
  auto pick = [&rng](size_t n) { return n == 0 ? size_t{0} : static_cast<size_t>(rng() % n); };
  const int rounds = 1 + static_cast<int>(rng() % 4);
  for (int r = 0; r < rounds; ++r) {
    switch (rng() % 9) {
      case 0:  // flip a bit
        if (!b.empty()) b[pick(b.size())] ^= static_cast<char>(1 << (rng() % 8));
        break;
      case 1:  // set a byte to a JSON-significant or edge value
        if (!b.empty()) b[pick(b.size())] = kInteresting[pick(sizeof(kInteresting))];
        break;
      case 2: {  // erase a range
        size_t at = pick(b.size() + 1), len = pick(16) + 1;
        if (at < b.size()) b.erase(at, len);
        break;
      }
      case 3: {  // copy a range elsewhere
        if (b.empty()) break;
        size_t from = pick(b.size()), len = std::min(b.size() - from, pick(24) + 1);
        b.insert(pick(b.size() + 1), b.substr(from, len));
        break;
      }
      case 4:  // truncate
        b.resize(pick(b.size() + 1));
        break;
      case 5: {  // change a digit in the header (shapes and offsets)
        std::vector<size_t> digits;
        for (size_t i = 8; i < b.size(); ++i) {
          if (b[i] >= '0' && b[i] <= '9') digits.push_back(i);
        }
        if (!digits.empty()) b[digits[pick(digits.size())]] = static_cast<char>('0' + rng() % 10);
        break;
      }
      case 6:  // append bytes to the data section
        b.append(pick(9), static_cast<char>(rng()));
        break;
      case 7:  // nudge the header length
        if (b.size() >= 8) b[0] = static_cast<char>(b[0] + static_cast<int>(rng() % 5) - 2);
        break;
      case 8:  // huge number into the header
        if (b.size() > 9) b.insert(8 + pick(b.size() - 8), "18446744073709551616");
        break;
    }
  }
  // Half of the mutants get a consistent header length so they reach the JSON validation.
  if (rng() % 2 == 0) FixHeaderLength(b);
  return b;
}

TEST(SafetensorsFuzzReplayTest, DeterministicMutationsNeverBreakInvariants) {
  std::vector<Seed> seeds = LoadCorpus();
  ASSERT_FALSE(seeds.empty());
  std::mt19937_64 rng(20240611);
  constexpr int kMutations = 5000;
  int accepted = 0, rejected = 0;
  for (int i = 0; i < kMutations; ++i) {
    const Seed& seed = seeds[i % seeds.size()];
    std::string mutant = Mutate(seed.bytes, rng);
    absl::Status st = FuzzSafetensors(mutant);
    ASSERT_NE(st.code(), absl::StatusCode::kInternal)
        << "mutation " << i << " of " << seed.name << " broke an invariant: " << st;
    ASSERT_TRUE(st.ok() || st.code() == absl::StatusCode::kInvalidArgument) << st;
    if (!st.ok())
      ASSERT_NE(st.message().find("fuzz"), absl::string_view::npos) << "no file label: " << st;
    (st.ok() ? accepted : rejected)++;
  }
  RecordProperty("accepted", accepted);
  RecordProperty("rejected", rejected);
  // The mutator must reach both outcomes, or it is not exercising the validation paths.
  EXPECT_GT(accepted, 50);
  EXPECT_GT(rejected, 1000);
}

}  // namespace
}  // namespace cellflux::fuzz

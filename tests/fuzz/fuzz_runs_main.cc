// A fixed-run, deterministic stand-in for libFuzzer's driver, so every build (any compiler, no
// sanitizer runtime) can run a fuzz target for a set number of inputs in CTest:
//   <target>_runs -runs=N [-seed=S] CORPUS_DIR...
// Runs every corpus file, then N mutations (bit flips, byte overwrites, inserts, deletions,
// duplications, splices of two inputs), each from a corpus file or an earlier mutation, through
// LLVMFuzzerTestOneInput, which aborts on a broken invariant. Same seed → same inputs. The
// libFuzzer build (-DCELLFLUX_FUZZ=ON, clang) links the same target function for open-ended,
// coverage-guided runs.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::string Mutate(const std::vector<std::string>& pool, std::mt19937_64& rng) {
  std::string s = pool[rng() % pool.size()];
  const int edits = 1 + static_cast<int>(rng() % 4);
  for (int e = 0; e < edits; ++e) {
    const size_t n = s.size();
    switch (rng() % 6) {
      case 0:  // flip a bit
        if (n > 0) s[rng() % n] ^= static_cast<char>(1 << (rng() % 8));
        break;
      case 1:  // overwrite a byte with an interesting value
        if (n > 0) {
          const char values[] = {0, 1, 0x7f, static_cast<char>(0x80), static_cast<char>(0xff)};
          s[rng() % n] = values[rng() % sizeof(values)];
        }
        break;
      case 2:  // insert random bytes
        s.insert(n > 0 ? rng() % (n + 1) : 0, std::string(1 + rng() % 8, static_cast<char>(rng())));
        break;
      case 3:  // delete a range
        if (n > 0) {
          const size_t at = rng() % n;
          s.erase(at, 1 + rng() % std::min<size_t>(16, n - at));
        }
        break;
      case 4:  // duplicate a range
        if (n > 0) {
          const size_t at = rng() % n, len = 1 + rng() % std::min<size_t>(64, n - at);
          s.insert(rng() % (n + 1), s.substr(at, len));
        }
        break;
      default: {  // splice with another input
        const std::string& other = pool[rng() % pool.size()];
        s = s.substr(0, n > 0 ? rng() % (n + 1) : 0) +
            other.substr(other.empty() ? 0 : rng() % other.size());
        break;
      }
    }
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  long runs = 1000;
  uint64_t seed = 1;
  std::vector<std::string> pool;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "-runs=", 6) == 0) {
      runs = std::strtol(argv[i] + 6, nullptr, 10);
    } else if (std::strncmp(argv[i], "-seed=", 6) == 0) {
      seed = std::strtoull(argv[i] + 6, nullptr, 10);
    } else {
      std::error_code ec;
      for (const auto& entry : std::filesystem::directory_iterator(argv[i], ec)) {
        if (!entry.is_regular_file()) continue;
        std::ifstream in(entry.path(), std::ios::binary);
        std::stringstream ss;
        ss << in.rdbuf();
        pool.push_back(ss.str());
      }
      if (ec) {
        std::fprintf(stderr, "cannot read corpus %s: %s\n", argv[i], ec.message().c_str());
        return 2;
      }
    }
  }
  if (pool.empty()) {
    std::fprintf(stderr, "usage: %s -runs=N [-seed=S] CORPUS_DIR... (no corpus files found)\n",
                 argv[0]);
    return 2;
  }
  for (const std::string& s : pool) {
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  }
  std::mt19937_64 rng(seed);
  const size_t corpus = pool.size();
  for (long r = 0; r < runs; ++r) {
    std::string input = Mutate(pool, rng);
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
    // Keep some mutations as parents (bounded), so edits compound over the run.
    if (r % 16 == 0 && pool.size() < corpus + 256 && input.size() < (1u << 20)) {
      pool.push_back(std::move(input));
    }
  }
  std::printf("%s: %zu corpus inputs + %ld mutations (seed %llu), no invariant broken\n", argv[0],
              corpus, runs, static_cast<unsigned long long>(seed));
  return 0;
}

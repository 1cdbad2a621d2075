// Loader throughput: 256×256×5 crops (perturbed + control) from 696×520 16-bit TIFFs, with and
// without the decoded-site cache, for 1 and 2 worker threads. Prints items/s per configuration.
//
//   loader_bench [--wells=64] [--seconds=5] [--batch=16] [--size=256] [--cache_mb=512] [--copy]
//
// Dataset: <wells> wells on 2 plates (a quarter DMSO), one site each, every site the real BBBC047
// fixture site (tests/fixtures/bbbc047-site, or $CELLFLUX_FIXTURES) hard-linked under BBBC047
// names (--copy: real copies), so every read decodes a full 696×520 uncompressed TIFF. Files are in
// the page cache after the first epoch (as on a training node whose data fits in RAM): this
// measures decode + crop + normalise + batching, not disk. The manifest is built in memory.
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/data/dataset.h"
#include "common/data/loader.h"
#include "common/data/manifest.h"
#include "common/torch/runtime.h"
#include "common/util/files.h"

namespace fs = std::filesystem;
using cellflux::data::CellPaintingDataset;
using cellflux::data::DatasetOptions;
using cellflux::data::Loader;
using cellflux::data::LoaderOptions;
using cellflux::data::Manifest;
using Clock = std::chrono::steady_clock;

namespace {

struct Flags {
  int wells = 64;
  double seconds = 5;
  int batch = 16;
  int size = 256;
  int64_t cache_mb = 512;
  bool copy = false;
};

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* name) -> const char* {
      std::string prefix = absl::StrCat("--", name, "=");
      return absl::StartsWith(a, prefix) ? argv[i] + prefix.size() : nullptr;
    };
    if (const char* v = value("wells"))
      f.wells = std::atoi(v);
    else if (const char* v = value("seconds"))
      f.seconds = std::atof(v);
    else if (const char* v = value("batch"))
      f.batch = std::atoi(v);
    else if (const char* v = value("size"))
      f.size = std::atoi(v);
    else if (const char* v = value("cache_mb"))
      f.cache_mb = std::atoll(v);
    else if (a == "--copy")
      f.copy = true;
    else {
      std::fprintf(stderr, "unknown flag %s\n", a.c_str());
      std::exit(2);
    }
  }
  return f;
}

// Fixture files in canonical order DNA, RNA, ER, AGP, Mito.
const char* kFixtureNames[] = {"Hoechst.tif", "ERSytoBleed.tif", "ERSyto.tif", "Ph_golgi.tif",
                               "Mito.tif"};

std::shared_ptr<Manifest> BuildManifest(const Flags& f, const std::string& fixtures,
                                        const std::string& dir) {
  auto m = std::make_shared<Manifest>();
  m->images_dir = dir;
  const int genes = 978;
  std::mt19937_64 rng(1);
  std::normal_distribution<float> normal;
  for (int w = 0; w < f.wells; ++w) {
    const std::string plate = w % 2 == 0 ? "P1" : "P2";
    const std::string well = absl::StrCat(std::string(1, static_cast<char>('A' + (w / 2) / 24)),
                                          absl::StrFormat("%02d", (w / 2) % 24 + 1));
    cellflux::data::SiteFiles site{plate, well, 1, {}};
    fs::create_directories(dir + "/" + plate);
    for (int c = 0; c < cellflux::data::kNumChannels; ++c) {
      site.paths[c] =
          absl::StrCat(dir, "/", plate, "/",
                       cellflux::data::MakeImageFileName(well, 1, cellflux::data::kChannelW[c]));
      const std::string src = fixtures + "/" + kFixtureNames[c];
      std::error_code ec;
      if (!f.copy) fs::create_hard_link(src, site.paths[c], ec);
      if (f.copy || ec) fs::copy_file(src, site.paths[c], fs::copy_options::overwrite_existing);
    }
    const int site_id = static_cast<int>(m->sites.size());
    m->sites.push_back(site);
    const std::string l1000_plate = plate == "P1" ? "L1" : "L2";
    const int64_t row = static_cast<int64_t>(m->expression_rows.size());
    const bool control = (w / 2) % 4 == 0;  // a quarter of each plate
    m->expression_rows.push_back({row, l1000_plate, control ? "DMSO" : "BRD-" + well, "", control});
    for (int g = 0; g < genes; ++g) m->expression.push_back(normal(rng));
    if (control) {
      m->cp_controls.push_back({plate, well, {site_id}});
      m->l1000_controls[l1000_plate].push_back(row);
      continue;
    }
    cellflux::data::ManifestPair p;
    p.pair_id = static_cast<int64_t>(m->pairs.size());
    p.perturbation = absl::StrCat("BRD-", plate, well);
    p.cp_plate = plate;
    p.well = well;
    p.site_ids = {site_id};
    p.l1000_plate = l1000_plate;
    p.l1000_row = row;
    m->pairs.push_back(p);
    m->vocabulary.push_back({p.perturbation, "10.0", "", ""});
  }
  // Pre-drawn controls: the first DMSO well / row of the plate.
  for (auto& p : m->pairs) {
    for (const auto& c : m->cp_controls) {
      if (c.plate == p.cp_plate) {
        p.control_well = c.well;
        p.control_site_ids = c.site_ids;
        break;
      }
    }
    p.control_l1000_row = m->l1000_controls.at(p.l1000_plate)[0];
  }
  for (int g = 0; g < genes; ++g) m->gene_ids.push_back(absl::StrCat(g, "_at"));
  m->gene_mean.assign(genes, 0.0);
  m->gene_std.assign(genes, 1.0);
  return m;
}

double CpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Runs whole epochs (after one warm-up epoch) until `seconds` have passed; returns items/s.
double Measure(const std::shared_ptr<Manifest>& m, const Flags& f, int workers, int64_t cache_bytes,
               int64_t* cache_hits, double* items_per_cpu_second) {
  DatasetOptions d;
  d.image_size = f.size;
  d.image_cache_bytes = cache_bytes;
  auto dataset = CellPaintingDataset::Create(m, d);
  if (!dataset.ok()) {
    std::fprintf(stderr, "%s\n", dataset.status().ToString().c_str());
    std::exit(1);
  }
  std::shared_ptr<const CellPaintingDataset> shared(std::move(*dataset));
  LoaderOptions o;
  o.batch_size = f.batch;
  o.num_workers = workers;
  auto loader = Loader::Create(shared, o);
  int64_t items = 0, epoch = 0;
  Clock::time_point start;
  double cpu_start = 0;
  while (true) {
    if (epoch == 1) {
      start = Clock::now();
      cpu_start = CpuSeconds();
      items = 0;
    }
    if (epoch >= 2 && Seconds(start, Clock::now()) >= f.seconds) break;
    (*loader)->StartEpoch(epoch++);
    while (true) {
      auto b = (*loader)->Next();
      if (!b.ok()) {
        std::fprintf(stderr, "%s\n", b.status().ToString().c_str());
        std::exit(1);
      }
      if (!b->has_value()) break;
      items += (*b)->size();
    }
  }
  *cache_hits = shared->cache_stats().hits;
  *items_per_cpu_second = items / (CpuSeconds() - cpu_start);
  return items / Seconds(start, Clock::now());
}

}  // namespace

int main(int argc, char** argv) {
  const Flags f = ParseFlags(argc, argv);
  // One intra-op thread (the loader's workers are the parallelism) and the malloc tuning every
  // cellflux binary gets (common/torch/runtime.h).
  cellflux::ConfigureRuntime("loader_bench", torch::kCPU, 1);
  const char* env = std::getenv("CELLFLUX_FIXTURES");
  const std::string fixtures =
      env ? std::string(env) + "/bbbc047-site" : "tests/fixtures/bbbc047-site";
  if (!fs::exists(fixtures + "/Hoechst.tif")) {
    std::fprintf(
        stderr,
        "fixture site not found in %s (run from the source root or set CELLFLUX_FIXTURES)\n",
        fixtures.c_str());
    return 1;
  }
  const std::string dir =
      absl::StrCat(fs::temp_directory_path().string(), "/loader_bench_", ::getpid());
  auto m = BuildManifest(f, fixtures, dir);

  // Components, one thread, in CPU time (the machine may be shared: CPU time does not count
  // waiting).
  {
    const int n = 20;
    auto time = [&](const char* what, const std::function<void(int)>& fn) {
      const double c0 = CpuSeconds();
      for (int i = 0; i < n; ++i) fn(i);
      std::printf("  %-44s %8.2f ms CPU\n", what, 1e3 * (CpuSeconds() - c0) / n);
    };
    std::printf("components (per call, single thread):\n");
    time("read 5 TIFF files (bytes only)", [&](int i) {
      for (const auto& p : m->sites[i % m->sites.size()].paths) (void)cellflux::ReadFile(p);
    });
    time("ReadSite (read + decode + 12-bit check)", [&](int i) {
      (void)cellflux::data::ReadSite(m->sites[i % m->sites.size()], {.max_value = 4095});
    });
    time("LoadSiteImage (ReadSite + float [5,H,W])",
         [&](int i) { (void)cellflux::data::LoadSiteImage(m->sites[i % m->sites.size()], true); });
    for (int64_t cache : {int64_t{0}, f.cache_mb << 20}) {
      DatasetOptions d;
      d.image_size = f.size;
      d.image_cache_bytes = cache;
      auto ds = CellPaintingDataset::Create(m, d);
      for (int64_t i = 0; i < (*ds)->size(); ++i) (void)(*ds)->Get(i, 0);  // warm the cache
      time(cache ? "Get (2 sites from the cache)" : "Get (2 sites decoded)",
           [&](int i) { (void)(*ds)->Get(i % (*ds)->size(), 1); });
    }
  }
  std::printf("dataset: %zu pairs, %zu sites, crop %d, batch %d, %u hardware threads\n",
              m->pairs.size(), m->sites.size(), f.size, f.batch,
              std::thread::hardware_concurrency());
  std::printf("%-8s %-7s %12s %14s %12s\n", "workers", "cache", "items/s", "items/CPU-s",
              "cache_hits");
  for (int64_t cache : {int64_t{0}, f.cache_mb << 20}) {
    for (int workers : {1, 2}) {
      int64_t hits = 0;
      double per_cpu = 0;
      const double rate = Measure(m, f, workers, cache, &hits, &per_cpu);
      std::printf("%-8d %-7s %12.1f %14.1f %12lld\n", workers, cache ? "on" : "off", rate, per_cpu,
                  static_cast<long long>(hits));
    }
  }
  // What a GPU consumes (see the report): SiT-XL/2 ≈ 118.6 GFLOPs per 256 px forward, training ≈
  // 3×, H100 at 40 % of 990 TFLOPS bf16.
  const double flops_per_item = 3 * 118.6e9, achieved = 0.40 * 990e12;
  std::printf("SiT-XL/2 training step needs ≈ %.0f items/s (batch 64: %.1f steps/s)\n",
              achieved / flops_per_item, achieved / flops_per_item / 64);
  fs::remove_all(dir);
  return 0;
}

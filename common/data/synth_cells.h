// Procedural rendering of one Cell Painting field of view of U2OS-like cells, for the synthetic
// dataset (`cellflux-tool synth`, common/data/synth.h). Torch-free, OpenCV only.
//
// What is drawn, per cell (channel names in the canonical order DNA, RNA, ER, AGP, Mito):
//   DNA  textured elliptical nucleus; a few percent of cells are rounded, bright (mitotic-like).
//   RNA  1-4 bright nucleoli inside the nucleus, dimmer nucleoplasm, faint perinuclear cytoplasm.
//   ER   reticular network, densest around the nucleus, with a bright nuclear-envelope rim.
//   AGP  actin at the cell cortex and along cell-cell borders, stress fibres along the cell's long
//        axis, a Golgi cluster beside the nucleus.
//   Mito short filaments / puncta in the cytoplasm, enriched near the nucleus; fragmentation
//        shortens them.
// Cells are elongated ellipses whose territories are cut where neighbours meet (touching cells).
// Then: optical blur + out-of-focus haze, smooth illumination falloff, per-channel camera offset,
// per-plate gain, shot noise (Poisson-like, Gaussian approximation) + read noise, clipped to 12 bit.
//
// Compound effects arrive as a MorphologyDelta: additive deltas, 0 = untreated (DMSO). A zero
// delta renders from exactly the same distribution as DMSO.
//
// Deterministic: the same (options, delta, gains, seed) gives identical pixels on the same build.
// Thread-safe: no shared state; call RenderSite from several threads at once.
#ifndef CELLFLUX_COMMON_DATA_SYNTH_CELLS_H_
#define CELLFLUX_COMMON_DATA_SYNTH_CELLS_H_

#include <array>
#include <cstdint>
#include <opencv2/core.hpp>

namespace cellflux {

// Small deterministic generator (xoshiro256**, seeded through splitmix64) with its own normal
// sampler, so output does not depend on the standard library's distribution implementations.
class SynthRng {
 public:
  explicit SynthRng(uint64_t seed);
  uint64_t Next();
  double Uniform();                      // [0, 1)
  double Uniform(double lo, double hi);  // [lo, hi)
  int UniformInt(int n);                 // [0, n), n > 0
  double Normal();                       // N(0, 1)
  double Normal(double mean, double sd) { return mean + sd * Normal(); }

 private:
  uint64_t s_[4];
  bool has_spare_ = false;
  double spare_ = 0.0;
};

// Combines a seed with further keys (plate, well, site, ...) into a new well-mixed seed.
uint64_t MixSeed(uint64_t seed, uint64_t key);

inline constexpr int kNumChannels = 5;  // canonical order: DNA, RNA, ER, AGP, Mito
enum Channel { kDna = 0, kRna = 1, kEr = 2, kAgp = 3, kMito = 4 };
const char* ChannelName(int channel);  // "DNA", "RNA", "ER", "AGP", "Mito"
int ChannelFileDigit(int channel);     // BBBC047 `_w<digit>`: DNA 1, ER 2, RNA 3, AGP 4, Mito 5

// Morphology parameters a compound can change. Units of each delta (0 = no change):
enum MorphParam {
  kNuclearSize = 0,    // log factor on nuclear radius
  kNuclearElongation,  // added to log(nuclear aspect ratio)
  kDnaIntensity,       // log factor on the DNA stain signal
  kRnaIntensity,       // log factor on the RNA stain signal
  kErIntensity,        // log factor on the ER stain signal
  kAgpIntensity,       // log factor on the AGP stain signal
  kMitoIntensity,      // log factor on the Mito stain signal
  kCellDensity,        // log factor on cells per area
  kCellSize,           // log factor on cytoplasm extent
  kMitoFragmentation,  // >0 shorter, more punctate mitochondria; <0 longer filaments
  kNumMorphParams
};
const char* MorphParamName(int param);  // snake_case, e.g. "nuclear_size"
// Largest |delta| a compound may reach for each parameter (synth.cc squashes effects with tanh).
double MorphParamMaxDelta(int param);

using MorphologyDelta = std::array<double, kNumMorphParams>;

struct SiteRenderOptions {
  int width = 160;   // pixels
  int height = 160;  // pixels
};

// Renders one site. `gains` multiply each channel's signal above the camera offset (plate effect;
// 1 = none). Returns 5 CV_16UC1 images in canonical channel order, values in [0, 4095].
std::array<cv::Mat, kNumChannels> RenderSite(const SiteRenderOptions& options,
                                             const MorphologyDelta& delta,
                                             const std::array<double, kNumChannels>& gains,
                                             uint64_t seed);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_DATA_SYNTH_CELLS_H_

#include "common/data/synth_cells.h"

#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>
#include <vector>

#include "common/util/seed.h"

namespace cellflux {
namespace {

constexpr double kPi = 3.14159265358979323846;

uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// Scene constants, in pixels of a 20x-objective BBBC047 image (nuclei ~25x18 px, ~150 cells per
// 696x520 field) and in 12-bit ADU (measured on the real fixture site).
constexpr double kCellsPerPixel = 165.0 / (696.0 * 520.0);
constexpr double kNuclearRadius = 12.5;    // geometric-mean semi-axis, px
constexpr double kLogAspect = 0.38;        // log(nuclear aspect ratio) of an untreated cell
constexpr double kRoundedFraction = 0.03;  // bright, rounded (mitotic-like) cells
constexpr int kMargin = 40;                // cells are placed this far outside the view, px
constexpr std::array<double, kNumChannels> kSignal = {620, 520, 480, 520, 380};  // per-cell stain
constexpr std::array<double, kNumChannels> kOffset = {145, 240, 290, 380, 320};  // camera + autofl.
constexpr std::array<double, kNumChannels> kBlurSigma = {1.2, 1.0, 1.0, 0.9, 0.8};  // optics, px
constexpr double kHaze = 0.25;      // out-of-focus light, fraction of the blurred signal
constexpr double kShotNoise = 0.6;  // variance per ADU of signal (camera gain)
constexpr double kReadNoise = 3.5;  // ADU

struct Cell {
  double cx, cy, ncos, nsin, na, nb;       // nucleus: centre, orientation, semi-axes
  double ccx, ccy, ccos, csin, ca, cb;     // cytoplasm ellipse
  std::array<double, kNumChannels> stain;  // signal scale per channel
  bool rounded;
};

// Normalized elliptical radius of (x, y) in the ellipse (centre, cos/sin of the axis, semi-axes).
double Rho(double x, double y, double cx, double cy, double c, double s, double a, double b) {
  const double dx = x - cx, dy = y - cy;
  const double u = (dx * c + dy * s) / a, v = (-dx * s + dy * c) / b;
  return std::sqrt(u * u + v * v);
}

// Smooth Gaussian random field with unit standard deviation, correlation length ~sigma px.
cv::Mat NoiseField(int width, int height, double sigma, SynthRng& rng) {
  cv::Mat field(height, width, CV_32F);
  for (int y = 0; y < height; ++y) {
    float* row = field.ptr<float>(y);
    for (int x = 0; x < width; ++x) row[x] = static_cast<float>(rng.Normal());
  }
  cv::GaussianBlur(field, field, cv::Size(), sigma);
  cv::Scalar mean, sd;
  cv::meanStdDev(field, mean, sd);
  field = (field - mean[0]) / std::max(1e-6, sd[0]);
  return field;
}

std::vector<Cell> PlaceCells(const SiteRenderOptions& options, const MorphologyDelta& delta,
                             SynthRng& rng) {
  const double w = options.width + 2 * kMargin, h = options.height + 2 * kMargin;
  const double expected = kCellsPerPixel * w * h * std::exp(delta[kCellDensity]);
  const int n =
      std::max(1, static_cast<int>(std::lround(expected + std::sqrt(expected) * rng.Normal())));
  const double r0 = kNuclearRadius * std::exp(delta[kNuclearSize]);
  const double min_dist = 1.9 * r0;
  std::vector<Cell> cells;
  for (int attempt = 0; attempt < 40 * n && static_cast<int>(cells.size()) < n; ++attempt) {
    const double cx = rng.Uniform(-kMargin, options.width + kMargin);
    const double cy = rng.Uniform(-kMargin, options.height + kMargin);
    bool free = true;
    for (const Cell& other : cells) {
      if (std::hypot(other.cx - cx, other.cy - cy) < min_dist) {
        free = false;
        break;
      }
    }
    if (!free) continue;
    Cell cell;
    cell.cx = cx;
    cell.cy = cy;
    cell.rounded = rng.Uniform() < kRoundedFraction;
    double r = r0 * std::exp(0.12 * rng.Normal());
    double aspect = std::exp(kLogAspect + delta[kNuclearElongation] + 0.12 * rng.Normal());
    if (cell.rounded) {
      r *= 0.8;
      aspect = 1.05;
    }
    const double theta = rng.Uniform(0, kPi);
    cell.ncos = std::cos(theta);
    cell.nsin = std::sin(theta);
    cell.na = r * std::sqrt(aspect);
    cell.nb = r / std::sqrt(aspect);
    const double theta_c = theta + 0.25 * rng.Normal();
    cell.ccos = std::cos(theta_c);
    cell.csin = std::sin(theta_c);
    const double grow = std::exp(delta[kCellSize]);
    cell.ca = cell.rounded ? 1.5 * r : cell.na * 3.3 * grow * std::exp(0.15 * rng.Normal());
    cell.cb = cell.rounded ? 1.5 * r : cell.nb * 2.6 * grow * std::exp(0.12 * rng.Normal());
    const double shift = cell.ca * rng.Uniform(-0.3, 0.3);
    cell.ccx = cx + cell.ccos * shift;
    cell.ccy = cy + cell.csin * shift;
    for (int ch = 0; ch < kNumChannels; ++ch) {
      const double cell_sd = ch == kDna ? 0.18 : 0.15;  // DNA content varies with cell cycle
      cell.stain[ch] = kSignal[ch] * std::exp(delta[kDnaIntensity + ch] + cell_sd * rng.Normal());
      if (cell.rounded) cell.stain[ch] *= ch == kDna ? 2.4 : 1.6;
    }
    cells.push_back(cell);
  }
  return cells;
}

// Point at normalized ellipse coordinates (u, v) of the cytoplasm ellipse.
cv::Point CytoPoint(const Cell& c, double u, double v) {
  const double x = c.ccx + u * c.ca * c.ccos - v * c.cb * c.csin;
  const double y = c.ccy + u * c.ca * c.csin + v * c.cb * c.ccos;
  return cv::Point(static_cast<int>(std::lround(x)) + kMargin,
                   static_cast<int>(std::lround(y)) + kMargin);
}

// Draws the sub-cellular structures (nucleoli, stress fibres, Golgi, mitochondria) onto canvases
// that include the margin, so structures of cells outside the view still enter it correctly.
void DrawOrganelles(const std::vector<Cell>& cells, const MorphologyDelta& delta, SynthRng& rng,
                    cv::Mat& nucleoli, cv::Mat& fibres, cv::Mat& golgi, cv::Mat& mito) {
  const double frag = delta[kMitoFragmentation];
  for (const Cell& c : cells) {
    const double r = std::sqrt(c.na * c.nb);
    const int n_nucleoli = 2 + rng.UniformInt(4);
    for (int i = 0; i < n_nucleoli; ++i) {
      const double q = 0.55 * std::sqrt(rng.Uniform()), phi = rng.Uniform(0, 2 * kPi);
      const double u = q * std::cos(phi) * c.na, v = q * std::sin(phi) * c.nb;
      const cv::Point p(static_cast<int>(std::lround(c.cx + u * c.ncos - v * c.nsin)) + kMargin,
                        static_cast<int>(std::lround(c.cy + u * c.nsin + v * c.ncos)) + kMargin);
      cv::circle(nucleoli, p,
                 std::max(1, static_cast<int>(std::lround(0.12 * r * rng.Uniform(0.8, 1.3)))),
                 cv::Scalar(c.stain[kRna] * rng.Uniform(0.6, 1.1)), cv::FILLED, cv::LINE_8);
    }
    if (!c.rounded) {
      const int n_fibres = 5 + rng.UniformInt(8);
      for (int i = 0; i < n_fibres; ++i) {
        const double v = rng.Uniform(-0.8, 0.8), tilt = 0.12 * rng.Normal();
        cv::line(fibres, CytoPoint(c, -rng.Uniform(0.7, 1.0), v - tilt),
                 CytoPoint(c, rng.Uniform(0.7, 1.0), v + tilt),
                 cv::Scalar(c.stain[kAgp] * rng.Uniform(0.15, 0.45)), 1, cv::LINE_8);
      }
    }
    const double phi = rng.Uniform(0, 2 * kPi);
    const double gx = c.cx + std::cos(phi) * r * 1.2, gy = c.cy + std::sin(phi) * r * 1.2;
    for (int i = 0; i < 4; ++i) {
      const cv::Point p(static_cast<int>(std::lround(gx + 0.3 * r * rng.Normal())) + kMargin,
                        static_cast<int>(std::lround(gy + 0.3 * r * rng.Normal())) + kMargin);
      cv::circle(golgi, p, std::max(1, static_cast<int>(std::lround(0.22 * r))),
                 cv::Scalar(c.stain[kAgp] * rng.Uniform(0.3, 0.55)), cv::FILLED, cv::LINE_8);
    }
    const int n_mito = static_cast<int>(c.ca * c.cb / 10.0);
    for (int i = 0; i < n_mito; ++i) {
      const double q = 0.25 + 0.75 * std::pow(rng.Uniform(), 1.3), ang = rng.Uniform(0, 2 * kPi);
      const double u = q * std::cos(ang), v = q * std::sin(ang);
      const cv::Point p = CytoPoint(c, u, v);
      if (Rho(p.x - kMargin, p.y - kMargin, c.cx, c.cy, c.ncos, c.nsin, c.na, c.nb) < 1.0) continue;
      const double length = 7.0 * std::exp(-1.2 * frag) * rng.Uniform(0.2, 1.0);
      const cv::Scalar value(c.stain[kMito] * rng.Uniform(0.4, 0.9));
      if (length < 1.5) {
        cv::circle(mito, p, 1, value, cv::FILLED, cv::LINE_8);
      } else {
        const double dir = rng.Uniform(0, 2 * kPi);
        const cv::Point d(static_cast<int>(std::lround(std::cos(dir) * length)),
                          static_cast<int>(std::lround(std::sin(dir) * length)));
        cv::line(mito, p, p + d, value, 1, cv::LINE_8);
      }
    }
  }
}

}  // namespace

SynthRng::SynthRng(uint64_t seed) {
  SplitMix64 init(seed);  // xoshiro256's recommended seeding
  for (uint64_t& s : s_) s = init.Next();
}

uint64_t SynthRng::Next() {
  const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

double SynthRng::Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
double SynthRng::Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }
int SynthRng::UniformInt(int n) { return static_cast<int>(Next() % static_cast<uint64_t>(n)); }

double SynthRng::Normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  const double u1 = 1.0 - Uniform();  // (0, 1]
  const double u2 = Uniform();
  const double radius = std::sqrt(-2.0 * std::log(u1));
  spare_ = radius * std::sin(2 * kPi * u2);
  has_spare_ = true;
  return radius * std::cos(2 * kPi * u2);
}

uint64_t MixSeed(uint64_t seed, uint64_t key) {
  return SplitMix64Hash(seed ^ (key * 0xD6E8FEB86659FD93ULL));
}

const char* ChannelName(int channel) {
  static const char* kNames[kNumChannels] = {"DNA", "RNA", "ER", "AGP", "Mito"};
  return kNames[channel];
}

int ChannelFileDigit(int channel) {
  static const int kDigits[kNumChannels] = {1, 3, 2, 4, 5};
  return kDigits[channel];
}

const char* MorphParamName(int param) {
  static const char* kNames[kNumMorphParams] = {
      "nuclear_size", "nuclear_elongation", "dna_intensity",  "rna_intensity",
      "er_intensity", "agp_intensity",      "mito_intensity", "cell_density",
      "cell_size",    "mito_fragmentation"};
  return kNames[param];
}

double MorphParamMaxDelta(int param) {
  static const double kMax[kNumMorphParams] = {0.35, 0.4, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.3, 1.0};
  return kMax[param];
}

std::array<cv::Mat, kNumChannels> RenderSite(const SiteRenderOptions& options,
                                             const MorphologyDelta& delta,
                                             const std::array<double, kNumChannels>& gains,
                                             uint64_t seed) {
  SynthRng rng(seed);
  const int w = options.width, h = options.height;
  const std::vector<Cell> cells = PlaceCells(options, delta, rng);

  const cv::Size big(w + 2 * kMargin, h + 2 * kMargin);
  cv::Mat nucleoli = cv::Mat::zeros(big, CV_32F), fibres = cv::Mat::zeros(big, CV_32F);
  cv::Mat golgi = cv::Mat::zeros(big, CV_32F), mito = cv::Mat::zeros(big, CV_32F);
  DrawOrganelles(cells, delta, rng, nucleoli, fibres, golgi, mito);
  const cv::Rect view(kMargin, kMargin, w, h);
  const cv::Mat nucleoli_v = nucleoli(view), fibres_v = fibres(view), golgi_v = golgi(view),
                mito_v = mito(view);

  const cv::Mat tex_nucleus = NoiseField(w, h, 1.2, rng);
  const cv::Mat tex_cyto = NoiseField(w, h, 3.0, rng);
  const cv::Mat er_field = NoiseField(w, h, 1.6, rng);
  const cv::Mat wobble = NoiseField(w, h, 7.0, rng);  // makes cell outlines irregular

  // Candidate cells per 32-px tile (bounding circles), so each pixel tests only nearby cells.
  constexpr int kTile = 32;
  const int tiles_x = (w + kTile - 1) / kTile, tiles_y = (h + kTile - 1) / kTile;
  std::vector<std::vector<int>> candidates(tiles_x * tiles_y);
  for (int i = 0; i < static_cast<int>(cells.size()); ++i) {
    const Cell& c = cells[i];
    const double reach = 1.25 * std::max(c.ca, c.cb) + 2;  // 1.25: the wobble can push ρ below 1
    const int x0 = std::max(0, static_cast<int>((c.ccx - reach) / kTile)),
              x1 = std::min(tiles_x - 1, static_cast<int>((c.ccx + reach) / kTile));
    const int y0 = std::max(0, static_cast<int>((c.ccy - reach) / kTile)),
              y1 = std::min(tiles_y - 1, static_cast<int>((c.ccy + reach) / kTile));
    if (c.ccx + reach < 0 || c.ccy + reach < 0) continue;
    for (int ty = y0; ty <= y1; ++ty)
      for (int tx = x0; tx <= x1; ++tx) candidates[ty * tiles_x + tx].push_back(i);
  }

  std::array<cv::Mat, kNumChannels> signal;
  for (cv::Mat& m : signal) m = cv::Mat::zeros(h, w, CV_32F);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      // Territory: the cell whose ellipse is nearest; a nucleus always belongs to its own cell.
      int best = -1;
      double d1 = 1e9, d2 = 1e9, best_rn = 0;
      const double wob = 0.15 * wobble.at<float>(y, x);
      for (int i : candidates[(y / kTile) * tiles_x + x / kTile]) {
        const Cell& c = cells[i];
        const double rn = Rho(x, y, c.cx, c.cy, c.ncos, c.nsin, c.na, c.nb);
        double d = Rho(x, y, c.ccx, c.ccy, c.ccos, c.csin, c.ca, c.cb) + wob;
        if (rn < 1.0) d = std::min(d, 0.3 * rn);
        if (d < d1) {
          d2 = d1;
          d1 = d;
          best = i;
          best_rn = rn;
        } else if (d < d2) {
          d2 = d;
        }
      }
      if (best < 0 || d1 >= 1.0) continue;
      const Cell& c = cells[best];
      const double tn = tex_nucleus.at<float>(y, x), tc = tex_cyto.at<float>(y, x);
      const double er_n = er_field.at<float>(y, x) / 0.35;
      const double ridge = std::exp(-er_n * er_n);  // zero crossings of a smooth field: a network
      const double rn = best_rn;
      double v[kNumChannels];
      if (rn < 1.0) {
        v[kDna] = c.stain[kDna] * (0.8 + 0.2 * (1 - rn * rn)) * (1 + 0.22 * tn);
        v[kRna] = c.stain[kRna] * 0.38 * (1 + 0.15 * tn);
        v[kEr] = c.stain[kEr] * (0.12 + 0.4 * std::exp(-std::pow((1 - rn) / 0.08, 2)));
        v[kAgp] = c.stain[kAgp] * 0.18;
        v[kMito] = c.stain[kMito] * 0.12;
      } else {
        const double wp = std::exp(-(rn - 1) * 1.1);  // perinuclear weight
        const double edge = std::exp(-std::pow((1 - d1) / 0.1, 2));
        const double border = d2 < 1.0 ? std::exp(-std::pow((d2 - d1) / 0.1, 2)) : 0.0;
        const double cortex = std::max(edge, border);
        const double thin = 0.55 + 0.45 * std::min(1.0, (1 - d1) / 0.3);  // cells flatten at edges
        v[kDna] = 0;
        v[kRna] = c.stain[kRna] * (0.18 + 0.3 * wp) * (1 + 0.2 * tc) * thin;
        v[kEr] = c.stain[kEr] * ((0.2 + 0.9 * wp) * (0.6 + 0.6 * ridge) * thin +
                                 0.45 * std::exp(-std::pow((rn - 1) / 0.12, 2)));
        v[kAgp] = c.stain[kAgp] * (0.35 * (1 + 0.2 * tc) + 0.55 * cortex);
        v[kMito] = c.stain[kMito] * (0.15 + 0.45 * wp) * (1 + 0.3 * tc) * thin;
      }
      for (int ch = 0; ch < kNumChannels; ++ch)
        signal[ch].at<float>(y, x) = static_cast<float>(std::max(0.0, v[ch]));
      // Organelles count only inside a cell (fibres and Golgi may not leak into background).
      signal[kRna].at<float>(y, x) += rn < 1.0 ? nucleoli_v.at<float>(y, x) : 0.0f;
      signal[kAgp].at<float>(y, x) += fibres_v.at<float>(y, x) + golgi_v.at<float>(y, x);
      signal[kMito].at<float>(y, x) += rn >= 1.0 ? mito_v.at<float>(y, x) : 0.0f;
    }
  }

  std::array<cv::Mat, kNumChannels> out;
  const double cx = 0.5 * w, cy = 0.5 * h, norm = 1.0 / (cx * cx + cy * cy);
  for (int ch = 0; ch < kNumChannels; ++ch) {
    cv::Mat sharp, haze;
    cv::GaussianBlur(signal[ch], sharp, cv::Size(), kBlurSigma[ch]);
    cv::GaussianBlur(sharp, haze, cv::Size(), 6.0);
    sharp += kHaze * haze;
    out[ch].create(h, w, CV_16U);
    for (int y = 0; y < h; ++y) {
      const float* s = sharp.ptr<float>(y);
      uint16_t* o = out[ch].ptr<uint16_t>(y);
      for (int x = 0; x < w; ++x) {
        const double illum = 1.0 - 0.12 * ((x - cx) * (x - cx) + (y - cy) * (y - cy)) * norm;
        const double mean = gains[ch] * illum * s[x];
        // Shot noise (Gaussian approximation of Poisson) and read noise, as one normal draw.
        const double value = kOffset[ch] + mean +
                             std::sqrt(kShotNoise * mean + kReadNoise * kReadNoise) * rng.Normal();
        o[x] = static_cast<uint16_t>(std::clamp(std::lround(value), 0L, 4095L));
      }
    }
  }
  return out;
}

}  // namespace cellflux

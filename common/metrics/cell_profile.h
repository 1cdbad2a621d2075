// A CellProfiler-like morphology profile of one Cell Painting image, computed with OpenCV and no
// learned weights, so the morphology metrics do not depend on a feature extractor's training.
// LibTorch-free.
//
// Input: the five channels in canonical order (DNA, RNA, ER, AGP, Mito), CV_32FC1, same size,
// intensities as a fraction of full scale (the model's [0, 1] image range). Features, in the order
// ProfileFeatureNames() lists them:
//   per channel <ch>_mean, <ch>_std, <ch>_q10, <ch>_q50, <ch>_q90 (intensity distribution);
//   nuclei segmented on DNA: Gaussian blur (σ = 1 px), Otsu threshold, 8-connected components of
//   at least kMinNucleusArea pixels: nuclei_count, nuclei_area (mean, px), nuclei_eccentricity
//   (mean, from second moments: 0 = disc), nuclei_dna (mean DNA intensity inside nuclei),
//   nuclei_area_fraction; all 0 when no nucleus is found;
//   texture per channel: the grey-level co-occurrence matrix (16 levels over the channel's own
//   1st-99th percentile range) at distance d ∈ {1, 2} px, horizontal and vertical offsets,
//   symmetric and normalised: <ch>_glcm_contrast_d<d> (Σ p(i,j)(i−j)²) and
//   <ch>_glcm_correlation_d<d> (0 for a flat image), each the mean of the two directions.
//
// Profiles are compared after standardising each feature with the mean and standard deviation of
// the training controls' profiles (ProfileStandardizer), so every feature counts in its spread.
#ifndef CELLFLUX_COMMON_METRICS_CELL_PROFILE_H_
#define CELLFLUX_COMMON_METRICS_CELL_PROFILE_H_

#include <array>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace cellflux {

inline constexpr int kProfileChannels = 5;
inline constexpr int kMinNucleusArea = 6;  // px; smaller components are noise
inline constexpr int kGlcmLevels = 16;

const std::vector<std::string>& ProfileFeatureNames();

// INVALID_ARGUMENT when a channel is empty, not CV_32FC1, or sizes differ.
absl::StatusOr<std::vector<double>> ComputeProfile(
    const std::array<cv::Mat, kProfileChannels>& channels);

// Nuclei statistics alone (the DNA part of the profile), for tests and reports.
struct NucleiStats {
  int count = 0;
  double area = 0;          // mean px
  double eccentricity = 0;  // mean
  double intensity = 0;     // mean DNA inside nuclei
  double area_fraction = 0;
};
NucleiStats SegmentNuclei(const cv::Mat& dna);

struct GlcmStats {
  double contrast = 0;
  double correlation = 0;
};
// Mean over the horizontal and vertical offset at `distance` px.
GlcmStats Glcm(const cv::Mat& channel, int distance);

// Per-feature z-scores against a reference set (the training controls).
class ProfileStandardizer {
 public:
  ProfileStandardizer() = default;
  // FAILED_PRECONDITION with fewer than 2 profiles; a feature with no spread gets sd 1.
  static absl::StatusOr<ProfileStandardizer> Fit(const std::vector<std::vector<double>>& profiles);
  std::vector<double> Apply(const std::vector<double>& profile) const;
  const std::vector<double>& mean() const { return mean_; }
  const std::vector<double>& sd() const { return sd_; }

 private:
  std::vector<double> mean_, sd_;
};

// Fréchet distance between two sets of vectors (rows), as FID does for features:
// |μa − μb|² + Tr(Σa + Σb − 2 (Σa Σb)^½), covariances unbiased, in float64.
// FAILED_PRECONDITION when either set has fewer than 2 rows or dimensions differ.
absl::StatusOr<double> FrechetDistanceRows(const std::vector<std::vector<double>>& a,
                                           const std::vector<std::vector<double>>& b);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_METRICS_CELL_PROFILE_H_

#include "common/metrics/cell_profile.h"

#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>

#include "absl/strings/str_cat.h"

namespace cellflux {
namespace {

constexpr const char* kChannelNames[kProfileChannels] = {"DNA", "RNA", "ER", "AGP", "Mito"};
constexpr int kDistances[] = {1, 2};

// Value at quantile q of the sorted values (linear interpolation, like numpy's default).
double Quantile(const std::vector<float>& sorted, double q) {
  if (sorted.empty()) return 0.0;
  const double pos = q * (sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
}

std::vector<float> SortedPixels(const cv::Mat& m) {
  std::vector<float> v;
  v.reserve(m.total());
  for (int r = 0; r < m.rows; ++r) {
    const float* p = m.ptr<float>(r);
    v.insert(v.end(), p, p + m.cols);
  }
  std::sort(v.begin(), v.end());
  return v;
}

// One direction's GLCM statistics for quantised levels q (CV_32S), offset (dy, dx).
GlcmStats GlcmDirection(const cv::Mat& q, int dy, int dx) {
  double p[kGlcmLevels][kGlcmLevels] = {};
  double total = 0;
  for (int y = 0; y + dy < q.rows; ++y) {
    for (int x = 0; x + dx < q.cols; ++x) {
      const int a = q.at<int>(y, x), b = q.at<int>(y + dy, x + dx);
      p[a][b] += 1;  // symmetric: both orders
      p[b][a] += 1;
      total += 2;
    }
  }
  GlcmStats s;
  if (total == 0) return s;
  double mu = 0;
  for (int i = 0; i < kGlcmLevels; ++i)
    for (int j = 0; j < kGlcmLevels; ++j) {
      p[i][j] /= total;
      mu += i * p[i][j];
    }
  double var = 0, cov = 0;
  for (int i = 0; i < kGlcmLevels; ++i)
    for (int j = 0; j < kGlcmLevels; ++j) {
      s.contrast += p[i][j] * (i - j) * (i - j);
      var += p[i][j] * (i - mu) * (i - mu);
      cov += p[i][j] * (i - mu) * (j - mu);
    }
  // Symmetric matrix: both marginals share μ and σ².
  s.correlation = var > 1e-12 ? cov / var : 0.0;
  return s;
}

absl::Status CheckChannels(const std::array<cv::Mat, kProfileChannels>& channels) {
  for (int c = 0; c < kProfileChannels; ++c) {
    const cv::Mat& m = channels[c];
    if (m.empty() || m.type() != CV_32FC1 || m.size() != channels[0].size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "profile: channel ", kChannelNames[c], " is ", m.cols, "x", m.rows, " type ", m.type(),
          "; expected CV_32FC1 (type ", CV_32FC1, ") ", channels[0].cols, "x", channels[0].rows));
    }
  }
  return absl::OkStatus();
}

}  // namespace

const std::vector<std::string>& ProfileFeatureNames() {
  static const std::vector<std::string>* names = [] {
    auto* n = new std::vector<std::string>;
    for (const char* ch : kChannelNames) {
      for (const char* stat : {"mean", "std", "q10", "q50", "q90"})
        n->push_back(absl::StrCat(ch, "_", stat));
    }
    for (const char* f : {"nuclei_count", "nuclei_area", "nuclei_eccentricity", "nuclei_dna",
                          "nuclei_area_fraction"})
      n->push_back(f);
    for (const char* ch : kChannelNames) {
      for (int d : kDistances) {
        n->push_back(absl::StrCat(ch, "_glcm_contrast_d", d));
        n->push_back(absl::StrCat(ch, "_glcm_correlation_d", d));
      }
    }
    return n;
  }();
  return *names;
}

NucleiStats SegmentNuclei(const cv::Mat& dna) {
  NucleiStats s;
  if (dna.empty()) return s;
  double lo = 0, hi = 0;
  cv::minMaxLoc(dna, &lo, &hi);
  if (hi - lo < 1e-6) return s;  // flat: nothing to segment
  cv::Mat blurred, u8, mask;
  cv::GaussianBlur(dna, blurred, cv::Size(0, 0), 1.0);
  // Stretched to 8 bits for Otsu (its threshold is invariant to the affine stretch).
  blurred.convertTo(u8, CV_8U, 255.0 / (hi - lo), -lo * 255.0 / (hi - lo));
  cv::threshold(u8, mask, 0, 255, cv::THRESH_BINARY | cv::THRESH_OTSU);
  cv::Mat labels, stats, centroids;
  const int n = cv::connectedComponentsWithStats(mask, labels, stats, centroids, 8, CV_32S);
  std::vector<double> m00(n, 0), m10(n, 0), m01(n, 0), m20(n, 0), m02(n, 0), m11(n, 0), sum(n, 0);
  for (int y = 0; y < labels.rows; ++y) {
    const int* l = labels.ptr<int>(y);
    const float* v = dna.ptr<float>(y);
    for (int x = 0; x < labels.cols; ++x) {
      const int k = l[x];
      if (k == 0) continue;
      m00[k] += 1;
      m10[k] += x;
      m01[k] += y;
      m20[k] += double(x) * x;
      m02[k] += double(y) * y;
      m11[k] += double(x) * y;
      sum[k] += v[x];
    }
  }
  double area = 0, ecc = 0, intensity_sum = 0, pixels = 0;
  for (int k = 1; k < n; ++k) {
    if (m00[k] < kMinNucleusArea) continue;
    const double cx = m10[k] / m00[k], cy = m01[k] / m00[k];
    const double mu20 = m20[k] / m00[k] - cx * cx, mu02 = m02[k] / m00[k] - cy * cy;
    const double mu11 = m11[k] / m00[k] - cx * cy;
    const double root = std::sqrt(4 * mu11 * mu11 + (mu20 - mu02) * (mu20 - mu02));
    const double l1 = (mu20 + mu02 + root) / 2, l2 = (mu20 + mu02 - root) / 2;
    ++s.count;
    area += m00[k];
    ecc += l1 > 0 ? std::sqrt(std::max(0.0, 1.0 - l2 / l1)) : 0.0;
    intensity_sum += sum[k];
    pixels += m00[k];
  }
  if (s.count > 0) {
    s.area = area / s.count;
    s.eccentricity = ecc / s.count;
    s.intensity = intensity_sum / pixels;
    s.area_fraction = pixels / static_cast<double>(dna.total());
  }
  return s;
}

GlcmStats Glcm(const cv::Mat& channel, int distance) {
  GlcmStats s;
  if (channel.empty()) return s;
  const std::vector<float> sorted = SortedPixels(channel);
  const double lo = Quantile(sorted, 0.01), hi = Quantile(sorted, 0.99);
  if (hi - lo < 1e-9) return s;  // flat: no texture
  cv::Mat q(channel.size(), CV_32S);
  for (int y = 0; y < channel.rows; ++y) {
    for (int x = 0; x < channel.cols; ++x) {
      const double t = (channel.at<float>(y, x) - lo) / (hi - lo);
      q.at<int>(y, x) = std::clamp(static_cast<int>(t * kGlcmLevels), 0, kGlcmLevels - 1);
    }
  }
  const GlcmStats h = GlcmDirection(q, 0, distance), v = GlcmDirection(q, distance, 0);
  s.contrast = (h.contrast + v.contrast) / 2;
  s.correlation = (h.correlation + v.correlation) / 2;
  return s;
}

absl::StatusOr<std::vector<double>> ComputeProfile(
    const std::array<cv::Mat, kProfileChannels>& channels) {
  absl::Status ok = CheckChannels(channels);
  if (!ok.ok()) return ok;
  std::vector<double> f;
  f.reserve(ProfileFeatureNames().size());
  for (const cv::Mat& m : channels) {
    cv::Scalar mean, sd;
    cv::meanStdDev(m, mean, sd);
    const std::vector<float> sorted = SortedPixels(m);
    f.insert(f.end(),
             {mean[0], sd[0], Quantile(sorted, 0.1), Quantile(sorted, 0.5), Quantile(sorted, 0.9)});
  }
  const NucleiStats n = SegmentNuclei(channels[0]);
  f.insert(f.end(),
           {static_cast<double>(n.count), n.area, n.eccentricity, n.intensity, n.area_fraction});
  for (const cv::Mat& m : channels) {
    for (int d : kDistances) {
      const GlcmStats g = Glcm(m, d);
      f.push_back(g.contrast);
      f.push_back(g.correlation);
    }
  }
  return f;
}

absl::StatusOr<ProfileStandardizer> ProfileStandardizer::Fit(
    const std::vector<std::vector<double>>& profiles) {
  if (profiles.size() < 2) {
    return absl::FailedPreconditionError(absl::StrCat("profile standardizer: ", profiles.size(),
                                                      " reference profiles, need at least 2"));
  }
  const size_t d = profiles[0].size(), n = profiles.size();
  ProfileStandardizer s;
  s.mean_.assign(d, 0.0);
  s.sd_.assign(d, 0.0);
  for (const auto& p : profiles)
    for (size_t i = 0; i < d; ++i) s.mean_[i] += p[i] / n;
  for (const auto& p : profiles)
    for (size_t i = 0; i < d; ++i) s.sd_[i] += (p[i] - s.mean_[i]) * (p[i] - s.mean_[i]) / (n - 1);
  for (double& v : s.sd_) v = v > 1e-18 ? std::sqrt(v) : 1.0;
  return s;
}

std::vector<double> ProfileStandardizer::Apply(const std::vector<double>& profile) const {
  std::vector<double> z(profile.size());
  for (size_t i = 0; i < z.size(); ++i) z[i] = (profile[i] - mean_[i]) / sd_[i];
  return z;
}

absl::StatusOr<double> FrechetDistanceRows(const std::vector<std::vector<double>>& a,
                                           const std::vector<std::vector<double>>& b) {
  if (a.size() < 2 || b.size() < 2 || a[0].size() != b[0].size()) {
    return absl::FailedPreconditionError(
        absl::StrCat("Fréchet distance: sets of ", a.size(), " and ", b.size(),
                     " rows; need at least 2 rows each of equal dimension"));
  }
  auto stats = [](const std::vector<std::vector<double>>& rows, cv::Mat* mu, cv::Mat* cov) {
    cv::Mat m(static_cast<int>(rows.size()), static_cast<int>(rows[0].size()), CV_64F);
    for (int i = 0; i < m.rows; ++i)
      for (int j = 0; j < m.cols; ++j) m.at<double>(i, j) = rows[i][j];
    cv::calcCovarMatrix(m, *cov, *mu, cv::COVAR_NORMAL | cv::COVAR_ROWS | cv::COVAR_SCALE);
    *cov *= static_cast<double>(m.rows) / (m.rows - 1);  // unbiased, like numpy.cov
  };
  cv::Mat mu_a, cov_a, mu_b, cov_b;
  stats(a, &mu_a, &cov_a);
  stats(b, &mu_b, &cov_b);
  // Tr((Σa Σb)^½) = Σ √λ of the symmetric PSD Σa^½ Σb Σa^½ (fid.h's method, here with OpenCV).
  auto sqrt_psd = [](const cv::Mat& s) {
    cv::Mat values, vectors;
    cv::eigen(s, values, vectors);  // rows of `vectors` are eigenvectors
    cv::Mat d = cv::Mat::zeros(s.size(), CV_64F);
    for (int i = 0; i < values.rows; ++i)
      d.at<double>(i, i) = std::sqrt(std::max(0.0, values.at<double>(i)));
    return cv::Mat(vectors.t() * d * vectors);
  };
  const cv::Mat ra = sqrt_psd(cov_a);
  cv::Mat middle = ra * cov_b * ra;
  middle = (middle + middle.t()) / 2;
  cv::Mat values;
  cv::eigen(middle, values);
  double tr_sqrt = 0;
  for (int i = 0; i < values.rows; ++i) tr_sqrt += std::sqrt(std::max(0.0, values.at<double>(i)));
  const cv::Mat diff = mu_a - mu_b;
  return diff.dot(diff) + cv::trace(cov_a)[0] + cv::trace(cov_b)[0] - 2 * tr_sqrt;
}

}  // namespace cellflux

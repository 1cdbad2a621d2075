#include "common/metrics/delta_metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

namespace cellflux {

double Pearson(const std::vector<double>& a, const std::vector<double>& b) {
  const size_t n = std::min(a.size(), b.size());
  if (n < 2) return 0.0;
  double ma = 0, mb = 0;
  for (size_t i = 0; i < n; ++i) ma += a[i], mb += b[i];
  ma /= n;
  mb /= n;
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < n; ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  // Relative threshold: a vector that is constant up to round-off has no direction.
  if (saa <= 1e-24 * n || sbb <= 1e-24 * n) return 0.0;
  return sab / std::sqrt(saa * sbb);
}

double Cosine(const std::vector<double>& a, const std::vector<double>& b) {
  const size_t n = std::min(a.size(), b.size());
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < n; ++i) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  if (aa <= 1e-24 || bb <= 1e-24) return 0.0;
  return ab / std::sqrt(aa * bb);
}

double MeanAbsoluteError(const std::vector<double>& a, const std::vector<double>& b) {
  const size_t n = std::min(a.size(), b.size());
  if (n == 0) return 0.0;
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += std::abs(a[i] - b[i]);
  return s / n;
}

std::vector<double> Difference(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> d(std::min(a.size(), b.size()));
  for (size_t i = 0; i < d.size(); ++i) d[i] = a[i] - b[i];
  return d;
}

std::vector<double> MeanRows(const std::vector<std::vector<double>>& rows) {
  if (rows.empty()) return {};
  std::vector<double> m(rows[0].size(), 0.0);
  for (const auto& r : rows) {
    for (size_t i = 0; i < m.size() && i < r.size(); ++i) m[i] += r[i];
  }
  for (double& v : m) v /= static_cast<double>(rows.size());
  return m;
}

DeltaScore ScoreDelta(const std::vector<double>& predicted, const std::vector<double>& real,
                      int top_k) {
  DeltaScore s;
  const size_t n = std::min(predicted.size(), real.size());
  s.pearson = Pearson(predicted, real);
  const size_t k = std::min<size_t>(std::max(top_k, 0), n);
  if (k == 0) return s;
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t i, size_t j) { return std::abs(real[i]) > std::abs(real[j]); });
  std::vector<double> p, r;
  double right = 0;
  for (size_t i = 0; i < k; ++i) {
    const double pv = predicted[order[i]], rv = real[order[i]];
    p.push_back(pv);
    r.push_back(rv);
    if (pv == 0 || rv == 0) {
      right += 0.5;  // no call: a coin flip
    } else if ((pv > 0) == (rv > 0)) {
      right += 1;
    }
  }
  s.pearson_top = Pearson(p, r);
  s.sign_accuracy_top = right / k;
  return s;
}

std::vector<RetrievalScore> RetrievalRanks(const std::vector<std::vector<double>>& similarity) {
  std::vector<RetrievalScore> out;
  for (size_t i = 0; i < similarity.size(); ++i) {
    const std::vector<double>& row = similarity[i];
    const double self = row[i];
    double better = 0, ties = 0;
    for (size_t j = 0; j < row.size(); ++j) {
      if (j == i) continue;
      if (row[j] > self) {
        ++better;
      } else if (row[j] == self) {
        ++ties;
      }
    }
    auto p_within = [&](double k) { return std::clamp((k - better) / (ties + 1), 0.0, 1.0); };
    out.push_back({better + 1 + ties / 2, p_within(1), p_within(5)});
  }
  return out;
}

std::vector<std::vector<double>> CosineMatrix(const std::vector<std::vector<double>>& predicted,
                                              const std::vector<std::vector<double>>& real) {
  std::vector<std::vector<double>> m(predicted.size(), std::vector<double>(real.size()));
  for (size_t i = 0; i < predicted.size(); ++i) {
    for (size_t j = 0; j < real.size(); ++j) m[i][j] = Cosine(predicted[i], real[j]);
  }
  return m;
}

Interval BootstrapMean(const std::vector<double>& values, int resamples, uint64_t seed,
                       double level) {
  Interval r;
  if (values.empty()) return r;
  const size_t n = values.size();
  r.mean = std::accumulate(values.begin(), values.end(), 0.0) / n;
  r.lo = r.hi = r.mean;
  if (n < 2 || resamples < 2) return r;
  // mt19937_64's output is fixed by the standard; the index is drawn without a distribution
  // object (those differ between standard libraries), so the interval is the same everywhere.
  std::mt19937_64 rng(seed);
  std::vector<double> means(resamples);
  for (int b = 0; b < resamples; ++b) {
    double s = 0;
    for (size_t i = 0; i < n; ++i) s += values[rng() % n];
    means[b] = s / n;
  }
  std::sort(means.begin(), means.end());
  const double alpha = (1.0 - level) / 2.0;
  auto at = [&](double q) {
    const double pos = q * (resamples - 1);
    const size_t lo = static_cast<size_t>(std::floor(pos));
    const size_t hi = std::min<size_t>(lo + 1, resamples - 1);
    return means[lo] + (pos - lo) * (means[hi] - means[lo]);
  };
  r.lo = at(alpha);
  r.hi = at(1.0 - alpha);
  return r;
}

}  // namespace cellflux

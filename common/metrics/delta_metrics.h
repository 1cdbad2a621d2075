// The perturbation-prediction metrics on vectors (genes or morphology profiles), LibTorch-free.
//
// A "Δ" is a change from matched controls: predicted mean − the mean of the controls the prediction
// started from, real mean − the mean of the real perturbed wells' controls. The metrics compare
// a predicted Δ with the real Δ of one compound (Pearson-Δ, on all entries and on the real top-k),
// rank compounds by the cosine of their predicted Δ to every real Δ (retrieval), and summarise a
// per-compound metric by its mean with a bootstrap confidence interval over compounds.
//
// Conventions for predictions that carry no direction (a constant or all-zero Δ, such as the
// control-as-prediction baseline's Δ = 0): Pearson and cosine are 0 (no correlation), a zero sign
// counts as half right (a coin flip), and retrieval ties are broken at random in expectation (the
// expected rank and the expected top-k hit rate). Nothing here is NaN for finite inputs.
#ifndef CELLFLUX_COMMON_METRICS_DELTA_METRICS_H_
#define CELLFLUX_COMMON_METRICS_DELTA_METRICS_H_

#include <cstdint>
#include <vector>

namespace cellflux {

// Pearson correlation of two equal-length vectors; 0 when either is constant or n < 2.
double Pearson(const std::vector<double>& a, const std::vector<double>& b);
// Cosine similarity; 0 when either has zero norm.
double Cosine(const std::vector<double>& a, const std::vector<double>& b);
// Mean |a - b|.
double MeanAbsoluteError(const std::vector<double>& a, const std::vector<double>& b);
// a - b, element-wise.
std::vector<double> Difference(const std::vector<double>& a, const std::vector<double>& b);
// Element-wise mean of equal-length rows (empty in, empty out).
std::vector<double> MeanRows(const std::vector<std::vector<double>>& rows);

struct DeltaScore {
  double pearson = 0;            // over all entries
  double pearson_top = 0;        // over the real Δ's top_k entries by |real Δ|
  double sign_accuracy_top = 0;  // fraction of those top_k whose sign the prediction gets right
};
// top_k is clamped to the vector length; ties in |real Δ| keep the lower index.
DeltaScore ScoreDelta(const std::vector<double>& predicted, const std::vector<double>& real,
                      int top_k);

// Retrieval: similarity[i][j] = how similar prediction i is to real profile j (square). For each i
// the true match is j = i; b = #{j: s_ij > s_ii}, t = #{j != i: s_ij == s_ii}; with ties broken
// uniformly at random the rank is uniform on b+1..b+t+1.
struct RetrievalScore {
  double rank = 0;  // expected rank, 1 = best: b + 1 + t / 2
  double top1 = 0;  // P(rank <= 1)
  double top5 = 0;  // P(rank <= 5)
};
std::vector<RetrievalScore> RetrievalRanks(const std::vector<std::vector<double>>& similarity);
// similarity[i][j] = Cosine(predicted[i], real[j]).
std::vector<std::vector<double>> CosineMatrix(const std::vector<std::vector<double>>& predicted,
                                              const std::vector<std::vector<double>>& real);

struct Interval {
  double mean = 0;  // the plain mean of the values
  double lo = 0;    // percentile bootstrap interval of the mean
  double hi = 0;
};
// Mean of `values` and its percentile bootstrap interval at `level` (resampling values with
// replacement `resamples` times, deterministic in `seed`). One value: lo = hi = mean.
Interval BootstrapMean(const std::vector<double>& values, int resamples = 2000, uint64_t seed = 0,
                       double level = 0.95);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_METRICS_DELTA_METRICS_H_

// Prometheus metrics of cellflux-server. All names start with `cellflux_`, durations are
// histograms in seconds (buckets 1 ms … 10 min), labels are bounded (method ∈ the 3 RPCs,
// code ∈ the 17 gRPC codes, model_id = one per loaded checkpoint, priority ∈ interactive, batch).
//
//   cellflux_requests_total{method,code}           counter  finished RPCs
//   cellflux_request_duration_seconds{method}      histo    arrival → response
//   cellflux_queue_duration_seconds{priority}      histo    Predict arrival → first row admitted
//   cellflux_compute_duration_seconds              histo    first row admitted → last decoded
//   cellflux_batch_size                            histo    rows (samples) per velocity forward
//   cellflux_queue_depth                           gauge    samples waiting for a row (all
//                                                           classes: the autoscaler's signal)
//   cellflux_queued_samples{priority}              gauge    the same by class
//   cellflux_active_samples                        gauge    samples in the batch (rows)
//   cellflux_samples_total{priority}               counter  samples generated and returned
//   cellflux_euler_steps_total                     counter  row velocity evaluations (rows ×
//                                                           forwards; a Heun step is two)
//   cellflux_model_info{model_id}                  gauge    1 for the serving model, 0 for old
//   cellflux_model_step                            gauge    training step of the serving model
//   cellflux_model_load_seconds                    gauge    how long the last successful load took
//   cellflux_reload_failures_total                 counter  SIGHUP reloads that kept the old model
//   cellflux_gpu_memory_bytes                      gauge    CUDA memory allocated (CUDA only)
//   cellflux_nonfinite_outputs_total               counter  Predict calls failed (INTERNAL)
//                                                           because a sample came out NaN/Inf
//   cellflux_structure_cache_hits_total            counter  smiles requests whose spelling and
//                                                           dose were cached (no parse)
//   cellflux_structure_cache_misses_total          counter  smiles requests parsed (first time
//                                                           seen, or evicted since)
//
// The registry is passed in (no global); the exposer (the /metrics HTTP endpoint) is main's job.
// Every method is thread-safe and lock-free for the caller (prometheus-cpp metrics are atomics),
// so callers may update metrics from any thread but, by house rule, never while holding a lock.
#ifndef CELLFLUX_SERVER_METRICS_H_
#define CELLFLUX_SERVER_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <cstdint>
#include <string>

#include "absl/synchronization/mutex.h"
#include "server/priority.h"

namespace cellflux::server {

class ServerMetrics {
 public:
  explicit ServerMetrics(prometheus::Registry& registry);

  // One finished RPC. `code` is the gRPC code name ("OK", "INVALID_ARGUMENT", ...).
  void RequestDone(const std::string& method, const std::string& code, double seconds);
  void ObserveQueueSeconds(Priority p, double seconds);
  void ObserveComputeSeconds(double seconds);
  // One velocity forward over `rows` samples.
  void ObserveBatch(int64_t rows);
  // Samples of class p waiting; cellflux_queue_depth follows the sum of both classes.
  void SetQueuedSamples(Priority p, int64_t samples);
  void SetActiveSamples(int64_t rows);
  void AddSamples(Priority p, int64_t n);
  void AddEulerSteps(int64_t row_steps);
  // The serving model changed: its info gauge goes to 1, the previous one to 0.
  void SetModel(const std::string& model_id, int64_t step, double load_seconds);
  void ReloadFailed();
  void SetGpuMemoryBytes(double bytes);
  // A Predict call failed because the model produced a NaN/Inf sample.
  void NonFiniteOutput();
  // A smiles request found its compound in the structure cache / had to parse it.
  void StructureCacheHit();
  void StructureCacheMiss();

  // Bucket boundaries of the duration histograms: 1 ms … 600 s, roughly ×2.5 apart.
  static prometheus::Histogram::BucketBoundaries DurationBuckets();

 private:
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& request_duration_;
  prometheus::Family<prometheus::Histogram>& queue_duration_;
  prometheus::Histogram& compute_duration_;
  prometheus::Histogram& batch_size_;
  prometheus::Gauge& queue_depth_;
  prometheus::Family<prometheus::Gauge>& queued_samples_;
  prometheus::Gauge& active_samples_;
  prometheus::Family<prometheus::Counter>& samples_;
  prometheus::Counter& euler_steps_;
  prometheus::Family<prometheus::Gauge>& model_info_;
  prometheus::Gauge& model_step_;
  prometheus::Gauge& model_load_seconds_;
  prometheus::Counter& reload_failures_;
  prometheus::Gauge& gpu_memory_bytes_;
  prometheus::Counter& nonfinite_outputs_;
  prometheus::Counter& structure_cache_hits_;
  prometheus::Counter& structure_cache_misses_;

  // Per class (index = Priority), created with the families.
  std::array<prometheus::Histogram*, kNumPriorities> queue_duration_by_class_{};
  std::array<prometheus::Gauge*, kNumPriorities> queued_by_class_{};
  std::array<prometheus::Counter*, kNumPriorities> samples_by_class_{};

  absl::Mutex model_mu_;  // serialises SetModel (never held by callers)
  prometheus::Gauge* current_model_ ABSL_GUARDED_BY(model_mu_) = nullptr;
};

}  // namespace cellflux::server

#endif  // CELLFLUX_SERVER_METRICS_H_

#include "server/metrics.h"

namespace cellflux::server {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

prometheus::Histogram::BucketBoundaries BatchBuckets() {
  return {1, 2, 4, 8, 16, 32, 64, 128, 256};
}

}  // namespace

prometheus::Histogram::BucketBoundaries ServerMetrics::DurationBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
          1,     2.5,    5,     10,   25,    50,   100, 250,  600};
}

ServerMetrics::ServerMetrics(prometheus::Registry& registry)
    : requests_(BuildCounter()
                    .Name("cellflux_requests_total")
                    .Help("Finished RPCs by method and gRPC status code.")
                    .Register(registry)),
      request_duration_(BuildHistogram()
                            .Name("cellflux_request_duration_seconds")
                            .Help("RPC duration from arrival to response, seconds.")
                            .Register(registry)),
      queue_duration_(
          BuildHistogram()
              .Name("cellflux_queue_duration_seconds")
              .Help("Predict time from arrival until its first sample joined the batch, seconds, "
                    "by priority class.")
              .Register(registry)),
      compute_duration_(BuildHistogram()
                            .Name("cellflux_compute_duration_seconds")
                            .Help("Predict time from its first sample joining the batch until the "
                                  "last was decoded, seconds.")
                            .Register(registry)
                            .Add({}, DurationBuckets())),
      batch_size_(BuildHistogram()
                      .Name("cellflux_batch_size")
                      .Help("Samples (rows) per velocity forward.")
                      .Register(registry)
                      .Add({}, BatchBuckets())),
      queue_depth_(BuildGauge()
                       .Name("cellflux_queue_depth")
                       .Help("Samples waiting for a row in the batch.")
                       .Register(registry)
                       .Add({})),
      queued_samples_(BuildGauge()
                          .Name("cellflux_queued_samples")
                          .Help("Samples waiting for a row in the batch, by priority class.")
                          .Register(registry)),
      active_samples_(BuildGauge()
                          .Name("cellflux_active_samples")
                          .Help("Samples currently in the batch.")
                          .Register(registry)
                          .Add({})),
      samples_(BuildCounter()
                   .Name("cellflux_samples_total")
                   .Help("Samples generated and returned, by priority class.")
                   .Register(registry)),
      euler_steps_(BuildCounter()
                       .Name("cellflux_euler_steps_total")
                       .Help("Velocity evaluations executed, summed over rows (an Euler step is "
                             "one, a Heun step two).")
                       .Register(registry)
                       .Add({})),
      model_info_(
          BuildGauge()
              .Name("cellflux_model_info")
              .Help("1 for the model being served (by model_id), 0 for models served before.")
              .Register(registry)),
      model_step_(BuildGauge()
                      .Name("cellflux_model_step")
                      .Help("Training step of the model being served.")
                      .Register(registry)
                      .Add({})),
      model_load_seconds_(
          BuildGauge()
              .Name("cellflux_model_load_seconds")
              .Help("Duration of the last successful model load (incl. warm-up), seconds.")
              .Register(registry)
              .Add({})),
      reload_failures_(BuildCounter()
                           .Name("cellflux_reload_failures_total")
                           .Help("Model reloads that failed and kept the previous model.")
                           .Register(registry)
                           .Add({})),
      gpu_memory_bytes_(BuildGauge()
                            .Name("cellflux_gpu_memory_bytes")
                            .Help("CUDA memory allocated by the model process, bytes (0 on CPU).")
                            .Register(registry)
                            .Add({})),
      nonfinite_outputs_(BuildCounter()
                             .Name("cellflux_nonfinite_outputs_total")
                             .Help("Predict calls failed with INTERNAL because the model produced "
                                   "a NaN/Inf sample.")
                             .Register(registry)
                             .Add({})),
      structure_cache_hits_(BuildCounter()
                                .Name("cellflux_structure_cache_hits_total")
                                .Help("Predict calls by SMILES whose compound was in the "
                                      "structure cache (no parse, no registration).")
                                .Register(registry)
                                .Add({})),
      structure_cache_misses_(BuildCounter()
                                  .Name("cellflux_structure_cache_misses_total")
                                  .Help("Predict calls by SMILES whose SMILES had to be parsed "
                                        "(not in the structure cache).")
                                  .Register(registry)
                                  .Add({})) {
  for (Priority p : {Priority::kInteractive, Priority::kBatch}) {
    const int c = static_cast<int>(p);
    const prometheus::Labels labels = {{"priority", PriorityName(p)}};
    queue_duration_by_class_[c] = &queue_duration_.Add(labels, DurationBuckets());
    queued_by_class_[c] = &queued_samples_.Add(labels);
    samples_by_class_[c] = &samples_.Add(labels);
  }
}

void ServerMetrics::RequestDone(const std::string& method, const std::string& code,
                                double seconds) {
  requests_.Add({{"method", method}, {"code", code}}).Increment();
  request_duration_.Add({{"method", method}}, DurationBuckets()).Observe(seconds);
}

void ServerMetrics::ObserveQueueSeconds(Priority p, double seconds) {
  queue_duration_by_class_[static_cast<int>(p)]->Observe(seconds);
}
void ServerMetrics::ObserveComputeSeconds(double seconds) { compute_duration_.Observe(seconds); }
void ServerMetrics::ObserveBatch(int64_t rows) { batch_size_.Observe(static_cast<double>(rows)); }
void ServerMetrics::SetQueuedSamples(Priority p, int64_t samples) {
  queued_by_class_[static_cast<int>(p)]->Set(static_cast<double>(samples));
  // The total (the autoscaler's signal) from both classes' latest values.
  queue_depth_.Set(queued_by_class_[0]->Value() + queued_by_class_[1]->Value());
}
void ServerMetrics::SetActiveSamples(int64_t rows) {
  active_samples_.Set(static_cast<double>(rows));
}
void ServerMetrics::AddSamples(Priority p, int64_t n) {
  samples_by_class_[static_cast<int>(p)]->Increment(static_cast<double>(n));
}
void ServerMetrics::AddEulerSteps(int64_t row_steps) {
  euler_steps_.Increment(static_cast<double>(row_steps));
}

void ServerMetrics::SetModel(const std::string& model_id, int64_t step, double load_seconds) {
  prometheus::Gauge& gauge = model_info_.Add({{"model_id", model_id}});
  prometheus::Gauge* previous = nullptr;
  {
    absl::MutexLock lock(&model_mu_);
    previous = current_model_;
    current_model_ = &gauge;
  }
  if (previous != nullptr && previous != &gauge) previous->Set(0);
  gauge.Set(1);
  model_step_.Set(static_cast<double>(step));
  model_load_seconds_.Set(load_seconds);
}

void ServerMetrics::ReloadFailed() { reload_failures_.Increment(); }
void ServerMetrics::SetGpuMemoryBytes(double bytes) { gpu_memory_bytes_.Set(bytes); }
void ServerMetrics::NonFiniteOutput() { nonfinite_outputs_.Increment(); }
void ServerMetrics::StructureCacheHit() { structure_cache_hits_.Increment(); }
void ServerMetrics::StructureCacheMiss() { structure_cache_misses_.Increment(); }

}  // namespace cellflux::server
